"""Ranking losses over each query's candidate list, and the labels they learn from.

Shared by every student (RRA-BERT now, RRA-GPT later): scores come in as ``[Q, N]``
(Q queries, N candidates each, ``mask`` marks real candidates), targets as graded gains.

- ``teacher_gains``: a label record (stage 4) -> one gain per candidate: the teacher's
  rank r gives ``2^-(r-1)`` (1, 0.5, 0.25, ...), a document it left out gives 0.
- ``listwise_softmax_ce``: cross-entropy between softmax(scores) and the gains normalised
  to a distribution (ListNet with a top-1 target). The default ``L_rank``.
- ``ranknet``: pairwise logistic loss over every pair with different gains: the ablation.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def teacher_gains(label: dict) -> dict[str, float]:
    """doc_id -> gain, from a label record's buckets."""
    return {d["doc_id"]: (2.0 ** -(d["rank"] - 1) if d["bucket"] == "ranked" else 0.0) for d in label["docs"]}


def listwise_softmax_ce(scores: torch.Tensor, gains: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Mean over queries of -sum_i p_i log softmax(s)_i with p = gains / sum(gains).

    Queries whose gains are all zero carry no preference and are left out of the mean.
    """
    if mask is None:
        mask = torch.ones_like(scores, dtype=torch.bool)
    mask = mask.bool()
    gains = gains.masked_fill(~mask, 0.0)
    total = gains.sum(-1, keepdim=True)
    valid = total.squeeze(-1) > 0
    if not valid.any():
        return scores.sum() * 0.0
    p = gains / total.clamp(min=1e-12)
    logp = F.log_softmax(scores.masked_fill(~mask, float("-inf")), dim=-1)
    loss = -(p * logp.masked_fill(~mask, 0.0)).sum(-1)
    return loss[valid].mean()


def ranknet(scores: torch.Tensor, gains: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Mean logistic loss log(1 + exp(-(s_i - s_j))) over pairs with gain_i > gain_j."""
    if mask is None:
        mask = torch.ones_like(scores, dtype=torch.bool)
    mask = mask.bool()
    diff = scores.unsqueeze(-1) - scores.unsqueeze(-2)
    better = (gains.unsqueeze(-1) > gains.unsqueeze(-2)) & mask.unsqueeze(-1) & mask.unsqueeze(-2)
    if not better.any():
        return scores.sum() * 0.0
    return F.softplus(-diff[better]).mean()


LOSSES = {"listwise": listwise_softmax_ce, "ranknet": ranknet}
