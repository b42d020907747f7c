"""RRA-BERT-m: the multilingual encoder student, query and document read apart, then joined.

What it owns: the student's network, the graph the service runs, and the tokenization both
sides must agree on (the service's ``late`` model kind implements the same contract in Rust).

The network (``LateScorer``, what is exported and served):

- **Towers.** One BERT encoder (multilingual-e5-small's weights: 12 layers, 384 wide) reads
  the query (``<s> query: QUERY </s>``) and each document (``<s> passage: DOCUMENT </s>``)
  on its own, as e5 was trained to. Nothing in a document's tower depends on the query, and
  the query's tower runs once per distinct query in a batch, however many documents it has.
- **Dense match.** ``scale * cos(mean(query states), mean(document states))``: at the start
  of training this is exactly e5's bi-encoder ranking (the teacher-level start that a
  cross-encoder rebuilt from a bi-encoder loses).
- **Interaction.** One transformer layer with full attention over the concatenated final
  states ``[query tokens; document tokens]`` (initialised from the encoder's last layer), read
  at the query's ``<s>`` by a linear head that starts at zero: what a cross-encoder adds (which
  query words the document answers), learnt from the teacher without disturbing the start.
- ``score = scale * cos + head(interaction) + bias``; ``bias`` is set after training by
  Platt scaling so that ``sigmoid(score)`` reads as the probability the teacher ranks the
  document (the listwise loss leaves the shift free).

In training only (``LateStudent``), the **Term Control Layer** reads the interaction layer's
output at the Token-Selection positions (document tokens whose word also occurs in the
query, ``tokenization.select_positions``) through a small MLP, mean-pooled into ``s_term``;
``L = L_rank(score) + lambda * L_rank(s_term)``. It is not exported.

Graph contract (``manifest.json`` ``"kind": "late"``): inputs ``query_ids``, ``query_mask``
int64 ``[queries, query_length]``; ``input_ids``, ``attention_mask`` int64
``[pairs, document_length]``; ``query_index`` int64 ``[pairs]`` (the row of each pair's query);
output ``scores`` float32 ``[pairs]``. Right padding with ``<pad>``; positions restart at 0
in every tower (the graph computes them).
"""

from __future__ import annotations

import copy
import math

import torch
from torch import nn

from . import tokenization

DEFAULT_SCALE = 20.0


def masked_mean(states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    m = mask.unsqueeze(-1).to(states.dtype)
    return (states * m).sum(1) / m.sum(1).clamp(min=1.0)


def _extended(mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """[B, L] 0/1 -> additive attention bias [B, 1, 1, L] (0 keep, large negative drop)."""
    return (1.0 - mask[:, None, None, :].to(dtype)) * torch.finfo(dtype).min


class LateScorer(nn.Module):
    """Towers + dense match + interaction layer + head: the served graph."""

    def __init__(self, encoder, scale: float = DEFAULT_SCALE):
        super().__init__()
        self.encoder = encoder  # transformers BertModel, no pooler
        self.interaction = copy.deepcopy(encoder.encoder.layer[-1])
        hidden = encoder.config.hidden_size
        self.head = nn.Linear(hidden, 1)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)
        self.log_scale = nn.Parameter(torch.tensor(math.log(scale)))
        self.bias = nn.Parameter(torch.zeros(()), requires_grad=False)

    @property
    def scale(self) -> torch.Tensor:
        return self.log_scale.exp()

    def towers(self, query_ids, query_mask, input_ids, attention_mask):
        q = self.encoder(input_ids=query_ids, attention_mask=query_mask).last_hidden_state
        d = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        return q, d

    def interact(self, q, query_mask, d, attention_mask, query_index):
        """Per pair: the interaction layer over [query states; document states]."""
        qs = q.index_select(0, query_index)
        qm = query_mask.index_select(0, query_index)
        x = torch.cat([qs, d], 1)
        m = torch.cat([qm, attention_mask], 1)
        out = self.interaction(x, attention_mask=_extended(m, x.dtype))
        return out[0] if isinstance(out, tuple) else out

    def parts(self, query_ids, query_mask, input_ids, attention_mask, query_index):
        q, d = self.towers(query_ids, query_mask, input_ids, attention_mask)
        qv = nn.functional.normalize(masked_mean(q, query_mask), dim=-1).index_select(0, query_index)
        dv = nn.functional.normalize(masked_mean(d, attention_mask), dim=-1)
        cos = (qv * dv).sum(-1)
        joint = self.interact(q, query_mask, d, attention_mask, query_index)
        cross = self.head(joint[:, 0]).squeeze(-1)
        score = self.scale * cos + cross + self.bias
        return score, cos, joint

    def forward(self, query_ids, query_mask, input_ids, attention_mask, query_index):
        return self.parts(query_ids, query_mask, input_ids, attention_mask, query_index)[0]


class LateStudent(nn.Module):
    """Training wrapper: the served scorer plus the Term Control Layer."""

    def __init__(self, scorer: LateScorer, use_tcl: bool = True, tcl_hidden: int = 256):
        super().__init__()
        self.scorer = scorer
        hidden = scorer.encoder.config.hidden_size
        self.use_tcl = use_tcl
        self.tcl = (nn.Sequential(nn.Linear(hidden, tcl_hidden), nn.GELU(), nn.Linear(tcl_hidden, 1))
                    if use_tcl else None)

    def forward(self, query_ids, query_mask, input_ids, attention_mask, query_index, select=None):
        score, _, joint = self.scorer.parts(query_ids, query_mask, input_ids, attention_mask, query_index)
        s_term = None
        if self.tcl is not None and select is not None:
            doc = joint[:, query_ids.shape[1]:]  # the document tokens, after the query's
            t = self.tcl(doc).squeeze(-1)
            s_term = (t * select).sum(-1) / select.sum(-1).clamp(min=1.0)
        return score, s_term


def is_head(name: str) -> bool:
    """Parameters trained at the head learning rate: the TCL, the score head, the scale."""
    return name.startswith("tcl") or ".head." in name or name.endswith("log_scale") or name.startswith("head")


def export_onnx(scorer: LateScorer, path: str, opset: int = 17) -> None:
    """The served graph, batch and length axes dynamic (TorchScript exporter)."""
    scorer = scorer.eval()
    feed = tokenization.example_feed(scorer.encoder.config.vocab_size)
    names = ["query_ids", "query_mask", "input_ids", "attention_mask", "query_index"]
    axes = {"query_ids": {0: "queries", 1: "query_length"}, "query_mask": {0: "queries", 1: "query_length"},
            "input_ids": {0: "pairs", 1: "document_length"}, "attention_mask": {0: "pairs", 1: "document_length"},
            "query_index": {0: "pairs"}, "scores": {0: "pairs"}}
    with torch.no_grad():
        torch.onnx.export(scorer, tuple(feed[n] for n in names), path, input_names=names,
                          output_names=["scores"], dynamic_axes=axes, opset_version=opset, dynamo=False)
