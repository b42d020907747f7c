"""Sources ``gnome-en`` / ``gnome-ko``: the GNOME desktop help in English and Korean.

Mallard pages (``gnome-user-docs``: 295 topics in each language, task-oriented: "Connect
to a wireless network"). A topic page is a document (its text, steps and notes, without the
page's own title and summary); its title and its one-line summary (``<desc>``) are queries
whose relevant document is that page. A page's sections with a title of their own and enough
text are documents too, their titles queries.
"""

from __future__ import annotations

import glob
import os
import xml.etree.ElementTree as ET

from ..assets import text_path
from .text import clip, detect_lang, norm_space

GNOME_HELP = {"en": "/usr/share/help/C/gnome-help", "ko": "/usr/share/help/ko/gnome-help"}
NS = "{http://projectmallard.org/1.0/}"
SKIP = {f"{NS}info", f"{NS}title", f"{NS}desc", f"{NS}links", "{http://projectmallard.org/if/1.0/}when"}


def text_of(el, skip=SKIP) -> str:
    parts = []

    def walk(e):
        if e.tag in skip:
            return
        if e.text:
            parts.append(e.text)
        for c in e:
            walk(c)
            if c.tail:
                parts.append(c.tail)
        parts.append(" ")

    walk(el)
    return norm_space("".join(parts))


def read_page(path: str):
    """(title, desc, body text, [(section title, section text)])."""
    root = ET.parse(path).getroot()
    title = root.find(f"{NS}title")
    desc = root.find(f"{NS}info/{NS}desc")
    sections = []
    for sec in root.iter(f"{NS}section"):
        st = sec.find(f"{NS}title")
        if st is not None:
            sections.append((text_of(st, set()), text_of(sec)))
    return (text_of(title, set()) if title is not None else "",
            text_of(desc, set()) if desc is not None else "", text_of(root), sections)


def source(lang: str):
    docs, queries = [], []
    root = text_path(GNOME_HELP[lang])
    name = f"gnome-{lang}"
    for path in sorted(glob.glob(f"{root}/*.page")):
        page = os.path.basename(path)[: -len(".page")]
        try:
            title, desc, body, sections = read_page(path)
        except ET.ParseError:
            continue
        if len(body) < 80:
            continue
        doc_id = f"{name}-{page}"
        docs.append({"doc_id": doc_id, "source": name, "lang": detect_lang(body), "title": title,
                     "text": clip(body)})
        for q in (title, desc.rstrip(".")):
            if q and len(q.split()) >= 2 and detect_lang(q) == detect_lang(body):
                queries.append({"source": name, "text": q, "lang": detect_lang(q), "relevant": {doc_id: 1}})
        for n, (st, stext) in enumerate(sections):
            if len(stext) < 200 or not st:
                continue
            sid = f"{doc_id}-s{n}"
            docs.append({"doc_id": sid, "source": name, "lang": detect_lang(stext), "title": st,
                         "text": clip(stext)})
            if len(st.split()) >= 2 and detect_lang(st) == detect_lang(stext):
                queries.append({"source": name, "text": st, "lang": detect_lang(st), "relevant": {sid: 1}})
    return docs, queries
