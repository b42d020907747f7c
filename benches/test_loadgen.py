"""The load generator's own arithmetic, checked without a service: the refusal-rate bound the
soak reports and the wait target it derives from a measured service time."""

import argparse
import asyncio
import math
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import loadgen  # noqa: E402


def test_no_refusals_bound_the_rate_by_the_closed_form():
    for trials in (1, 230, 2995, 3000):
        assert loadgen.rate_upper_bound(0, trials) == pytest.approx(1 - 0.05 ** (1 / trials), rel=1e-9)
    # About 3,000 requests without a refusal are what it takes to show a rate of at most 0.1%.
    assert loadgen.rate_upper_bound(0, 2990) > 0.001 >= loadgen.rate_upper_bound(0, 3000)


def test_the_bound_is_the_binomial_tail_and_grows_with_the_events():
    # Clopper-Pearson: at the bound, seeing at most this many events has probability 5%.
    for events, trials in ((1, 3000), (3, 230), (40, 1000)):
        rate = loadgen.rate_upper_bound(events, trials)
        tail = sum(math.comb(trials, i) * rate ** i * (1 - rate) ** (trials - i) for i in range(events + 1))
        assert tail == pytest.approx(0.05, rel=1e-6)
        assert rate > events / trials
    bounds = [loadgen.rate_upper_bound(k, 3000) for k in range(5)]
    assert bounds == sorted(bounds) and len(set(bounds)) == 5


def test_every_trial_an_event_or_none_run_bounds_nothing():
    assert loadgen.rate_upper_bound(5, 5) == 1.0
    assert loadgen.rate_upper_bound(0, 0) == 1.0


def test_a_fixed_target_and_one_in_service_times_cannot_both_be_given():
    parser = argparse.ArgumentParser()
    loadgen.common_args(parser)
    args = parser.parse_args(["--max-queue-wait-ms", "2000", "--wait-target-service-times", "20"])
    with pytest.raises(SystemExit, match="not both"):
        asyncio.run(loadgen.measure_saturation(args))


def test_how_many_requests_show_the_target_at_a_run_s_rate():
    # with no refusals, the closed form's ~3,000; the first n whose bound is at most 0.1%
    n = loadgen.trials_to_show(0.0, 0.001)
    assert loadgen.rate_upper_bound(0, n) <= 0.001 < loadgen.rate_upper_bound(0, n - 1)
    # refusals at 2 in 3,057 (0.065%) keep coming: the bound nears 0.1% only slowly
    rate = 2 / 3057
    n = loadgen.trials_to_show(rate, 0.001)
    assert loadgen.rate_upper_bound(round(rate * n), n) <= 0.001
    assert 15_000 < n < 30_000
    # a rate at or above the target is never shown
    assert loadgen.trials_to_show(0.001, 0.001) is None and loadgen.trials_to_show(0.002, 0.001) is None
