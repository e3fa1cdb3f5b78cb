"""Fine-tuning pipeline: CSV/TSV/JSONL ingestion, Trainer-based training, safe outputs.

Heavy modules (torch, transformers) load only when a name is first used:

>>> import finetune            # instant
>>> finetune.train             # doctest: +SKIP   (imports finetune.training)
"""
from __future__ import annotations

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent  # the checkout: assets/, runs/, app.py

_LAZY = {
    "TrainConfig": "finetune.config",
    "train": "finetune.training",
    "load_corpus": "finetune.data",
    "DataError": "finetune.errors",
    "DataLimits": "finetune.data",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'finetune' has no attribute {name!r}")
