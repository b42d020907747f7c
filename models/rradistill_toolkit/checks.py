"""The checks an exported student must pass before its folder is written. One module for every
student kind, so the encoder, the late-interaction student and the decoder are held to the
same bars:

- ``parity``: ONNX Runtime fp32 against PyTorch on real pairs (max absolute difference of the
  score, ``PARITY_LIMIT``): the graph computes what was trained.
- ``batch_independence``: each pair scored alone against the same pair inside a padded batch
  with other queries' pairs, on the folder's final graph (``BATCH_LIMIT``): what a client
  gets cannot depend on who else is being served. Dynamic int8 fails it by design
  (``quantize``); static int8 and fp32 pass.
- ``agreement``: Spearman rank correlation of the final (int8) scores with fp32, over all
  pairs and per query: how much ranking quantization costs.
- ``rewritten``: both of the last two for a graph rewritten from an exported folder's (a new
  graph for the same weights, another int8 scheme), against the graph it came from, since
  the fp32 graph is not kept in a folder.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

PARITY_LIMIT = 1e-4
BATCH_LIMIT = 1e-3


def spearman(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if len(a) < 2:
        return 1.0
    ra, rb = np.argsort(np.argsort(a)), np.argsort(np.argsort(b))
    return float(np.corrcoef(ra, rb)[0, 1])


def parity(reference: np.ndarray, onnx: np.ndarray, limit: float = PARITY_LIMIT) -> dict:
    diff = float(np.max(np.abs(np.asarray(reference) - np.asarray(onnx)))) if len(reference) else 0.0
    return {"pairs": int(len(reference)), "max_abs_diff": diff, "limit": limit, "ok": diff < limit}


def batch_independence(score: Callable[[Sequence[tuple[str, str]]], np.ndarray],
                       pairs: Sequence[tuple[str, str]], limit: float = BATCH_LIMIT) -> dict:
    """``score(pairs)`` scores a list of (query, document) pairs in ONE batch. Each pair alone
    is compared with the same pair in the whole batch (padded to its longest member, several
    queries mixed)."""
    together = np.asarray(score(list(pairs)), np.float64)
    alone = np.asarray([score([p])[0] for p in pairs], np.float64)
    diff = float(np.max(np.abs(together - alone))) if len(pairs) else 0.0
    return {"pairs": len(pairs), "queries": len({q for q, _ in pairs}), "max_abs_diff": diff,
            "limit": limit, "ok": diff < limit}


def in_batches(score: Callable[[Sequence[tuple[str, str]]], np.ndarray], pairs: Sequence[tuple[str, str]],
               size: int = 16) -> np.ndarray:
    """``score`` (one batch of pairs -> scores) over all ``pairs``, ``size`` at a time."""
    return np.concatenate([score(pairs[i:i + size]) for i in range(0, len(pairs), size)])


def agreement(fp32: np.ndarray, final: np.ndarray, query_of: Sequence[str],
              difference_key: str = "max_abs_diff_vs_fp32") -> dict:
    """How ``final``'s scores rank as ``fp32``'s (or another reference's) do, and their largest
    difference under ``difference_key``."""
    per_query: dict[str, tuple[list, list]] = {}
    for q, a, b in zip(query_of, fp32, final):
        per_query.setdefault(q, ([], []))
        per_query[q][0].append(a)
        per_query[q][1].append(b)
    return {
        "spearman_all_pairs": spearman(fp32, final),
        "spearman_mean_per_query": float(np.mean([spearman(a, b) for a, b in per_query.values()])),
        difference_key: float(np.max(np.abs(np.asarray(fp32) - np.asarray(final)))) if len(fp32) else 0.0,
    }


def rewritten(source_scores: np.ndarray, score: Callable[[Sequence[tuple[str, str]]], np.ndarray],
              pairs: Sequence[tuple[str, str]], query_of: Sequence[str], what: str) -> dict:
    """The checks of a rewritten graph (``score``) on the export's real pairs, whose scores on
    the graph it came from are ``source_scores``: batch independence on the first 24 (exits,
    naming ``what``, if it fails) and agreement with the source on all of them."""
    independence = batch_independence(score, pairs[:24])
    if not independence["ok"]:
        raise SystemExit(f"{what}: the new graph's scores depend on the batch: {independence}")
    agree = agreement(source_scores, in_batches(score, pairs), query_of, difference_key="max_abs_diff")
    return {"pairs": len(pairs), "batch_independence": independence, "agreement": agree}

