"""What share of requests a wait target refuses, from queueing alone: the yardstick for
`make soak` and `make overload`.

Poisson arrivals of equal requests (each `S` seconds of the model's work) at `rho` of the
model's capacity, served in order by a work-conserving server (the batcher keeps every session
busy), and the admission rule the service applies: refuse a request when the work queued
ahead of it takes longer than the wait target `T` to clear. Prints, per `T / S`, the share
refused at each load. Nothing here is measured on the service; it says what any admission by
expected wait must refuse, so a measured figure can be read against it.

    python3 benches/queueing.py            # T/S = 1..10 at 0.7x and 2x
    python3 benches/queueing.py --rho 0.7 --ratios 2 4 8
"""

from __future__ import annotations

import argparse
import random


def refused_share(rho: float, target: float, arrivals: int, seed: int) -> float:
    """Share of `arrivals` refused at load `rho` with wait target `target` (in units of S)."""
    rng = random.Random(seed)
    work = 0.0
    refused = 0
    for _ in range(arrivals):
        work = max(0.0, work - rng.expovariate(rho))
        if work > target:
            refused += 1
        else:
            work += 1.0
    return refused / arrivals


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rho", type=float, nargs="+", default=[0.7, 2.0])
    p.add_argument("--ratios", type=float, nargs="+", default=[1, 2, 3, 4, 5, 6, 8, 10])
    p.add_argument("--arrivals", type=int, default=400_000)
    p.add_argument("--seed", type=int, default=1)
    args = p.parse_args()
    print("T/S  " + "  ".join(f"refused at {rho}x" for rho in args.rho))
    for ratio in args.ratios:
        cells = [f"{100 * refused_share(rho, ratio, args.arrivals, args.seed):14.3f}%" for rho in args.rho]
        print(f"{ratio:4g}  " + "  ".join(cells))


if __name__ == "__main__":
    main()
