"""Files shared by every stage: JSON lines in and out, resumable appends, work folders.

Every stage writes JSON lines (one record a line). A stage that can take long appends one
record per finished unit of work (a query) and, when rerun, skips the units already in its
output file: that is the whole resume mechanism, so an interrupted run loses at most the
lines that were being written.
"""

from __future__ import annotations

import json
import os
import pathlib
import sys
from typing import Iterable, Iterator

MODELS_DIR = pathlib.Path(__file__).resolve().parent.parent
REPO_ROOT = MODELS_DIR.parent
WORK_DIR = pathlib.Path(os.environ.get("RRADISTILL_WORK", MODELS_DIR / "work"))


def read_jsonl(path: os.PathLike | str) -> list[dict]:
    return list(iter_jsonl(path))


def iter_jsonl(path: os.PathLike | str) -> Iterator[dict]:
    """Yield records; a truncated last line (a run killed mid-write) is skipped."""
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            try:
                yield json.loads(line)
            except json.JSONDecodeError:
                print(f"warning: skipping a truncated line in {path}", file=sys.stderr)


def write_jsonl(path: os.PathLike | str, records: Iterable[dict]) -> int:
    """Write atomically (temporary file, then rename); returns the number of records."""
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    n = 0
    with open(tmp, "w", encoding="utf-8") as f:
        for r in records:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
            n += 1
    os.replace(tmp, path)
    return n


class ResumableWriter:
    """Append-only JSON lines keyed by one field; knows which keys are already done.

    >>> w = ResumableWriter("labels.jsonl", key="qid")
    >>> todo = [q for q in queries if q["qid"] not in w.done]
    >>> w.append({"qid": ..., ...})   # flushed at once
    """

    def __init__(self, path: os.PathLike | str, key: str):
        self.path = pathlib.Path(path)
        self.key = key
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.done: set = set()
        if self.path.exists():
            self._repair_tail()
            self.done = {r[key] for r in iter_jsonl(self.path)}
        self._f = open(self.path, "a", encoding="utf-8")

    def _repair_tail(self) -> None:
        """Drop a partial last line left by a killed run, so appends start on a new line."""
        data = self.path.read_bytes()
        if data and not data.endswith(b"\n"):
            cut = data.rfind(b"\n") + 1
            self.path.write_bytes(data[:cut])

    def append(self, record: dict) -> None:
        self._f.write(json.dumps(record, ensure_ascii=False) + "\n")
        self._f.flush()
        self.done.add(record[self.key])

    def close(self) -> None:
        self._f.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def load_corpus(path) -> dict[str, dict]:
    return {d["doc_id"]: d for d in iter_jsonl(path)}


def load_queries(path, split: str | None = None) -> list[dict]:
    qs = read_jsonl(path)
    return [q for q in qs if split is None or split == "all" or q["split"] == split]


def write_json(path, obj) -> None:
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(obj, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def set_threads(n: int | None) -> None:
    """Limit CPU threads (torch and BLAS) so a shared machine keeps responding."""
    if not n:
        return
    os.environ.setdefault("OMP_NUM_THREADS", str(n))
    try:
        import torch

        torch.set_num_threads(n)
    except ImportError:
        pass


def default_model() -> pathlib.Path:
    """The model folder ``models/DEFAULT`` names (what ``make run`` and the benches serve)."""
    for line in (MODELS_DIR / "DEFAULT").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            return REPO_ROOT / line
    raise FileNotFoundError(f"{MODELS_DIR / 'DEFAULT'} names no model folder")
