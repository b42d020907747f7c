"""Out-of-domain evaluation: everyday long-tail queries the students never saw, in English and
Korean, re-ranked by every ranker side by side.

What it owns: the dev sets' format, BM25 exactly as their checker computes it, and the
comparison of students (through the running service, or their folders on ONNX Runtime) with
BM25 and the teacher on them.

The sets (``models/ood/longtail-dev-{en,ko}.json``, evaluation only: never trained on, no
setting picked from them) hold cases ``{query, documents[6], relevant}``: one passage answers
the query; two share its words but not its meaning (lexical traps), two are on its topic but
answer something else, one is unrelated. Each ranker orders the six; the metrics are MRR and
top-1 (ties count against the relevant passage, as the sets' own checker does), per set, with
a paired bootstrap interval of the per-case reciprocal rank of each student against BM25 and
against the teacher.

Rankers (``--student NAME=FOLDER`` scored on ONNX Runtime as the service tokenizes, or
``--service URL`` with ``--service-model NAME ...`` through the service's ``/v1/rerank``;
``--teacher SPEC`` any ``scorers`` spec, ``e5`` by default); BM25 always:
k1 = 1.2, b = 0.75, tokens the lower-cased runs of ``[^\\W_]+``, IDF over the case's six
documents ``log(1 + (N - df + 0.5) / (df + 0.5))``.

Also always ``longest first`` (documents by length in characters, the longest first): in the
public sets the relevant passage is the longest of its case in all 50 cases, so this baseline
reads MRR 1.0 there, and a ranker that prefers long documents gains on these sets what it
would not on real traffic. Read every ranker beside it, and beside the in-domain figures.
So every run is also made on the sets with length taken away (``equal_length`` in the JSON,
the second table): each case's documents cut to its shortest document's length in characters
(at the last space before it), so what a ranker reads is each passage's opening, all of one
length. The cut may take the answer out of a passage, so these figures are a control, read
side by side (who loses most when length is gone), not a second score to beat.

Usage: python -m rradistill_toolkit.ood --student rra-bert-m=models/rra-bert-m \
           [--service http://127.0.0.1:8080 --service-model rra-bert-m] --out models/work/ood.json
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import math
import os
import re
import sys
import urllib.request

import numpy as np

from .common import MODELS_DIR, WORK_DIR, write_json
from .metrics import paired_comparison

SETS = {"en": MODELS_DIR / "ood" / "longtail-dev-en.json", "ko": MODELS_DIR / "ood" / "longtail-dev-ko.json"}
K1, B = 1.2, 0.75
TOKEN = re.compile(r"[^\W_]+")


def load_set(path) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        cases = json.load(f)
    for i, c in enumerate(cases):
        if set(c) != {"query", "documents", "relevant"} or not 0 <= c["relevant"] < len(c["documents"]):
            raise ValueError(f"{path}: case {i} is not {{query, documents, relevant}}")
    return cases


def bm25_scores(query: str, documents: list[str]) -> list[float]:
    docs = [TOKEN.findall(d.lower()) for d in documents]
    n = len(docs)
    avgdl = sum(len(d) for d in docs) / n
    df: dict[str, int] = {}
    for d in docs:
        for term in set(d):
            df[term] = df.get(term, 0) + 1
    out = []
    for d in docs:
        tf: dict[str, int] = {}
        for term in d:
            tf[term] = tf.get(term, 0) + 1
        norm = K1 * (1 - B + B * len(d) / avgdl)
        s = 0.0
        for term in TOKEN.findall(query.lower()):
            f = tf.get(term, 0)
            if f:
                s += math.log(1 + (n - df[term] + 0.5) / (df[term] + 0.5)) * f * (K1 + 1) / (f + norm)
        out.append(s)
    return out


LONGEST = "longest first"


def equal_length(case: dict) -> dict:
    """The case with every document cut to its shortest document's length in characters, at
    the last space before the cut where there is one."""
    limit = min(len(d) for d in case["documents"])

    def cut(doc: str) -> str:
        if len(doc) <= limit:
            return doc
        head = doc[:limit]
        space = head.rfind(" ")
        return head[:space] if space > 0 else head

    return {**case, "documents": [cut(d) for d in case["documents"]]}


def rank_of_relevant(scores, relevant: int) -> int:
    """1 + the number of other documents scoring at least as high (ties count against it)."""
    return 1 + sum(1 for i, s in enumerate(scores) if i != relevant and s >= scores[relevant])


def summary(ranks: list[int]) -> dict:
    rr = [1.0 / r for r in ranks]
    return {"cases": len(ranks), "MRR": round(float(np.mean(rr)), 4), "top1": int(sum(r == 1 for r in ranks)),
            "ranks": ranks}


def folder_ranker(folder: str, threads: int = 2):
    """Scores a case's documents with an exported folder on ONNX Runtime (any student kind)."""
    from .evaluate import folder_pair_scorer

    score = folder_pair_scorer(folder, threads)
    return lambda query, docs: list(score([(query, d) for d in docs]))


def service_ranker(url: str, model: str | None, timeout: float = 30.0, api_key: str | None = None):
    """Scores through a running service's ``/v1/rerank`` (raw scores, every document)."""

    def rank(query: str, docs: list[str]) -> list[float]:
        body = {"query": query, "documents": docs, "raw_scores": True}
        if model:
            body["model"] = model
        req = urllib.request.Request(url.rstrip("/") + "/v1/rerank", data=json.dumps(body).encode(),
                                     headers={"content-type": "application/json",
                                              **({"authorization": f"Bearer {api_key}"} if api_key else {})})
        with urllib.request.urlopen(req, timeout=timeout) as r:
            res = json.load(r)["results"]
        scores = [0.0] * len(docs)
        for item in res:
            scores[item["index"]] = item["relevance_score"]
        return scores

    return rank


@contextlib.contextmanager
def serving(binary: str, models: dict[str, str], ort_lib: str | None = None, timeout: float = 180.0,
            args: tuple[str, ...] = ()):
    """The release binary serving ``models`` (name -> folder) on a free loopback port, with the
    score cache off and any further flags in ``args``; yields its base URL; stopped with
    SIGTERM (it drains and exits) afterwards."""
    import socket
    import subprocess
    import tempfile
    import time

    if not os.path.exists(binary):
        raise SystemExit(f"ood: {binary} does not exist: build it first (cargo build --release --bin rradistill)")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        grpc_port = s.getsockname()[1]
    with tempfile.TemporaryDirectory() as tmp:
        lines = [f'default = "{next(iter(models))}"']
        for name, folder in models.items():
            lines += ["[[model]]", f'name = "{name}"', f'path = "{os.path.abspath(folder)}"', ""]
        models_file = os.path.join(tmp, "models.toml")
        with open(models_file, "w") as f:
            f.write("\n".join(lines))
        ort_lib = ort_lib or os.environ.get("ORT_DYLIB_PATH") or str(
            MODELS_DIR.parent / ".runtime/onnxruntime/libonnxruntime.so.1.32.0")
        log = open(os.path.join(tmp, "service.log"), "wb")
        proc = subprocess.Popen([binary, "--models-file", models_file, "--ort-dylib-path", ort_lib, "--host", "127.0.0.1",
                                 "--port", str(port), "--grpc-port", str(grpc_port), "--cache-capacity", "0", *args],
                                stdout=log, stderr=subprocess.STDOUT)
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + timeout
        try:
            while True:
                if proc.poll() is not None:
                    raise SystemExit(f"ood: the service exited at start-up: {open(log.name).read()[-2000:]}")
                try:
                    with urllib.request.urlopen(base + "/ready", timeout=1) as r:
                        if r.status == 200:
                            break
                except OSError:
                    pass
                if time.monotonic() > deadline:
                    raise SystemExit("ood: the service was not ready in time")
                time.sleep(0.5)
            yield base
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
            log.close()


def teacher_ranker(spec: str, threads: int = 2):
    from .scorers import make_scorer

    scorer = make_scorer(spec, threads)

    def rank(query, docs):
        items = [{"doc_id": "ood-" + hashlib.sha1(d.encode()).hexdigest(), "text": d} for d in docs]
        return scorer.score(query, items)

    return rank


def run(rankers: dict, sets: dict | None = None, cut_to_equal_length: bool = False) -> dict:
    sets = sets or SETS
    result = {"sets": {}, "comparisons": []}
    for lang, path in sets.items():
        cases = load_set(path)
        if cut_to_equal_length:
            cases = [equal_length(c) for c in cases]
        entry = {"file": os.path.basename(str(path)), "cases": len(cases), "rankers": {}}
        ranks = {"BM25": [rank_of_relevant(bm25_scores(c["query"], c["documents"]), c["relevant"]) for c in cases],
                 LONGEST: [rank_of_relevant([len(d) for d in c["documents"]], c["relevant"]) for c in cases]}
        for name, rank in rankers.items():
            ranks[name] = [rank_of_relevant(rank(c["query"], c["documents"]), c["relevant"]) for c in cases]
        for name, r in ranks.items():
            entry["rankers"][name] = summary(r)
        result["sets"][lang] = entry
        for name in rankers:
            for base in ["BM25"] + [t for t in rankers if t.startswith("teacher:") and t != name]:
                if name.startswith("teacher:") and base != "BM25":
                    continue
                a = {str(i): 1.0 / x for i, x in enumerate(ranks[name])}
                b = {str(i): 1.0 / x for i, x in enumerate(ranks[base])}
                result["comparisons"].append({"set": lang, "a": name, "b": base, "metric": "reciprocal rank",
                                              **paired_comparison(a, b)})
    return result


def table(result: dict) -> str:
    names = list(dict.fromkeys(n for e in result["sets"].values() for n in e["rankers"]))
    langs = list(result["sets"])
    lines = ["| ranker | " + " | ".join(f"{l} MRR (top-1)" for l in langs) + " |",
             "|---|" + "---:|" * len(langs)]
    for n in names:
        cells = []
        for l in langs:
            e = result["sets"][l]["rankers"].get(n)
            cells.append(f"{e['MRR']:.3f} ({e['top1']}/{e['cases']})" if e else "-")
        lines.append(f"| {n} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def parse_named(items) -> dict[str, str]:
    return dict(item.partition("=")[::2] for item in items or [])


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description="Out-of-domain evaluation on the long-tail dev sets.")
    ap.add_argument("--student", nargs="*", metavar="NAME=FOLDER", default=[])
    ap.add_argument("--service", default=None, help="base URL of a running rradistill service")
    ap.add_argument("--service-model", nargs="*", default=[], help="models to ask the service for")
    ap.add_argument("--service-binary", default=None,
                    help="start this rradistill binary on loopback serving the --serve folders, and rank through it")
    ap.add_argument("--serve", nargs="*", metavar="NAME=FOLDER", default=[])
    ap.add_argument("--teacher", nargs="*", default=["e5"], help="scorer specs to rank with as teachers")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=str(WORK_DIR / "ood.json"))
    args = ap.parse_args(argv)
    rankers = {f"teacher:{t}": teacher_ranker(t, args.threads) for t in args.teacher}
    for name, folder in parse_named(args.student).items():
        rankers[name] = folder_ranker(folder, args.threads)
    if args.service:
        key = os.environ.get("API_KEY", "").split(",")[0] or None
        for m in args.service_model or [None]:
            rankers[f"service:{m or 'default'}"] = service_ranker(args.service, m, api_key=key)
    served = parse_named(args.serve)
    with contextlib.ExitStack() as stack:
        if args.service_binary and served:
            base = stack.enter_context(serving(args.service_binary, served))
            for name in served:  # through the service, under the names it serves them by
                rankers[name] = service_ranker(base, name)
        result = run(rankers)
        result["equal_length"] = run(rankers, cut_to_equal_length=True)
    result["through_service"] = sorted(served) if args.service_binary else []
    write_json(args.out, result)
    print(table(result))
    print("Each case's documents cut to its shortest one's length:\n" + table(result["equal_length"]))
    print(f"ood: wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
