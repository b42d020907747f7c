"""Where a model folder's CPU time goes, by ONNX operator type, from ONNX Runtime's own profile.

What it answers: which operators a graph pass or a quantization setting should aim at (and
did it remove them). Each folder's graph scores the same requests as ``students.py`` sends
(``--pairs ood`` or ``heldout``) with profiling on; the kernel times of every node are summed
per operator type and reported as shares of the total, beside the node count per type. Shares
within one graph are stable on a noisy machine; compare costs between graphs with
``students.py``, which interleaves them.

Encoder (RRA-BERT) and late (RRA-BERT-m) folders, tokenized as the service does.

Usage: .venv/bin/python benches/op_profile.py --model NAME=FOLDER [...] --pairs ood \
           --json benches/results/NAME/op_profile.json
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import pathlib
import sys
import tempfile

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "models"))
sys.path.insert(0, str(ROOT / "benches"))


def feeder(folder: str):
    """``feed(pairs) -> ONNX Runtime feed`` for a folder, as the service tokenizes it."""
    manifest = json.load(open(os.path.join(folder, "manifest.json")))
    if manifest.get("kind") == "late":
        from rradistill_toolkit.students import late, tokenization

        tok = tokenization.TowerTokenizer(os.path.join(folder, "tokenizer.json"),
                                          window=manifest["max_sequence_length"],
                                          query_window=manifest["max_query_length"],
                                          query_prefix=manifest["query_prefix"],
                                          document_prefix=manifest["document_prefix"])
        return lambda pairs: late.feed_numpy(tok, pairs)
    if manifest.get("kind", "encoder") == "encoder":
        from tokenizers import Tokenizer

        from rradistill_toolkit.export import encode_feed

        tok = Tokenizer.from_file(os.path.join(folder, "tokenizer.json"))
        tok.enable_truncation(max_length=manifest["max_sequence_length"], strategy="only_second")
        return lambda pairs: encode_feed(tok, pairs)[0]
    raise SystemExit(f"{folder}: kind {manifest.get('kind')!r} is not profiled here (encoder or late)")


def profile(folder: str, requests, threads: int) -> dict:
    import onnxruntime as ort

    feed = feeder(folder)
    with tempfile.TemporaryDirectory() as tmp:
        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        so.enable_profiling = True
        so.profile_file_prefix = os.path.join(tmp, "profile")
        sess = ort.InferenceSession(os.path.join(folder, "model.onnx"), so, providers=["CPUExecutionProvider"])
        for query, docs in requests:
            sess.run(None, feed([(query, d) for d in docs]))
        events = json.load(open(sess.end_profiling()))
    time_us: collections.Counter = collections.Counter()
    nodes: dict[str, set] = collections.defaultdict(set)
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            op = e["args"]["op_name"]
            time_us[op] += e["dur"]
            nodes[op].add(e["name"])
    total = sum(time_us.values())
    return {"kernel_ms": round(total / 1000, 1),
            "by_op": {op: {"share": round(t / total, 4), "nodes": len(nodes[op])}
                      for op, t in time_us.most_common()}}


def main(argv=None) -> None:
    from students import heldout_requests, ood_requests, write_result

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", action="append", required=True, metavar="NAME=FOLDER")
    ap.add_argument("--pairs", default="ood", choices=["ood", "heldout"])
    ap.add_argument("--heldout-queries", type=int, default=20)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--top", type=int, default=8, help="operator types printed per model")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    requests = ood_requests() if args.pairs == "ood" else heldout_requests(args.heldout_queries)
    result = {"pairs": args.pairs, "requests": len(requests), "threads": args.threads, "models": {}}
    for name, folder in (m.split("=", 1) for m in args.model):
        r = result["models"][name] = profile(folder, requests, args.threads)
        top = list(r["by_op"].items())[: args.top]
        print(f"{name}: " + ", ".join(f"{op} {100 * v['share']:.1f}% ({v['nodes']})" for op, v in top))
    if args.json:
        write_result(args.json, result)


if __name__ == "__main__":
    main()
