"""The training worker: ``python -m finetune.web.worker JOB_FOLDER``, started by the job manager.

Training runs in its own process, never in the web server's threads: a crash or an
out-of-memory kill ends the worker, not the app, and generation keeps answering meanwhile (the
worker runs at a lower CPU priority). SIGTERM sets the stop flag: `train()` ends at the end of
the current step with a checkpoint. The worker inherits the manager's machine lock and holds it
for as long as it lives.
"""
from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import threading
import traceback
from pathlib import Path
from typing import Any

from .protocol import EVENTS, EXIT_FAILED, EXIT_STOPPED, EXIT_USER_ERROR, SPEC, EventWriter

WORKER_NICE = 10  # generation in the web process comes first on a small CPU


def _watch_parent(stop: threading.Event) -> None:
    """Stop (with a checkpoint) when the app that started us is gone: nobody would take the model."""
    parent = os.getppid()

    def watch() -> None:
        while not stop.wait(1.0):
            if os.getppid() != parent:
                stop.set()

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def _describe(exc: BaseException) -> dict[str, str]:
    """The error event: messages written for users pass as they are; others get a prefix."""
    try:
        from textgen.loading import ModelLoadError

        from ..errors import USER_ERRORS

        clear: tuple[type, ...] = (ValueError, ModelLoadError, *USER_ERRORS)
    except Exception:  # noqa: BLE001 - the import itself may be what failed
        clear = (ValueError,)
    text = str(exc)
    if isinstance(exc, MemoryError) or "out of memory" in text.lower():
        text = "out of memory: lower the batch size or max length, or pick a smaller base model, and start again"
    elif not isinstance(exc, clear):
        text = f"training failed ({type(exc).__name__}): {text[:300]}"
    return {"type": type(exc).__name__, "message": text}


def _train(spec: dict[str, Any], events: EventWriter, stop: threading.Event):
    import transformers

    from ..config import TrainConfig
    from ..training import train

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    config = TrainConfig(**spec["config"])
    if stop.is_set():
        return None
    events("phase", text="reading the corpus and loading the base model")
    return train(config, callbacks=[events], should_stop=stop.is_set)


def worker_main(folder: str | Path) -> int:
    """Run the job in `folder` (its spec.json); report to events.jsonl. Exit 0 done, 130 stopped,
    2 refused (bad data, settings, base model), 1 failed."""
    folder = Path(folder)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    _watch_parent(stop)
    with contextlib.suppress(OSError):
        os.nice(WORKER_NICE)
    events = EventWriter(folder / EVENTS)
    events("phase", text="loading the training libraries")
    try:
        spec = json.loads((folder / SPEC).read_text(encoding="utf-8"))
        result = _train(spec, events, stop)
    except BaseException as exc:  # noqa: BLE001 - reported to the app, traceback to worker.log
        traceback.print_exc()
        events("error", **_describe(exc))
        return EXIT_USER_ERROR if isinstance(exc, ValueError) else EXIT_FAILED
    return EXIT_STOPPED if result is None or result.stopped else 0


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit("usage: python -m finetune.web.worker JOB_FOLDER (started by the web app's JobManager)")
    raise SystemExit(worker_main(sys.argv[1]))
