"""The worker process as the manager sees it: the machine lock, starting it, asking it to
stop, and following its events file into the job's record.

One at a time across processes: an exclusive `flock` on ``finetune/.train.lock``, inherited
by the worker, holds for exactly as long as a worker lives.
"""
from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import subprocess
import time
from pathlib import Path

from .. import REPO_ROOT
from .caps import Caps
from .errors import Busy
from .job import Job, busy_message, minutes
from .protocol import EVENTS, LOG, SPEC, STATE, read_events
from .storage import APP_RUN, LOCK, write_json


def machine_lock(root: Path) -> int:
    """The lock's file descriptor, held; Busy when a worker of any process runs."""
    fd = os.open(root / LOCK, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise Busy(busy_message(None)) from None
    return fd


def spawn(job: Job, lock_fd: int, *, python: str, resume: bool) -> None:
    """Start the job's worker (`python -m finetune.web.worker FOLDER`), passing it the lock."""
    write_json(job.folder / SPEC, {"config": {**job.config, "resume": resume}})
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false", "PYTHONUNBUFFERED": "1"}
    with open(job.folder / LOG, "ab") as log:
        job.proc = subprocess.Popen(
            [python, "-m", "finetune.web.worker", str(job.folder)], cwd=REPO_ROOT, env=env,
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, pass_fds=(lock_fd,),
            start_new_session=True)  # Ctrl-C in the app's terminal reaches the app, not the worker
    job.state, job.phase, job.started = "starting", "starting the training process", time.monotonic()
    job.stop_requested, job.stop_reason, job.first_step, job.last_step = None, "", None, None
    save_state(job)


def request_stop(job: Job, reason: str) -> None:
    """SIGTERM: the worker ends at the end of its current step, with a checkpoint."""
    if job.stop_requested is not None or job.proc is None:
        return
    job.stop_requested, job.stop_reason, job.state = time.monotonic(), reason, "stopping"
    with contextlib.suppress(ProcessLookupError):
        job.proc.terminate()


def save_state(job: Job) -> None:
    """What a later app run needs to tell this job's fate (`storage` recovers from it)."""
    write_json(job.folder / STATE, {"id": job.id, "state": job.state, "label": job.label,
                                     "message": job.message, "step": job.step, "app": APP_RUN,
                                     "pid": os.getpid(), "time": time.time()})


def follow(job: Job) -> None:
    """Apply the events the worker wrote since the last call."""
    events, job.offset = read_events(job.folder / EVENTS, job.offset)
    for event in events:
        if job.apply(event):
            save_state(job)


def poll(job: Job, caps: Caps) -> int | None:
    """Follow a running worker: its events, the time cap, the kill after the stop grace.
    Returns its exit code once it has exited (every event read), else None."""
    follow(job)
    code = job.proc.poll()
    now = time.monotonic()
    if code is None:
        if caps.max_seconds and job.stop_requested is None and now - job.started > caps.max_seconds:
            request_stop(job, f"by the time limit of {minutes(caps.max_seconds)}")
        elif job.stop_requested is not None and now - job.stop_requested > caps.stop_grace_s:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(job.proc.pid, signal.SIGKILL)
        return None
    follow(job)
    return code


def terminate(job: Job, grace_s: float) -> int:
    """Stop the worker now (SIGTERM, SIGKILL after `grace_s`); its exit code, every event read."""
    job.proc.terminate()
    try:
        job.proc.wait(grace_s)
    except subprocess.TimeoutExpired:
        job.proc.kill()
        job.proc.wait()
    follow(job)
    return job.proc.returncode
