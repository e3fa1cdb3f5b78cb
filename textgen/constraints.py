"""Keyword modes. `off` adds nothing; `soft` and `guaranteed` bias decoding (issue 3)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence


@dataclass
class Constraints:
    processors: list[Any] = field(default_factory=list)
    stopping: list[Any] = field(default_factory=list)


def build_constraints(mode: str, *, tokenizer, keywords: Sequence[str], n: int, prompt_len: int,
                      max_new_tokens: int, end_ids: Sequence[int]) -> Constraints:
    if mode == "off" or not keywords:
        return Constraints()
    raise NotImplementedError(f"keyword_mode: {mode!r} is not available yet; use 'off'")
