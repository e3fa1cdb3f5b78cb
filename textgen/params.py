"""Sampling parameters: one typed dataclass whose fields carry their bounds and help.

The same metadata feeds the CLI flags and the UI's sliders, so the bounds live here only.

>>> GenerationParams(n=3, temperature=0.8).n
3
>>> GenerationParams(top_p=1.5)
Traceback (most recent call last):
...
ValueError: top_p: must be > 0 and <= 1, got 1.5
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

from .fields import check_fields, field_specs, spec

KEYWORD_MODES = ("off", "soft", "guaranteed")
FORM_CHOICES = ("free", "wujue", "qijue", "wulv", "qilv")  # textgen.forms.FORMS


def _spec(default: Any, help: str, low: float | None = None, high: float | None = None, **rules: Any):
    # bounds by position: the table below reads as "default, help, low, high"
    return spec(default, help, low=low, high=high, **rules)


@dataclass
class GenerationParams:
    """How to sample. Every field is checked in __post_init__; errors name the field."""

    n: int = _spec(3, "number of candidates, sampled in one batch", 1, 8, step=1)
    max_new_tokens: int = _spec(120, "tokens to generate at most per candidate", 1, 1024, step=1)
    length: int | None = _spec(None, "length of each text in the reader's units, characters (字) for Chinese and "
                               "words for English; turned into a token budget with the tokenizer's measured "
                               "ratio, so the text may be a little shorter or longer (empty: max_new_tokens)",
                               1, 4000, step=1)
    temperature: float = _spec(0.9, "sampling temperature; lower is more conservative", 0.0, 5.0,
                               low_open=True, step=0.05)
    top_k: int = _spec(30, "sample only from the k most likely tokens (0 = no limit)", 0, 1000, step=1)
    top_p: float = _spec(0.9, "nucleus sampling: smallest token set with this total probability",
                         0.0, 1.0, low_open=True, step=0.01)
    repetition_penalty: float = _spec(1.2, "penalty for repeating generated tokens (1 = none)", 1.0, 3.0,
                                      step=0.05)
    seed: int | None = _spec(None, "random seed; the same seed gives the same output (empty = random)",
                             0, 2**32 - 1, step=1)
    keyword_mode: str = _spec("off", "off: keywords only condition the prompt; soft: nudge towards "
                              "unused keywords; guaranteed: every keyword appears", choices=KEYWORD_MODES)
    form: str = _spec("free", "Chinese poem form: free, wujue 五言绝句 (4×5), qijue 七言绝句 (4×7), wulv 五言律诗 "
                              "(8×5), qilv 七言律诗 (8×7); a form sets the length", choices=FORM_CHOICES)
    rhyme: bool = _spec(True, "with a form: the even lines end in one rhyme group", choices=(True, False))
    max_seconds: float = _spec(120.0, "stop generating after this many seconds, keeping the text so far",
                               0.0, 600.0, low_open=True, step=1)

    def __post_init__(self) -> None:
        check_fields(self)

    def replace(self, **changes: Any) -> "GenerationParams":
        """A copy with some fields changed (validated again)."""
        unknown = set(changes) - {f.name for f in fields(self)}
        if unknown:
            raise ValueError(f"unknown parameter(s): {', '.join(sorted(unknown))}")
        return GenerationParams(**{**asdict(self), **changes})

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def param_specs() -> dict[str, dict[str, Any]]:
    """Bounds, defaults and help of every field, for CLIs and UIs."""
    return field_specs(GenerationParams)
