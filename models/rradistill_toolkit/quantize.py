"""int8 quantization of an exported student, and why the served one is static.

What it owns: turning an fp32 ONNX graph into an int8 one, two ways (ONNX Runtime's
quantization tools, not hand-written):

- ``dynamic``: weights int8 ahead of time, activations quantized at run time with one scale
  per tensor computed from the batch in hand (``DynamicQuantizeLinear``). The scale of a
  batch's activations depends on every row in it, so a document's score moves with whatever
  else shares its batch (0.36 logit for rra-bert-mini 0.5.0): the same request scores
  differently under different traffic, and the score cache keeps whichever came first.
- ``static`` (the default for served students): weights int8 per output channel, activation
  scales fixed ahead of time from calibration batches of the toolkit's own text (held-in
  training queries and their candidates, never the evaluation sets), QDQ format, which ONNX
  Runtime fuses into integer kernels. Every scale is a constant, so a row's score cannot
  depend on its neighbours: ``checks.batch_independence`` holds the exported folder to 1e-3.
  Only matrix products are quantized (``MatMul``, ``Gemm``, and the embedding ``Gather``);
  LayerNorm, softmax and GELU stay in float, as in ONNX Runtime's transformer recipes.

Calibration takes each run's activation range and keeps a moving average of them (MinMax,
constant 0.01: the mean of the runs' extremes), so a single outlier batch stretches the int8 range less than the running
extremes would. The histogram methods (percentile, entropy) keep every run's activations
until the end, which does not fit in memory for the 12-layer towers. Attention's MatMuls of
two activations stay fp32.
"""

from __future__ import annotations

import os

import numpy as np

METHODS = ("static", "dynamic")


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


def size_mb(path: str) -> float:
    return round(os.path.getsize(path) / 2 ** 20, 2)


def concat_rows(feeds: list[dict]) -> dict:  # pragma: no cover - small helper for reports
    return {k: np.concatenate([f[k] for f in feeds]) for k in feeds[0]}
