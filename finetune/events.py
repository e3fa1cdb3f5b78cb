"""What a fine-tuning run reports: its errors, its start, steps, evaluations and end, and the
callbacks that receive them (`train(config, callbacks=[...])`). Importing this is cheap (no torch)."""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol



@dataclass
class RunInfo:
    """What on_start receives: the shape of the run before its first step."""

    max_steps: int
    start_step: int  # > 0 when resuming
    rows_used: int
    eval_rows: int
    train_windows: int
    rows_split: int
    trainable_params: int
    total_params: int
    method: str
    base: str
    device: str
    precision: str
    world_size: int
    notes: list[str]
    sample_prompts: list[tuple[str, list[str]]]  # (title, keywords) of the texts on_eval receives


@dataclass
class TrainEvent:
    """What a plain-function callback receives; `kind` is start, step, eval or end."""

    kind: str
    step: int = 0
    max_steps: int = 0
    loss: float | None = None
    lr: float | None = None
    elapsed: float | None = None
    eval_loss: float | None = None
    samples: list[str] = field(default_factory=list)
    info: RunInfo | None = None
    result: "TrainResult | None" = None


class Progress(Protocol):
    """Callback methods train() calls; implement any subset."""

    def on_start(self, info: RunInfo) -> None: ...
    def on_step(self, step: int, max_steps: int, loss: float, lr: float, elapsed: float) -> None: ...
    def on_eval(self, step: int, eval_loss: float, samples: list[str]) -> None: ...
    def on_end(self, result: "TrainResult") -> None: ...


@dataclass
class TrainResult:
    """What a run did; `summary()` is what the CLI prints."""

    output_dir: str | None  # None when the run was stopped before the end
    stopped: bool
    checkpoint: str | None  # the checkpoint to resume from, when stopped
    global_step: int
    max_steps: int
    epochs: float
    train_loss: float | None
    eval_loss: float | None
    perplexity: float | None
    data: str
    language: str
    keywords_source: str
    rows_total: int
    rows_used: int
    rows_dropped: dict[str, int]
    eval_rows: int
    train_windows: int
    rows_split: int
    tokens_trained: int
    elapsed_s: float
    base: str
    scratch: bool
    method: str
    trained: str
    trainable_params: int
    total_params: int
    lr: float
    precision: str
    device: str
    world_size: int
    samples: list[dict[str, Any]]
    notes: list[str]
    name: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        dropped = ", ".join(f"{n} {why}" for why, n in self.rows_dropped.items())
        lines = [
            f"rows: {self.rows_used} used of {self.rows_total}" + (f" (dropped: {dropped})" if dropped else "")
            + f"; {self.eval_rows} held out for evaluation",
            f"windows: {self.train_windows} training examples; {self.rows_split} long texts were split "
            "into several windows",
            f"method: {self.method}, {self.trainable_params:,} of {self.total_params:,} parameters trained "
            f"({self.trained})",
            f"tokens trained: {self.tokens_trained:,} (non-padding) in {self.global_step} steps, "
            f"{self.epochs:.2f} epochs; {self.precision} on {self.device}"
            + (f" x{self.world_size}" if self.world_size > 1 else ""),
        ]
        if self.eval_loss is not None:
            lines.append(f"eval loss: {self.eval_loss:.4f}, perplexity: {self.perplexity:.2f}")
        lines.append(f"time: {duration(self.elapsed_s)}")
        lines += [f"note: {n}" for n in self.notes]
        if self.stopped:
            lines.append(f"stopped at step {self.global_step} of {self.max_steps}; checkpoint kept at "
                         f"{self.checkpoint}: run the same command with --resume to continue")
        else:
            lines.append(f"model: {self.output_dir}")
        return "\n".join(lines)


def duration(seconds: float) -> str:
    """"1h 02m 03s", "4m 05s", "6s": how long a run took or will take."""
    m, s = divmod(int(round(seconds)), 60)
    h, m = divmod(m, 60)
    return f"{h}h {m:02d}m {s:02d}s" if h else f"{m}m {s:02d}s" if m else f"{s}s"


class Listeners:
    """Calls each callback's method for an event, or the callback itself with a TrainEvent."""

    _METHODS = {"start": "on_start", "step": "on_step", "eval": "on_eval", "end": "on_end"}

    def __init__(self, callbacks: Iterable[Any]) -> None:
        self.callbacks = list(callbacks)

    def __call__(self, kind: str, **data: Any) -> None:
        for cb in self.callbacks:
            method = getattr(cb, self._METHODS[kind], None)
            if method is not None:
                method(*self._args(kind, data))
            elif callable(cb) and not any(hasattr(cb, m) for m in self._METHODS.values()):
                cb(TrainEvent(kind=kind, **data))

    @staticmethod
    def _args(kind: str, d: dict[str, Any]) -> tuple:
        if kind == "start":
            return (d["info"],)
        if kind == "step":
            return d["step"], d["max_steps"], d["loss"], d["lr"], d["elapsed"]
        if kind == "eval":
            return d["step"], d["eval_loss"], d["samples"]
        return (d["result"],)
