"""Source ``man``: the Linux man-pages (sections 2, 3, 5, 7).

The NAME line's description ("open and possibly create a file") is the query; the
DESCRIPTION section, with the page's names, is the relevant document.
"""

from __future__ import annotations

import collections
import glob
import gzip
import os
import re

from .text import clip, norm_space

MAN_ROOT = "/usr/share/man"

FONT = re.compile(r"\\f[BIRP0-9]|\\f\(..|\\f\[[^\]]*\]")


def roff_to_text(lines: list[str]) -> str:
    out = []
    for line in lines:
        if line.startswith(".\\\"") or line.startswith("'\\\""):
            continue
        if line.startswith("."):
            parts = line.split(None, 1)
            macro = parts[0]
            if macro in (".B", ".I", ".BR", ".IR", ".RB", ".RI", ".BI", ".IB", ".SM", ".SB") and len(parts) > 1:
                words = re.findall(r'"[^"]*"|\S+', parts[1])
                out.append("".join(w.strip('"') for w in words))
            elif macro in (".TP", ".PP", ".P", ".LP", ".IP") and len(parts) > 1:
                out.append(parts[1].split()[0].strip('"'))
            continue
        out.append(line)
    text = "\n".join(out)
    text = FONT.sub("", text)
    text = text.replace("\\-", "-").replace("\\(em", "-").replace("\\(en", "-").replace("\\e", "\\")
    text = re.sub(r"\\\(.{2}|\\\[[^\]]*\]|\\[&|^%:]", "", text)
    return text


def parse_man(path: str):
    with gzip.open(path, "rt", encoding="utf-8", errors="replace") as f:
        lines = f.read().splitlines()
    if any(l.startswith(".so ") for l in lines[:5]) or not any("Linux man-pages" in l for l in lines[:60]):
        return None
    sections: dict[str, list[str]] = collections.OrderedDict()
    current = None
    for line in lines:
        if line.startswith(".SH"):
            current = line[3:].strip().strip('"').upper()
            sections[current] = []
        elif current:
            sections[current].append(line)
    name = norm_space(roff_to_text(sections.get("NAME", [])))
    if " - " not in name:
        return None
    names, desc = name.split(" - ", 1)
    body = roff_to_text(sections.get("DESCRIPTION", []))
    return names.strip(), desc.strip(), body


def source():
    docs, queries = [], []
    for sec in ("2", "3", "5", "7"):
        for path in sorted(glob.glob(f"{MAN_ROOT}/man{sec}/*.{sec}*.gz")):
            parsed = parse_man(path)
            if not parsed:
                continue
            names, desc, body = parsed
            # The page's names stay in the document (as a reader sees them); the NAME line's
            # description, which is the query, does not.
            text = clip(f"{names} ({sec}): {norm_space(body)}")
            if len(text) < 80 or len(desc.split()) < 3:
                continue
            page = os.path.basename(path).rsplit(".gz", 1)[0]
            doc_id = f"man-{page}"
            docs.append({"doc_id": doc_id, "source": "man", "lang": "en", "title": f"{names} ({sec})",
                         "text": text})
            queries.append({"source": "man", "text": desc, "lang": "en", "relevant": {doc_id: 1}})
    return docs, queries
