"""How the app and a training worker talk: files in the job's folder. The manager writes
``spec.json`` (the TrainConfig) and starts ``python -m finetune.web.worker FOLDER``; the worker
appends one JSON object per event to ``events.jsonl`` (`EventWriter`, flushed at once) and
exits with a code that says how it ended; the manager reads the new lines (`read_events`) and
applies them to its record of the job (`Job.apply`)."""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any


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


def read_events(path: Path, offset: int) -> tuple[list[dict[str, Any]], int]:
    """The events appended to `path` after byte `offset`, and the offset past them (a line still
    being written waits for the next read)."""
    try:
        with open(path, "rb") as fh:
            fh.seek(offset)
            data = fh.read()
    except FileNotFoundError:
        return [], offset
    end = data.rfind(b"\n") + 1
    events = []
    for line in data[:end].splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if isinstance(event, dict):
            events.append(event)
    return events, offset + end
