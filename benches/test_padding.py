"""The padding bench's arithmetic: a batch's padded tokens are its longest pair times its size."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import padding  # noqa: E402


def test_padding_share_counts_each_batch_to_its_longest_pair():
    assert padding.padding_share([100, 100, 50, 50], 2) == 0.0
    assert padding.padding_share([100, 50], 2) == 0.25
    assert padding.padding_share([100, 50, 80], 1) == 0.0
    # A last partial batch is left out, as the bench leaves it unscored.
    assert padding.padding_share([100, 100, 10], 2) == 0.0
