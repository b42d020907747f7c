"""Text helpers every source shares: whitespace, length caps, language, sentences.

A document's text is whitespace-normalised and capped at ``MAX_DOC_CHARS`` at a word
boundary (``clip``); its language is read from the text itself (``detect_lang``: two or more
Hangul syllables make it Korean), not from the file it came from, since translations leave
untranslated passages behind. ``sentences`` splits text into sentences for the pseudo-query
source (English and Korean sentence ends, including the Korean polite endings that close a
sentence without punctuation in help text).
"""

from __future__ import annotations

import re

MAX_DOC_CHARS = 2000
HANGUL = re.compile(r"[\uac00-\ud7a3]")
SENTENCE_END = re.compile(r"(?<=[.!?。])\s+(?=[^\s])|(?<=[다요죠까][.])\s*(?=\S)")


def detect_lang(text: str) -> str:
    return "ko" if len(HANGUL.findall(text)) >= 2 else "en"


def norm_space(text: str) -> str:
    return re.sub(r"\s+", " ", text.replace("\xa0", " ")).strip()


def clip(text: str, n: int = MAX_DOC_CHARS) -> str:
    text = norm_space(text)
    if len(text) <= n:
        return text
    cut = text.rfind(" ", 0, n)
    return text[: cut if cut > n // 2 else n]


def sentences(text: str) -> list[str]:
    """The sentences of ``text`` (normalised), in order."""
    return [s.strip() for s in SENTENCE_END.split(norm_space(text)) if s and s.strip()]


def words(text: str) -> int:
    return len(text.split())
