"""Overload benchmark: 2x the saturation load, then back to half of it.

1. Saturation: the service (cache off, admitting everything) under `--concurrency` closed-loop
   clients; accepted requests/s and tokens/s, and one request's service time (1 / req/s).
2. A fresh service with the admission under test: the service's defaults (the wait target
   `--max-queue-wait-ms` and the token cap), or the `--max-queue-wait-ms` /
   `--max-queue-tokens` given here.
3. Overload: open-loop Poisson arrivals at `--factor` (2) x the saturation request rate for
   `--overload-seconds` (30): status of every request, latency of 200s and of 429s apart,
   the service's RSS each second. The target: 429s fast, and the accepted p99 within the
   wait target plus one request's service time.
4. Recovery: `--recovery-factor` (0.5) x saturation for `--recovery-seconds` (15): accepted
   throughput and latency per second, and how long until no request is refused.

Prints a table, writes JSON with `--json PATH`; exits 1 if the service crashed or answered
anything but 200/429 during the run.

    .venv/bin/python benches/overload.py --json target/bench/overload.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import loadgen  # noqa: E402


async def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    loadgen.common_args(p)
    p.add_argument("--factor", type=float, default=2.0, help="overload rate / saturation rate")
    p.add_argument("--overload-seconds", type=float, default=30.0)
    p.add_argument("--recovery-factor", type=float, default=0.5)
    p.add_argument("--recovery-seconds", type=float, default=15.0)
    args = p.parse_args()

    started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    sat, target_ms = await loadgen.measure_saturation(args)
    bodies = loadgen.request_mix(args.requests, args.documents)

    server = loadgen.Server(args, loadgen.admission_flags(args))
    crashed = False
    try:
        rss_idle = server.rss_mib()
        rate = sat["accepted_rps"]
        async with loadgen.make_session() as session:
            print(f"overload: {args.factor} x {rate:.1f} = {args.factor * rate:.1f} req/s for {args.overload_seconds:.0f} s")
            over = await loadgen.open_loop(server, bodies, args.factor * rate, args.overload_seconds,
                                           "overload", args.seed, session)
            crashed |= not server.alive()
            print(f"recovery: {args.recovery_factor} x {rate:.1f} = {args.recovery_factor * rate:.1f} req/s "
                  f"for {args.recovery_seconds:.0f} s")
            rec = await loadgen.open_loop(server, bodies, args.recovery_factor * rate, args.recovery_seconds,
                                          "recovery", args.seed + 1, session)
            crashed |= not server.alive()
        rss_end = server.rss_mib()
    finally:
        code = server.stop()
    if code not in (0, None) or crashed:
        crashed = True

    s_over, s_rec = loadgen.summarize(over), loadgen.summarize(rec)
    windows_over = loadgen.per_window(over, 1.0)
    windows_rec = loadgen.per_window(rec, 1.0)
    # Recovery time: the first second of the recovery phase from which no request is refused.
    recovered_after = None
    for i in range(len(windows_rec)):
        if all(w["refused_429"] == 0 and w["errors_other"] == 0 for w in windows_rec[i:]):
            recovered_after = windows_rec[i]["from_s"]
            break

    bound_ms = target_ms + sat["service_time_ms"]
    p99 = s_over["ok_p99_ms"]
    within = p99 is not None and p99 <= bound_ms
    print()
    print(f"model {args.model_dir}; saturation {sat['accepted_rps']:.2f} req/s = "
          f"{sat['accepted_pairs_per_s']:.0f} pairs/s ({sat['tokens_per_request']} tokens/request, "
          f"{args.concurrency} closed-loop clients, p50 {sat['ok_p50_ms']} ms, p99 {sat['ok_p99_ms']} ms); "
          f"wait target {target_ms} ms, one request's service time {sat['service_time_ms']} ms "
          f"(target = {sat['wait_target_service_times']} service times)")
    cols = [("phase", "phase"), ("offered/s", "offered_rps"), ("sent", "sent"), ("200", "ok"),
            ("429", "refused_429"), ("other", "errors_other"), ("ok/s", "accepted_rps"),
            ("pairs/s", "accepted_pairs_per_s"), ("200 p50", "ok_p50_ms"), ("p95", "ok_p95_ms"),
            ("p99", "ok_p99_ms"), ("max", "ok_max_ms"), ("429 p50", "refused_p50_ms"),
            ("429 p99", "refused_p99_ms"), ("RSS max MiB", "rss_max_mib")]
    print("latencies in ms")
    loadgen.print_table([sat, s_over, s_rec], cols)
    print(f"RSS: idle {rss_idle:.1f} MiB, max under overload {s_over['rss_max_mib']} MiB, "
          f"end {rss_end if rss_end is None else round(rss_end, 1)} MiB")
    print(f"recovery: no 429 from second {recovered_after} of the recovery phase on; "
          f"recovery-phase p99 {s_rec['ok_p99_ms']} ms vs saturation p99 {sat['ok_p99_ms']} ms")
    print("recovery phase, per second (ok/s, 429s, p99 ms):",
          " ".join(f"{w['ok']}/{w['refused_429']}/{w['ok_p99_ms']}" for w in windows_rec))
    print(f"overload: accepted p99 {p99} ms vs wait target + one request's service time "
          f"{bound_ms:.0f} ms: {'within' if within else 'OVER'}; 429 p50 {s_over['refused_p50_ms']} ms, "
          f"p99 {s_over['refused_p99_ms']} ms")
    if "slowest" in s_over:
        each = lambda t: (f"{t['service_ms_mean']} ms in the service: tokenizing {t['tokenization_ms_mean']}, its last "
                          f"batch started after {t['queue_ms_mean']}, {t['batches_mean']} batches of "
                          f"{t['inference_ms_mean']} ms inference in all")
        slow = s_over["slowest"]
        print(f"overload, answered: {each(s_over['ok_timing'])}; the slowest {slow['requests']} "
              f"(latency {slow['latency_ms_mean']} ms): {each(slow)}")
    print(f"service exit status {code}; crashed: {crashed}")

    result = {
        "bench": "overload", "started_utc": started, "machine": loadgen.machine(),
        "model_dir": args.model_dir, "server_cmd": server.cmd, "args": vars(args),
        "max_queue_wait_ms": target_ms, "p99_bound_ms": bound_ms, "p99_within_bound": within,
        "saturation": sat, "overload": s_over,
        "recovery": s_rec, "rss_idle_mib": rss_idle, "rss_end_mib": rss_end,
        "recovered_after_s": recovered_after, "overload_per_second": windows_over,
        "recovery_per_second": windows_rec, "service_exit": code, "crashed": crashed,
    }
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=2))
        print(f"wrote {args.json}")
    bad = s_over["errors_other"] + s_rec["errors_other"]
    if crashed or bad:
        print(f"FAILED: crashed={crashed}, answers other than 200/429: {bad}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
