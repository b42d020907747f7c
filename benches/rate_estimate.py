"""Admission's throughput estimate against the throughput the service really delivers.

Admission divides the queued tokens by `rradistill_throughput_tokens_per_second` (the rate
the batcher measures from each batch's inference time) to predict a request's wait. This
runs `--concurrency` closed-loop clients against the real binary (admitting everything) for
`--seconds`, and every `--every` seconds reads the gauge beside the tokens the service
answered per second over the last `--window` seconds (each response's `meta.input_tokens`,
counted as admission counts them). A ratio above 1 means waits are over-estimated
(admission refuses more than it must), below 1 that they are under-estimated (accepted
requests wait past the target).

    .venv/bin/python benches/rate_estimate.py --model-dir models/rra-bert-m --json target/bench/rate_estimate.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import loadgen  # noqa: E402

GAUGE = "rradistill_throughput_tokens_per_second"


async def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    loadgen.common_args(p)
    p.add_argument("--seconds", type=float, default=30.0, help="length of the measured phase")
    p.add_argument("--warmup-seconds", type=float, default=6.0)
    p.add_argument("--every", type=float, default=2.0, help="seconds between readings")
    p.add_argument("--window", type=float, default=4.0, help="seconds of answers per reading")
    args = p.parse_args()

    bodies = loadgen.request_mix(args.requests, args.documents)
    server = loadgen.Server(args, ["--max-queue-wait-ms", "3600000"])
    answered: list[tuple[float, int]] = []
    readings = []
    try:
        async with loadgen.make_session() as session:
            t0 = time.monotonic()
            stop = t0 + args.warmup_seconds + args.seconds

            async def client(i: int) -> None:
                k = i
                while time.monotonic() < stop:
                    async with session.post(server.url + "/v1/rerank", data=bodies[k % len(bodies)],
                                            headers={"content-type": "application/json"}) as r:
                        body = await r.json()
                        if r.status != 200:
                            raise SystemExit(f"status {r.status}: {body}")
                    answered.append((time.monotonic(), body["meta"]["input_tokens"]))
                    k += args.concurrency

            async def read() -> None:
                while time.monotonic() < stop:
                    await asyncio.sleep(args.every)
                    now = time.monotonic()
                    if now - t0 < args.warmup_seconds:
                        continue
                    async with session.get(server.url + "/metrics") as r:
                        text = await r.text()
                    gauge = sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                                if line.startswith(GAUGE + "{"))
                    delivered = sum(t for (at, t) in answered if at > now - args.window) / args.window
                    readings.append({"at_s": round(now - t0, 1), "estimate_tokens_per_s": round(gauge, 1),
                                     "answered_tokens_per_s": round(delivered, 1)})
                    print(f"{now - t0:6.1f} s  estimate {gauge:9.1f} tokens/s  answered {delivered:9.1f} tokens/s",
                          flush=True)

            await asyncio.gather(read(), *(client(i) for i in range(args.concurrency)))
    finally:
        code = server.stop()
    t_end = answered[-1][0] if answered else 0.0
    measured = [(at, t) for (at, t) in answered if at - (t_end - args.seconds) >= 0]
    span = args.seconds
    answered_rate = sum(t for _, t in measured) / span
    estimate = statistics.median(r["estimate_tokens_per_s"] for r in readings) if readings else None
    summary = {
        "bench": "rate_estimate", "started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": loadgen.machine(), "model_dir": args.model_dir, "concurrency": args.concurrency,
        "documents": args.documents, "seconds": args.seconds,
        "estimate_median_tokens_per_s": estimate,
        "answered_tokens_per_s": round(answered_rate, 1),
        "answered_over_estimate": round(answered_rate / estimate, 3) if estimate else None,
        "readings": readings, "server_exit": code,
    }
    print(f"median estimate {estimate} tokens/s; answered {answered_rate:.1f} tokens/s over the last "
          f"{span:.0f} s; answered / estimate = {summary['answered_over_estimate']}")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(summary, indent=1) + "\n")
        print("wrote", args.json)
    return 0 if code == 0 else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
