"""Keyword parsing: one place that turns user input into a clean keyword list.

>>> parse_keywords("machine learning, data")
['machine learning', 'data']
>>> parse_keywords("月 花 月")
['月', '花']
"""
from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable

MAX_KEYWORDS = 32
MAX_KEYWORD_CHARS = 40

# Explicit separators win; whitespace splits only when none of them is present,
# so that "machine learning, data" keeps its phrase.
_SEPARATORS = re.compile(r"[,，、;；|\n\r]+")
# Zero-width and bidi control characters carry no meaning in a keyword and
# make two visually equal keywords differ.
_INVISIBLE = re.compile("[\x00-\x08\x0e-\x1f\x7f\u200b-\u200f\u202a-\u202e\u2060-\u2064\ufeff]")


def _is_latin(text: str) -> bool:
    return all(ord(ch) < 0x2E80 for ch in text)


def _dedupe_key(word: str) -> str:
    # Latin script is compared case-insensitively; CJK has no case.
    return word.casefold() if _is_latin(word) else word


def strip_invisible(text: str) -> str:
    """NFC, without zero-width and bidi control characters (a title or keyword made only of
    them is empty: it would show nothing and still steer the model)."""
    return _INVISIBLE.sub("", unicodedata.normalize("NFC", text))


def _split(raw: str, *, whitespace: bool = True) -> list[str]:
    raw = strip_invisible(raw)
    if _SEPARATORS.search(raw):
        return _SEPARATORS.split(raw)
    return raw.split() if whitespace else [raw]


def parse_keywords(
    keywords: str | Iterable[str] | None,
    *,
    max_keywords: int = MAX_KEYWORDS,
    max_chars: int = MAX_KEYWORD_CHARS,
) -> list[str]:
    """Parse a keyword string or list into trimmed, de-duplicated keywords.

    Raises ValueError naming `keywords` when there are too many or one is too long.
    """
    if keywords is None:
        return []
    if isinstance(keywords, str):
        parts = _split(keywords)
    else:
        parts = []
        for item in keywords:
            if not isinstance(item, str):
                raise ValueError(f"keywords: each keyword must be text, got {type(item).__name__}")
            # a list item is one keyword ("long road") unless it holds explicit separators
            parts.extend(_split(item, whitespace=False))
    seen: set[str] = set()
    result: list[str] = []
    for part in parts:
        word = " ".join(part.split())  # trim and collapse inner whitespace
        if not word:
            continue
        key = _dedupe_key(word)
        if key in seen:
            continue
        if len(word) > max_chars:
            raise ValueError(
                f"keywords: '{word[:20]}…' has {len(word)} characters; at most {max_chars} are allowed"
            )
        seen.add(key)
        result.append(word)
        if len(result) > max_keywords:
            raise ValueError(f"keywords: at most {max_keywords} keywords are allowed")
    return result
