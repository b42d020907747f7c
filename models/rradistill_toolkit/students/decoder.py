"""RRA-GPT, the decoder student: prompt, tokenization, model and the graph that is served.

What it owns: everything that must agree bit for bit between training, export, evaluation
and the Rust service's decoder ranker.

- Prompt (``PROMPT_TEMPLATE``): a chat turn holding the query and ONE document, asking
  "Is the document relevant to the query? Answer yes or no.", ending where the assistant's
  answer would start.
- Tokenization (``PromptEncoder``), the service contract: the template is split at
  ``{query}`` and ``{document}`` into prefix, middle and suffix; token ids are
  ``[bos if any] + enc(prefix) + enc(query) + enc(middle) + enc(document) + enc(suffix)``,
  each piece encoded SEPARATELY with ``tokenizer.json`` (``add_special_tokens=False``;
  added tokens such as ``<|im_start|>`` in the template are still recognised). Over
  ``max_length`` the document ids are cut from the end; if the rest alone is still too long
  (a query longer than the window) the query ids are cut from the end as well. Batches are
  right-padded with ``pad_token_id``.
- Model (``RRAGpt``): a Llama-architecture causal LM (SmolLM2-135M-Instruct, loaded from its
  GGUF, optionally cut to its first ``layers`` blocks) plus the ranking layer, a
  ``Linear(hidden, 1)`` on the last hidden state (after the final norm) at the last
  non-padding token. One forward pass over prompt (+ answer word + rationale, in training)
  gives the ranking score and the LM's logits; causal attention means the appended
  tokens never change the score.
- Served graph (``DecoderScorer``): the same decoder written out in plain tensor
  operations (embedding, RMSNorm, rotary positions, grouped-query causal attention, SwiGLU)
  reading the HF module's weights, ending at the ranking layer: inputs ``input_ids``,
  ``attention_mask`` int64 ``[batch, sequence]``, output ``scores`` float32 ``[batch]``, the
  raw logit gathered at position ``sum(mask) - 1``. No LM head, no decoding. Written out by
  hand because the TorchScript exporter cannot trace transformers' mask helpers; the
  export stage checks it against the HF forward.
- Training hooks (``Student``) for the shared loop (``train.py --student decoder``): the
  joint loss ``L_rank + alpha * L_cls + beta * L_reason`` in one forward pass.
"""

from __future__ import annotations

import json
import os
import pathlib

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..losses import LOSSES

PROMPT_TEMPLATE = ("<|im_start|>user\nQuery: {query}\nDocument: {document}\n"
                   "Is the document relevant to the query? Answer yes or no.<|im_end|>\n<|im_start|>assistant\n")
YES, NO = "yes", "no"
RATIONALE_SEPARATOR = "\n"  # between the relevance word and the rationale in training sequences
END_OF_TURN = "<|im_end|>"


# --- tokenizer --------------------------------------------------------------------------------

def tokenizer_from_gguf(gguf: str | os.PathLike, out: str | os.PathLike) -> dict:
    """Write the tokenizer carried by a GGUF file as ``tokenizer.json`` (HF ``tokenizers``).

    Returns ``{"pad_token_id", "bos_token_id", "eos_token_id"}`` as transformers reads them."""
    from transformers import AutoTokenizer

    gguf = pathlib.Path(gguf)
    tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    out = pathlib.Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    tok.backend_tokenizer.save(str(tmp))
    spec = json.loads(tmp.read_text(encoding="utf-8"))
    spec["padding"] = None
    spec["truncation"] = None
    tmp.write_text(json.dumps(spec, ensure_ascii=False), encoding="utf-8")
    os.replace(tmp, out)
    return {"pad_token_id": tok.pad_token_id, "bos_token_id": tok.bos_token_id, "eos_token_id": tok.eos_token_id}


def split_template(template: str) -> tuple[str, str, str]:
    if template.count("{query}") != 1 or template.count("{document}") != 1 or \
            template.index("{query}") > template.index("{document}"):
        raise ValueError("prompt template must hold {query} once, then {document} once")
    prefix, rest = template.split("{query}")
    middle, suffix = rest.split("{document}")
    return prefix, middle, suffix


class PromptEncoder:
    """The service's decoder tokenization (module doc); also encodes training targets."""

    def __init__(self, tokenizer_json: str | os.PathLike, max_length: int, pad_token_id: int,
                 template: str = PROMPT_TEMPLATE, bos_token_id: int | None = None):
        from tokenizers import Tokenizer

        self.tok = Tokenizer.from_file(str(tokenizer_json))
        self.tok.no_padding()
        self.tok.no_truncation()
        self.max_length = max_length
        self.pad_token_id = pad_token_id
        self.bos_token_id = bos_token_id
        self.template = template
        self.prefix, self.middle, self.suffix = (self.enc(p) for p in split_template(template))
        self.head = ([bos_token_id] if bos_token_id is not None else []) + self.prefix
        fixed = len(self.head) + len(self.middle) + len(self.suffix)
        if fixed >= max_length:
            raise ValueError(f"the prompt template alone takes {fixed} tokens, the window is {max_length}")

    def enc(self, text: str) -> list[int]:
        return self.tok.encode(text, add_special_tokens=False).ids

    def encode(self, query: str, document: str) -> list[int]:
        q, d = self.enc(query), self.enc(document)
        room = self.max_length - len(self.head) - len(self.middle) - len(self.suffix)
        q = q[:room]
        d = d[: room - len(q)]
        return self.head + q + self.middle + d + self.suffix

    def word_id(self, word: str) -> int:
        ids = self.enc(word)
        if len(ids) != 1:
            raise ValueError(f"{word!r} is not one token ({ids})")
        return ids[0]

    def pad(self, rows: list[list[int]]) -> dict[str, np.ndarray]:
        """Right padding with ``pad_token_id``; attention_mask int64 1/0."""
        width = max(len(r) for r in rows)
        ids = np.full((len(rows), width), self.pad_token_id, np.int64)
        mask = np.zeros((len(rows), width), np.int64)
        for i, r in enumerate(rows):
            ids[i, : len(r)] = r
            mask[i, : len(r)] = 1
        return {"input_ids": ids, "attention_mask": mask}

    def batch(self, pairs: list[tuple[str, str]]) -> dict[str, np.ndarray]:
        return self.pad([self.encode(q, d) for q, d in pairs])


def manifest(name: str, version: str, max_length: int, pad_token_id: int, template: str = PROMPT_TEMPLATE,
             bos_token_id: int | None = None, **extra) -> dict:
    """The manifest.json of a decoder model folder (the service contract)."""
    return {
        "name": name,
        "version": version,
        "kind": "decoder",
        "max_sequence_length": max_length,
        "inputs": {"input_ids": "input_ids", "attention_mask": "attention_mask"},
        "output": "scores",
        "score_activation": "sigmoid",
        "pad_token_id": pad_token_id,
        "prompt": {"template": template, "padding_side": "right", "bos_token_id": bos_token_id},
        **extra,
    }


# --- model ------------------------------------------------------------------------------------

def load_smollm2(gguf: str | os.PathLike, layers: int = 0):
    """SmolLM2 (any Llama GGUF) as a float32 ``LlamaForCausalLM``, cut to its first ``layers``."""
    from transformers import AutoModelForCausalLM

    gguf = pathlib.Path(gguf)
    lm = cut_layers(AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32),
                    layers)
    # transformers marks a GGUF-loaded model as quantized (not savable): rebuild a plain one
    cfg = lm.config
    if hasattr(cfg, "quantization_config"):
        del cfg.quantization_config
    plain = AutoModelForCausalLM.from_config(cfg, dtype=torch.float32)
    plain.load_state_dict(lm.state_dict())
    return plain


def cut_layers(lm, layers: int):
    if layers and layers < lm.config.num_hidden_layers:
        lm.model.layers = nn.ModuleList(list(lm.model.layers)[:layers])
        lm.config.num_hidden_layers = layers
        if getattr(lm.config, "layer_types", None):
            lm.config.layer_types = lm.config.layer_types[:layers]
    return lm


def tiny_llama(vocab_size: int, seed: int = 0, layers: int = 2, hidden: int = 64, heads: int = 4, kv_heads: int = 2,
               intermediate: int = 128, tie: bool = True, pad_token_id: int | None = None):
    """A small random-init Llama (fixtures and tests)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(vocab_size=vocab_size, hidden_size=hidden, num_hidden_layers=layers,
                      num_attention_heads=heads, num_key_value_heads=kv_heads, intermediate_size=intermediate,
                      max_position_embeddings=2048, rms_norm_eps=1e-5, rope_theta=100000.0,
                      tie_word_embeddings=tie, pad_token_id=pad_token_id)
    torch.manual_seed(seed)
    lm = LlamaForCausalLM(cfg)
    with torch.no_grad():  # HF inits with std 0.02: widen so that random scores differ visibly
        for p in lm.parameters():
            if p.dim() == 2:
                p.normal_(0.0, 0.2 if p.shape[0] == vocab_size else 1.0 / p.shape[1] ** 0.5)
    return lm


class RRAGpt(nn.Module):
    """Causal LM + ranking layer on the last non-padding token's hidden state."""

    def __init__(self, lm, seed: int = 0):
        super().__init__()
        self.lm = lm
        g = torch.Generator().manual_seed(seed)
        self.rank_head = nn.Linear(lm.config.hidden_size, 1)
        with torch.no_grad():
            self.rank_head.weight.normal_(0.0, 0.02, generator=g)
            self.rank_head.bias.zero_()

    def init_rank_head_from_answer(self, yes_id: int, no_id: int) -> None:
        """Start the ranking layer as the LM's own judgement: its weight is the LM head's row
        for ``yes`` minus the row for ``no`` (both read the same final-norm hidden state), so the
        initial score is the zero-shot logit(yes) - logit(no) after the prompt, the direction
        L_cls also trains, instead of a random projection of a state whose variation across
        candidates is a few percent of its size."""
        with torch.no_grad():
            w = self.lm.lm_head.weight
            self.rank_head.weight.copy_((w[yes_id] - w[no_id]).unsqueeze(0))
            bias = getattr(self.lm.lm_head, "bias", None)
            self.rank_head.bias.fill_(float(bias[yes_id] - bias[no_id]) if bias is not None else 0.0)

    def forward(self, input_ids, attention_mask, score_at, with_lm_logits: bool = False):
        """Scores [B] read at ``score_at`` [B] (the prompt's last token); LM logits if asked."""
        out = self.lm.model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False)
        hidden = out.last_hidden_state
        rows = torch.arange(hidden.shape[0], device=hidden.device)
        scores = self.rank_head(hidden[rows, score_at]).squeeze(-1)
        logits = self.lm.lm_head(hidden) if with_lm_logits else None
        return scores, logits

    def score(self, input_ids, attention_mask):
        """The served score: prompt-only right-padded batch, read at sum(mask) - 1."""
        return self(input_ids, attention_mask, attention_mask.sum(-1) - 1)[0]


def _rms_norm(x, weight, eps: float):
    return weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps))


def _rotate_half(x):
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


class DecoderScorer(nn.Module):
    """What is exported and served: the decoder up to the ranking layer, in plain ops."""

    def __init__(self, model: RRAGpt):
        super().__init__()
        cfg = model.lm.config
        body = model.lm.model
        self.body = body
        self.rank_head = model.rank_head
        self.heads = cfg.num_attention_heads
        self.kv_heads = cfg.num_key_value_heads
        self.head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
        self.eps = cfg.rms_norm_eps
        rot = body.rotary_emb
        self.register_buffer("inv_freq", rot.inv_freq.detach().clone().float(), persistent=False)
        self.rope_scale = float(getattr(rot, "attention_scaling", 1.0) or 1.0)

    def forward(self, input_ids, attention_mask):
        b, s = input_ids.shape
        x = self.body.embed_tokens(input_ids)
        pos = torch.arange(s, device=input_ids.device).float()
        freqs = pos[:, None] * self.inv_freq[None, :]
        emb = torch.cat((freqs, freqs), dim=-1)
        cos, sin = emb.cos() * self.rope_scale, emb.sin() * self.rope_scale
        idx = torch.arange(s, device=input_ids.device)
        causal = (idx[None, :] > idx[:, None]).float() * -1e9  # [S, S]: 0 on and below the diagonal
        rep = self.heads // self.kv_heads
        scale = self.head_dim ** -0.5
        for layer in self.body.layers:
            att = layer.self_attn
            h = _rms_norm(x, layer.input_layernorm.weight, self.eps)
            q = att.q_proj(h).view(b, s, self.heads, self.head_dim).transpose(1, 2)
            k = att.k_proj(h).view(b, s, self.kv_heads, self.head_dim).transpose(1, 2)
            v = att.v_proj(h).view(b, s, self.kv_heads, self.head_dim).transpose(1, 2)
            q = q * cos + _rotate_half(q) * sin
            k = k * cos + _rotate_half(k) * sin
            if rep > 1:
                k = k[:, :, None].expand(b, self.kv_heads, rep, s, self.head_dim).reshape(b, self.heads, s, self.head_dim)
                v = v[:, :, None].expand(b, self.kv_heads, rep, s, self.head_dim).reshape(b, self.heads, s, self.head_dim)
            w = torch.softmax(torch.matmul(q, k.transpose(-1, -2)) * scale + causal, dim=-1)
            ctx = torch.matmul(w, v).transpose(1, 2).reshape(b, s, self.heads * self.head_dim)
            x = x + att.o_proj(ctx)
            h = _rms_norm(x, layer.post_attention_layernorm.weight, self.eps)
            mlp = layer.mlp
            x = x + mlp.down_proj(torch.nn.functional.silu(mlp.gate_proj(h)) * mlp.up_proj(h))
        x = _rms_norm(x, self.body.norm.weight, self.eps)
        last = attention_mask.sum(-1) - 1
        picked = x[torch.arange(b, device=x.device), last]
        return self.rank_head(picked).squeeze(-1)


def export_onnx(model: RRAGpt, path: str | os.PathLike) -> None:
    """torch.onnx.export (TorchScript exporter, opset 17) of ``DecoderScorer``."""
    scorer = DecoderScorer(model).eval()
    ids = torch.full((2, 12), 5, dtype=torch.long)
    mask = torch.ones_like(ids)
    mask[1, 7:] = 0
    dyn = {"input_ids": {0: "batch", 1: "sequence"}, "attention_mask": {0: "batch", 1: "sequence"},
           "scores": {0: "batch"}}
    with torch.no_grad():
        torch.onnx.export(scorer, (ids, mask), str(path), input_names=["input_ids", "attention_mask"],
                          output_names=["scores"], dynamic_axes=dyn, opset_version=17, dynamo=False,
                          do_constant_folding=True)


def save_student(model: RRAGpt, out_dir, config: dict) -> None:
    """``lm/`` (transformers folder), ``rank_head.pt``, ``train_config.json``."""
    from ..common import write_json

    os.makedirs(out_dir, exist_ok=True)
    model.lm.save_pretrained(os.path.join(out_dir, "lm"))
    torch.save(model.rank_head.state_dict(), os.path.join(out_dir, "rank_head.pt"))
    write_json(os.path.join(out_dir, "train_config.json"), config)


def load_student(out_dir) -> RRAGpt:
    from transformers import AutoModelForCausalLM

    lm = AutoModelForCausalLM.from_pretrained(os.path.join(out_dir, "lm"), dtype=torch.float32)
    model = RRAGpt(lm)
    model.rank_head.load_state_dict(torch.load(os.path.join(out_dir, "rank_head.pt")))
    return model.eval()


# --- training hooks (the shared loop is train.py) ---------------------------------------------
# Loss ``L = L_rank + alpha * L_cls + beta * L_reason`` (method.md section 3):
# - ``L_rank``: the listwise loss of RRA-BERT (``losses``) over each query's candidates, on the
#   ranking layer's scores;
# - ``L_cls``: the LM's cross-entropy on the relevance word right after the prompt: ``yes`` for a
#   document the teacher ranked, ``no`` otherwise;
# - ``L_reason``: the LM's cross-entropy on the teacher's rationale (stage 4b, ``rationales``),
#   teacher-forced after the relevance word: ``prompt yes\n<rationale><|im_end|>``.
# One forward pass serves all three: with causal attention the tokens appended after the prompt
# cannot change the hidden state the ranking layer reads, so the score trained is the score
# served. The LM head runs only on the positions that carry a target; with ``--alpha 0
# --beta 0`` (the ablation) it does not run at all.

KIND = "decoder"

MAX_RATIONALE_TOKENS = 64


def build_sequences(enc: PromptEncoder, query: str, docs: list[str], relevant: list[bool],
                    rationales: list[str | None], with_answer: bool, with_reason: bool):
    """Right-padded tensors for one query's candidates, and the LM targets.

    Returns dict: input_ids, attention_mask [N, S]; score_at [N] (last prompt token);
    answer [N] (the yes/no id, predicted at score_at); reason_labels [N, S] (the token each
    position must predict on rationale spans, -100 elsewhere)."""
    yes, no = enc.word_id(YES), enc.word_id(NO)
    end = enc.enc(END_OF_TURN)
    rows, score_at, answer, spans = [], [], [], []
    for doc, rel, why in zip(docs, relevant, rationales):
        ids = enc.encode(query, doc)
        score_at.append(len(ids) - 1)
        word = yes if rel else no
        answer.append(word)
        span = None
        if with_answer or with_reason:
            ids = ids + [word]
        if with_reason and why:
            tail = enc.enc(RATIONALE_SEPARATOR + why)[:MAX_RATIONALE_TOKENS] + end
            span = (len(ids) - 1, len(ids) - 1 + len(tail))  # positions predicting the tail
            ids = ids + tail
        rows.append(ids)
        spans.append(span)
    feed = enc.pad(rows)
    labels = torch.full(feed["input_ids"].shape, -100, dtype=torch.long)
    ids_t = torch.from_numpy(feed["input_ids"])
    for r, span in enumerate(spans):
        if span:
            a, b = span
            labels[r, a:b] = ids_t[r, a + 1: b + 1]
    return {"input_ids": ids_t, "attention_mask": torch.from_numpy(feed["attention_mask"]),
            "score_at": torch.tensor(score_at), "answer": torch.tensor(answer), "reason_labels": labels}


def gpt_loss(model: RRAGpt, batch: dict, gains: torch.Tensor, n_queries: int, alpha: float, beta: float,
             loss_name: str = "listwise"):
    """``L_rank + alpha * L_cls + beta * L_reason`` and its parts (floats)."""
    out = model.lm.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], use_cache=False)
    hidden = out.last_hidden_state
    rows = torch.arange(hidden.shape[0])
    at_prompt_end = hidden[rows, batch["score_at"]]
    scores = model.rank_head(at_prompt_end).squeeze(-1)
    l_rank = LOSSES[loss_name](scores.view(n_queries, -1), gains.view(n_queries, -1))
    loss = l_rank
    parts = {"rank": l_rank.item()}
    if alpha:
        l_cls = F.cross_entropy(model.lm.lm_head(at_prompt_end), batch["answer"])
        loss = loss + alpha * l_cls
        parts["cls"] = l_cls.item()
    if beta:
        where = batch["reason_labels"] != -100
        if where.any():
            l_reason = F.cross_entropy(model.lm.lm_head(hidden[where]), batch["reason_labels"][where])
            loss = loss + beta * l_reason
            parts["reason"] = l_reason.item()
    return loss, parts


def pick_docs(item: dict, k: int, rng: random.Random) -> list[int]:
    """Indices of the candidates trained on this step: the ranked ones (best first), then a
    sample of the rest; at least one unranked document whenever there is one."""
    n = len(item["docs"])
    if not k or k >= n:
        return list(range(n))
    ranked = sorted((i for i in range(n) if item["gains"][i] > 0), key=lambda i: -item["gains"][i])
    rest = [i for i in range(n) if item["gains"][i] <= 0]
    rng.shuffle(rest)
    if rest and len(ranked) >= k:
        ranked = ranked[: k - 1]
    return sorted((ranked + rest)[:k])


def build_model(args, pad_token_id: int) -> RRAGpt:
    if args.init == "tiny":  # random-init small Llama (tests)
        lm = tiny_llama(args.vocab_size, seed=args.seed, layers=args.layers or 2, tie=not args.untied,
                            pad_token_id=pad_token_id)
    else:
        from .. import assets

        lm = load_smollm2(args.gguf or str(assets.smollm2_gguf()), args.layers)
    return RRAGpt(lm, seed=args.seed)


def ensure_tokenizer(args) -> tuple[str, int]:
    """tokenizer.json in the student folder (from --tokenizer or the GGUF) and the pad id."""
    from tokenizers import Tokenizer

    path = os.path.join(args.out, "tokenizer.json")
    if not os.path.exists(path):
        os.makedirs(args.out, exist_ok=True)
        if args.tokenizer:
            spec = json.load(open(args.tokenizer, encoding="utf-8"))
            spec["padding"], spec["truncation"] = None, None
            with open(path, "w", encoding="utf-8") as f:
                json.dump(spec, f, ensure_ascii=False)
        else:
            from .. import assets

            tokenizer_from_gguf(args.gguf or str(assets.smollm2_gguf()), path)
    pad = Tokenizer.from_file(path).token_to_id(args.pad_token)
    if pad is None:
        raise SystemExit(f"pad token {args.pad_token!r} is not in {path}")
    return path, pad


def _stack(parts: list[dict], pad_id: int) -> dict:
    width = max(p["input_ids"].shape[1] for p in parts)
    fill = {"input_ids": pad_id, "attention_mask": 0, "reason_labels": -100}
    out = {k: torch.cat([F.pad(p[k], (0, width - p[k].shape[1]), value=v) for p in parts], 0) for k, v in fill.items()}
    out["score_at"] = torch.cat([p["score_at"] for p in parts])
    out["answer"] = torch.cat([p["answer"] for p in parts])
    return out



class Student:
    """RRA-GPT's hooks for the shared training loop (``train.py``)."""

    kind = KIND

    def __init__(self, args):
        from ..rationales import default_out as default_rationales, load_rationales

        self.args = args
        self.rationales_path = args.rationales or default_rationales(args.labels)
        self.rationales = load_rationales(self.rationales_path) if args.beta else {}
        if args.beta and not self.rationales:
            raise SystemExit(f"--beta {args.beta} needs rationales: none in {self.rationales_path} "
                             "(run the rationales stage)")
        self.tok_path, self.pad_id = ensure_tokenizer(args)
        self.enc = PromptEncoder(self.tok_path, args.max_length, self.pad_id)

    def build(self) -> RRAGpt:
        model = build_model(self.args, self.pad_id)
        if self.args.rank_init == "answer":
            model.init_rank_head_from_answer(self.enc.word_id(YES), self.enc.word_id(NO))
        self.layers, self.hidden = model.lm.config.num_hidden_layers, model.lm.config.hidden_size
        return model

    def groups(self, model) -> list[dict]:
        head = list(model.rank_head.parameters())
        body = [p for n, p in model.named_parameters() if not n.startswith("rank_head")]
        return [{"params": body, "lr": self.args.lr}, {"params": head, "lr": self.args.head_lr}]

    def pick(self, item: dict, k: int, rng) -> list[int]:
        return pick_docs(item, k, rng)

    def encode(self, items: list[dict], picks: list[list[int]]) -> dict:
        parts = []
        for it, pick in zip(items, picks):
            why = self.rationales.get(it["qid"], {})
            parts.append(build_sequences(
                self.enc, it["query"], [it["docs"][j] for j in pick], [it["gains"][j] > 0 for j in pick],
                [why.get(it["doc_ids"][j]) for j in pick], with_answer=bool(self.args.alpha),
                with_reason=bool(self.args.beta)))
        return _stack(parts, self.pad_id)

    def loss(self, model, batch: dict, gains, n_queries: int):
        return gpt_loss(model, batch, gains, n_queries, self.args.alpha, self.args.beta, self.args.loss)

    def save(self, model, out_dir, config: dict) -> None:
        save_student(model, out_dir, config)

    def config(self, ds=None) -> dict:
        n_rat = sum(len(v) for q, v in self.rationales.items() if ds is None or q in {it["qid"] for it in ds.items})
        return {"student": "RRA-GPT", "base": "SmolLM2-135M-Instruct" if self.args.init == "gguf" else "tiny-random-llama",
                "layers": getattr(self, "layers", None), "hidden": getattr(self, "hidden", None),
                "rationales": os.path.basename(self.rationales_path) if self.rationales else None,
                "rationales_used": n_rat, "rank_init": self.args.rank_init, "alpha": self.args.alpha,
                "beta": self.args.beta, "max_length": self.args.max_length, "pad_token_id": self.pad_id,
                "docs_per_query": self.args.candidates}
