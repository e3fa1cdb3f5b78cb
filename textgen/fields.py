"""Settings dataclasses whose fields carry their help and bounds: one rule engine for
`GenerationParams` and `finetune.TrainConfig`, so that a field is described once and checked
the same way wherever it is set (CLI flags, UI sliders, API calls).

>>> from dataclasses import dataclass
>>> @dataclass
... class Knobs:
...     n: int = spec(3, "how many", low=1, high=8)
...     def __post_init__(self):
...         check_fields(self)
>>> Knobs(n=9)
Traceback (most recent call last):
...
ValueError: n: must be between 1 and 8, got 9
"""
from __future__ import annotations

import math
from dataclasses import MISSING, field, fields
from pathlib import Path
from typing import Any


def spec(default: Any = MISSING, help: str = "", *, low: float | None = None, high: float | None = None,
         low_open: bool = False, step: float | None = None, choices: tuple | None = None):
    """A dataclass field with its help, bounds (`low_open`: the low bound itself is refused),
    slider step and allowed values; without a default the field is required."""
    meta = {"help": help, "min": low, "max": high, "low_open": low_open, "step": step, "choices": choices,
            "required": default is MISSING}
    return field(metadata=meta) if default is MISSING else field(default=default, metadata=meta)


def check_fields(obj: Any) -> None:
    """Check every field of a dataclass instance against its spec, coercing whole floats of int
    fields to int and ints of float fields to float; ValueError names the first bad field."""
    for f in fields(obj):
        kind = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
        value = _checked(f.name, getattr(obj, f.name), f.metadata, kind)
        setattr(obj, f.name, value)


def field_specs(cls: type) -> dict[str, dict[str, Any]]:
    """Default, type, help and bounds of every field, for CLIs and UIs."""
    return {f.name: {"default": None if f.default is MISSING else f.default, "type": str(f.type), **f.metadata}
            for f in fields(cls)}


def _checked(name: str, value: Any, meta: dict[str, Any], kind: str) -> Any:
    if meta["choices"] is not None:
        if value not in meta["choices"]:
            raise ValueError(f"{name}: must be one of {', '.join(map(str, meta['choices']))}, got {value!r}")
        return value
    if kind == "bool":
        if not isinstance(value, bool):
            raise ValueError(f"{name}: must be true or false, got {value!r}")
        return value
    if kind == "str":
        if not isinstance(value, (str, Path)):
            raise ValueError(f"{name}: must be text, got {type(value).__name__}")
        return value
    if value is None and "None" in kind:
        return value
    value = _number(name, value, int if kind.startswith("int") else float)
    low, high = meta["min"], meta["max"]
    if meta["low_open"] and not (value > low and (high is None or value <= high)):
        raise ValueError(f"{name}: must be > {_num(low)} and <= {_num(high)}, got {value!r}")
    if not meta["low_open"] and low is not None and not low <= value <= high:
        raise ValueError(f"{name}: must be between {_num(low)} and {_num(high)}, got {value!r}")
    return value


def _number(name: str, value: Any, kind: type) -> int | float:
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


def plain_number(x: float) -> str:
    """3.0 → "3", 0.90 → "0.9": a bound as people write it."""
    return str(int(x)) if float(x).is_integer() else f"{x:g}"


def _num(x: float | None) -> str:
    return "any" if x is None else plain_number(x)
