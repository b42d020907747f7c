"""Teachers: the listwise prompt, the answer parser, and the pluggable teacher back-ends.

What it owns: turning (query, 20 shuffled candidates) into one prompt, getting an answer
from a teacher, and turning the answer into an ordered list of candidate ids, robustly.

Prompt: the candidates get short ids ``[1]`` .. ``[20]`` in a shuffled order (the
pre-ranker's order must not leak); the teacher is asked for the relevant ones, most
relevant first, as ``[3] > [1] > [7]``, leaving the irrelevant ones out.

Parser (``parse_ranking``): takes bracketed ids if there are any, else bare numbers; drops
duplicates (keeps the first) and ids outside 1..n; records every problem it met:
``empty`` (no id at all), ``duplicate``, ``unknown_id``, ``prose`` (text other than ids and
separators), ``bare_numbers`` (no brackets). The label stage counts and logs these.

Back-ends (all return the raw answer text, so every teacher goes through the same parser):

- ``OpenAIChatTeacher``: any OpenAI-compatible ``/chat/completions`` endpoint; base URL,
  model and key from the environment (``RRADISTILL_TEACHER_BASE_URL``,
  ``RRADISTILL_TEACHER_MODEL``, ``RRADISTILL_TEACHER_API_KEY`` or ``OPENAI_API_KEY``).
  A local GGUF LLM is served over the same protocol on loopback (``llm_server``).
- ``ScoringTeacher``: a local scoring model (``scorers``) answering in the same format:
  the ``keep`` best candidates by score, best first; for fully offline runs.
"""

from __future__ import annotations

import json
import os
import random
import re
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field

SYSTEM_PROMPT = "You are an expert search relevance judge. You rank documents by how well they answer a query."

USER_TEMPLATE = """Query: {query}

Documents:
{documents}

Which documents are relevant to the query? List their ids, most relevant first, separated by ">", for example: [3] > [1] > [7]. Leave out the documents that are not relevant. Answer with the list only."""

DOC_CHARS = 320

BRACKET_ID = re.compile(r"\[\s*(\d{1,3})\s*\]")
BARE_ID = re.compile(r"(?<![\w.])(\d{1,3})(?![\w.])")
SEPARATORS = re.compile(r"[\s>,;.\-:|]+")


@dataclass
class ParseResult:
    order: list[int]  # 1-based candidate ids, best first, no duplicates, all in range
    issues: dict[str, int] = field(default_factory=dict)

    def add(self, issue: str, n: int = 1) -> None:
        self.issues[issue] = self.issues.get(issue, 0) + n


def parse_ranking(answer: str | None, n: int) -> ParseResult:
    """Parse a teacher's answer into candidate ids 1..n, best first (see module doc)."""
    res = ParseResult(order=[])
    text = (answer or "").strip()
    if not text:
        res.add("empty")
        return res
    ids = BRACKET_ID.findall(text)
    rest = BRACKET_ID.sub(" ", text)
    if not ids:
        ids = BARE_ID.findall(text)
        rest = BARE_ID.sub(" ", text)
        if ids:
            res.add("bare_numbers")
    if SEPARATORS.sub("", rest).strip():
        res.add("prose")
    seen = set()
    for raw in ids:
        i = int(raw)
        if not 1 <= i <= n:
            res.add("unknown_id")
            continue
        if i in seen:
            res.add("duplicate")
            continue
        seen.add(i)
        res.order.append(i)
    if not res.order:
        res.add("empty")
    return res


def shuffled(candidates: list[dict], seed: str) -> list[dict]:
    """The candidates in a deterministic per-query shuffle (seed: the query id)."""
    out = list(candidates)
    random.Random(seed).shuffle(out)
    return out


def build_messages(query: str, docs: list[dict], doc_chars: int = DOC_CHARS) -> list[dict]:
    lines = []
    for i, d in enumerate(docs, 1):
        text = re.sub(r"\s+", " ", d["text"])[:doc_chars]
        lines.append(f"[{i}] {text}")
    user = USER_TEMPLATE.format(query=query, documents="\n".join(lines))
    return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": user}]


class TeacherError(RuntimeError):
    pass


class RateLimiter:
    """At most ``rate`` calls per second across threads (0: unlimited)."""

    def __init__(self, rate: float):
        self.interval = 1.0 / rate if rate > 0 else 0.0
        self.lock = threading.Lock()
        self.next_at = 0.0

    def wait(self) -> None:
        if not self.interval:
            return
        with self.lock:
            now = time.monotonic()
            at = max(now, self.next_at)
            self.next_at = at + self.interval
        time.sleep(max(0.0, at - now))


class OpenAIChatTeacher:
    """Any OpenAI-compatible chat-completions endpoint (stdlib HTTP client)."""

    kind = "llm"

    def __init__(self, base_url: str | None = None, model: str | None = None, api_key: str | None = None,
                 timeout: float = 120.0, max_tokens: int = 120, temperature: float = 0.0,
                 retries: int = 3, rate: float = 0.0, doc_chars: int = DOC_CHARS):
        self.base_url = (base_url or os.environ.get("RRADISTILL_TEACHER_BASE_URL") or "").rstrip("/")
        self.model = model or os.environ.get("RRADISTILL_TEACHER_MODEL") or "default"
        self.api_key = api_key or os.environ.get("RRADISTILL_TEACHER_API_KEY") or os.environ.get("OPENAI_API_KEY")
        if not self.base_url:
            raise TeacherError("no endpoint: pass --base-url or set RRADISTILL_TEACHER_BASE_URL "
                               "(e.g. http://127.0.0.1:8089/v1)")
        self.timeout, self.max_tokens, self.temperature = timeout, max_tokens, temperature
        self.retries = retries
        self.limiter = RateLimiter(rate)
        self.doc_chars = doc_chars
        self.name = f"openai-chat:{self.model}"

    def answer(self, query: str, docs: list[dict]) -> str:
        return self.chat(build_messages(query, docs, self.doc_chars))

    def chat(self, messages: list[dict], max_tokens: int | None = None) -> str:
        """One chat completion (retried, rate-limited); the answer text ("" if none)."""
        body = json.dumps({
            "model": self.model,
            "messages": messages,
            "temperature": self.temperature,
            "max_tokens": max_tokens or self.max_tokens,
        }).encode()
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        last = None
        for attempt in range(self.retries + 1):
            self.limiter.wait()
            req = urllib.request.Request(self.base_url + "/chat/completions", data=body, headers=headers)
            try:
                with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                    payload = json.loads(resp.read())
                return payload["choices"][0]["message"].get("content") or ""
            except urllib.error.HTTPError as e:
                last = f"HTTP {e.code}: {e.read()[:200]!r}"
                if e.code not in (408, 409, 429) and e.code < 500:
                    break  # a client error will not get better by retrying
            except (urllib.error.URLError, TimeoutError, ConnectionError, KeyError, json.JSONDecodeError) as e:
                last = f"{type(e).__name__}: {e}"
            time.sleep(min(30.0, 0.5 * 2 ** attempt))
        raise TeacherError(f"{self.base_url}: {last}")


class ScoringTeacher:
    """A local scoring model answering in the listwise format: its ``keep`` best, best first."""

    kind = "scorer"

    def __init__(self, scorer, keep: int = 5):
        self.scorer = scorer
        self.keep = keep
        self.name = f"scorer:{scorer.name}"

    def answer(self, query: str, docs: list[dict]) -> str:
        scores = self.scorer.score(query, docs)
        order = sorted(range(len(docs)), key=lambda i: -scores[i])[: self.keep]
        return " > ".join(f"[{i + 1}]" for i in order)
