"""One fine-tuning job as the job manager keeps it (`Job`), and the snapshot the UI and the API
show of it (`JobView`)."""
from __future__ import annotations

import dataclasses
import math
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from .caps import Caps
from .protocol import EXIT_STOPPED

MODEL = "model"
ACTIVE = ("starting", "running", "stopping")
FINAL = ("done", "failed", "stopped")


@dataclass
class Upload:
    """The owner's current corpus file, already validated by `load_corpus`."""

    path: Path
    name: str  # the name the user's file had: shown, never used as a path
    report: Any  # finetune.data.DataReport
    keywords: str  # "column" | "auto"
    preview: list = field(default_factory=list)  # the first rows, as the report shows them


@dataclass(frozen=True)
class JobView:
    """A snapshot of a job for the UI or the API (`to_dict()` is JSON-ready)."""

    id: str
    state: str  # starting | running | stopping | done | failed | stopped
    phase: str  # what the worker is doing before its first step
    message: str
    label: str
    method: str
    step: int
    max_steps: int
    start_step: int
    elapsed_s: float
    eta_s: float | None
    losses: tuple[tuple[int, float], ...]  # (step, training loss)
    evals: tuple[tuple[int, float], ...]  # (step, eval loss)
    samples: tuple[dict[str, Any], ...]  # {"title", "keywords", "text"} of the last evaluation
    sample_step: int
    model_id: str | None
    resumable: bool
    stop_reason: str  # "by you", "by the time limit of 15 min" …
    result: dict[str, Any] | None  # eval_loss, perplexity, global_step, elapsed_s … when it ended
    form: dict[str, Any] = field(default_factory=dict)  # the settings as the page sent them
    library_id: str | None = None  # where the finished model is kept in My models
    library_note: str = ""  # why it is not (My models full …)
    resume_step: int | None = None  # the checkpoint's step, when resumable

    @property
    def active(self) -> bool:
        return self.state in ACTIVE

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["losses"] = [list(p) for p in self.losses]
        out["evals"] = [list(p) for p in self.evals]
        return out


@dataclass
class Job:
    """The manager's record of one job (guarded by the manager's lock)."""

    id: str
    owner: str
    folder: Path
    label: str
    config: dict[str, Any]
    created: float = field(default_factory=time.monotonic)
    state: str = "starting"
    phase: str = "starting the training process"
    message: str = ""
    proc: subprocess.Popen | None = None
    started: float = 0.0
    stop_requested: float | None = None
    stop_reason: str = ""
    max_steps: int = 0
    start_step: int = 0
    step: int = 0
    first_step: tuple[float, int] | None = None  # (time, step) of this worker's first step
    last_step: tuple[float, int] | None = None
    losses: list[tuple[int, float]] = field(default_factory=list)
    evals: list[tuple[int, float]] = field(default_factory=list)
    prompts: list[tuple[str, list[str]]] = field(default_factory=list)
    samples: list[dict[str, Any]] = field(default_factory=list)
    sample_step: int = 0
    result: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    model_id: str | None = None
    checkpoint: str | None = None
    ended: float | None = None
    detached: float | None = None
    offset: int = 0  # bytes of events.jsonl already read
    form: dict[str, Any] = field(default_factory=dict)
    upload: Upload | None = None  # the corpus as it was when the job started (name, report, preview)
    library_key: str | None = None
    published: Path | None = None  # the model's folder in My models, once it moved there
    library_id: str | None = None
    library_note: str = ""

    @property
    def model_path(self) -> Path:
        """Where the finished model is: in My models, or still in the job's folder."""
        return self.published or self.model_dir

    @property
    def model_dir(self) -> Path:
        return self.folder / MODEL

    @property
    def corpus(self) -> Path:
        return Path(self.config["data"])

    def eta(self, caps: Caps) -> float | None:
        """Seconds left, from the steps timed so far (None before two steps were timed: the
        time cap is a bound, not an estimate, and would say "15 min" of a 6-step job)."""
        now = time.monotonic()
        if not (self.first_step and self.last_step and self.last_step[1] > self.first_step[1]):
            return None
        per_step = (self.last_step[0] - self.first_step[0]) / (self.last_step[1] - self.first_step[1])
        eta = max(0.0, (self.max_steps - self.step) * per_step - (now - self.last_step[0]))
        if caps.max_seconds and self.state in ACTIVE:
            eta = min(eta, max(0.0, caps.max_seconds - (now - self.started)))
        return eta

    def view(self, caps: Caps) -> JobView:
        result = None
        if self.result:
            keep = ("global_step", "max_steps", "eval_loss", "perplexity", "train_loss", "elapsed_s", "trained",
                    "trainable_params", "total_params", "rows_used", "eval_rows", "device", "precision", "notes")
            result = {k: self.result.get(k) for k in keep}
        end = self.ended if self.ended is not None else time.monotonic()
        return JobView(
            id=self.id, state=self.state, phase=self.phase, message=self.message, label=self.label,
            method=self.config.get("method", ""), step=self.step, max_steps=self.max_steps,
            start_step=self.start_step, elapsed_s=max(0.0, end - self.started) if self.started else 0.0,
            eta_s=self.eta(caps) if self.state in ACTIVE else None, losses=tuple(self.losses),
            evals=tuple(self.evals), samples=tuple(dict(s) for s in self.samples), sample_step=self.sample_step,
            model_id=self.model_id, resumable=self.resumable, stop_reason=self.stop_reason, result=result,
            form=dict(self.form), library_id=self.library_id, library_note=self.library_note,
            resume_step=_checkpoint_step(self.checkpoint) if self.resumable else None)

    def apply(self, event: dict[str, Any]) -> bool:
        """Update the record from one event of its worker; True when its state changed (running)."""
        kind, now = event.get("kind"), time.monotonic()
        if kind == "phase":
            self.phase = str(event.get("text", ""))
        elif kind == "start":
            self.max_steps, self.start_step = int(event["max_steps"]), int(event["start_step"])
            self.step = self.start_step
            self.losses = [p for p in self.losses if p[0] <= self.start_step]
            self.evals = [p for p in self.evals if p[0] <= self.start_step]
            self.prompts = [(str(t), list(k)) for t, k in event.get("sample_prompts", [])]
            self.phase = "training"
            if self.state == "starting":
                self.state = "running"
                return True
        elif kind == "step":
            self.step, self.max_steps = int(event["step"]), int(event["max_steps"])
            if event.get("loss") is not None:
                self.losses.append((self.step, float(event["loss"])))
            self.first_step = self.first_step or (now, self.step)
            self.last_step = (now, self.step)
        elif kind == "eval":
            step = int(event["step"])
            self.evals.append((step, float(event["eval_loss"])))
            self.samples = [{"title": t, "keywords": k, "text": str(text)}
                            for (t, k), text in zip(self.prompts, event.get("samples", []))]
            self.sample_step = step
        elif kind == "end":
            self.result = event.get("result")
        elif kind == "error":
            self.error = event
        return False

    def conclude(self, code: int, last_checkpoint: Callable[[], Path | None]) -> bool:
        """The worker exited with `code`: mark the job stopped or failed with a message saying
        why, or return True when it trained to the end and its model is to be published."""
        result, error = self.result or {}, self.error
        stopped = result.get("stopped") or code == EXIT_STOPPED or (self.stop_requested is not None and not error)
        if code == 0 and result.get("output_dir") and not result.get("stopped"):
            return True
        if stopped:
            last = last_checkpoint()
            self.state, self.checkpoint = "stopped", str(last) if last else None
            reason = f" {self.stop_reason}" if self.stop_reason else ""
            step = int(last.name.rsplit("-", 1)[1]) if last else None
            self.message = (f"Stopped{reason} at step {self.step} of {self.max_steps}. "
                            + (f"Resume continues from step {step}." if step is not None
                               else "No checkpoint was saved yet, so it cannot be resumed."))
        elif error:
            self.state, self.message = "failed", str(error.get("message", "training failed"))[:500]
        else:
            how = f"killed by signal {-code}" if code < 0 else f"exit code {code}"
            hint = " (out of memory?)" if code == -signal.SIGKILL else ""
            self.state = "failed"
            self.message = f"The training process ended unexpectedly ({how}{hint}); nothing was saved as a model."
        return False

    @property
    def resumable(self) -> bool:
        return (self.state == "stopped" and self.checkpoint is not None and Path(self.checkpoint).is_dir()
                and self.corpus.is_file())


def minutes(seconds: float) -> str:
    """'~3 min' style rounding for ETAs and limits."""
    return f"{max(1, math.ceil(seconds / 60))} min"


def _checkpoint_step(path: str | None) -> int | None:
    try:
        return int(Path(path).name.rsplit("-", 1)[1]) if path else None
    except (IndexError, ValueError):
        return None


def busy_message(eta: float | None) -> str:
    if eta is None:
        return ("busy: another fine-tune is running on this server; try again in a few minutes. "
                "正在训练另一个模型，请几分钟后再试。")
    n = max(1, math.ceil(eta / 60))
    return (f"busy: another fine-tune is running on this server; try again in ~{n} min. "
            f"正在训练另一个模型，请约 {n} 分钟后再试。")
