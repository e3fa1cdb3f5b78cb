"""The limits of fine-tunes started from the web app, and the settings the Fine-tune tab starts
with; checked before TrainConfig checks its own rules."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..config import DEFAULT_LR, METHODS

MANAGED = ("data", "out", "resume", "name", "steps_cap")  # fields the job manager sets itself


# What the Fine-tune tab starts with (TrainConfig fields), measured to visibly move a built-in
# model towards a corpus of 40-200 rows within 3 minutes on 2 CPU cores
# (benchmarks/finetune_defaults.py).
# LoRA at 2e-3 (the command line's 3e-4 moved perplexity by 3-9% here) for up to 10 epochs.
WEB_DEFAULTS: dict[str, Any] = dict(method="lora", epochs=10.0, max_steps=300, lr=2e-3, batch_size=4,
                                    max_length=128)


# The learning rate an empty box means, per method: the web default for LoRA, else TrainConfig's.
WEB_LR = {**{m: lr for m, lr in DEFAULT_LR.items() if m in METHODS}, "lora": 2e-3}


@dataclass
class Caps:
    """Limits on jobs started from the web app, so that one user cannot monopolise it."""

    max_steps: int | None = 300  # a job's max_steps must be 1..this
    max_seconds: float | None = 15 * 60  # wall time per worker, loading included
    stop_grace_s: float = 20.0  # after SIGTERM, SIGKILL
    # the tab's slider bounds, checked again here for the API (TrainConfig's own are wider)
    max_epochs: float = 20.0
    max_batch_size: int = 32
    max_length: int = 1024


def check_settings(caps: Caps, settings: dict[str, Any]) -> None:
    """Raise ValueError naming the first bad field: fields the manager sets, this app's caps,
    then TrainConfig's own rules."""
    from ..config import TrainConfig

    check_caps(caps, settings)
    try:
        TrainConfig(**{**settings, "data": "corpus.csv", "out": "model"})
    except TypeError as exc:
        raise ValueError(f"settings: {exc}") from None


def check_caps(caps: Caps, settings: dict[str, Any]) -> None:
    """Fields the manager sets itself, then the web app's bounds, before TrainConfig checks its
    own (types, lower bounds)."""
    bad = sorted(set(settings) & set(MANAGED))
    if bad:
        raise ValueError(f"{bad[0]}: is set by the job manager")
    if caps.max_steps:
        steps = settings.get("max_steps", 0)
        if isinstance(steps, bool) or not isinstance(steps, (int, float)) or not 1 <= steps <= caps.max_steps:
            raise ValueError(f"max_steps: must be 1 to {caps.max_steps} here (this app caps fine-tunes), "
                             f"got {steps!r} 步数超出上限")
    for name, high in (("epochs", caps.max_epochs), ("batch_size", caps.max_batch_size),
                       ("max_length", caps.max_length)):
        value = settings.get(name)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value > high:
            raise ValueError(f"{name}: at most {high:g} here (this app caps fine-tunes), got {value!r} "
                             f"超出上限")

