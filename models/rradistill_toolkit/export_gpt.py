"""Stage 6b, export RRA-GPT: the decoder up to its ranking layer, to ONNX, checked, quantized.

Steps (as ``export`` does for RRA-BERT):
1. ONNX (``gpt.export_onnx``, opset 17) of ``gpt.DecoderScorer``: inputs ``input_ids``,
   ``attention_mask`` int64 ``[batch, sequence]``, output ``scores`` float32 ``[batch]``
   (the ranking layer's raw logit at the last non-padding token). No LM head, no decoding:
   checked here (``lm_head_free``: no graph value or weight has the vocabulary's width).
2. Parity: the PyTorch student (transformers forward) vs ONNX Runtime fp32 on real
   (query, document) pairs, batched with right padding: max |diff| must be < 1e-4. Padding
   independence: each pair alone vs in its batch (< 1e-5).
3. int8 dynamic quantization (per channel: MatMul weights and the embedding Gather; the MLP
   down projections and attention products stay float32, see ``float_matmuls``), with an
   agreement check: Spearman rank correlation of int8 vs fp32 scores (all pairs, mean per
   query).
4. The model folder: ``model.onnx`` (int8 or fp32), ``tokenizer.json``, ``manifest.json``
   (``gpt.manifest``: kind ``decoder``, prompt template, padding side, pad id),
   ``reference.jsonl`` (``export.REFERENCE_PAIRS`` tokenized per the contract and scored
   with ONNX Runtime on the folder's model), ``export_report.json``.

Usage: python -m rradistill_toolkit.export_gpt --student models/work/students/rra-gpt \
           --out models/rra-gpt-mini [--precision int8] [--max-length 256]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time

import numpy as np

from .students import decoder as gpt
from .common import WORK_DIR, write_json
from .export import PARITY_LIMIT, REFERENCE_PAIRS, real_pairs, spearman

PADDING_LIMIT = 1e-5


def onnx_scores(session, enc: gpt.PromptEncoder, pairs, batch: int = 8) -> np.ndarray:
    out = []
    for i in range(0, len(pairs), batch):
        out.append(session.run(["scores"], enc.batch(pairs[i: i + batch]))[0].reshape(-1))
    return np.concatenate(out) if out else np.zeros(0, np.float32)


def lm_head_free(path: str, vocab_size: int) -> dict:
    """Evidence the graph ends at the ranking layer: its only output is ``scores``, no value
    (after shape inference) ends in a dimension of the vocabulary's width, and no matrix
    product reads a weight of that width (the embedding table, ``[vocab, hidden]``, is only
    gathered from)."""
    import onnx

    m = onnx.shape_inference.infer_shapes(onnx.load(path))
    inits = {t.name: list(t.dims) for t in m.graph.initializer}
    dims = lambda v: [d.dim_value or d.dim_param for d in v.type.tensor_type.shape.dim]
    outputs = [(o.name, dims(o)) for o in m.graph.output]
    vocab_values = [v.name for v in list(m.graph.value_info) + list(m.graph.output)
                    if dims(v) and dims(v)[-1] == vocab_size]
    produced_by = {o: n for n in m.graph.node for o in n.output}

    def weight_dims(name, depth=0):  # an initializer, possibly through a cast/transpose/dequantize
        if name in inits:
            return inits[name]
        n = produced_by.get(name)
        if n is not None and depth < 3 and n.op_type in ("DequantizeLinear", "Transpose", "Cast", "Identity"):
            return weight_dims(n.input[0], depth + 1)
        return []

    products = ("MatMul", "Gemm", "MatMulInteger", "DynamicQuantizeMatMul", "MatMulIntegerToFloat", "FusedMatMul")
    vocab_products = [n.name or n.op_type for n in m.graph.node if n.op_type in products
                      and any(vocab_size in weight_dims(i) for i in n.input)]
    return {"outputs": outputs, "vocab_width_values": vocab_values, "vocab_width_products": vocab_products,
            "ok": [o[0] for o in outputs] == ["scores"] and not vocab_values and not vocab_products}


def float_matmuls(path: str, intermediate: int) -> list[str]:
    """MatMul nodes left in float32 by the int8 export: the MLP down projections (their input,
    SwiGLU's product, carries the decoder's outlier activations, which per-tensor dynamic
    activation quantization flattens) and the attention products (activation x activation).
    Measured on rra-gpt-mini: quantizing them too gave Spearman 0.41 vs fp32, leaving them
    0.95 (about 15 MB more)."""
    import onnx

    m = onnx.load(path)
    inits = {t.name: list(t.dims) for t in m.graph.initializer}
    return [n.name for n in m.graph.node if n.op_type == "MatMul"
            and (n.input[1] not in inits or inits[n.input[1]][0] == intermediate)]


def export(student_dir: str, out_dir: str, precision: str = "int8", data: str | None = None,
           prerank: str | None = None, max_length: int | None = None, name: str = "rra-gpt-mini",
           version: str = "1", extra_manifest: dict | None = None, threads: int = 2) -> dict:
    import onnx
    import onnxruntime as ort
    import torch
    from onnxruntime.quantization import QuantType, quantize_dynamic

    cfg = json.load(open(os.path.join(student_dir, "train_config.json")))
    window = max_length or cfg["max_length"]
    pad_id = cfg["pad_token_id"]
    tok_src = os.path.join(student_dir, "tokenizer.json")
    enc = gpt.PromptEncoder(tok_src, window, pad_id)
    model = gpt.load_student(student_dir)
    vocab = model.lm.config.vocab_size
    work = os.path.join(student_dir, "onnx")
    os.makedirs(work, exist_ok=True)
    fp32 = os.path.join(work, "model.fp32.onnx")
    t0 = time.perf_counter()
    gpt.export_onnx(model, fp32)
    onnx.checker.check_model(fp32)
    report = {"export_seconds": round(time.perf_counter() - t0, 1), "window": window, "graph": lm_head_free(fp32, vocab)}
    if not report["graph"]["ok"]:
        raise SystemExit(f"export: the graph is not LM-head free: {report['graph']}")

    pairs = real_pairs(data, prerank) if data and prerank and os.path.exists(prerank) else []
    if not pairs:
        pairs = [("ref", q, d) for q, d in REFERENCE_PAIRS]
    qd = [(q, d) for _, q, d in pairs]
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    sess32 = ort.InferenceSession(fp32, so, providers=["CPUExecutionProvider"])
    with torch.no_grad():
        torch_scores = []
        for i in range(0, len(qd), 8):
            feed = enc.batch(qd[i: i + 8])
            torch_scores.append(model.score(torch.from_numpy(feed["input_ids"]),
                                            torch.from_numpy(feed["attention_mask"])).numpy())
        torch_scores = np.concatenate(torch_scores)
    onnx32 = onnx_scores(sess32, enc, qd)
    alone = onnx_scores(sess32, enc, qd, batch=1)
    max_diff = float(np.max(np.abs(torch_scores - onnx32)))
    pad_diff = float(np.max(np.abs(alone - onnx32)))
    report["parity"] = {"pairs": len(qd), "max_abs_diff_fp32_vs_pytorch": max_diff, "limit": PARITY_LIMIT,
                        "ok": max_diff < PARITY_LIMIT}
    report["padding"] = {"max_abs_diff_alone_vs_batched": pad_diff, "limit": PADDING_LIMIT, "ok": pad_diff < PADDING_LIMIT}
    print(f"export_gpt: parity on {len(qd)} real pairs: max |torch - onnx fp32| = {max_diff:.2e}; "
          f"alone vs batched {pad_diff:.2e}", file=sys.stderr)
    if max_diff >= PARITY_LIMIT or pad_diff >= PADDING_LIMIT:
        raise SystemExit(f"export_gpt: checks failed: parity {max_diff:.2e}, padding {pad_diff:.2e}")

    final = fp32
    if precision == "int8":
        q8 = os.path.join(work, "model.int8.onnx")
        keep_fp32 = float_matmuls(fp32, model.lm.config.intermediate_size)
        quantize_dynamic(fp32, q8, weight_type=QuantType.QInt8, per_channel=True,
                         op_types_to_quantize=["MatMul", "Gather"], nodes_to_exclude=keep_fp32)
        sess8 = ort.InferenceSession(q8, so, providers=["CPUExecutionProvider"])
        onnx8 = onnx_scores(sess8, enc, qd)
        per_query: dict = {}
        for (qid, _, _), a, b in zip(pairs, onnx32, onnx8):
            per_query.setdefault(qid, ([], []))
            per_query[qid][0].append(a)
            per_query[qid][1].append(b)
        report["int8"] = {
            "spearman_all_pairs": spearman(onnx32, onnx8),
            "spearman_mean_per_query": float(np.mean([spearman(a, b) for a, b in per_query.values()])),
            "max_abs_diff_vs_fp32": float(np.max(np.abs(onnx32 - onnx8))),
            "size_mb": round(os.path.getsize(q8) / 2 ** 20, 2),
            "kept_fp32": "the MLP down projections and the attention products (activation outliers)",
            "graph": lm_head_free(q8, vocab),
        }
        print(f"export_gpt: int8 agreement: Spearman {report['int8']['spearman_all_pairs']:.4f} over all pairs, "
              f"{report['int8']['spearman_mean_per_query']:.4f} mean per query; {report['int8']['size_mb']} MB",
              file=sys.stderr)
        final = q8
    report["fp32_size_mb"] = round(os.path.getsize(fp32) / 2 ** 20, 2)

    os.makedirs(out_dir, exist_ok=True)
    shutil.copyfile(final, os.path.join(out_dir, "model.onnx"))
    shutil.copyfile(tok_src, os.path.join(out_dir, "tokenizer.json"))
    training = {k: cfg[k] for k in ("base", "layers", "hidden", "labels", "rationales", "rationales_used", "alpha",
                                    "beta", "loss", "queries", "steps", "docs_per_query", "max_length") if k in cfg}
    man = gpt.manifest(name, version, window, pad_id, precision=precision, student="RRA-GPT",
                       base_model="HuggingFaceTB/SmolLM2-135M-Instruct (GGUF Q4_1, dequantized)"
                       if cfg.get("base") == "SmolLM2-135M-Instruct" else cfg.get("base"),
                       training=training, **(extra_manifest or {}))
    write_json(os.path.join(out_dir, "manifest.json"), man)
    write_reference(out_dir)
    write_json(os.path.join(out_dir, "export_report.json"), report)
    return report


def folder_encoder(model_dir: str) -> gpt.PromptEncoder:
    """The tokenization a decoder model folder prescribes (its manifest)."""
    man = json.load(open(os.path.join(model_dir, "manifest.json")))
    if man.get("kind") != "decoder":
        raise ValueError(f"{model_dir}: manifest kind is {man.get('kind')!r}, not 'decoder'")
    if man["prompt"].get("padding_side", "right") != "right":
        raise ValueError(f"{model_dir}: only right padding is implemented")
    return gpt.PromptEncoder(os.path.join(model_dir, "tokenizer.json"), man["max_sequence_length"],
                             man["pad_token_id"], man["prompt"]["template"], man["prompt"].get("bos_token_id"))


def write_reference(model_dir: str, pairs=REFERENCE_PAIRS) -> list[dict]:
    """reference.jsonl: pairs tokenized per the manifest and scored with ONNX Runtime, alone."""
    import onnxruntime as ort

    enc = folder_encoder(model_dir)
    sess = ort.InferenceSession(os.path.join(model_dir, "model.onnx"), providers=["CPUExecutionProvider"])
    rows = []
    for query, document in pairs:
        ids = enc.encode(query, document)
        logit = float(sess.run(["scores"], enc.pad([ids]))[0].reshape(-1)[0])
        rows.append({"query": query, "document": document, "tokens": len(ids), "logit": logit, "input_ids": ids})
    with open(os.path.join(model_dir, "reference.jsonl"), "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    return rows


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description="Export RRA-GPT to an ONNX model folder (stage 6b).")
    ap.add_argument("--student", required=True, help="folder written by train_gpt")
    ap.add_argument("--out", required=True, help="model folder to write")
    ap.add_argument("--precision", default="int8", choices=["int8", "fp32"])
    ap.add_argument("--data", default=str(WORK_DIR / "data"))
    ap.add_argument("--prerank", default=str(WORK_DIR / "prerank.jsonl"), help="real pairs for the checks")
    ap.add_argument("--max-length", type=int, default=None, help="default: the training window")
    ap.add_argument("--name", default="rra-gpt-mini")
    ap.add_argument("--version", default=time.strftime("%Y.%m.%d"))
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    export(args.student, args.out, args.precision, args.data, args.prerank, args.max_length, args.name, args.version,
           threads=args.threads)
    print(f"export_gpt: wrote {args.out}")


if __name__ == "__main__":
    main()
