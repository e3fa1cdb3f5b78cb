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

import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any

KEYWORD_MODES = ("off", "soft", "guaranteed")
FORM_CHOICES = ("free", "wujue", "qijue", "wulv", "qilv")  # textgen.forms.FORMS


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else f"{x:g}"


def _spec(default: Any, help: str, low: float | None = None, high: float | None = None,
          low_open: bool = False, step: float | None = None, choices: tuple | None = None):
    return field(default=default, metadata={
        "help": help, "min": low, "max": high, "low_open": low_open, "step": step, "choices": choices,
    })


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
        for f in fields(self):
            value = getattr(self, f.name)
            meta = f.metadata
            if f.name in ("seed", "length") and value is None:
                continue
            if meta["choices"] is not None:
                if value not in meta["choices"]:
                    raise ValueError(f"{f.name}: must be one of {', '.join(meta['choices'])}, got {value!r}")
                continue
            value = self._coerce(f.name, value, int if f.type in ("int", "int | None") else float)
            setattr(self, f.name, value)
            low, high = meta["min"], meta["max"]
            if meta["low_open"] and not value > low:
                raise ValueError(f"{f.name}: must be > {_num(low)} and <= {_num(high)}, got {value!r}")
            if not meta["low_open"] and not low <= value <= high:
                raise ValueError(f"{f.name}: must be between {_num(low)} and {_num(high)}, got {value!r}")
            if value > high:
                raise ValueError(f"{f.name}: must be > {_num(low)} and <= {_num(high)}, got {value!r}")

    @staticmethod
    def _coerce(name: str, value: Any, kind: type) -> int | float:
        # bool is an int subclass; "3" is not a number. Both are refused rather than guessed at.
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"{name}: must be a number, got {value!r}")
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"{name}: must be a finite number, got {value!r}")
        if kind is int:
            if isinstance(value, float) and not value.is_integer():
                raise ValueError(f"{name}: must be a whole number, got {value!r}")
            return int(value)
        return float(value)

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
    return {f.name: {"default": f.default, "type": f.type, **f.metadata} for f in fields(GenerationParams)}
