"""int8 quantization of an exported student, and why the served one is weight-only.

What it owns: turning an fp32 ONNX graph into an int8 one, three ways (ONNX Runtime's
quantization tools wherever they cover the case):

- ``weights`` (the default for served students): weights int8, activations float. Every
  weight MatMul becomes ONNX Runtime's ``MatMulNBits`` (8 bits, symmetric, one scale per
  block of 32 inputs of each output column); the embedding tables hold int8 rows with one
  scale per row (``int8_rows``: ONNX Runtime's weight-only tool packs embeddings in 4 bits
  only). Nothing is scaled by the batch, so a row's score is the same alone or padded among
  others (``checks.batch_independence`` holds the folder to 1e-3), and the ranking is close
  to fp32's because activations keep their precision. Towers that share weights are
  untied from their ``Identity`` aliases first, or the second tower would stay fp32.
  ``MatMulNBits``' ``accuracy_level`` says how it computes: 0 in float (the weights
  dequantized), 4 in int8 with the activations quantized at run time *per row and per block
  of 32 inputs*: still nothing shared across rows, so still batch-independent, and on a CPU
  with int8 dot-product instructions (AVX-512 VNNI, AVX-VNNI, ARM dot) much faster than
  float. ``ACCURACY_LEVEL`` (4) is the default; ``python -m rradistill_toolkit.quantize
  compute-level`` re-targets an exported folder without exporting it again (the weights are
  the same; only how they are multiplied changes), and ``benches/students.py`` measures the
  two side by side.
- ``static``: weights int8 per output channel, activation scales fixed ahead of time from
  calibration batches of the toolkit's own text, QDQ format. Batch-independent too, but
  int8 activations cost RRA-BERT-m much of its English dev-set MRR against fp32 (rerun with
  ``export --quantization static`` and ``ood``): the 12-layer towers' activations have
  outliers that a fixed range cuts. Calibration keeps a moving average of each run's range (MinMax, constant 0.01); the
  histogram methods keep every run's activations and do not fit in memory for these towers.
  Attention's MatMuls of two activations stay fp32.
- ``rows``: weights int8 per output column, activations quantized at run time to int8 with
  *one scale per row* (each token's vector on its own), multiplied by ONNX Runtime's integer
  GEMM (``MatMulInteger``: 3x ``MatMulNBits``' int8 speed on this machine's AVX-512 VNNI, and
  a row's scale depends on that row alone, so it stays batch-independent). One scale over a
  whole row is coarser than ``MatMulNBits``' one per 32 inputs, and transformer activations
  have outlier channels, so each weight MatMul's input is first divided by a fixed
  per-channel factor that the weights absorb (SmoothQuant, strength ``SMOOTHING``),
  calibrated on the toolkit's own training text. ``python -m rradistill_toolkit.quantize
  rows`` rewrites an exported weight-only folder this way (its weights dequantized from
  ``MatMulNBits``), checked as an export is; ``benches/README.md`` ("Integer GEMMs on
  per-row int8") measures it against the folder it came from, in and out of domain.
- ``dynamic``: weights int8, activations quantized at run time with one scale per tensor
  computed from the batch in hand (``DynamicQuantizeLinear``). The scale depends on every
  row in the batch, so a document's score moves with its neighbours (0.36 logit for
  rra-bert-mini 0.5.0): kept only as a comparison variant.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil

import numpy as np

METHODS = ("weights", "rows", "static", "dynamic")


class FeedReader:
    """ONNX Runtime's ``CalibrationDataReader`` over a list of feeds (dicts of arrays)."""

    def __init__(self, feeds: list[dict]):
        self.feeds = list(feeds)
        self.i = 0

    def get_next(self):
        if self.i >= len(self.feeds):
            return None
        self.i += 1
        return self.feeds[self.i - 1]

    def rewind(self):
        self.i = 0


def same_shapes(feeds: list[dict], pad_id: int = 0) -> list[dict]:
    """The calibration feeds padded to one shape per input (ONNX Runtime's calibrators stack
    runs' activations, so they must agree): ids with ``pad_id``, masks with 0. Padding
    is masked, as it is within any batch, so no pair's scores change."""
    out = [dict(f) for f in feeds]
    for name in feeds[0]:
        shapes = {f[name].shape for f in feeds}
        if len(shapes) == 1:
            continue
        if len({s[:-1] for s in shapes}) != 1:
            raise ValueError(f"calibration input {name!r}: feeds differ in more than their length: "
                             f"{sorted(shapes)} (give every feed the same number of queries and documents)")
        target = next(iter(shapes))[:-1] + (max(s[-1] for s in shapes),)
        fill = 0 if "mask" in name else pad_id
        for f in out:
            a = f[name]
            padded = np.full(target, fill, dtype=a.dtype)
            padded[tuple(slice(0, d) for d in a.shape)] = a
            f[name] = padded
    return out


def quantize(fp32_path: str, out_path: str, method: str, calibration: list[dict] | None = None, pad_id: int = 0) -> dict:
    """Writes the int8 graph; returns what was done (for the export report)."""
    from onnxruntime.quantization import (CalibrationMethod, QuantFormat, QuantType, quantize_dynamic,
                                          quantize_static)
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if method == "weights":
        return quantize_weights(fp32_path, out_path)
    if method == "rows":
        if not calibration:
            raise ValueError("rows quantization needs calibration feeds (for its smoothing factors)")
        return quantize_rows(fp32_path, out_path, calibration)
    if method == "dynamic":
        quantize_dynamic(fp32_path, out_path, weight_type=QuantType.QInt8)
        return {"method": "dynamic", "activations": "per batch (run time)"}
    if method != "static":
        raise ValueError(f"unknown quantization {method!r}: {', '.join(METHODS)}")
    if not calibration:
        raise ValueError("static quantization needs calibration feeds")
    pre = out_path + ".pre.onnx"
    quant_pre_process(fp32_path, pre, skip_symbolic_shape=True)
    # Weights' MatMuls only: a MatMul of two activations (attention's query x key and
    # probabilities x value) stays fp32. Their [batch, heads, length, length] tensors are most
    # of what calibration would have to hold, and attention is where int8 hurts most.
    import onnx

    graph = onnx.load(pre, load_external_data=False).graph
    weights = {t.name for t in graph.initializer}
    activation_matmuls = [n.name for n in graph.node
                          if n.op_type == "MatMul" and not any(i in weights for i in n.input)]
    try:
        quantize_static(
            pre, out_path, FeedReader(same_shapes(calibration, pad_id)),
            quant_format=QuantFormat.QDQ,
            op_types_to_quantize=["MatMul", "Gemm", "Gather"],
            per_channel=True,
            activation_type=QuantType.QInt8,
            weight_type=QuantType.QInt8,
            nodes_to_exclude=activation_matmuls,
            # MinMax, averaging each run's extremes: the graph itself reduces every tensor to its
            # range, while the histogram methods keep every run's activations until the end (24 GB
            # for the 12-layer towers, killed); the average softens single outliers.
            calibrate_method=CalibrationMethod.MinMax,
            extra_options={"ActivationSymmetric": True, "WeightSymmetric": True,
                           "CalibMovingAverage": True, "CalibMovingAverageConstant": 0.01},
        )
    finally:
        for p in (pre, pre + ".data"):
            if os.path.exists(p):
                os.remove(p)
    return {"method": "static", "activations": "fixed scales (calibrated)", "format": "QDQ",
            "calibration_batches": len(calibration), "calibration": "MinMax, moving average 0.01",
            "ops": ["MatMul", "Gemm", "Gather"], "kept_fp32": "MatMuls of two activations (attention)"}


def untie_shared_weights(graph) -> int:
    """Consumers of ``Identity(initializer)`` read the initializer itself. PyTorch's exporter
    writes a weight shared by two towers once and aliases it through ``Identity`` for the
    second; ONNX Runtime's weight quantizers only see a MatMul whose input IS an initializer,
    so without this the second tower would stay fp32. Returns how many aliases were removed."""
    weights = {t.name for t in graph.initializer}
    alias = {n.output[0]: n.input[0] for n in graph.node if n.op_type == "Identity" and n.input[0] in weights}
    keep = [n for n in graph.node if not (n.op_type == "Identity" and n.output[0] in alias)]
    for n in keep:
        for i, name in enumerate(n.input):
            if name in alias:
                n.input[i] = alias[name]
    graph.ClearField("node")
    graph.node.extend(keep)
    return len(alias)


def int8_rows(graph) -> list[str]:
    """Every ``Gather`` from a 2-D float table (the embeddings) reads int8 rows with one scale
    per row instead: ``Gather(int8) -> Cast -> Mul(Gather(scales))``. Only the rows a batch
    uses are dequantized, each on its own, so a row's value cannot depend on the batch.
    ONNX Runtime's weight-only quantizer packs embeddings in 4 bits only; these are plain
    ONNX operators. Returns the tables converted."""
    import onnx
    from onnx import helper, numpy_helper

    tables = {t.name: t for t in graph.initializer if len(t.dims) == 2 and t.data_type == onnx.TensorProto.FLOAT}
    def row_gather(n) -> bool:  # a Gather of whole rows (axis 0) from a float table
        return n.op_type == "Gather" and n.input[0] in tables and all(a.i == 0 for a in n.attribute if a.name == "axis")

    used = sorted({n.input[0] for n in graph.node if row_gather(n)})
    for name in used:
        table = numpy_helper.to_array(tables[name])
        scale = np.maximum(np.abs(table).max(axis=1, keepdims=True), 1e-12) / 127.0
        q = np.clip(np.rint(table / scale), -127, 127).astype(np.int8)
        graph.initializer.extend([numpy_helper.from_array(q, name + "_int8"),
                                  numpy_helper.from_array(scale.astype(np.float32), name + "_row_scale")])
    nodes = []
    for n in graph.node:
        if not row_gather(n):
            nodes.append(n)
            continue
        name, ids, out = n.input[0], n.input[1], n.output[0]
        nodes += [helper.make_node("Gather", [name + "_int8", ids], [out + "_int8"], name=n.name + "_int8"),
                  helper.make_node("Cast", [out + "_int8"], [out + "_f"], to=onnx.TensorProto.FLOAT,
                                   name=n.name + "_cast"),
                  helper.make_node("Gather", [name + "_row_scale", ids], [out + "_scale"], name=n.name + "_scale"),
                  helper.make_node("Mul", [out + "_f", out + "_scale"], [out], name=n.name + "_dequant")]
    graph.ClearField("node")
    graph.node.extend(nodes)
    drop_unread_initializers(graph)
    return used


def drop_unread_initializers(graph) -> None:
    """Removes the initializers no node reads (the weights a rewrite replaced)."""
    read = {i for n in graph.node for i in n.input}
    kept = [t for t in graph.initializer if t.name in read]
    graph.ClearField("initializer")
    graph.initializer.extend(kept)


# MatMulNBits' compute precision for weight-only graphs: int8, activations quantized per row
# and block at run time (batch-independent). 0 would compute in float.
ACCURACY_LEVEL = 4


def quantize_weights(fp32_path: str, out_path: str, block_size: int = 32,
                     accuracy_level: int = ACCURACY_LEVEL) -> dict:
    """Weight-only int8: every weight MatMul becomes ONNX Runtime's ``MatMulNBits`` (8 bits,
    symmetric, one scale per ``block_size`` inputs of each output column, computed as
    ``accuracy_level`` says), and the embedding tables int8 per row (``int8_rows``).
    Activations are stored float, and at level 4 quantized per row and block only while
    multiplied, so nothing is scaled by the batch: a row's score is the same alone or padded
    among others."""
    import onnx
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

    logging.getLogger("onnxruntime.quantization.matmul_nbits_quantizer").setLevel(logging.WARNING)
    model = onnx.load(fp32_path)
    aliases = untie_shared_weights(model.graph)
    tables = int8_rows(model.graph)
    q = MatMulNBitsQuantizer(model, bits=8, block_size=block_size, is_symmetric=True,
                             accuracy_level=accuracy_level)
    q.process()
    model = q.model.model
    # Two towers' MatMuls on one weight each wrote the same packed initializer: keep one.
    seen, unique = set(), []
    for t in model.graph.initializer:
        if t.name not in seen:
            seen.add(t.name)
            unique.append(t)
    model.graph.ClearField("initializer")
    model.graph.initializer.extend(unique)
    onnx.save(model, out_path)
    ops = [n.op_type for n in model.graph.node]
    return {"method": "weights", "activations": activations_of(accuracy_level), "format": "MatMulNBits + int8 rows",
            "block_size": block_size, "accuracy_level": accuracy_level, "matmuls_int8": ops.count("MatMulNBits"),
            "matmuls_fp32": ops.count("MatMul"), "tables_int8": tables, "aliases_untied": aliases}


# SmoothQuant's migration strength: each channel's range is split evenly (square root) between
# the activation and the weight. The paper's default; not tuned on any evaluation set.
SMOOTHING = 0.5
# What a rows graph is, in the export report's words.
ROWS_REPORT = {"method": "rows", "activations": "int8, one scale per row (run time), after fixed smoothing",
               "format": "MatMulInteger + int8 rows"}


def weight_matmuls(graph) -> list[tuple]:
    """Every MatMul by a weight, as (node, weight [K, N] float32): a ``MatMul`` whose second
    input is a 2-D float initializer, or an 8-bit symmetric ``MatMulNBits`` (dequantized:
    ``(byte - 128) * block scale``)."""
    import onnx
    from onnx import helper, numpy_helper

    inits = {t.name: t for t in graph.initializer}
    found = []
    for n in graph.node:
        if n.op_type == "MatMul" and n.input[1] in inits and len(inits[n.input[1]].dims) == 2 \
                and inits[n.input[1]].data_type == onnx.TensorProto.FLOAT:
            found.append((n, numpy_helper.to_array(inits[n.input[1]]).astype(np.float32)))
        elif n.op_type == "MatMulNBits":
            at = {a.name: helper.get_attribute_value(a) for a in n.attribute}
            if at.get("bits") != 8 or len(n.input) > 3:
                raise ValueError(f"{n.name or n.output[0]}: only 8-bit symmetric MatMulNBits can be rewritten")
            packed = numpy_helper.to_array(inits[n.input[1]]).astype(np.float32) - 128.0  # [N, blocks, block]
            scales = numpy_helper.to_array(inits[n.input[2]]).reshape(at["N"], -1, 1)
            found.append((n, (packed * scales).reshape(at["N"], -1)[:, :at["K"]].T.copy()))
    return found


def input_ranges(model, feeds: list[dict], names: list[str], threads: int = 2) -> dict:
    """Largest |value| of each channel (last axis) of the tensors ``names`` over ``feeds``."""
    import onnx
    import onnxruntime as ort

    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    present = {o.name for o in probe.graph.output}
    probe.graph.output.extend(onnx.helper.make_empty_tensor_value_info(n) for n in names if n not in present)
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    sess = ort.InferenceSession(probe.SerializeToString(), so, providers=["CPUExecutionProvider"])
    ranges: dict = {}
    for feed in feeds:
        for name, value in zip(names, sess.run(names, feed)):
            top = np.abs(value.reshape(-1, value.shape[-1])).max(axis=0)
            ranges[name] = top if name not in ranges else np.maximum(ranges[name], top)
    return ranges


def smoothing_factors(matmuls: list[tuple], ranges: dict, alpha: float = SMOOTHING) -> dict:
    """One factor per input channel, ``s = max|x|^alpha / max|w|^(1 - alpha)``, for each weight
    MatMul's input. Inputs that share a weight (two towers, one set of weights) share their
    factors, so the weight is still stored once."""
    parent = {n.input[0]: n.input[0] for n, _ in matmuls}

    def root(name):
        while parent[name] != name:
            name = parent[name]
        return name

    by_weight: dict = {}
    for n, _ in matmuls:
        by_weight.setdefault(n.input[1], []).append(n.input[0])
    for readers in by_weight.values():
        for r in readers[1:]:
            parent[root(r)] = root(readers[0])
    groups: dict = {}
    for name in parent:
        groups.setdefault(root(name), set()).add(name)
    factors = {}
    for members in groups.values():
        x = np.max([ranges[m] for m in members], axis=0)
        w = np.max([np.abs(weight).max(axis=1) for n, weight in matmuls if n.input[0] in members], axis=0)
        s = np.power(np.maximum(x, 1e-5), alpha) / np.power(np.maximum(w, 1e-5), 1 - alpha)
        for m in members:
            factors[m] = np.maximum(s, 1e-5).astype(np.float32)
    return factors


def rows_graph(model, calibration: list[dict], alpha: float = SMOOTHING, threads: int = 2) -> dict:
    """Rewrites ``model`` in place: every weight MatMul (``weight_matmuls``) becomes
    ``x / s`` quantized per row to int8 (stored as uint8 around 128, the layout ONNX Runtime's
    integer GEMM is fastest on), ``MatMulInteger`` with the weight ``s * W`` in int8 per
    output column, and the two scales multiplied back. An input read by several MatMuls (a
    layer's query, key and value) is quantized once. Returns what was done."""
    from onnx import TensorProto, helper, numpy_helper

    graph = model.graph
    matmuls = weight_matmuls(graph)
    inputs = sorted({n.input[0] for n, _ in matmuls})
    factors = smoothing_factors(matmuls, input_ranges(model, calibration, inputs, threads), alpha)
    replaced = {id(n): w for n, w in matmuls}
    consts = {"rows_eps": np.array(1e-12, np.float32), "rows_127": np.array(127.0, np.float32),
              "rows_128": np.array(128.0, np.float32), "rows_zero_point": np.array(128, np.uint8)}
    new_inits = [numpy_helper.from_array(v, k) for k, v in consts.items()]
    nodes, quantized, written = [], {}, set()
    for n in graph.node:
        if id(n) not in replaced:
            nodes.append(n)
            continue
        x, out, stem = n.input[0], n.output[0], n.name or n.output[0]
        if x not in quantized:
            p = x + "_rows"
            new_inits.append(numpy_helper.from_array(1.0 / factors[x], p + "_smooth"))
            nodes += [helper.make_node("Mul", [x, p + "_smooth"], [p + "_smoothed"], name=p + "_smooth"),
                      helper.make_node("Abs", [p + "_smoothed"], [p + "_abs"], name=p + "_abs"),
                      helper.make_node("ReduceMax", [p + "_abs"], [p + "_max"], axes=[-1], keepdims=1,
                                       name=p + "_max"),
                      helper.make_node("Max", [p + "_max", "rows_eps"], [p + "_range"], name=p + "_range"),
                      helper.make_node("Div", [p + "_range", "rows_127"], [p + "_scale"], name=p + "_scale"),
                      helper.make_node("Div", [p + "_smoothed", p + "_scale"], [p + "_steps"], name=p + "_steps"),
                      helper.make_node("Round", [p + "_steps"], [p + "_rounded"], name=p + "_round"),
                      helper.make_node("Add", [p + "_rounded", "rows_128"], [p + "_shifted"], name=p + "_shift"),
                      helper.make_node("Cast", [p + "_shifted"], [p + "_int8"], to=TensorProto.UINT8,
                                       name=p + "_cast")]
            quantized[x] = (p + "_int8", p + "_scale")
        w = n.input[1] + "_rows"
        if w not in written:  # one int8 copy of a weight both towers read
            written.add(w)
            weight = replaced[id(n)] * factors[x][:, None]
            scale = np.maximum(np.abs(weight).max(axis=0), 1e-12) / 127.0
            new_inits += [numpy_helper.from_array(np.clip(np.rint(weight / scale), -127, 127).astype(np.int8), w),
                          numpy_helper.from_array(scale.astype(np.float32), w + "_scale")]
        q, row_scale = quantized[x]
        nodes += [helper.make_node("MatMulInteger", [q, w, "rows_zero_point"], [out + "_int32"], name=stem + "_int"),
                  helper.make_node("Cast", [out + "_int32"], [out + "_float"], to=TensorProto.FLOAT,
                                   name=stem + "_float"),
                  helper.make_node("Mul", [out + "_float", row_scale], [out + "_rows"], name=stem + "_row_scale"),
                  helper.make_node("Mul", [out + "_rows", w + "_scale"], [out], name=stem + "_column_scale")]
    graph.ClearField("node")
    graph.node.extend(nodes)
    graph.initializer.extend(new_inits)
    drop_unread_initializers(graph)
    spread = [float(f.max() / f.min()) for f in factors.values()]
    return {"matmuls_int8": len(matmuls), "inputs_quantized": len(quantized), "smoothing": alpha,
            "calibration_batches": len(calibration), "smoothing_spread_max": round(max(spread), 2)}


def quantize_rows(fp32_path: str, out_path: str, calibration: list[dict], alpha: float = SMOOTHING) -> dict:
    """``rows`` int8 from an fp32 graph: shared weights untied, embeddings int8 per row
    (``int8_rows``), weight MatMuls by ``rows_graph``."""
    import onnx

    model = onnx.load(fp32_path)
    aliases = untie_shared_weights(model.graph)
    tables = int8_rows(model.graph)
    report = rows_graph(model, calibration, alpha)
    onnx.save(model, out_path)
    return {**ROWS_REPORT, "tables_int8": tables, "aliases_untied": aliases, **report}


def rows_folder(folder: str, out: str, data_dir: str, prerank: str, calibration_queries: int = 24) -> dict:
    """A copy of an exported weight-only late folder whose weight MatMuls are ``rows`` int8,
    calibrated on ``calibration_queries`` training queries' top 8 candidates (the export's
    calibration sample). Checked as an export is, on the export's real held-out pairs:
    batch independence (``checks.BATCH_LIMIT``) and agreement with the folder it came from;
    its manifest, export report and reference pairs say what it now is."""
    import onnx

    from . import checks
    from .common import write_json
    from .export import calibration_pairs, late_check_pairs, write_late_reference
    from .students import late

    model = onnx.load(os.path.join(folder, "model.onnx"))
    if not any(n.op_type == "MatMulNBits" for n in model.graph.node):
        raise SystemExit(f"{folder}/model.onnx has no MatMulNBits: not a weight-only int8 folder "
                         "(rows rewrites what `export --quantization weights` writes)")
    before = late.folder_scorer(folder)
    feeds = [late.feed_numpy(before.tokenizer, [(q, d) for d in docs[:8]])
             for _, q, docs in calibration_pairs(data_dir, prerank, calibration_queries) if len(docs) >= 8]
    pairs, query_of = late_check_pairs(data_dir, prerank)
    scored_before = checks.in_batches(before, pairs)  # before the folder may be rewritten in place
    if os.path.abspath(folder) != os.path.abspath(out):
        shutil.copytree(folder, out, dirs_exist_ok=True)
    report = {**ROWS_REPORT, "from": "MatMulNBits (dequantized)", **rows_graph(model, feeds)}
    onnx.save(model, os.path.join(out, "model.onnx"))
    after = late.folder_scorer(out)
    checked = checks.rewritten(scored_before, after, pairs, query_of, "rows")
    report["batch_independence"] = checked["batch_independence"]
    report["agreement_with_source"] = {"pairs": checked["pairs"], **checked["agreement"]}
    manifest_path = os.path.join(out, "manifest.json")
    manifest = json.load(open(manifest_path))
    manifest["precision"] = "int8 (rows)"
    write_json(manifest_path, manifest)
    report_path = os.path.join(out, "export_report.json")
    full = json.load(open(report_path)) if os.path.exists(report_path) else {}
    full.setdefault("quantization", {})["rows"] = report
    full["served"] = "rows"
    write_json(report_path, full)
    write_late_reference(out)
    return {"folder": out, **report}


def activations_of(accuracy_level: int) -> str:
    """What a weight-only graph does with activations at ``accuracy_level`` (the report's words)."""
    if accuracy_level == 4:
        return "float; quantized to int8 per row and block of 32 while multiplied (accuracy_level 4)"
    return "float (weight-only int8)"


def size_mb(path: str) -> float:
    return round(os.path.getsize(path) / 2 ** 20, 2)


def concat_rows(feeds: list[dict]) -> dict:  # pragma: no cover - small helper for reports
    return {k: np.concatenate([f[k] for f in feeds]) for k in feeds[0]}


def set_accuracy_level(model_path: str, out_path: str, level: int) -> int:
    """Writes ``model_path`` with every ``MatMulNBits`` computing at ``level``; returns how
    many nodes were set. The weights are untouched."""
    import onnx

    model = onnx.load(model_path)
    count = 0
    for node in model.graph.node:
        if node.op_type != "MatMulNBits":
            continue
        kept = [a for a in node.attribute if a.name != "accuracy_level"]
        del node.attribute[:]
        node.attribute.extend(kept + [onnx.helper.make_attribute("accuracy_level", level)])
        count += 1
    onnx.save(model, out_path)
    return count


def compute_level_folder(folder: str, out: str, level: int) -> dict:
    """A copy of an exported weight-only folder whose ``MatMulNBits`` compute at ``level``,
    with the export report saying so."""
    if os.path.abspath(folder) != os.path.abspath(out):
        shutil.copytree(folder, out, dirs_exist_ok=True)
    nodes = set_accuracy_level(os.path.join(folder, "model.onnx"), os.path.join(out, "model.onnx"), level)
    if nodes == 0:
        raise SystemExit(f"{folder}/model.onnx has no MatMulNBits: not a weight-only int8 folder")
    report_path = os.path.join(out, "export_report.json")
    if os.path.exists(report_path):
        report = json.load(open(report_path))
        weights = report.setdefault("quantization", {}).setdefault("weights", {})
        weights["accuracy_level"] = level
        weights["activations"] = activations_of(level)
        json.dump(report, open(report_path, "w"), indent=1)
    return {"folder": out, "matmulnbits": nodes, "accuracy_level": level}


def main() -> None:
    from .common import WORK_DIR

    ap = argparse.ArgumentParser(description="int8 tools for exported folders")
    sub = ap.add_subparsers(dest="command", required=True)
    level = sub.add_parser("compute-level", help="copy a weight-only folder with MatMulNBits computing at --level")
    level.add_argument("folder")
    level.add_argument("--out", required=True, help="the new folder (the same path rewrites it in place)")
    level.add_argument("--level", type=int, default=ACCURACY_LEVEL, choices=[0, 1, 2, 3, 4],
                       help="0 unset (float), 1 fp32, 2 fp16, 3 bf16, 4 int8 (default)")
    rows = sub.add_parser("rows", help="copy a weight-only late folder with its weight MatMuls in rows int8")
    rows.add_argument("folder")
    rows.add_argument("--out", required=True, help="the new folder (the same path rewrites it in place)")
    rows.add_argument("--data", default=str(WORK_DIR / "data"),
                      help="the toolkit's data (calibration: training queries; checks: held-out ones)")
    rows.add_argument("--prerank", default=str(WORK_DIR / "prerank.jsonl"))
    args = ap.parse_args()
    if args.command == "rows":
        print(json.dumps(rows_folder(args.folder, args.out, args.data, args.prerank)))
    else:
        print(json.dumps(compute_level_folder(args.folder, args.out, args.level)))


if __name__ == "__main__":
    main()
