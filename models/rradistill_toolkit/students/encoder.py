"""RRA-BERT: the cross-encoder student (``[CLS] query [SEP] document [SEP]``) with the Term
Control Layer in training.

What it owns: the network (``RRABert``), what is exported (``ClsScorer``), its tokenization
(the service's encoder kind) and Token Selection, and its per-step hooks for the shared
training loop (``train.py``): ``build``, ``param_groups``, ``encode``, ``loss``, ``save``.

Model: a BERT checkpoint (all-MiniLM-L6-v2 by default) loaded into
``BertForSequenceClassification`` with one output (the [CLS] score ``s_cls``: pooler over
[CLS], then a linear head), plus, in training only, the Term Control Layer:

- Token Selection (``select_positions``): the positions of document tokens whose word
  (word-pieces merged, lower-cased) also occurs in the query; stop words and punctuation
  are excluded.
- TCL: a small MLP (hidden -> 256 -> 1) over the encoder's last hidden states at the
  selected positions, mean-pooled into a term score ``s_term`` (0 when nothing matches).
- Loss ``L = L_rank(s_cls) + lambda * L_rank(s_term)``, both over each query's candidate
  list, so the term branch's gradients shape the shared encoder. ``--no-tcl`` trains the
  ablation (``L = L_rank(s_cls)``). Only the encoder with its [CLS] head is exported.

Start: the base model's [CLS] pooler (never trained: all-MiniLM-L6-v2 uses mean pooling) is
replaced by an orthogonal one (``reinit_pooler``) and trained with the heads at ``--head-lr``;
left as it is, the [CLS] score hardly varies across candidates and the loss stays at ln(N).
"""

from __future__ import annotations

import os
import re

import numpy as np
import torch
from torch import nn

from ..common import write_json
from ..losses import LOSSES

KIND = "encoder"

STOP_WORDS = set("""a about above after again against all am an and any are as at be because been before
being below between both but by can could did do does doing down during each few for from further had
has have having he her here hers herself him himself his how i if in into is it its itself just me more
most my myself no nor not now of off on once only or other our ours ourselves out over own same she
should so some such than that the their theirs them themselves then there these they this those through
to too under until up very was we were what when where which while who whom why will with would you your
yours yourself yourselves can't don't i'm it's what's does""".split())
PUNCT = re.compile(r"^[\W_]+$")


# --- tokenization and token selection -------------------------------------------------------

def load_tokenizer(path, max_length: int):
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(path))
    tok.no_padding()
    tok.enable_truncation(max_length=max_length, strategy="only_second")
    return tok


def _words(enc, seq: int) -> dict[int, tuple[str, list[int]]]:
    """word index -> (word text, token positions) for sequence ``seq`` of a pair encoding."""
    words: dict[int, tuple[str, list[int]]] = {}
    for pos, (w, s, t) in enumerate(zip(enc.word_ids, enc.sequence_ids, enc.tokens)):
        if w is None or s != seq:
            continue
        piece = t[2:] if t.startswith("##") else t
        text, positions = words.get(w, ("", []))
        words[w] = (text + piece, positions + [pos])
    return words


def select_positions(enc) -> list[int]:
    """Token Selection: document token positions whose word also occurs in the query."""
    query_words = {t.lower() for t, _ in _words(enc, 0).values()}
    query_words = {w for w in query_words if w not in STOP_WORDS and not PUNCT.match(w)}
    out = []
    for text, positions in _words(enc, 1).values():
        if text.lower() in query_words:
            out.extend(positions)
    return out


MIN_DOCUMENT_TOKENS = 32


def fit_query(tok, query: str, min_document_tokens: int = MIN_DOCUMENT_TOKENS) -> str:
    """The query, cut at a token boundary if it would leave the document fewer than
    ``min_document_tokens`` of the window. The service refuses such a query (too long is an
    error there); a training query is kept, with its beginning, rather than dropped."""
    trunc = tok.truncation
    if not trunc:
        return query
    keep = max(1, trunc["max_length"] - tok.num_special_tokens_to_add(True) - min_document_tokens)
    tok.no_truncation()  # pair truncation refuses a lone sequence
    try:
        enc = tok.encode(query, add_special_tokens=False)
    finally:
        tok.enable_truncation(trunc["max_length"], stride=trunc["stride"], strategy=trunc["strategy"],
                              direction=trunc["direction"])
    if len(enc.ids) <= keep:
        return query
    return query[: enc.offsets[keep - 1][1]]


def encode_pairs(tok, query: str, docs: list[str], with_selection: bool = True):
    """Tensors for a list of (query, document) pairs, padded to the longest; an overlong
    query is cut (``fit_query``), the documents are cut from their end."""
    query = fit_query(tok, query)
    encs = tok.encode_batch([(query, d) for d in docs])
    width = max(len(e.ids) for e in encs)
    n = len(encs)
    ids = np.zeros((n, width), np.int64)
    mask = np.zeros((n, width), np.int64)
    types = np.zeros((n, width), np.int64)
    sel = np.zeros((n, width), np.float32)
    for r, e in enumerate(encs):
        L = len(e.ids)
        ids[r, :L], mask[r, :L], types[r, :L] = e.ids, e.attention_mask, e.type_ids
        if with_selection:
            for p in select_positions(e):
                sel[r, p] = 1.0
    return {k: torch.from_numpy(v) for k, v in
            {"input_ids": ids, "attention_mask": mask, "token_type_ids": types, "select": sel}.items()}


# --- model ----------------------------------------------------------------------------------

class RRABert(nn.Module):
    """Cross-encoder with an optional Term Control Layer (training only)."""

    def __init__(self, base_dir, use_tcl: bool = True, tcl_hidden: int = 256):
        super().__init__()
        from transformers import BertForSequenceClassification

        self.encoder = BertForSequenceClassification.from_pretrained(str(base_dir), num_labels=1)
        h = self.encoder.config.hidden_size
        self.use_tcl = use_tcl
        self.tcl = nn.Sequential(nn.Linear(h, tcl_hidden), nn.GELU(), nn.Linear(tcl_hidden, 1)) if use_tcl else None

    def forward(self, input_ids, attention_mask, token_type_ids, select=None):
        out = self.encoder(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids,
                           output_hidden_states=self.use_tcl and select is not None)
        s_cls = out.logits.squeeze(-1)
        s_term = None
        if self.use_tcl and select is not None:
            hidden = out.hidden_states[-1]
            t = self.tcl(hidden).squeeze(-1)  # [B, S]
            s_term = (t * select).sum(-1) / select.sum(-1).clamp(min=1.0)
        return s_cls, s_term


class ClsScorer(nn.Module):
    """What is exported and served: the encoder and its [CLS] head, logits [batch, 1]."""

    def __init__(self, encoder):
        super().__init__()
        self.encoder = encoder

    def forward(self, input_ids, attention_mask, token_type_ids):
        return self.encoder(input_ids=input_ids, attention_mask=attention_mask,
                            token_type_ids=token_type_ids).logits



def save_student(model: RRABert, out_dir, config: dict) -> None:
    os.makedirs(out_dir, exist_ok=True)
    model.encoder.save_pretrained(os.path.join(out_dir, "encoder"))
    if model.tcl is not None:
        torch.save(model.tcl.state_dict(), os.path.join(out_dir, "tcl.pt"))
    write_json(os.path.join(out_dir, "train_config.json"), config)


def load_student_encoder(out_dir):
    from transformers import BertForSequenceClassification

    return BertForSequenceClassification.from_pretrained(os.path.join(out_dir, "encoder"), num_labels=1).eval()


def _is_head(name: str) -> bool:
    """The score heads, trained at ``--head-lr``: the TCL, and the [CLS] head (pooler + linear)."""
    return name.startswith("tcl") or "classifier" in name or ".pooler." in name


def reinit_pooler(model: RRABert) -> None:
    """all-MiniLM-L6-v2 was trained with mean pooling: its [CLS] pooler was never trained and is
    near zero (weights std ~0.009, pre-activation ~0.05), so the [CLS] score barely varies across
    candidates and the listwise loss sits at ln(N) for hundreds of steps. An orthogonal pooler
    passes the [CLS] state through unshrunk (tanh stays unsaturated: |pre-activation| ~0.4)."""
    dense = model.encoder.bert.pooler.dense
    with torch.no_grad():
        nn.init.orthogonal_(dense.weight)
        dense.bias.zero_()




class Student:
    """RRA-BERT's hooks for the shared training loop (``train.py``)."""

    kind = KIND

    def __init__(self, args):
        from .. import assets

        self.args = args
        self.base = args.base or str(assets.minilm_dir())
        self.tok = load_tokenizer(os.path.join(self.base, "tokenizer.json"), args.max_length)

    def build(self) -> RRABert:
        model = RRABert(self.base, use_tcl=not self.args.no_tcl)
        if self.args.reinit_pooler:
            reinit_pooler(model)
        return model

    def groups(self, model) -> list[dict]:
        head = [p for n, p in model.named_parameters() if _is_head(n)]
        body = [p for n, p in model.named_parameters() if not _is_head(n)]
        return [{"params": body, "lr": self.args.lr}, {"params": head, "lr": self.args.head_lr}]

    def encode(self, items: list[dict], picks: list[list[int]]) -> dict:
        groups = [(it["query"], [it["docs"][j] for j in pk]) for it, pk in zip(items, picks)]
        batches = [encode_pairs(self.tok, q, docs, with_selection=not self.args.no_tcl) for q, docs in groups]
        return {k: _cat_padded([b[k] for b in batches]) for k in batches[0]}

    def loss(self, model, batch: dict, gains: torch.Tensor, n_queries: int):
        return rra_loss(model, batch, gains, n_queries, self.args.loss, self.args.tcl_weight)

    def save(self, model, out_dir, config: dict) -> None:
        save_student(model, out_dir, config)

    def config(self) -> dict:
        return {"base": os.path.basename(self.base.rstrip("/")) or "all-MiniLM-L6-v2",
                "max_length": self.args.max_length, "reinit_pooler": self.args.reinit_pooler}


def rra_loss(model: RRABert, batch: dict, gains: torch.Tensor, n_queries: int, loss_name: str = "listwise",
             tcl_weight: float = 0.5):
    """Loss for ``n_queries`` queries of equal candidate count stacked in ``batch``."""
    loss_fn = LOSSES[loss_name]
    s_cls, s_term = model(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"], batch.get("select"))
    s_cls = s_cls.view(n_queries, -1)
    loss = loss_fn(s_cls, gains.view(n_queries, -1))
    parts = {"rank": loss.item()}
    if s_term is not None:
        term = loss_fn(s_term.view(n_queries, -1), gains.view(n_queries, -1))
        loss = loss + tcl_weight * term
        parts["term"] = term.item()
    return loss, parts


def _cat_padded(tensors: list[torch.Tensor]) -> torch.Tensor:
    width = max(t.shape[1] for t in tensors)
    return torch.cat([torch.nn.functional.pad(t, (0, width - t.shape[1])) for t in tensors], 0)
