"""Cost per (query, document) pair of model folders, side by side on the same pairs.

What it answers: how much more (or less) a student costs to run than another on exactly the
same requests, on this machine, now. The machines are shared and noisy, so the figure is a
ratio measured in one run with the models interleaved: each round scores every request with
every model in turn (the order rotating each round), and each model's cost is its median
over rounds. Absolute milliseconds are reported too, for the record only.

Requests (``--pairs``):
- ``ood``: the out-of-domain dev sets (models/ood), one request per case (its six documents);
- ``heldout``: the toolkit's held-out queries over their 20 candidates (needs models/work).

Models are scored with ONNX Runtime exactly as the service tokenizes them (the toolkit's
``evaluate.folder_pair_scorer``: any kind: encoder, late, decoder), ``--threads`` intra-op
threads, one request per call (the late student encodes each distinct query once per call,
as the service does per batch).

Usage: .venv/bin/python benches/students.py --model rra-bert-m=models/rra-bert-m \
           --model rra-bert-mini=PATH --pairs ood heldout --rounds 5 --json target/bench/students.json
"""

from __future__ import annotations

import argparse
import json
import pathlib
import statistics
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "models"))


def ood_requests() -> list[tuple[str, list[str]]]:
    from rradistill_toolkit import ood

    return [(c["query"], c["documents"]) for p in ood.SETS.values() for c in ood.load_set(p)]


def heldout_requests(n: int) -> list[tuple[str, list[str]]]:
    from rradistill_toolkit.common import WORK_DIR, iter_jsonl, load_corpus, load_queries

    corpus = load_corpus(str(WORK_DIR / "data" / "corpus.jsonl"))
    queries = {q["qid"]: q for q in load_queries(str(WORK_DIR / "data" / "queries.jsonl"), "test")}
    out = []
    for r in iter_jsonl(WORK_DIR / "prerank.jsonl"):
        if r["qid"] in queries:
            out.append((queries[r["qid"]]["text"], [corpus[c["doc_id"]]["text"] for c in r["candidates"]]))
        if len(out) >= n:
            break
    return out


def measure(models: dict[str, str], requests, rounds: int, threads: int) -> dict:
    from rradistill_toolkit.evaluate import folder_pair_scorer

    scorers = {name: folder_pair_scorer(folder, threads) for name, folder in models.items()}
    pairs = sum(len(d) for _, d in requests)
    for score in scorers.values():  # warm-up: ONNX Runtime's lazy initialisation
        score([(requests[0][0], d) for d in requests[0][1]])
    per_round: dict[str, list[float]] = {n: [] for n in models}
    names = list(models)
    for r in range(rounds):
        order = names[r % len(names):] + names[: r % len(names)]
        for name in order:
            t0 = time.perf_counter()
            for q, docs in requests:
                scorers[name]([(q, d) for d in docs])
            per_round[name].append(1000 * (time.perf_counter() - t0) / pairs)
    ref = names[0]
    med = {n: statistics.median(v) for n, v in per_round.items()}
    return {"requests": len(requests), "pairs": pairs, "rounds": rounds, "threads": threads,
            "reference": ref, "ms_per_pair": {n: round(v, 3) for n, v in med.items()},
            "ratio_to_reference": {n: round(v / med[ref], 3) for n, v in med.items()},
            "per_round_ms_per_pair": {n: [round(x, 3) for x in v] for n, v in per_round.items()}}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", action="append", required=True, metavar="NAME=FOLDER",
                    help="a model folder; the first is the reference the ratios divide by")
    ap.add_argument("--pairs", nargs="+", default=["ood"], choices=["ood", "heldout"])
    ap.add_argument("--heldout-queries", type=int, default=60)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    models = dict(m.split("=", 1) for m in args.model)
    result = {"models": models}
    for kind in args.pairs:
        reqs = ood_requests() if kind == "ood" else heldout_requests(args.heldout_queries)
        result[kind] = measure(models, reqs, args.rounds, args.threads)
        r = result[kind]
        print(f"{kind}: {r['pairs']} pairs in {r['requests']} requests, {r['rounds']} rounds, median ms/pair "
              + ", ".join(f"{n} {v} ({r['ratio_to_reference'][n]}x)" for n, v in r["ms_per_pair"].items()))
    if args.json:
        write_result(args.json, result)


def write_result(path: str, result: dict) -> None:
    """A bench's result as JSON at ``path`` (its folder made if missing)."""
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
