"""Tokenization of the late-interaction student, exactly as the service does it.

What it owns: turning a query and its documents into the tensors of the ``late`` graph
(``students.late``), and Token Selection for the Term Control Layer.

- A query becomes ``<s> PREFIX QUERY </s>`` and a document ``<s> PREFIX DOCUMENT </s>``:
  the prefix (``query:`` / ``passage:``, e5's roles) and the text are tokenized separately
  with no special tokens, their ids concatenated, and the tokenizer's own single-sequence
  template (its post-processor) puts ``<s>``/``</s>`` around them. For the Metaspace
  (SentencePiece) tokenizer this is the same as tokenizing ``"PREFIX TEXT"`` in one go (a
  test checks it on the corpora), and it lets the service cut a document without ever
  cutting its prefix.
- A document is cut to ``window`` tokens in all (specials and prefix included), keeping its
  beginning (``side="right"``) or end (``"left"``). A query longer than ``query_window`` is
  an error in the service (422); in training it is cut from its end (``fit``) rather than
  dropped.
- Queries are deduplicated per batch: pairs point at their query's row (``query_index``), so
  a query's tower runs once however many documents it has.

Token Selection (``select_positions``): the positions of a document's tokens whose word also
occurs in the query: words are the pre-tokenizer's (whitespace-delimited), lower-cased,
punctuation stripped, stop words excluded; a Korean word (eojeol) also matches when one is
the other plus a particle or ending (a shared stem of two syllables or more), since Korean
attaches particles to the noun (``파이썬에서`` / ``파이썬``).
"""

from __future__ import annotations

import re

import numpy as np
import torch

STOP_WORDS = set("""a about above after again against all am an and any are as at be because been before
being below between both but by can could did do does doing down during each few for from further had
has have having he her here hers herself him himself his how i if in into is it its itself just me more
most my myself no nor not now of off on once only or other our ours ourselves out over own same she
should so some such than that the their theirs them themselves then there these they this those through
to too under until up very was we were what when where which while who whom why will with would you your
yours yourself yourselves can't don't i'm it's what's does 이 그 저 것 수 등 및 또는 그리고 하는 있는 있다 합니다
어떻게 무엇 왜 어디 언제 하나요 되나요 있나요 할 수""".split())
PUNCT = re.compile(r"[\W_]+")
HANGUL = re.compile(r"[\uac00-\ud7a3]")

QUERY_PREFIX = "query:"
DOCUMENT_PREFIX = "passage:"


def term_key(word: str) -> str:
    return PUNCT.sub("", word.replace("\u2581", " ").lower())


def _words_match(a: str, b: str) -> bool:
    if a == b:
        return True
    if len(a) >= 2 and len(b) >= 2 and HANGUL.match(a) and HANGUL.match(b):
        short, long_ = (a, b) if len(a) <= len(b) else (b, a)
        return long_.startswith(short) and len(long_) - len(short) <= 3
    return False


class TowerTokenizer:
    """The service's tokenization of the ``late`` kind, from a ``tokenizer.json``."""

    def __init__(self, path, window: int = 256, query_window: int = 128,
                 query_prefix: str = QUERY_PREFIX, document_prefix: str = DOCUMENT_PREFIX):
        from tokenizers import Tokenizer

        self.tok = Tokenizer.from_file(str(path))
        self.tok.no_padding()
        self.tok.no_truncation()
        self.window = window
        self.query_window = query_window
        self.query_prefix = self._ids(query_prefix)
        self.document_prefix = self._ids(document_prefix)
        self.pad_id = self.tok.token_to_id("<pad>")
        self.lead, self.trail = template(self.tok)
        self.overhead = len(self.lead) + len(self.trail)

    def _ids(self, text: str) -> list[int]:
        return self.tok.encode(text, add_special_tokens=False).ids if text else []

    def query(self, text: str, fit: bool = True) -> list[int]:
        body = self.tok.encode(text, add_special_tokens=False).ids
        room = self.query_window - self.overhead - len(self.query_prefix)
        if len(body) > room:
            if not fit:
                raise ValueError(f"query is {len(body)} tokens; the most is {room}")
            body = body[:room]
        return self.lead + self.query_prefix + body + self.trail

    def document(self, text: str, side: str = "right") -> tuple[list[int], list[str | None]]:
        """Document ids and, per id, its lower-cased word (None for specials and prefix)."""
        enc = self.tok.encode(text, add_special_tokens=False)
        room = self.window - self.overhead - len(self.document_prefix)
        ids, words = enc.ids, word_texts(enc)
        if len(ids) > room:
            ids, words = (ids[:room], words[:room]) if side == "right" else (ids[-room:], words[-room:])
        full = self.lead + self.document_prefix + ids + self.trail
        lead = len(self.lead) + len(self.document_prefix)
        return full, [None] * lead + words + [None] * len(self.trail)

    def query_words(self, text: str) -> set[str]:
        enc = self.tok.encode(text, add_special_tokens=False)
        return {w for w in word_texts(enc) if w and w not in STOP_WORDS}

    def feed(self, query: str, documents: list[str], with_selection: bool = False) -> dict:
        """Tensors for one query and its documents (one query row)."""
        return self.feed_many([(query, documents)], with_selection)

    def feed_many(self, groups: list[tuple[str, list[str]]], with_selection: bool = False) -> dict:
        """Tensors for several queries, each with its documents, stacked in order."""
        q_rows = [self.query(q) for q, _ in groups]
        d_rows, index, select = [], [], []
        for qi, (q, docs) in enumerate(groups):
            qwords = self.query_words(q) if with_selection else set()
            for d in docs:
                ids, words = self.document(d)
                d_rows.append(ids)
                index.append(qi)
                if with_selection:
                    select.append([1.0 if w and w not in STOP_WORDS and any(_words_match(w, x) for x in qwords)
                                   else 0.0 for w in words])
        out = {}
        out["query_ids"], out["query_mask"] = pad(q_rows, self.pad_id)
        out["input_ids"], out["attention_mask"] = pad(d_rows, self.pad_id)
        out["query_index"] = torch.tensor(index, dtype=torch.int64)
        if with_selection:
            width = out["input_ids"].shape[1]
            out["select"] = torch.tensor([s + [0.0] * (width - len(s)) for s in select], dtype=torch.float32)
        return out


def word_texts(enc) -> list[str | None]:
    """Per token: the lower-cased text of the pre-tokenizer word it belongs to."""
    words: dict[int, str] = {}
    for w, tok in zip(enc.word_ids, enc.tokens):
        if w is not None:
            words[w] = words.get(w, "") + tok
    return [term_key(words[w]) if w is not None else None for w in enc.word_ids]


def template(tok) -> tuple[list[int], list[int]]:
    """The ids the tokenizer's single-sequence template puts before and after the text."""
    enc = tok.encode("x", add_special_tokens=True)
    special = enc.special_tokens_mask
    first = special.index(0)
    last = len(special) - 1 - special[::-1].index(0)
    return enc.ids[:first], enc.ids[last + 1:]


def wrap(tok, ids: list[int]) -> list[int]:
    """The tokenizer's single-sequence template around ``ids``."""
    lead, trail = template(tok)
    return lead + list(ids) + trail


def pad(rows: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(r) for r in rows)
    ids = np.full((len(rows), width), pad_id, np.int64)
    mask = np.zeros((len(rows), width), np.int64)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = r
        mask[i, : len(r)] = 1
    return torch.from_numpy(ids), torch.from_numpy(mask)


def example_feed(vocab_size: int) -> dict:
    """A small feed with two queries and three pairs (for export tracing)."""
    q_ids = torch.tensor([[0, 5, 6, 7, 2, 1], [0, 8, 9, 10, 11, 2]], dtype=torch.int64) % vocab_size
    q_mask = (q_ids != 1).to(torch.int64)
    q_mask[0, 5] = 0
    d_ids = torch.tensor([[0, 12, 13, 14, 15, 16, 2], [0, 17, 18, 2, 1, 1, 1], [0, 19, 20, 21, 2, 1, 1]],
                         dtype=torch.int64) % vocab_size
    d_mask = torch.tensor([[1] * 7, [1, 1, 1, 1, 0, 0, 0], [1, 1, 1, 1, 1, 0, 0]], dtype=torch.int64)
    return {"query_ids": q_ids, "query_mask": q_mask, "input_ids": d_ids, "attention_mask": d_mask,
            "query_index": torch.tensor([0, 1, 0], dtype=torch.int64)}
