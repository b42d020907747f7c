"""Saturated throughput of model folders through the running service, side by side.

What it answers: how many pairs per second the real binary answers with each model folder
when it is never idle, on this machine, now. `benches/students.py` times bare ONNX Runtime;
this times what a client gets (HTTP, tokenization, batching across requests, the service's
own sessions and threads). The machines are shared and noisy, so models alternate: each
round starts the binary once per model (the order rotating each round) and runs the same
closed loop of `--concurrency` clients for `--seconds` after a 3 s warm-up; each model's
figure is its median over rounds, and ratios divide by the first `--model`. The service's
peak RSS in each saturated run is reported beside it (memory is a cost of a build too).

Requests are loadgen's mix (`--documents` per request, 16 distinct requests cycled); the
service admits everything (no wait target), with the response cache off.

    .venv/bin/python benches/saturation.py --model rra-bert-m=models/rra-bert-m \\
        --model rows=target/rows/rra-bert-m --rounds 3 --json target/bench/saturation.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import loadgen  # noqa: E402


async def one_round(args, name: str, folder: str, bodies: list[bytes]) -> dict:
    args.model_dir = folder
    args.bin = args.binaries.get(name, args.default_bin)
    server = loadgen.Server(args, ["--max-queue-wait-ms", "3600000"])
    try:
        await loadgen.closed_loop(server, bodies, args.concurrency, 3.0, "warm-up")
        summary = loadgen.summarize(await loadgen.closed_loop(server, bodies, args.concurrency, args.seconds))
    finally:
        summary_exit = server.stop()
    if summary["ok"] == 0 or summary["errors_other"] or summary["refused_429"]:
        raise SystemExit(f"{name}: the saturated run was not clean: {summary}")
    print(f"  {name}: {summary['accepted_pairs_per_s']:.1f} pairs/s, p50 {summary['ok_p50_ms']} ms, "
          f"peak RSS {summary['rss_max_mib']} MiB (exit {summary_exit})", flush=True)
    return summary


async def main_async(args) -> dict:
    models = dict(m.split("=", 1) for m in args.model)
    names = list(models)
    bodies = loadgen.request_mix(args.requests, args.documents)
    rounds: dict[str, list[dict]] = {n: [] for n in names}
    for r in range(args.rounds):
        order = names[r % len(names):] + names[:r % len(names)]
        print(f"round {r + 1}/{args.rounds}: {', '.join(order)}", flush=True)
        for name in order:
            rounds[name].append(await one_round(args, name, models[name], bodies))
    pairs = {n: statistics.median(s["accepted_pairs_per_s"] for s in v) for n, v in rounds.items()}
    ref = names[0]
    return {
        "machine": loadgen.machine(), "models": models, "reference": ref, "rounds": args.rounds,
        "seconds": args.seconds, "concurrency": args.concurrency, "documents": args.documents,
        "binaries": {n: args.binaries.get(n, args.default_bin) for n in names},
        "pairs_per_s": {n: round(v, 2) for n, v in pairs.items()},
        "p50_ms": {n: statistics.median(s["ok_p50_ms"] for s in v) for n, v in rounds.items()},
        "ratio_to_reference": {n: round(v / pairs[ref], 3) for n, v in pairs.items()},
        "per_round_pairs_per_s": {n: [round(s["accepted_pairs_per_s"], 2) for s in v] for n, v in rounds.items()},
        "per_round_p50_ms": {n: [s["ok_p50_ms"] for s in v] for n, v in rounds.items()},
        "peak_rss_mib": {n: statistics.median(s["rss_max_mib"] for s in v) for n, v in rounds.items()},
        "per_round_peak_rss_mib": {n: [s["rss_max_mib"] for s in v] for n, v in rounds.items()},
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    loadgen.common_args(ap)
    ap.add_argument("--model", action="append", required=True, metavar="NAME=FOLDER",
                    help="a model folder; the first is the reference the ratios divide by")
    ap.add_argument("--binary", action="append", default=[], metavar="NAME=PATH",
                    help="serve model NAME with this binary instead of --bin (two builds side by side: "
                         "give one folder twice under two names)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=30.0, help="each saturated run, after its warm-up")
    args = ap.parse_args()
    if any("=" not in m for m in args.model + args.binary):
        raise SystemExit("--model takes NAME=FOLDER and --binary NAME=PATH")
    args.binaries, args.default_bin = dict(b.split("=", 1) for b in args.binary), args.bin
    result = asyncio.run(main_async(args))
    print("pairs/s, median over rounds: " + ", ".join(
        f"{n} {v} ({result['ratio_to_reference'][n]}x, p50 {result['p50_ms'][n]} ms, "
        f"peak RSS {result['peak_rss_mib'][n]} MiB)"
        for n, v in result["pairs_per_s"].items()))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
