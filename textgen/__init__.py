"""textgen: write a text from a title and a few keywords with a GPT-2 model.

>>> from textgen import Generator                       # doctest: +SKIP
>>> g = Generator.from_pretrained("auto")               # doctest: +SKIP
>>> for c in g.generate("春夜", "月, 花", n=2, seed=0):  # doctest: +SKIP
...     print(c.text, c.covered, c.missing)

Importing this package loads no model, no torch, and picks no device.
"""
from __future__ import annotations

from .keywords import parse_keywords
from .params import GenerationParams

_LAZY = {
    "Generator": "textgen.generator",
    "Candidate": "textgen.results",
    "ModelLoadError": "textgen.loading",
}

__all__ = ["Generator", "Candidate", "GenerationParams", "ModelLoadError", "parse_keywords"]


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'textgen' has no attribute {name!r}")
