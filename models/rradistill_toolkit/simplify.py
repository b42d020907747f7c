"""Graph passes on an exported student that keep every score and cut its cost.

What it owns: rewriting the attention that ``torch.onnx.export`` writes for
``scaled_dot_product_attention`` with a boolean padding mask, and the layers whose output is
read at one position only. Per layer, the exporter turns the mask into an additive bias
with ``Where(mask, 0, -inf)`` over ``[batch, 1, length, length]`` and then guards the softmax
with ``Where(IsNaN(p), 0, p)``, for rows whose every key is masked (``-inf`` everywhere
gives NaN). On RRA-BERT-m that is 48 full-size ``Where`` and 24 ``IsNaN`` passes per batch
(15% of its kernel time on held-out queries: ``benches/op_profile.py``,
``benches/results/simplify/``), for a mask that is the same in every layer of a tower.

``simplify`` (applied by every encoder export, and to an exported folder by ``python -m
rradistill_toolkit.simplify FOLDER --out NEW``):

1. keeps one ``Where(mask, 0, fill)`` per mask (a tower) and points every layer at it;
2. fills with float32's lowest finite value instead of ``-inf``, so no softmax row can be
   NaN: a row with a key left is exactly as before (``exp`` of the fill underflows to 0 either
   way) and a row with none is uniform instead of NaN;
3. drops the NaN guards after softmaxes that only that finite bias feeds;
4. computes only what is read of a layer read at one position (``first_position``):
   RRA-BERT-m's score head reads its interaction layer's output at the query's ``<s>`` alone
   (an encoder student's head, its last layer's at ``[CLS]``), yet the exporter writes the
   attention's queries, its output projection and the feed-forward block for every position.
   The layer's input (and an encoder's ``[batch, 1, length, length]`` mask) is sliced to its
   first position before those (keys and values still read every position), which changes
   no score and leaves one row per pair of the ``query length + document length`` (what that
   saves on RRA-BERT-m: its card's cost table, 0.6.2 beside 0.6.1).

Nothing else changes: the weights, the inputs and outputs, the int8 nodes. The folder command
checks that the rewritten graph scores the folder's ``reference.jsonl`` pairs, alone and in
one padded batch, as the original does (to 1e-5), and records the pass in
``export_report.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil

import numpy as np

FILL = "attention_mask_fill"  # the one finite bias initializer the pass adds
IDENTICAL = 1e-5  # the folder check's limit on |original - simplified| per pair


def _constant(name: str, producers: dict, initializers: dict):
    """The value of ``name`` if it is an initializer or a ``Constant`` node's output."""
    from onnx import numpy_helper

    if name in initializers:
        return numpy_helper.to_array(initializers[name])
    node = producers.get(name)
    if node is not None and node.op_type == "Constant":
        for a in node.attribute:
            if a.name == "value":
                return numpy_helper.to_array(a.t)
    return None


def simplify(model) -> dict:
    """Rewrites ``model`` (an ``onnx.ModelProto``) in place; returns what it changed."""
    from onnx import numpy_helper

    graph = model.graph
    producers = {o: n for n in graph.node for o in n.output}
    initializers = {t.name: t for t in graph.initializer}

    def scalar_is(name: str, value: float) -> bool:
        v = _constant(name, producers, initializers)
        return v is not None and v.size == 1 and float(v.reshape(-1)[0]) == value

    # 1-2. The exporter's additive masks, grouped by the boolean mask they read.
    masks: dict[str, list] = {}
    for node in graph.node:
        if node.op_type == "Where" and scalar_is(node.input[1], 0.0) and scalar_is(node.input[2], -np.inf):
            masks.setdefault(node.input[0], []).append(node)
    rename: dict[str, str] = {}
    dropped: set[int] = set()
    biases = set()
    for nodes in masks.values():
        # The first in the (topologically sorted) node list precedes every layer reading any copy.
        kept = nodes[0]
        kept.input[2] = FILL
        biases.add(kept.output[0])
        for node in nodes[1:]:
            rename[node.output[0]] = kept.output[0]
            dropped.add(id(node))
    if masks and FILL not in initializers:
        graph.initializer.append(numpy_helper.from_array(np.array(np.finfo(np.float32).min, np.float32), FILL))

    # 3. Where(IsNaN(p), 0, p) with p = Softmax(x + finite bias): p has no NaN to guard.
    guards = 0
    for node in graph.node:
        if node.op_type != "Where" or id(node) in dropped:
            continue
        isnan = producers.get(node.input[0])
        if isnan is None or isnan.op_type != "IsNaN" or isnan.input[0] != node.input[2]:
            continue
        softmax = producers.get(node.input[2])
        add = producers.get(softmax.input[0]) if softmax is not None and softmax.op_type == "Softmax" else None
        if add is None or add.op_type != "Add" or not scalar_is(node.input[1], 0.0):
            continue
        if not any(rename.get(i, i) in biases for i in add.input):
            continue
        rename[node.output[0]] = node.input[2]
        dropped.add(id(node))
        guards += 1

    for node in graph.node:
        for i, name in enumerate(node.input):
            if name in rename:
                node.input[i] = rename[name]
    for output in graph.output:
        if output.name in rename:  # never the case for a student's scores, but stay correct
            raise ValueError(f"simplify: graph output {output.name} would be renamed")
    before = len(graph.node)
    # What the dropped nodes alone read (the IsNaN, the copies' constants) goes too.
    nodes = _live([n for n in graph.node if id(n) not in dropped], {o.name for o in graph.output})
    del graph.node[:]
    graph.node.extend(nodes)
    first = first_position(model)
    nodes = _live(list(graph.node), {o.name for o in graph.output})
    removed = before - len(nodes)
    del graph.node[:]
    graph.node.extend(nodes)
    return {"masks_per_layer": sum(len(v) for v in masks.values()), "masks_kept": len(masks),
            "nan_guards_removed": guards, "first_position_layers": first, "nodes_removed": removed}


def _live(nodes: list, outputs: set) -> list:
    """``nodes`` less those whose outputs nothing reads (repeated until none is left)."""
    while True:
        read = {i for n in nodes for i in n.input} | outputs
        live = [n for n in nodes if any(o in read for o in n.output)]
        if len(live) == len(nodes):
            return nodes
        nodes = live


def first_position(model) -> int:
    """Step 4: every transformer layer whose output nothing reads but its first position
    (``Gather`` of index 0 on the sequence axis: RRA-BERT-m's interaction layer, read at the
    query's ``<s>``; an encoder student's last layer, read at ``[CLS]``) computes that position
    only. Returns the number of layers rewritten (0 when none is read so, or all are done)."""
    import onnx

    graph = model.graph
    # Which attention biases have one row already ([batch, 1, 1, keys]: no slice needed).
    inferred = onnx.shape_inference.infer_shapes(model).graph
    rows = {v.name: (v.type.tensor_type.shape.dim[2].dim_value if len(v.type.tensor_type.shape.dim) == 4 else 0)
            for v in list(inferred.value_info) + list(inferred.input)}
    suffix = "output/LayerNorm/"
    prefixes = sorted({n.name.split(suffix)[0] for n in graph.node
                       if n.op_type == "LayerNormalization" and suffix in n.name
                       and not n.name.split(suffix)[0].endswith("attention/")})
    return sum(_first_position_layer(graph, prefix, rows) for prefix in prefixes)


def _first_position_layer(graph, prefix: str, rows: dict) -> int:
    """``first_position`` for the layer whose nodes the exporter named ``prefix...`` (a
    ``transformers`` BERT layer: ``attention/self``, ``attention/output``, ``intermediate``,
    ``output``); 0 when its shape is not the one expected, or any reader wants more."""
    from onnx import helper, numpy_helper

    by_name = {n.name: n for n in graph.node}
    producers = {o: n for n in graph.node for o in n.output}
    consumers: dict[str, list] = {}
    for n in graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    initializers = {t.name: t for t in graph.initializer}
    residual = by_name.get(prefix + "attention/output/Add")
    final = next((n for n in graph.node
                  if n.op_type == "LayerNormalization" and n.name.startswith(prefix + "output/LayerNorm/")), None)
    if residual is None or final is None or final.output[0] in {o.name for o in graph.output}:
        return 0
    # The layer's input: the residual's operand that is not the attention's projection.
    x = next((i for i in residual.input
              if producers.get(i) is not None and not producers[i].name.startswith(prefix + "attention/output/")), None)
    if x is None or x.endswith("_first"):
        return 0
    # Only position 0 of the layer's output is read: every reader is Gather(index 0, axis 1).
    for reader in consumers.get(final.output[0], []):
        axis = next((a.i for a in reader.attribute if a.name == "axis"), 0)
        index = _constant(reader.input[1], producers, initializers) if reader.op_type == "Gather" else None
        if reader.op_type != "Gather" or axis != 1 or index is None or index.size != 1 or int(index.reshape(-1)[0]) != 0:
            return 0
    query = [n for n in consumers.get(x, []) if n.name.startswith(prefix + "attention/self/query/")]
    reshape = by_name.get(prefix + "attention/self/Reshape")  # the queries, to [pairs, length, heads, width]
    dense = next((n for n in graph.node if n.name.startswith(prefix + "attention/output/dense/")
                  and n.op_type in ("MatMul", "MatMulNBits")), None)
    context = producers.get(dense.input[0]) if dense is not None else None  # back to [pairs, length, hidden]
    scores = by_name.get(prefix + "attention/self/MatMul")  # queries x keys
    masked = next((n for n in consumers.get(scores.output[0], []) if n.op_type == "Add"), None) if scores else None
    if len(query) != 1 or reshape is None or context is None or context.op_type != "Reshape" or masked is None:
        return 0
    # The additive mask: [batch, 1, 1, keys] broadcasts over one query row as over all; the
    # encoders' [batch, 1, queries, keys] is sliced to its first row as well.
    bias = next(i for i in masked.input if i != scores.output[0])
    shapes = []
    for node, keep in ((reshape, (2, 3)), (context, (2,))):
        concat = producers.get(node.input[1])
        if concat is None or concat.op_type != "Concat":
            return 0
        tail = [_constant(concat.input[k], producers, initializers) for k in keep]
        if any(t is None or t.size != 1 for t in tail):
            return 0
        shapes.append((node, [0, 1] + [int(t.reshape(-1)[0]) for t in tail]))

    first = x + "_first"
    names = {k: f"{first}_{k}" for k in ("starts", "ends", "axes")}
    for key, value in (("starts", 0), ("ends", 1), ("axes", 1)):
        graph.initializer.append(numpy_helper.from_array(np.array([value], np.int64), names[key]))
    slice_node = helper.make_node("Slice", [x, names["starts"], names["ends"], names["axes"]], [first],
                                  name=prefix + "first_position/Slice")
    query[0].input[0] = first
    residual.input[list(residual.input).index(x)] = first
    for node, shape in shapes:
        name = node.name + "_first_position_shape"
        graph.initializer.append(numpy_helper.from_array(np.array(shape, np.int64), name))
        node.input[1] = name
    at = next(k for k, n in enumerate(graph.node) if x in n.output)
    graph.node.insert(at + 1, slice_node)
    if rows.get(bias) != 1:
        row = f"{masked.name}_first_row"
        graph.initializer.append(numpy_helper.from_array(np.array([2], np.int64), row + "_axes"))
        masked.input[list(masked.input).index(bias)] = row
        at = next(k for k, n in enumerate(graph.node) if n.name == masked.name)
        graph.node.insert(at, helper.make_node("Slice", [bias, names["starts"], names["ends"], row + "_axes"], [row],
                                               name=prefix + "first_position/Slice_mask"))
    return 1


def simplify_file(src: str, dst: str) -> dict:
    import onnx

    model = onnx.load(src)
    report = simplify(model)
    onnx.checker.check_model(model)
    onnx.save(model, dst)
    return report


def simplify_folder(folder: str, out: str) -> dict:
    """A copy of an exported model folder with its graph simplified, checked against the
    original on the folder's reference pairs (alone and batched)."""
    from .evaluate import folder_pair_scorer

    if os.path.abspath(folder) == os.path.abspath(out):
        raise SystemExit("simplify: --out must be a new folder (the original is the check's reference)")
    shutil.copytree(folder, out, dirs_exist_ok=True)
    report = simplify_file(os.path.join(folder, "model.onnx"), os.path.join(out, "model.onnx"))
    refs = [json.loads(line) for line in open(os.path.join(folder, "reference.jsonl"))]
    pairs = [(r["query"], r["document"]) for r in refs]
    before, after = folder_pair_scorer(folder), folder_pair_scorer(out)
    diffs = [float(np.max(np.abs(before(pairs) - after(pairs))))]
    diffs += [float(np.max(np.abs(before([p]) - after([p])))) for p in pairs]
    report["check"] = {"pairs": len(pairs), "max_abs_diff": max(diffs), "limit": IDENTICAL}
    if max(diffs) > IDENTICAL:
        shutil.rmtree(out)
        raise SystemExit(f"simplify: scores changed: {report}")
    report_path = os.path.join(out, "export_report.json")
    if os.path.exists(report_path):
        exported = json.load(open(report_path))
        exported["simplified"] = report
        json.dump(exported, open(report_path, "w"), indent=1)
    return report


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description="Simplify an exported folder's graph: attention masks, layers read at "
                                             "one position (scores unchanged).")
    ap.add_argument("folder")
    ap.add_argument("--out", required=True, help="the new folder")
    args = ap.parse_args(argv)
    print(json.dumps(simplify_folder(args.folder, args.out)))


if __name__ == "__main__":
    main()
