"""A generation request as the Generate tab and the API receive it, checked on the server:
every field, then this server's limits (`ServeLimits`) on top of `GenerationParams`' own."""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Sequence

import gradio as gr

from textgen.keywords import MAX_KEYWORDS, parse_keywords
from textgen.params import KEYWORD_MODES, GenerationParams
from textgen.prompt import check_title



KEYWORD_MODES_BEST_FIRST = ("guaranteed", "soft", "off")  # the first is the form's default


def keyword_list(value: Any) -> list[str]:
    """Tags or text → keywords. A tag stays one keyword even with spaces ("long road");
    separators inside a tag (a pasted "月, 花、雨") split it; a string is split as the CLI does."""
    if value is None:
        return []
    if isinstance(value, str):
        return parse_keywords(value)
    if isinstance(value, (list, tuple)):
        if not all(isinstance(v, str) for v in value):
            raise ValueError("keywords: each keyword must be text")
        if len(value) > MAX_KEYWORDS * 4:
            raise ValueError(f"keywords: at most {MAX_KEYWORDS} keywords are allowed")
        return parse_keywords(value)  # each tag one keyword, unless it holds separators
    raise ValueError(f"keywords: must be a list of keywords or a text, got {type(value).__name__}")


@dataclass(frozen=True)
class ServeLimits:
    """What one request may ask of this server, on top of `GenerationParams`' own bounds."""

    request_tokens: int = 2048  # n × max_new_tokens: 8 × 256, 4 × 512 …
    seconds: float = 60.0  # wall time of one generation; the texts so far are kept
    load_seconds: float = 120.0  # a request waits this long for its model to load

    @classmethod
    def from_env(cls) -> "ServeLimits":
        d = cls()
        return cls(request_tokens=env_int("TEXTGEN_MAX_REQUEST_TOKENS", d.request_tokens),
                   seconds=float(env_int("TEXTGEN_MAX_SECONDS", int(d.seconds))))


@dataclass
class Request:
    """A checked generation request."""

    title: str
    keywords: list[str]
    params: GenerationParams
    # the page's Length slider means "about this long, at most what fits": a value above a bound
    # that changed meanwhile (another model, a longer prompt) is lowered to it, not refused
    fit_length: bool = False


def check_request(title: Any, keywords: Any, keyword_mode: Any, *, modes: Sequence[str],
                  limits: ServeLimits | None = None, **numbers: Any) -> Request:
    """Validate every input server-side; raises gr.Error naming the field."""
    limits = limits or ServeLimits()
    try:
        title = check_title(title)
        words = keyword_list(keywords)
        if keyword_mode in KEYWORD_MODES and keyword_mode not in modes:
            raise ValueError(f"keyword_mode: {keyword_mode!r} is not available yet; "
                             f"choose one of {', '.join(modes)}")
        params = GenerationParams(keyword_mode=keyword_mode, **numbers)
        if params.n * params.max_new_tokens > limits.request_tokens:
            raise ValueError(f"max_new_tokens: n × max_new_tokens may be at most {limits.request_tokens} per "
                             f"request here, got {params.n} × {params.max_new_tokens} = "
                             f"{params.n * params.max_new_tokens}; ask for fewer candidates or shorter texts "
                             f"候选数 × 最大长度超出上限")
        params = params.replace(max_seconds=min(params.max_seconds, limits.seconds))
    except (ValueError, TypeError) as exc:
        raise gr.Error(str(exc), title="Invalid input 输入有误", print_exception=False) from None
    if not title and not words:
        raise gr.Error("title: give a title or at least one keyword 请填写标题或至少一个关键词",
                       title="Invalid input 输入有误", print_exception=False)
    return Request(title, words, params)


def env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "")
    try:
        return int(value) if value.strip() else default
    except ValueError:
        raise SystemExit(f"{name}: must be a whole number, got {value!r}") from None
