"""Hostile bodies at the concurrency limit: what the worst requests the limits allow cost, and
what normal traffic sees meanwhile.

1. A fresh service (cache off) with `--max-concurrent-requests` = `--concurrency` (default 32).
2. Baseline: normal traffic alone, open loop (Poisson) at `--fraction` (0.5) of the measured
   saturation rate (closed loop first, as in overload.py), or `--rate` requests/s, of the
   usual 1 query x 50 documents mix, for `--seconds`: p50/p99 and the service's RSS.
3. Hostile: the same normal traffic, plus `--concurrency` closed-loop clients each sending, in
   turn, the worst bodies `--max-body-bytes` (8 MiB) allows:
   - one document of 8 MiB (tokenized whole before, now cut by bytes first);
   - 1000 documents (`--max-documents`) of 8 KiB each: the most text to tokenize;
   - 8 MiB of empty strings, ~2.8 million documents (refused while parsing).
   Reported: peak RSS (VmHWM and the 1 s samples), the hostile answers by status and their
   latency, and normal traffic's p50/p99 and statuses beside the baseline's, as ratios.

Prints a table, writes JSON with `--json PATH`; exits 1 if the service crashed or answered a
normal request with anything but 200/429.

    nice -n 10 .venv/bin/python benches/hostile.py --json target/bench/hostile.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent))
import loadgen  # noqa: E402

BODY_LIMIT = 8 * 1024 * 1024


def hostile_bodies(max_documents: int) -> dict[str, bytes]:
    sentence = "The apt pinning file lets you prefer packages from one release over another. "
    one = sentence * ((BODY_LIMIT - 200) // len(sentence))
    per_doc = (BODY_LIMIT - 200) // max_documents - 4
    many = [(sentence * (per_doc // len(sentence) + 1))[:per_doc] for _ in range(max_documents)]
    empties = (BODY_LIMIT - 100) // 3
    bodies = {
        "one 8 MiB document": json.dumps({"query": "apt pinning", "documents": [one]}).encode(),
        f"{max_documents} documents of {per_doc // 1024} KiB": json.dumps(
            {"query": "apt pinning", "documents": many}).encode(),
        f"{empties} empty documents": (
            '{"query": "q", "documents": [' + ",".join(['""'] * empties) + "]}").encode(),
    }
    for name, body in bodies.items():
        assert len(body) <= BODY_LIMIT, (name, len(body))
    return bodies


def vm_hwm_mib(server: loadgen.Server) -> float | None:
    try:
        for line in Path(f"/proc/{server.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        return None
    return None


async def hostile_clients(server, bodies: dict[str, bytes], concurrency: int, seconds: float) -> list[dict]:
    answers: list[dict] = []
    names = list(bodies)
    url = server.url + "/v1/rerank"
    end = time.monotonic() + seconds
    async with loadgen.make_session(timeout_s=120.0) as session:
        async def client(c: int) -> None:
            i = c
            while time.monotonic() < end:
                name = names[i % len(names)]
                started = time.monotonic()
                try:
                    async with session.post(url, data=bodies[name],
                                            headers={"content-type": "application/json"}) as r:
                        await r.read()
                        status = r.status
                except (aiohttp.ClientError, asyncio.TimeoutError, OSError):
                    status = 0
                answers.append({"body": name, "status": status, "latency": time.monotonic() - started})
                i += 1
        await asyncio.gather(*(client(c) for c in range(concurrency)))
    return answers


async def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    loadgen.common_args(p)
    p.set_defaults(concurrency=32)
    p.add_argument("--fraction", type=float, default=0.5,
                   help="normal traffic as a share of the measured saturation rate")
    p.add_argument("--rate", type=float, default=0.0,
                   help="normal requests per second (0: --fraction x saturation)")
    p.add_argument("--seconds", type=float, default=30.0, help="length of each phase")
    p.add_argument("--max-documents", type=int, default=1000)
    args = p.parse_args()

    started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    saturation = None
    if not args.rate:
        saturation, _ = await loadgen.measure_saturation(args)
        args.rate = round(args.fraction * saturation["accepted_rps"], 3)
    bodies = hostile_bodies(args.max_documents)
    normal = loadgen.request_mix(args.requests, args.documents)
    server = loadgen.Server(args, ["--max-concurrent-requests", str(args.concurrency),
                                   "--max-documents", str(args.max_documents)])
    crashed = False
    try:
        rss_idle = server.rss_mib()
        print(f"baseline: {args.rate} normal req/s for {args.seconds:.0f} s")
        base = await loadgen.open_loop(server, normal, args.rate, args.seconds, "baseline", args.seed)
        hwm_before = vm_hwm_mib(server)
        print(f"hostile: the same, plus {args.concurrency} clients sending the worst bodies")
        hostile_task = asyncio.create_task(hostile_clients(server, bodies, args.concurrency, args.seconds))
        under = await loadgen.open_loop(server, normal, args.rate, args.seconds, "under attack", args.seed + 1)
        hostile = await hostile_task
        crashed = not server.alive()
        hwm_after = vm_hwm_mib(server)
    finally:
        code = server.stop()
    crashed = crashed or code not in (0, None)

    s_base, s_under = loadgen.summarize(base), loadgen.summarize(under)
    by_body = {}
    for name in bodies:
        rows = [a for a in hostile if a["body"] == name]
        statuses: dict[str, int] = {}
        for a in rows:
            statuses[str(a["status"])] = statuses.get(str(a["status"]), 0) + 1
        lat = [a["latency"] for a in rows]
        by_body[name] = {"sent": len(rows), "status": statuses,
                         "p50_ms": loadgen._ms(loadgen.percentile(lat, 50)),
                         "p99_ms": loadgen._ms(loadgen.percentile(lat, 99))}
    ratio = (s_under["ok_p99_ms"] / s_base["ok_p99_ms"]) if s_base["ok_p99_ms"] and s_under["ok_p99_ms"] else None

    print()
    print(f"model {args.model_dir}; --max-concurrent-requests {args.concurrency}; "
          f"normal traffic {args.rate} req/s of {args.documents} documents")
    loadgen.print_table([s_base, s_under], [
        ("phase", "phase"), ("sent", "sent"), ("200", "ok"), ("429", "refused_429"),
        ("other", "errors_other"), ("p50 ms", "ok_p50_ms"), ("p99 ms", "ok_p99_ms"),
        ("RSS max MiB", "rss_max_mib")])
    print("hostile bodies:")
    for name, row in by_body.items():
        print(f"  {name}: {row['sent']} sent, statuses {row['status']}, p50 {row['p50_ms']} ms, p99 {row['p99_ms']} ms")
    print(f"RSS: idle {rss_idle:.1f} MiB; peak (VmHWM) {hwm_before} MiB after the baseline, "
          f"{hwm_after} MiB after the hostile phase")
    print(f"normal traffic p99 under attack / baseline: {ratio if ratio is None else round(ratio, 2)}")
    print(f"service exit status {code}; crashed: {crashed}")

    result = {
        "bench": "hostile", "started_utc": started, "machine": loadgen.machine(),
        "model_dir": args.model_dir, "server_cmd": server.cmd, "args": vars(args),
        "saturation": saturation, "baseline": s_base, "under_attack": s_under,
        "hostile_bodies": by_body,
        "rss_idle_mib": rss_idle, "vm_hwm_after_baseline_mib": hwm_before,
        "vm_hwm_after_hostile_mib": hwm_after, "p99_ratio_under_attack": ratio,
        "service_exit": code, "crashed": crashed,
    }
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=2))
        print(f"wrote {args.json}")
    bad = s_base["errors_other"] + s_under["errors_other"]
    if crashed or bad:
        print(f"FAILED: crashed={crashed}, normal answers other than 200/429: {bad}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
