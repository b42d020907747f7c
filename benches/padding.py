"""What padding costs a batch on bare ONNX Runtime: ms per pair by batch size, batched in
request order or sorted by length.

What it answers: whether batching buys anything per pair on this machine, and what padding
takes away; the measurement behind the batcher's `--max-batch-padding` default on CPU
(src/batch/queue.rs). The pairs are loadgen's mix (16 requests of `--documents`, the soak's
and saturation's requests). Two layouts of the same pairs, for each batch size:
- ``request order``: consecutive pairs of the mix, so a batch holds one request's documents
  padded to its longest (what a batcher without a padding limit makes of a lone request);
- ``sorted``: every pair sorted by its document's length first, so a batch pads little.

Each round times every (layout, size) in turn; each figure is the median over rounds. The
padding share is computed from the folder's own tokenizer (a batch's padded tokens are its
longest document times its pairs). ``--threads`` intra-op threads, 1 by default: one service
session's.

    .venv/bin/python benches/padding.py --model-dir models/rra-bert-m --json target/bench/padding.json
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
sys.path.insert(0, str(ROOT / "benches"))
import loadgen  # noqa: E402


def padding_share(lengths: list[int], size: int) -> float:
    padded = real = 0
    for i in range(0, len(lengths) - size + 1, size):
        chunk = lengths[i:i + size]
        padded += max(chunk) * len(chunk)
        real += sum(chunk)
    return 1.0 - real / padded


def main() -> None:
    from tokenizers import Tokenizer

    from rradistill_toolkit.evaluate import folder_pair_scorer

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model-dir", default=loadgen.default_model_dir())
    ap.add_argument("--documents", type=int, default=10, help="documents per request of the mix")
    ap.add_argument("--sizes", type=int, nargs="+", default=[1, 2, 5, 10, 16])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json")
    args = ap.parse_args()

    bodies = [json.loads(b) for b in loadgen.request_mix(16, args.documents)]
    pairs = [(b["query"], d) for b in bodies for d in b["documents"]]
    tokenizer = Tokenizer.from_file(str(pathlib.Path(args.model_dir) / "tokenizer.json"))
    length = {d: len(tokenizer.encode(d).ids) for _, d in pairs}
    layouts = {"request order": pairs, "sorted": sorted(pairs, key=lambda p: length[p[1]])}
    score = folder_pair_scorer(args.model_dir, args.threads)
    score(pairs[:max(args.sizes)])  # ONNX Runtime's lazy initialisation
    times: dict[tuple[str, int], list[float]] = {(l, s): [] for l in layouts for s in args.sizes}
    for r in range(args.rounds):
        for (layout, size) in times:
            batch_pairs = layouts[layout]
            started, n = time.perf_counter(), 0
            for i in range(0, len(batch_pairs) - size + 1, size):
                score(batch_pairs[i:i + size])
                n += size
            times[(layout, size)].append(1000 * (time.perf_counter() - started) / n)
        print(f"round {r + 1}/{args.rounds} done", flush=True)

    rows = []
    for size in args.sizes:
        row = {"batch_size": size}
        for layout, batch_pairs in layouts.items():
            key = layout.replace(" ", "_")
            row[f"{key}_ms_per_pair"] = round(statistics.median(times[(layout, size)]), 2)
            row[f"{key}_padding_share"] = round(padding_share([length[d] for _, d in batch_pairs], size), 3)
            row[f"{key}_per_round"] = [round(t, 2) for t in times[(layout, size)]]
        row["request_order_over_sorted"] = round(row["request_order_ms_per_pair"] / row["sorted_ms_per_pair"], 3)
        rows.append(row)
    single = next((r["sorted_ms_per_pair"] for r in rows if r["batch_size"] == 1), None)
    for row in rows:
        row["sorted_over_alone"] = round(row["sorted_ms_per_pair"] / single, 3) if single else None
    print(f"{args.model_dir}, {len(pairs)} pairs, {args.threads} thread(s), median of {args.rounds} rounds:")
    print("size  request order ms/pair (padding)  sorted ms/pair (padding)  order/sorted  sorted/alone")
    for r in rows:
        print(f"{r['batch_size']:4d}  {r['request_order_ms_per_pair']:10.1f} ({100 * r['request_order_padding_share']:4.1f}%)"
              f"  {r['sorted_ms_per_pair']:16.1f} ({100 * r['sorted_padding_share']:4.1f}%)"
              f"  {r['request_order_over_sorted']:11.2f}x  {r['sorted_over_alone']}x")
    if args.json:
        out = {"bench": "padding", "machine": loadgen.machine(), "model_dir": args.model_dir,
               "pairs": len(pairs), "threads": args.threads, "rounds": args.rounds,
               "document_tokens": {"min": min(length.values()), "max": max(length.values()),
                                   "median": statistics.median(length.values())},
               "rows": rows}
        pathlib.Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        pathlib.Path(args.json).write_text(json.dumps(out, indent=1))
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
