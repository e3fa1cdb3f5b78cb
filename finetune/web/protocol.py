"""How the app and a training worker talk: files in the job's folder. The manager writes
``spec.json`` (the TrainConfig) and starts ``python -m finetune.web.worker FOLDER``; the worker
appends one JSON object per event to ``events.jsonl`` (`EventWriter`, flushed at once) and
exits with a code that says how it ended; the manager reads the new lines (`read_events`) and
applies them to its record of the job (`apply_event`)."""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .job import Job

EVENTS, SPEC, STATE, LOG = "events.jsonl", "spec.json", "state.json", "worker.log"
EXIT_STOPPED, EXIT_USER_ERROR, EXIT_FAILED = 130, 2, 1


# -- the worker process ---------------------------------------------------------------------------
class EventWriter:
    """Appends one JSON object per line to events.jsonl, flushed at once."""

    def __init__(self, path: Path) -> None:
        self.fh = open(path, "a", encoding="utf-8")

    def __call__(self, kind: str, **data: Any) -> None:
        self.fh.write(json.dumps({"kind": kind, "time": round(time.time(), 3), **data}, ensure_ascii=False,
                                 default=str) + "\n")
        self.fh.flush()

    # train() callbacks
    def on_start(self, info) -> None:
        self("start", max_steps=info.max_steps, start_step=info.start_step, rows_used=info.rows_used,
             eval_rows=info.eval_rows, train_windows=info.train_windows, trainable_params=info.trainable_params,
             total_params=info.total_params, method=info.method, device=info.device, precision=info.precision,
             notes=info.notes, sample_prompts=[[t, list(k)] for t, k in info.sample_prompts])

    def on_step(self, step: int, max_steps: int, loss: float, lr: float, elapsed: float) -> None:
        self("step", step=step, max_steps=max_steps, loss=loss, lr=lr, elapsed=elapsed)

    def on_eval(self, step: int, eval_loss: float, samples: list[str]) -> None:
        self("eval", step=step, eval_loss=eval_loss, samples=list(samples))

    def on_end(self, result) -> None:
        self("end", result=result.to_dict())


def read_events(job: Job) -> list[dict[str, Any]]:
    """The events the worker appended since the last read (`job.offset` moves past them)."""
    try:
        with open(job.folder / EVENTS, "rb") as fh:
            fh.seek(job.offset)
            data = fh.read()
    except FileNotFoundError:
        return []
    end = data.rfind(b"\n") + 1  # a line still being written waits for the next read
    job.offset += end
    events = []
    for line in data[:end].splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if isinstance(event, dict):
            events.append(event)
    return events


def apply_event(job: Job, event: dict[str, Any]) -> bool:
    """Update `job` from one event of its worker; True when the job's state changed (running)."""
    kind, now = event.get("kind"), time.monotonic()
    if kind == "phase":
        job.phase = str(event.get("text", ""))
    elif kind == "start":
        job.max_steps, job.start_step = int(event["max_steps"]), int(event["start_step"])
        job.step = job.start_step
        job.losses = [p for p in job.losses if p[0] <= job.start_step]
        job.evals = [p for p in job.evals if p[0] <= job.start_step]
        job.prompts = [(str(t), list(k)) for t, k in event.get("sample_prompts", [])]
        job.phase = "training"
        if job.state == "starting":
            job.state = "running"
            return True
    elif kind == "step":
        job.step, job.max_steps = int(event["step"]), int(event["max_steps"])
        if event.get("loss") is not None:
            job.losses.append((job.step, float(event["loss"])))
        job.first_step = job.first_step or (now, job.step)
        job.last_step = (now, job.step)
    elif kind == "eval":
        step = int(event["step"])
        job.evals.append((step, float(event["eval_loss"])))
        job.samples = [{"title": t, "keywords": k, "text": str(text)}
                       for (t, k), text in zip(job.prompts, event.get("samples", []))]
        job.sample_step = step
    elif kind == "end":
        job.result = event.get("result")
    elif kind == "error":
        job.error = event
    return False
