"""Sources ``libreoffice-en`` / ``libreoffice-ko`` and ``gimp-en`` / ``gimp-ko``: application
help in English and Korean, the same pages in both languages.

LibreOffice's help (``libreoffice-help-en-us``, ``libreoffice-help-ko``: 2,560 pages each) and
GIMP's manual (``gimp-help-en``, ``gimp-help-ko``: 691 pages each; parts of the Korean one are
still English). Each page's HTML is read into headings and text blocks (navigation, headers,
footers, scripts and tables of contents left out): a heading opens a section that runs to the
next heading. A section with enough text is a document; its heading, when it reads like a
query (three words or more in English, two in Korean, not a bare label), is a query whose
relevant document is that section. The language of each query and document is read from its
text.
"""

from __future__ import annotations

import glob
import html.parser
import os
import re

from ..assets import text_path
from .text import clip, detect_lang, norm_space

LIBREOFFICE = {"en": "/usr/share/libreoffice/help/en-US/text", "ko": "/usr/share/libreoffice/help/ko/text"}
GIMP = {"en": "/usr/share/gimp/2.0/help/en", "ko": "/usr/share/gimp/2.0/help/ko"}
SKIP_TAGS = {"script", "style", "header", "footer", "aside", "nav", "head", "title"}
SKIP_CLASSES = {"navheader", "navfooter", "toc", "debug", "list-of-figures", "list-of-tables", "icontable",
                "iconcell", "breadcrumb", "relatedtopics", "indexterm", "titlepage-author"}
BLOCK_TAGS = {"p", "li", "dd", "dt", "td", "th", "pre", "div", "tr", "br", "table", "ul", "ol", "dl", "blockquote"}
HEADINGS = {"h1": 1, "h2": 2, "h3": 3, "h4": 4}
NUMBERING = re.compile(r"^(?:\d+(?:\.\d+)*\.?|[A-Z]\.\d+(?:\.\d+)*\.?)\s+")
GENERIC = {"description", "example", "examples", "options", "activating the tool", "tool options", "overview",
           "introduction", "note", "notes", "see also", "related topics", "settings", "syntax", "returns",
           "parameters", "arguments", "설명", "예", "예제", "참고", "옵션", "도구 옵션", "개요", "구문", "관련 항목",
           "도구 활성화", "매개 변수"}


class SectionReader(html.parser.HTMLParser):
    """Headings and text, in document order: ``[(level, heading), [text blocks]]``."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.sections: list[tuple[int, str, list[str]]] = [(0, "", [])]
        self.skip = 0
        self.stack: list[tuple[str, bool]] = []
        self.heading: int | None = None
        self.buf: list[str] = []

    def handle_starttag(self, tag, attrs):
        if tag in ("br", "img", "meta", "link", "input", "hr"):
            if tag == "br":
                self.buf.append(" ")
            return
        classes = set((dict(attrs).get("class") or "").split())
        skipping = tag in SKIP_TAGS or bool(classes & SKIP_CLASSES)
        self.stack.append((tag, skipping))
        if skipping:
            self.skip += 1
            return
        if self.skip:
            return
        if tag in HEADINGS:
            self._flush()
            self.heading = HEADINGS[tag]
        elif tag in BLOCK_TAGS:
            self._flush()

    def handle_endtag(self, tag):
        if tag in ("br", "img", "meta", "link", "input", "hr"):
            return
        # pop to the matching tag (HTML in the wild is not always well nested)
        while self.stack:
            t, skipping = self.stack.pop()
            if skipping:
                self.skip -= 1
            if t == tag:
                break
        if self.skip:
            return
        if tag in HEADINGS and self.heading is not None:
            text = norm_space("".join(self.buf))
            self.buf = []
            self.sections.append((self.heading, text, []))
            self.heading = None
        elif tag in BLOCK_TAGS:
            self._flush()

    def handle_data(self, data):
        if not self.skip:
            self.buf.append(data)

    def _flush(self):
        if self.heading is not None:
            return
        text = norm_space("".join(self.buf))
        self.buf = []
        if text:
            self.sections[-1][2].append(text)

    def close(self):
        super().close()
        self._flush()


def read_sections(path: str) -> list[tuple[int, str, str]]:
    """(level, heading, text) for each section of one page."""
    with open(path, encoding="utf-8", errors="replace") as f:
        page = f.read()
    # LibreOffice pages: only the display area is help text
    start = page.find('id="DisplayArea"')
    if start > 0:
        page = page[page.rfind("<", 0, start):]
    reader = SectionReader()
    reader.feed(page)
    reader.close()
    out = []
    for level, heading, blocks in reader.sections:
        text = norm_space(" ".join(b for b in blocks if b != heading))
        out.append((level, NUMBERING.sub("", heading).strip().rstrip(":").strip(), text))
    return out


def is_query(heading: str, lang: str) -> bool:
    h = heading.strip().lower().rstrip(":")
    if not h or h in GENERIC or len(h) > 200:
        return False
    if lang == "ko":
        return len(h.split()) >= 2 or len(re.findall(r"[\uac00-\ud7a3]", h)) >= 5
    return len(h.split()) >= 3


def source_pages(root: str, name: str, lang: str, pattern: str = "**/*.html"):
    docs, queries = [], []
    root = text_path(root)
    if not os.path.isdir(root):
        return docs, queries
    for path in sorted(glob.glob(os.path.join(root, pattern), recursive=True)):
        rel = os.path.relpath(path, root).rsplit(".", 1)[0]
        for n, (level, heading, text) in enumerate(read_sections(path)):
            if len(text) < 80 or not heading:
                continue
            doc_id = f"{name}-{rel}-{n}"
            doc_lang = detect_lang(text)
            docs.append({"doc_id": doc_id, "source": name, "lang": doc_lang, "title": heading,
                         "text": clip(text)})
            q_lang = detect_lang(heading)
            # a heading left in English over Korean text (or the reverse) is not a fair query
            if q_lang == doc_lang and is_query(heading, q_lang):
                queries.append({"source": name, "text": heading, "lang": q_lang, "relevant": {doc_id: 1}})
    return docs, queries


def source_libreoffice(lang: str):
    return source_pages(LIBREOFFICE[lang], f"libreoffice-{lang}", lang)


def source_gimp(lang: str):
    return source_pages(GIMP[lang], f"gimp-{lang}", lang, "*.html")
