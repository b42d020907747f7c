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
import os

import numpy as np

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


def export_onnx(scorer: LateScorer, path: str, opset: int = 17, simplified: bool = True) -> None:
    """The served graph, batch and length axes dynamic (TorchScript exporter); ``simplified``
    (the export's choice) keeps one attention mask per tower and no NaN guards."""
    scorer = scorer.eval()
    feed = tokenization.example_feed(scorer.encoder.config.vocab_size)
    names = ["query_ids", "query_mask", "input_ids", "attention_mask", "query_index"]
    axes = {"query_ids": {0: "queries", 1: "query_length"}, "query_mask": {0: "queries", 1: "query_length"},
            "input_ids": {0: "pairs", 1: "document_length"}, "attention_mask": {0: "pairs", 1: "document_length"},
            "query_index": {0: "pairs"}, "scores": {0: "pairs"}}
    with torch.no_grad():
        torch.onnx.export(scorer, tuple(feed[n] for n in names), path, input_names=names,
                          output_names=["scores"], dynamic_axes=axes, opset_version=opset, dynamo=False)
    if simplified:
        from ..simplify import simplify_file

        simplify_file(path, path)


# --- training hooks (the shared loop is train.py) ---------------------------------------------

KIND = "late"


def late_loss(model: LateStudent, batch: dict, gains: torch.Tensor, n_queries: int, loss_name: str,
              tcl_weight: float):
    from ..losses import LOSSES

    loss_fn = LOSSES[loss_name]
    feed = {k: batch[k] for k in ("query_ids", "query_mask", "input_ids", "attention_mask", "query_index")}
    score, s_term = model(**feed, select=batch.get("select"))
    score = score.float().view(n_queries, -1)
    target = gains.view(n_queries, -1)
    loss = loss_fn(score, target)
    parts = {"rank": loss.item()}
    if s_term is not None:
        term = loss_fn(s_term.float().view(n_queries, -1), target)
        loss = loss + tcl_weight * term
        parts["term"] = term.item()
    return loss, parts


class Student:
    """RRA-BERT-m's hooks for the shared training loop (``train.py``).

    ``--freeze-layers N`` keeps the word embeddings and the first N tower layers as e5 left
    them: what the student knew of both languages before it saw our corpora stays, and the
    backward pass stops N layers earlier. ``--tower-layers N`` keeps only the base's first N
    layers (``keep_layers``): a shallower, cheaper student.
    """

    kind = KIND

    def __init__(self, args):
        from .bases import e5_dir

        self.args = args
        self.base = args.base or str(e5_dir())
        self.tok = tokenization.TowerTokenizer(os.path.join(self.base, "tokenizer.json"), window=args.max_length,
                                               query_window=args.query_length)

    def build(self) -> LateStudent:
        from transformers import BertModel

        encoder = BertModel.from_pretrained(self.base, add_pooling_layer=False, attn_implementation="sdpa")
        keep_layers(encoder, self.args.tower_layers)
        self.tower_layers = len(encoder.encoder.layer)
        model = LateStudent(LateScorer(encoder, scale=self.args.scale), use_tcl=not self.args.no_tcl)
        encoder.embeddings.requires_grad_(False)
        for layer in encoder.encoder.layer[: self.args.freeze_layers]:
            layer.requires_grad_(False)
        return model

    def groups(self, model) -> list[dict]:
        named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        head = [p for n, p in named if is_head(n)]
        body = [p for n, p in named if not is_head(n)]
        return [{"params": body, "lr": self.args.lr}, {"params": head, "lr": self.args.head_lr}]

    def encode(self, items: list[dict], picks: list[list[int]]) -> dict:
        groups = [(it["query"], [it["docs"][j] for j in pk]) for it, pk in zip(items, picks)]
        return self.tok.feed_many(groups, with_selection=not self.args.no_tcl)

    def loss(self, model, batch: dict, gains: torch.Tensor, n_queries: int):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.args.bf16):
            return late_loss(model, batch, gains, n_queries, self.args.loss, self.args.tcl_weight)

    def save(self, model: LateStudent, out_dir, config: dict) -> None:
        save_late(model, out_dir, config)

    def config(self) -> dict:
        return {"base": self.args.base or "multilingual-e5-small", "max_length": self.args.max_length,
                "query_length": self.args.query_length, "freeze_layers": self.args.freeze_layers,
                "tower_layers": self.tower_layers,
                "scale_init": self.args.scale, "bf16": self.args.bf16}


def keep_layers(encoder, n: int) -> None:
    """Keep the first ``n`` tower layers (0: all). A document's cost is its tower's, so the
    towers' depth is the student's cost per pair; the interaction layer, built after this,
    starts as the last layer kept. The saved config says how many, so the folder reloads."""
    layers = encoder.encoder.layer
    if not n or n >= len(layers):
        return
    if n < 1:
        raise ValueError(f"--tower-layers {n}: keep at least one layer")
    encoder.encoder.layer = layers[:n]
    encoder.config.num_hidden_layers = n


def save_late(model: LateStudent, out_dir, config: dict) -> None:
    from ..common import write_json

    os.makedirs(out_dir, exist_ok=True)
    model.scorer.encoder.save_pretrained(os.path.join(out_dir, "encoder"))
    torch.save({k: v for k, v in model.scorer.state_dict().items() if not k.startswith("encoder.")},
               os.path.join(out_dir, "late_head.pt"))
    if model.tcl is not None:
        torch.save(model.tcl.state_dict(), os.path.join(out_dir, "tcl.pt"))
    write_json(os.path.join(out_dir, "train_config.json"), config)


def load_late(out_dir) -> LateScorer:
    """The trained scorer (no TCL), in eval mode."""
    from transformers import BertModel

    encoder = BertModel.from_pretrained(os.path.join(out_dir, "encoder"), add_pooling_layer=False,
                                        attn_implementation="sdpa")
    scorer = LateScorer(encoder)
    scorer.load_state_dict(torch.load(os.path.join(out_dir, "late_head.pt")), strict=False)
    return scorer.eval()


# --- the exported folder ------------------------------------------------------------------------

MANIFEST_INPUTS = {"query_ids": "query_ids", "query_mask": "query_mask", "input_ids": "input_ids",
                   "attention_mask": "attention_mask", "query_index": "query_index"}


def manifest(name: str, version: str, window: int, query_window: int, pad_id: int, **extra) -> dict:
    return {"name": name, "version": version, "kind": KIND, "max_sequence_length": window,
            "max_query_length": query_window, "query_prefix": tokenization.QUERY_PREFIX,
            "document_prefix": tokenization.DOCUMENT_PREFIX, "inputs": dict(MANIFEST_INPUTS),
            "output": "scores", "score_activation": "sigmoid", "pad_token_id": pad_id, **extra}


def feed_numpy(tok: "tokenization.TowerTokenizer", pairs) -> dict:
    """One batch of (query, document) pairs as the graph's feed: distinct queries once."""
    groups: dict[str, list[str]] = {}
    for q, d in pairs:
        groups.setdefault(q, [])
    qrows = list(groups)
    q_ids = [tok.query(q) for q in qrows]
    d_rows = [tok.document(d)[0] for _, d in pairs]
    index = [qrows.index(q) for q, _ in pairs]
    qi, qm = tokenization.pad(q_ids, tok.pad_id)
    di, dm = tokenization.pad(d_rows, tok.pad_id)
    return {"query_ids": qi.numpy(), "query_mask": qm.numpy(), "input_ids": di.numpy(),
            "attention_mask": dm.numpy(), "query_index": np.asarray(index, np.int64)}


def folder_scorer(model_dir: str, threads: int = 2, model_file: str = "model.onnx"):
    """``score(pairs) -> scores`` for an exported folder, on ONNX Runtime, one batch per call."""
    import json

    import onnxruntime as ort

    m = json.load(open(os.path.join(model_dir, "manifest.json")))
    tok = tokenization.TowerTokenizer(os.path.join(model_dir, "tokenizer.json"), window=m["max_sequence_length"],
                                      query_window=m["max_query_length"], query_prefix=m["query_prefix"],
                                      document_prefix=m["document_prefix"])
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    sess = ort.InferenceSession(os.path.join(model_dir, model_file), so, providers=["CPUExecutionProvider"])

    def score(pairs) -> np.ndarray:
        return sess.run([m["output"]], feed_numpy(tok, pairs))[0].reshape(len(pairs))

    score.tokenizer = tok
    return score
