"""Which keywords a text contains, and where (character spans for highlighting).

Coverage is judged on the decoded text, not on token ids, because a keyword can
appear through a tokenisation other than the one we would have chosen.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from .lang import has_cjk


@dataclass(frozen=True)
class Span:
    keyword: str
    start: int
    end: int


def find_keyword(text: str, keyword: str) -> Span | None:
    """First occurrence; Latin keywords match case-insensitively, CJK exactly."""
    if not keyword:
        return None
    if has_cjk(keyword):
        pos = text.find(keyword)
    else:
        # casefold can change length (ß → ss); lower() keeps indices aligned for nearly all text
        pos = text.lower().find(keyword.lower())
    return None if pos < 0 else Span(keyword, pos, pos + len(keyword))


def coverage(text: str, keywords: Sequence[str]) -> tuple[list[str], list[str], list[Span]]:
    """(covered, missing, spans) of `keywords` in `text`, in keyword order."""
    covered, missing, spans = [], [], []
    for kw in keywords:
        span = find_keyword(text, kw)
        if span is None:
            missing.append(kw)
        else:
            covered.append(kw)
            spans.append(span)
    return covered, missing, spans
