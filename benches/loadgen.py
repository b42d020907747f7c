"""Load generation shared by benches/overload.py and benches/soak.py.

Starts the real `rradistill` binary on free loopback ports, drives it with closed-loop or
open-loop HTTP load from asyncio + aiohttp, and samples the service once a second: its
resident memory (VmRSS from /proc/PID/status), its CPU time (/proc/PID/stat), and from its
`/metrics` the throughput admission divides the queue by and the inference time its batches
took, so a phase can set the rate admission believed beside the rate requests were answered
at. Everything targets 127.0.0.1.

Requests are the style of benches/service.rs's `request_mix`: 1 query x 50 documents of
3-6 sentences (about 80-160 tokens each), 16 distinct requests cycled.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parent.parent

SENTENCES = [
    "Use dpkg -i with the .deb file you copied onto the machine, then run apt-get -f install to pull in what it needs.",
    "The global interpreter lock lets only one thread execute Python bytecode at a time, so CPU-bound threads do not run in parallel.",
    "Kernel modules accept parameters at load time; modinfo lists the options a driver accepts and modprobe.d makes them permanent.",
    "Debian stable is released roughly every two years and receives security support for about three.",
    "A tuple is an immutable sequence, while a list can be changed in place and is usually used for homogeneous items.",
    "Set the system locale with dpkg-reconfigure locales, then log out and in again for the change to take effect.",
    "The apt preferences file lets you pin packages so that one release is preferred over another.",
    "Manual pages are grouped into numbered sections: 1 for user commands, 2 for system calls, 3 for library functions.",
    "Virtual environments isolate a project's packages from the system interpreter and from each other.",
    "Long-tail queries are rare, long and specific, so click logs say little about which documents answer them.",
]
QUERIES = [
    "how do I install a downloaded deb package without network access on an old debian machine",
    "why do python threads not speed up my cpu bound numeric loop",
    "set wireless driver module options permanently on boot",
    "difference between tuple and list and when to use each",
    "change language and locale settings for all users",
    "which manual section documents c library functions like printf",
    "prefer packages from testing while staying on stable",
    "isolate python dependencies per project without root",
]


def request_mix(count: int = 16, documents: int = 50) -> list[bytes]:
    """The same mix as benches/service.rs: `count` request bodies of 1 query x `documents`."""
    bodies = []
    for r in range(count):
        docs = []
        for d in range(documents):
            n = 3 + (r * 7 + d * 3) % 4
            docs.append(" ".join(SENTENCES[(r + d * 3 + s * 7) % len(SENTENCES)] for s in range(n)))
        bodies.append(json.dumps({"query": QUERIES[r % len(QUERIES)], "documents": docs}).encode())
    return bodies


def default_model_dir() -> str:
    """The folder named in models/DEFAULT (first non-comment, non-empty line)."""
    for line in (ROOT / "models" / "DEFAULT").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            return line
    raise SystemExit("models/DEFAULT names no model folder")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def common_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model-dir", default=default_model_dir(),
                        help="model folder to serve (default: the one models/DEFAULT names)")
    parser.add_argument("--bin", default="target/release/rradistill")
    parser.add_argument("--ort-dylib-path", default=os.environ.get(
        "ORT_DYLIB_PATH", ".runtime/onnxruntime/libonnxruntime.so.1.32.0"))
    parser.add_argument("--documents", type=int, default=50, help="documents per request")
    parser.add_argument("--requests", type=int, default=16, help="distinct requests in the mix")
    parser.add_argument("--concurrency", type=int, default=4,
                        help="closed-loop clients for the saturation measurement")
    parser.add_argument("--saturation-seconds", type=float, default=15.0)
    parser.add_argument("--max-queue-wait-ms", type=int, default=0,
                        help="the service's admission wait target under test (0: the service's "
                             "default, --max-queue-wait-ms of `rradistill --help`)")
    parser.add_argument("--wait-target-service-times", type=float, default=0.0,
                        help="set the wait target to this many of one request's service times as the "
                             "saturation run measures it, instead of a fixed --max-queue-wait-ms: what a "
                             "target refuses depends on that ratio (benches/queueing.py), so a slow machine "
                             "can measure what the default target means where a request takes 1/K of it")
    parser.add_argument("--max-queue-tokens", type=int, default=0,
                        help="the service's token cap under test (0: the service's default)")
    parser.add_argument("--server-arg", action="append", default=[],
                        help="extra flag for the service, repeatable (e.g. --server-arg=--sessions=2)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--json", help="write the results as JSON to this path")


class Server:
    """The real binary on free loopback ports; its log goes to a temporary file."""

    def __init__(self, args: argparse.Namespace, extra: list[str]):
        self.port = free_port()
        self.grpc_port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = tempfile.NamedTemporaryFile(prefix="rradistill-bench-", suffix=".log", delete=False)
        cmd = [
            args.bin, "--model-dir", args.model_dir, "--ort-dylib-path", args.ort_dylib_path,
            "--host", "127.0.0.1", "--port", str(self.port), "--grpc-port", str(self.grpc_port),
            "--cache-capacity", "0", *extra, *args.server_arg,
        ]
        self.cmd = cmd
        self.proc = subprocess.Popen(cmd, cwd=ROOT, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 120
        while True:
            if self.proc.poll() is not None:
                raise SystemExit(f"service exited with {self.proc.returncode} at start-up; log: {self.log.name}\n"
                                 + Path(self.log.name).read_text()[-3000:])
            try:
                with urllib.request.urlopen(self.url + "/ready", timeout=1) as r:
                    if r.status == 200:
                        break
            except Exception:
                pass
            if time.monotonic() > deadline:
                self.proc.kill()
                raise SystemExit("service not ready within 120 s")
            time.sleep(0.1)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def rss_mib(self) -> float | None:
        try:
            for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024.0
        except OSError:
            return None
        return None

    def cpu_seconds(self) -> float | None:
        """User + system CPU time of the service so far."""
        try:
            fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return None
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def metrics(self) -> dict[str, float]:
        """The service's unlabelled-or-single-model series from `/metrics`, by name (the
        benches serve one model, so a name's one sample is that model's)."""
        try:
            with urllib.request.urlopen(self.url + "/metrics", timeout=2) as r:
                text = r.read().decode()
        except (OSError, ValueError):
            return {}
        out = {}
        for line in text.splitlines():
            if line.startswith("#") or not line.strip():
                continue
            name, _, value = line.rpartition(" ")
            try:
                out[name.split("{", 1)[0]] = float(value)
            except ValueError:
                pass
        return out

    def stop(self) -> int | None:
        """SIGTERM and wait; returns the exit status, or None if it had to be killed."""
        if self.proc.poll() is not None:
            return self.proc.returncode
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=40)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            return None


@dataclass
class Record:
    t: float  # seconds since the phase started, when the request was due to be sent
    status: int  # HTTP status; 0 for a client-side failure (connection error, client timeout)
    latency: float  # seconds, from when it was due (open loop) or sent (closed loop)
    tokens: int = 0
    pairs: int = 0
    # The service's own account of an answered request (the response's `meta`, ms): the time
    # inside the service, tokenizing, the longest wait of one of its pairs for a batch (when
    # its last batch started) and the inference time of the batches it ran in.
    total_ms: float | None = None
    tokenization_ms: float | None = None
    queue_ms: float | None = None
    inference_ms: float | None = None
    batches: int | None = None
    # A refused request's reason as the service gave it (the error's `message`).
    detail: str | None = None


@dataclass
class Phase:
    name: str
    seconds: float
    offered_rps: float | None
    records: list[Record] = field(default_factory=list)
    rss: list[tuple[float, float]] = field(default_factory=list)  # (t, MiB)
    samples: list["Sample"] = field(default_factory=list)


@dataclass
class Sample:
    """The service once a second: cumulative counters, so a phase's rates are differences."""
    t: float
    cpu_s: float | None  # CPU time of the service process (user + system)
    throughput: float | None  # rradistill_throughput_tokens_per_second: admission's rate
    inference_s: float | None  # rradistill_batch_inference_duration_seconds_sum
    batches: float | None  # rradistill_batch_inference_duration_seconds_count
    correction: float | None  # rradistill_wait_estimate_correction


async def _send(session: aiohttp.ClientSession, url: str, body: bytes) -> dict:
    async with session.post(url, data=body, headers={"content-type": "application/json"}) as resp:
        data = await resp.read()
        out = {"status": resp.status}
        if resp.status == 200:
            meta = json.loads(data).get("meta", {})
            out.update(tokens=meta.get("input_tokens", 0), pairs=meta.get("documents", 0),
                       **{k: meta.get(k) for k in ("total_ms", "tokenization_ms", "queue_ms", "inference_ms",
                                                   "batches")})
        elif resp.status == 429:
            try:
                out["detail"] = json.loads(data).get("message")
            except (ValueError, AttributeError):
                out["detail"] = data[:200].decode(errors="replace")
        return out


async def one(session, url, body, phase: Phase, t0: float, due: float) -> None:
    try:
        sent = await _send(session, url, body)
    except (aiohttp.ClientError, asyncio.TimeoutError, OSError):
        sent = {"status": 0}
    now = time.monotonic()
    status = sent.pop("status")
    phase.records.append(Record(due - t0, status, now - due, **sent))


async def _sample_rss(server: Server, phase: Phase, t0: float, stop: asyncio.Event) -> None:
    while not stop.is_set():
        rss = server.rss_mib()
        if rss is not None:
            phase.rss.append((time.monotonic() - t0, rss))
        metrics = await asyncio.to_thread(server.metrics)
        phase.samples.append(Sample(time.monotonic() - t0, server.cpu_seconds(),
                                    metrics.get("rradistill_throughput_tokens_per_second"),
                                    metrics.get("rradistill_batch_inference_duration_seconds_sum"),
                                    metrics.get("rradistill_batch_inference_duration_seconds_count"),
                                    metrics.get("rradistill_wait_estimate_correction")))
        try:
            await asyncio.wait_for(stop.wait(), 1.0)
        except asyncio.TimeoutError:
            pass


async def _progress(phase: Phase, every: float, stop: asyncio.Event) -> None:
    """Prints each `every`-second window of an open-loop phase once the next has begun (a
    request of it still in flight is not counted yet; the final table is complete)."""
    done = 0
    while not stop.is_set():
        try:
            await asyncio.wait_for(stop.wait(), every)
        except asyncio.TimeoutError:
            pass
        windows = per_window(phase, every)
        while done < len(windows) - 1 and windows[done + 1]["sent"]:
            w = windows[done]
            print(f"  {phase.name} {w['from_s']:.0f}-{w['to_s']:.0f} s: {w['sent']} sent, {w['ok']} ok, "
                  f"{w['refused_429']} 429, {w['errors_other']} other; p50 {w['ok_p50_ms']} ms, "
                  f"p99 {w['ok_p99_ms']} ms; RSS {w['rss_mib']} MiB", flush=True)
            done += 1


def make_session(timeout_s: float = 60.0) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=2000, force_close=False),
        timeout=aiohttp.ClientTimeout(total=timeout_s),
    )


async def closed_loop(server: Server, bodies: list[bytes], concurrency: int, seconds: float,
                      name: str = "saturation") -> Phase:
    phase = Phase(name, seconds, None)
    url = server.url + "/v1/rerank"
    stop = asyncio.Event()
    async with make_session() as session:
        t0 = time.monotonic()
        end = t0 + seconds

        async def client(c: int) -> None:
            i = c
            while time.monotonic() < end:
                now = time.monotonic()
                await one(session, url, bodies[i % len(bodies)], phase, t0, now)
                i += concurrency

        sampler = asyncio.create_task(_sample_rss(server, phase, t0, stop))
        await asyncio.gather(*(client(c) for c in range(concurrency)))
        # The phase lasts until its last answer, not until its last request was sent: the
        # requests in flight at `seconds` are counted, so their time must be too (counting
        # them over `seconds` alone overstated saturation by up to `concurrency` requests).
        phase.seconds = time.monotonic() - t0
        stop.set()
        await sampler
    return phase


async def open_loop(server: Server, bodies: list[bytes], rate: float, seconds: float, name: str,
                    seed: int, session: aiohttp.ClientSession | None = None,
                    progress_every: float = 0.0) -> Phase:
    """Poisson arrivals at `rate` requests/s for `seconds`; latency counted from when each
    request was due, so a slow client loop cannot hide queueing (no coordinated omission)."""
    phase = Phase(name, seconds, rate)
    url = server.url + "/v1/rerank"
    rng = random.Random(seed)
    stop = asyncio.Event()
    own = session is None
    if own:
        session = make_session()
    try:
        t0 = time.monotonic()
        sampler = asyncio.create_task(_sample_rss(server, phase, t0, stop))
        reporter = asyncio.create_task(_progress(phase, progress_every, stop)) if progress_every else None
        tasks = set()
        due = t0
        i = 0
        while True:
            due += rng.expovariate(rate)
            if due - t0 >= seconds:
                break
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            task = asyncio.create_task(one(session, url, bodies[i % len(bodies)], phase, t0, due))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            i += 1
            if not server.alive():
                break
        if tasks:
            await asyncio.gather(*tasks)
        stop.set()
        await sampler
        if reporter:
            await reporter
    finally:
        if own:
            await session.close()
    return phase


def rate_upper_bound(events: int, trials: int, confidence: float = 0.95) -> float:
    """The one-sided Clopper-Pearson upper bound of a rate seen `events` times in `trials`: the
    largest rate under which seeing this few has at least 1 - `confidence` probability. With no
    events it is 1 - (1 - confidence)^(1/trials), about 3/trials at 95% (so showing a rate at
    most 0.1% takes about 3,000 trials without one)."""
    if trials <= 0 or events >= trials:
        return 1.0

    def at_most_events(rate: float) -> float:
        # P(X <= events) for X ~ Binomial(trials, rate), summed in log space (no overflow).
        log_rate, log_rest = math.log(rate), math.log1p(-rate)
        return sum(math.exp(math.lgamma(trials + 1) - math.lgamma(i + 1) - math.lgamma(trials - i + 1)
                            + i * log_rate + (trials - i) * log_rest) for i in range(events + 1))

    low, high = events / trials, 1.0
    for _ in range(100):
        middle = (low + high) / 2
        if middle <= 0.0 or at_most_events(middle) > 1.0 - confidence:
            low = middle
        else:
            high = middle
    return high


def trials_to_show(rate: float, target: float, confidence: float = 0.95, limit: int = 10_000_000) -> int | None:
    """How many trials a run must hold for its bound to show `target`, if events keep coming
    at `rate` (the run's own): the fewest n whose bound over round(rate * n) events is at most
    `target` (found by doubling, then bisection over a bound that falls as n grows). None if
    `rate` is not below `target`, or past `limit`."""
    if rate >= target:
        return None
    shown = lambda n: rate_upper_bound(round(rate * n), n, confidence) <= target
    high = 1
    while not shown(high):
        high *= 2
        if high > limit:
            return None
    low = high // 2
    while high - low > 1:  # shown(high), not shown(low), up to the rounding of the events
        middle = (low + high) // 2
        low, high = (low, middle) if shown(middle) else (middle, high)
    return high


def percentile(values: list[float], p: float) -> float | None:
    if not values:
        return None
    v = sorted(values)
    k = max(0, min(len(v) - 1, math.ceil(p / 100.0 * len(v)) - 1))
    return v[k]


def summarize(phase: Phase, since: float = 0.0) -> dict:
    recs = [r for r in phase.records if r.t >= since]
    span = max(1e-9, phase.seconds - since)
    ok = [r for r in recs if r.status == 200]
    refused = [r for r in recs if r.status == 429]
    other = [r for r in recs if r.status not in (200, 429)]
    by_status: dict[str, int] = {}
    for r in recs:
        by_status[str(r.status)] = by_status.get(str(r.status), 0) + 1
    lat_ok = [r.latency for r in ok]
    lat_429 = [r.latency for r in refused]
    rss = [m for t, m in phase.rss if t >= since]
    return {
        "phase": phase.name,
        "seconds": round(span, 1),
        "offered_rps": phase.offered_rps,
        "sent": len(recs),
        "status": by_status,
        "ok": len(ok),
        "refused_429": len(refused),
        "errors_other": len(other),
        "accepted_rps": len(ok) / span,
        "accepted_pairs_per_s": sum(r.pairs for r in ok) / span,
        "accepted_tokens_per_s": sum(r.tokens for r in ok) / span,
        "ok_p50_ms": _ms(percentile(lat_ok, 50)),
        "ok_p95_ms": _ms(percentile(lat_ok, 95)),
        "ok_p99_ms": _ms(percentile(lat_ok, 99)),
        "ok_max_ms": _ms(max(lat_ok) if lat_ok else None),
        "refused_p50_ms": _ms(percentile(lat_429, 50)),
        "refused_p99_ms": _ms(percentile(lat_429, 99)),
        # Where the slowest answered requests spent their time, by the service's headers: the
        # slowest 5% by client latency, their mean time in the service and their pairs' mean
        # wait for a batch, beside the same for all answered requests.
        **_slowest(ok),
        "rss_min_mib": round(min(rss), 1) if rss else None,
        "rss_max_mib": round(max(rss), 1) if rss else None,
        "rss_last_mib": round(rss[-1], 1) if rss else None,
        **_service(phase, since, ok),
    }


def _service(phase: Phase, since: float, ok: list[Record]) -> dict:
    """What the service did over the phase, from its samples: CPU cores it used, session-seconds
    of inference per second (2.0 = two sessions never idle), the mean throughput admission
    divided the queue by, that over the tokens per second actually answered (above 1 while the
    sessions were idle part of the time), and the wait correction admission had learned."""
    samples = [s for s in phase.samples if s.t >= since]
    first, last = (samples[0], samples[-1]) if len(samples) >= 2 else (None, None)
    if first is None or last.t <= first.t:
        return {}
    span = last.t - first.t
    delta = lambda f: (None if getattr(first, f) is None or getattr(last, f) is None
                       else (getattr(last, f) - getattr(first, f)) / span)
    rates = [s.throughput for s in samples if s.throughput]
    answered = sum(r.tokens for r in ok if first.t <= r.t + r.latency <= last.t) / span
    believed = sum(rates) / len(rates) if rates else None
    return {"service": {
        "cpu_cores": _round(delta("cpu_s"), 2),
        "inference_session_seconds_per_s": _round(delta("inference_s"), 2),
        "batches_per_s": _round(delta("batches"), 2),
        "throughput_gauge_mean": _round(believed, 1),
        "answered_tokens_per_s": round(answered, 1),
        "gauge_over_answered": _round(believed / answered if believed and answered else None, 3),
        "wait_correction_last": _round(last.correction, 3),
    }}


def _round(x: float | None, digits: int) -> float | None:
    return None if x is None else round(x, digits)


def _slowest(ok: list[Record], share: float = 0.05) -> dict:
    parts = ("total", "tokenization", "queue", "inference")
    timed = [r for r in ok if all(getattr(r, f"{p}_ms") is not None for p in parts)]
    if not timed:
        return {}
    slow = sorted(timed, key=lambda r: r.latency)[-max(1, math.ceil(share * len(timed))):]
    mean = lambda xs: round(sum(xs) / len(xs), 1)
    means = lambda rs: {**{f"{'service' if p == 'total' else p}_ms_mean": mean([getattr(r, f"{p}_ms") for r in rs])
                           for p in parts}, "batches_mean": mean([r.batches or 0 for r in rs])}
    return {"ok_timing": means(timed),
            "slowest": {"share": share, "requests": len(slow),
                        "latency_ms_mean": mean([1000 * r.latency for r in slow]), **means(slow)}}


def _ms(x: float | None) -> float | None:
    return None if x is None else round(x * 1000.0, 1)


def per_window(phase: Phase, width: float) -> list[dict]:
    """Per time window: sent, 200s, 429s, others, accepted rps, p50/p99 of 200s, RSS at its end."""
    out = []
    n = int(math.ceil(phase.seconds / width))
    for w in range(n):
        lo, hi = w * width, (w + 1) * width
        recs = [r for r in phase.records if lo <= r.t < hi]
        ok = [r.latency for r in recs if r.status == 200]
        rss = [m for t, m in phase.rss if lo <= t < hi]
        out.append({
            "from_s": lo, "to_s": min(hi, phase.seconds), "sent": len(recs), "ok": len(ok),
            "refused_429": sum(1 for r in recs if r.status == 429),
            "errors_other": sum(1 for r in recs if r.status not in (200, 429)),
            "accepted_rps": round(len(ok) / max(1e-9, min(hi, phase.seconds) - lo), 2),
            "ok_p50_ms": _ms(percentile(ok, 50)), "ok_p99_ms": _ms(percentile(ok, 99)),
            "rss_mib": round(rss[-1], 1) if rss else None,
        })
    return out


def print_table(rows: list[dict], cols: list[tuple[str, str]]) -> None:
    header = [h for h, _ in cols]
    lines = [[_fmt(r.get(k)) for _, k in cols] for r in rows]
    widths = [max(len(h), *(len(l[i]) for l in lines)) if lines else len(h) for i, h in enumerate(header)]
    print("  ".join(h.rjust(w) for h, w in zip(header, widths)))
    for l in lines:
        print("  ".join(c.rjust(w) for c, w in zip(l, widths)))


def _fmt(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.1f}"
    if isinstance(v, dict):
        return ",".join(f"{k}:{n}" for k, n in sorted(v.items()))
    return str(v)


def machine() -> dict:
    info = {"cpus": os.cpu_count(), "python": sys.version.split()[0]}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
        info["loadavg_at_start"] = Path("/proc/loadavg").read_text().split()[:3]
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                info["mem_total_gib"] = round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    return info


def admission_flags(args) -> list[str]:
    """The admission settings under test: the service's defaults unless given."""
    flags = []
    if args.max_queue_wait_ms:
        flags += ["--max-queue-wait-ms", str(args.max_queue_wait_ms)]
    if args.max_queue_tokens:
        flags += ["--max-queue-tokens", str(args.max_queue_tokens)]
    return flags


def default_max_queue_wait_ms(args) -> int:
    """The wait target the service runs with: the flag, else the binary's own default."""
    if args.max_queue_wait_ms:
        return args.max_queue_wait_ms
    out = subprocess.run([args.bin, "--help"], cwd=ROOT, capture_output=True, text=True).stdout
    flag = out.split("--max-queue-wait-ms", 1)[1]
    return int(flag.split("[default: ", 1)[1].split("]", 1)[0])


async def measure_saturation(args, log=print) -> tuple[dict, int]:
    """Closed loop on a server that admits everything (no wait target, the default token cap).
    Returns the summary and the wait target under test, in ms."""
    if args.wait_target_service_times and args.max_queue_wait_ms:
        raise SystemExit("give --max-queue-wait-ms or --wait-target-service-times, not both")
    bodies = request_mix(args.requests, args.documents)
    server = Server(args, ["--max-queue-wait-ms", "3600000"])
    try:
        log(f"saturation: {args.concurrency} closed-loop clients, warm-up 3 s then {args.saturation_seconds:.0f} s")
        await closed_loop(server, bodies, args.concurrency, 3.0, "warm-up")
        sat = summarize(await closed_loop(server, bodies, args.concurrency, args.saturation_seconds))
    finally:
        code = server.stop()
    if sat["ok"] == 0 or sat["errors_other"] or sat["refused_429"]:
        raise SystemExit(f"saturation run was not clean: {sat}")
    sat["tokens_per_request"] = round(sat["accepted_tokens_per_s"] / sat["accepted_rps"])
    # One request's service time: its share of the saturated service's time.
    sat["service_time_ms"] = round(1000.0 / sat["accepted_rps"], 1)
    sat["server_exit"] = code
    if args.wait_target_service_times:
        # From here on the target under test is a plain --max-queue-wait-ms (admission_flags).
        args.max_queue_wait_ms = round(args.wait_target_service_times * sat["service_time_ms"])
    target = default_max_queue_wait_ms(args)
    # The ratio that decides what the target refuses (benches/queueing.py), whichever was given.
    sat["wait_target_service_times"] = round(target / sat["service_time_ms"], 2)
    log(f"saturation: {sat['accepted_rps']:.2f} req/s, {sat['accepted_pairs_per_s']:.0f} pairs/s, "
        f"{sat['accepted_tokens_per_s']:.0f} tokens/s, p50 {sat['ok_p50_ms']} ms, one request's "
        f"service time {sat['service_time_ms']} ms; wait target under test {target} ms = "
        f"{sat['wait_target_service_times']} service times")
    return sat, target
