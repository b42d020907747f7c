"""Source ``info``: the GNU manuals installed as Info files (coreutils, grep, sed, find, ...).

Every node is a document (its text, menus and cross-reference noise removed); a node title
of three words or more is a query whose relevant document is that node ("Regular
expressions: selecting text" -> the node that explains them). English only.
"""

from __future__ import annotations

import glob
import gzip
import os
import re

from .text import clip, norm_space

INFO_ROOT = "/usr/share/info"
NODE_HEADER = re.compile(r"^File: [^,]+,\s+Node: ([^,\n]+)")
UNDERLINE = re.compile(r"^[*=\-.]{3,}\s*$")
MENU_LINE = re.compile(r"^\* [^:]+::?")
GENERIC = {"top", "introduction", "overview", "index", "concept index", "copying", "gnu free documentation license",
           "reporting bugs", "examples", "invoking", "contents"}


def _read(path: str) -> str:
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8", errors="replace") as f:
        return f.read()


def manual_files(root: str = INFO_ROOT) -> dict[str, list[str]]:
    """manual name -> its files in order (``find.info.gz``, ``find.info-1.gz``, ...)."""
    out: dict[str, list[str]] = {}
    for path in sorted(glob.glob(f"{root}/*.info*")):
        base = os.path.basename(path)
        name = base.split(".info")[0]
        out.setdefault(name, []).append(path)
    for name, files in out.items():
        files.sort(key=lambda p: (len(p), p))
    return out


def parse_nodes(text: str) -> list[tuple[str, str, str]]:
    """(node name, title line, body) for every node of an Info file."""
    out = []
    for chunk in text.split("\x1f"):
        lines = chunk.strip("\n").splitlines()
        if not lines:
            continue
        m = NODE_HEADER.match(lines[0])
        if not m:
            continue
        rest = lines[1:]
        while rest and not rest[0].strip():
            rest = rest[1:]
        title = m.group(1).strip()
        if len(rest) >= 2 and UNDERLINE.match(rest[1]):
            title = re.sub(r"^[\d.]+\s+", "", rest[0].strip())
            rest = rest[2:]
        body = []
        for line in rest:
            if line.startswith("* Menu:") or MENU_LINE.match(line) or UNDERLINE.match(line):
                continue
            if line.startswith("Tag Table:") or line.startswith("End Tag Table"):
                break
            body.append(line)
        out.append((m.group(1).strip(), title, "\n".join(body)))
    return out


def clean(text: str) -> str:
    text = re.sub(r"\*[Nn]ote\s+([^:]+)::?", r"\1", text)
    return text.replace("\u2018", "'").replace("\u2019", "'")


def source(root: str = INFO_ROOT):
    docs, queries = [], []
    for name, files in manual_files(root).items():
        if name.startswith("python"):
            continue  # the Python manuals are the python-docs source
        text = "\n".join(_read(p) for p in files)
        for n, (node, title, body) in enumerate(parse_nodes(text)):
            body = clean(body)
            if len(norm_space(body)) < 120 or "license" in title.lower():
                continue
            doc_id = f"info-{name}-{n}"
            docs.append({"doc_id": doc_id, "source": "info", "lang": "en", "title": f"{name}: {title}",
                         "text": clip(body)})
            q = norm_space(clean(title))
            if len(q.split()) >= 3 and q.lower() not in GENERIC:
                queries.append({"source": "info", "text": q, "lang": "en", "relevant": {doc_id: 1}})
    return docs, queries
