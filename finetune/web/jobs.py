"""Training jobs for the web app: one worker process at a time, reporting through a file.

>>> manager = JobManager(registry.home, registry)                         # doctest: +SKIP
>>> upload, rows = manager.save_upload(owner, "poems.csv")               # doctest: +SKIP
>>> manager.start(owner, {"method": "lora", "max_steps": 60}, label="poems")   # doctest: +SKIP
>>> manager.view(owner).state, manager.view(owner).step                   # doctest: +SKIP
('running', 12)
>>> manager.stop(owner)           # the worker stops after this step and keeps a checkpoint  # doctest: +SKIP

Why a process. Training runs ``python -m finetune.web.jobs JOB_FOLDER`` (`worker_main`), never in
the web server's threads: a crash or an out-of-memory kill ends the worker, not the app, and
generation keeps answering meanwhile (the worker runs at a lower CPU priority). The worker
appends one JSON object per event to ``events.jsonl``; a thread of the manager reads it.

Stop. SIGTERM sets the worker's stop flag: `train()` ends at the end of the current step with
a checkpoint (resumable with `resume`). A worker that has not ended `Caps.stop_grace_s` later
gets SIGKILL. The manager sends the same SIGTERM when a job passes `Caps.max_seconds`; a job's
steps are capped at `Caps.max_steps`. The command line (`python -m finetune`) has no caps.

One at a time. The manager runs one job; across processes an exclusive `flock` on
``finetune/.train.lock``, inherited by the worker, holds for exactly as long as a worker lives.
Others get `Busy` with the running job's ETA.

Layout under the data folder (blocked from gradio's file route)::

    finetune/<random>/               one folder per owner (session), name not derived from it
        owner.json                   which app process made it
        upload-<random>.csv          the owner's current upload (deleted when the session ends)
        <job id>/                    128 random bits; the page keeps it to re-attach after a reload
            spec.json  events.jsonl  worker.log  state.json
            corpus.csv               the job's own link to the upload (deleted once it is done)
            model/                   the published model (atomic, `finetune.checkpoints`)
            model.checkpoints/       while training

A job whose worker died (crash, kill, or an app restart mid-training) is marked
failed and its model is never registered. No gradio here: the UI turns the exceptions into
`gr.Error`.
"""
from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import json
import logging
import math
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import threading
import time
import traceback
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import REPO_ROOT
from ..config import DEFAULT_LR, METHODS
from .library import Library, LibraryError, LibraryItem, check_key
from .names import file_stem

log = logging.getLogger(__name__)

JOBS_DIR = "finetune"
EVENTS, SPEC, STATE, LOG, OWNER = "events.jsonl", "spec.json", "state.json", "worker.log", "owner.json"
LOCK = ".train.lock"
MODEL = "model"
PREVIEW_ROWS = 8
CORPUS_SUFFIXES = (".csv", ".tsv", ".txt", ".jsonl", ".json")
SPREADSHEET_SUFFIXES = (".xlsx", ".xls", ".ods", ".numbers")
ACTIVE = ("starting", "running", "stopping")
FINAL = ("done", "failed", "stopped")
MANAGED = ("data", "out", "resume", "name")  # fields the manager sets itself
WORKER_NICE = 10  # generation in the web process comes first on a small CPU
EXIT_STOPPED, EXIT_USER_ERROR, EXIT_FAILED = 130, 2, 1
# Tells this process's managers from those of an app that ran before on the same data folder.
_APP = secrets.token_hex(8)
_HUB_REPO = re.compile(r"^[A-Za-z0-9][\w.-]{0,95}/[A-Za-z0-9][\w.-]{0,95}$")


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


class Busy(RuntimeError):
    """Another job runs; `eta_s` is its expected remaining time (None when unknown)."""

    def __init__(self, message: str, eta_s: float | None = None) -> None:
        super().__init__(message)
        self.eta_s = eta_s


class JobError(ValueError):
    """A request the manager refuses (no upload yet, nothing to stop, not done yet …)."""


class HubError(RuntimeError):
    """Pushing to the Hugging Face Hub failed; the message never contains the token."""


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

    @property
    def resumable(self) -> bool:
        return (self.state == "stopped" and self.checkpoint is not None and Path(self.checkpoint).is_dir()
                and self.corpus.is_file())


def minutes(seconds: float) -> str:
    """'~3 min' style rounding for ETAs and limits."""
    return f"{max(1, math.ceil(seconds / 60))} min"


def duration(seconds: float) -> str:
    m, s = divmod(int(round(seconds)), 60)
    return f"{m}m {s:02d}s" if m else f"{s}s"


class JobManager:
    """Starts, watches, stops and cleans up fine-tuning jobs for the owners of a web app.

    `owner` is who a request belongs to (`finetune.web.registry.owner_from_request`); every method
    only ever shows or touches that owner's jobs. Thread-safe; one background thread watches
    the running worker and removes what sessions left behind after `retain_s`.
    """

    def __init__(self, home: str | Path, registry: Any = None, *, caps: Caps | None = None,
                 retain_s: float = 3600.0, keep_per_owner: int = 3, poll_s: float = 0.25,
                 python: str = sys.executable) -> None:
        self.root = Path(home).expanduser().resolve() / JOBS_DIR
        self.root.mkdir(parents=True, exist_ok=True)
        self.registry = registry
        self.caps = caps or Caps()
        self.retain_s, self.keep_per_owner, self.poll_s, self.python = retain_s, keep_per_owner, poll_s, python
        self._lock = threading.RLock()
        self._folders: dict[str, Path] = {}
        self._uploads: dict[str, Upload] = {}
        self._jobs: dict[str, Job] = {}
        self._running: Job | None = None
        self._session_files: dict[str, list[Path]] = {}
        self._stale: dict[Path, float] = {}
        self._closed = threading.Event()
        self._token = secrets.token_hex(8)  # marks the owner folders this manager made
        self.library = Library(home)
        self._claimed: dict[str, set[str]] = {}  # owner -> model ids registered from My models
        self._recover()
        self._thread = threading.Thread(target=self._watch, name="textgen-jobs", daemon=True)
        self._thread.start()

    # -- uploads ---------------------------------------------------------------------------
    def save_upload(self, owner: str, src: str | Path, *, keywords: str = "column") -> tuple[Upload, list]:
        """Copy an uploaded file into the owner's folder and validate it; returns (upload, rows).

        The new upload replaces the owner's previous one. Raises DataError (bad file)."""
        from ..data import DataError

        _check_owner(owner)
        name = Path(src).name
        suffix = Path(name).suffix.lower()
        if suffix in SPREADSHEET_SUFFIXES:
            raise DataError(f"file: {name[:80]!r} is a spreadsheet; save it as CSV UTF-8 and upload that "
                            "(Excel: File › Save As › CSV UTF-8; LibreOffice: Save As › Text CSV, UTF-8) "
                            "请将表格另存为 UTF-8 编码的 CSV 文件后再上传")
        if suffix not in CORPUS_SUFFIXES:
            raise DataError(f"file: {name[:80]!r} is not a .csv, .tsv, .txt, .jsonl or .json file "
                            "请上传 CSV、TSV、TXT、JSONL 或 JSON 文件")
        with self._lock:
            dest = self._folder(owner) / f"upload-{secrets.token_hex(8)}{suffix}"
        shutil.copyfile(src, dest)
        try:
            upload, rows = self._validate(dest, name, keywords)
        except BaseException:
            dest.unlink(missing_ok=True)
            raise
        with self._lock:
            old = self._uploads.get(owner)
            self._uploads[owner] = upload
        if old is not None and old.path != dest:
            old.path.unlink(missing_ok=True)
        return upload, rows

    def reload_upload(self, owner: str, *, keywords: str) -> tuple[Upload, list]:
        """Validate the owner's current upload again, e.g. with another keywords mode."""
        with self._lock:
            upload = self._uploads.get(owner)
        if upload is None or not upload.path.is_file():
            raise JobError("data: upload a corpus first 请先上传语料")
        upload, rows = self._validate(upload.path, upload.name, keywords)
        with self._lock:
            self._uploads[owner] = upload
        return upload, rows

    def upload(self, owner: str) -> Upload | None:
        with self._lock:
            return self._uploads.get(owner)

    @staticmethod
    def _validate(path: Path, name: str, keywords: str) -> tuple[Upload, list]:
        from ..data import DataError, load_corpus

        try:
            rows, report = load_corpus(path, keywords=keywords)
        except DataError as exc:  # the messages name our copy; the user knows their own name
            raise DataError(str(exc).replace(str(path), name)) from None
        return Upload(path, name, report, keywords, preview=list(rows[:PREVIEW_ROWS])), rows

    # -- starting and stopping ---------------------------------------------------------------
    def start(self, owner: str, settings: dict[str, Any], *, label: str, form: dict[str, Any] | None = None,
              library_key: str | None = None) -> JobView:
        """Train on the owner's upload with `settings` (TrainConfig fields but data/out/resume/name).
        Without a current upload, a stopped job's corpus is used again ("start over").

        `form` is kept to show the settings again after a reload; with `library_key` (the
        browser's secret, see `Library`) the finished model is kept in that browser's My models.
        Raises Busy (another job runs), JobError (no upload, a job of yours runs) or ValueError
        naming the field (settings out of bounds or over the caps)."""
        from .registry import clean_label
        from ..config import TrainConfig

        _check_owner(owner)
        label = clean_label(label)
        if library_key is not None:
            check_key(library_key)
        bad = sorted(set(settings) & set(MANAGED))
        if bad:
            raise ValueError(f"{bad[0]}: is set by the job manager")
        self._check_caps(settings)
        with self._lock:
            self._check_free(owner)
            upload = self._uploads.get(owner)
            if upload is None or not upload.path.is_file():
                upload = self._stopped_corpus(owner)
            if upload is None:
                raise JobError("data: upload a corpus first 请先上传语料")
            job_id = secrets.token_hex(16)
            folder = self._folder(owner) / job_id
            try:
                config = TrainConfig(**{**settings, "keywords": upload.keywords, "name": label,
                                        "data": str(folder / f"corpus{upload.path.suffix}"),
                                        "out": str(folder / MODEL)})
            except TypeError as exc:
                raise ValueError(f"settings: {exc}") from None
            job = Job(job_id, owner, folder, label, config.to_dict(), form=dict(form or {}), upload=upload,
                      library_key=library_key)
            lock_fd = self._machine_lock()
            try:
                folder.mkdir(mode=0o700)
                _link_or_copy(upload.path, job.corpus)
                self._spawn(job, lock_fd, resume=False)
            except BaseException:
                shutil.rmtree(folder, ignore_errors=True)
                raise
            finally:
                os.close(lock_fd)
            self._jobs[job.id] = job
            self._running = job
            self._trim(owner)
            return job.view(self.caps)

    def _stopped_corpus(self, owner: str) -> Upload | None:
        job = self._latest(owner)
        if job is None or job.state != "stopped" or job.upload is None or not job.corpus.is_file():
            return None
        return dataclasses.replace(job.upload, path=job.corpus)

    def job_upload(self, owner: str | None) -> Upload | None:
        """The corpus the owner's latest job was started with (its report, after a reload)."""
        with self._lock:
            job = self._latest(owner)
            return job.upload if job else None

    def resume(self, owner: str) -> JobView:
        """Continue the owner's stopped job from its last checkpoint."""
        with self._lock:
            job = self._latest(owner)
            if job is None or not job.resumable:
                raise JobError("resume: you have no stopped fine-tune with a checkpoint to continue")
            self._check_free(owner)
            lock_fd = self._machine_lock()
            try:
                self._spawn(job, lock_fd, resume=True)
            finally:
                os.close(lock_fd)
            job.message, job.result, job.error, job.ended = "", None, None, None
            self._running = job
            return job.view(self.caps)

    def stop(self, owner: str, reason: str = "by you") -> JobView:
        """Ask the owner's running job to stop; it ends at the end of its current step."""
        with self._lock:
            job = self._latest(owner)
            if job is None or job.state not in ACTIVE:
                raise JobError("stop: you have no fine-tune running")
            self._request_stop(job, reason)
            return job.view(self.caps)

    def view(self, owner: str | None) -> JobView | None:
        """The owner's latest job, or None."""
        with self._lock:
            job = self._latest(owner)
            return job.view(self.caps) if job else None

    def busy(self, owner: str | None) -> str | None:
        """A "busy, try again in ~N min" message when someone else's job runs, else None."""
        with self._lock:
            job = self._running
            if job is None or job.owner == owner:
                return None
            return _busy_message(job.eta(self.caps))

    def adopt(self, job_id: Any, owner: str) -> JobView | None:
        """Re-attach a job to the session that holds its id (the page after a reload).

        The id is the job's 128-bit random name, which only its own browser keeps; a finished
        model moves with it (registered again for the new session)."""
        if not isinstance(job_id, str) or not owner:
            return None
        with self._lock:
            job = self._jobs.get(job_id)
            if job is None:
                return None
            if job.owner != owner:
                if job.model_id and self.registry is not None:
                    self._unregister(job)
                    job.model_id = self._register(job, owner)
                self._folders.setdefault(owner, job.folder.parent)
                job.owner = owner
            job.detached = None
            return job.view(self.caps)

    def release(self, owner: str | None) -> None:
        """The owner's session ended: delete their upload and downloads now; keep their jobs
        for `retain_s` (a reload re-attaches), then remove them."""
        if owner is None:
            return
        with self._lock:
            upload = self._uploads.pop(owner, None)
            files = self._session_files.pop(owner, [])
            claimed = self._claimed.pop(owner, set())
        for model_id in claimed:  # kept on disk: the next session of this browser claims them again
            with contextlib.suppress(ValueError):
                self.registry.unregister(model_id, owner)
        with self._lock:
            self._folders.pop(owner, None)
            now = time.monotonic()
            for job in self._jobs.values():
                if job.owner == owner:
                    job.detached = now
        for path in ([upload.path] if upload else []) + files:
            _remove_path(path)

    def keep_until_release(self, owner: str, path: str | Path) -> None:
        """Delete `path` (a download prepared for this owner) when their session ends."""
        with self._lock:
            self._session_files.setdefault(owner, []).append(Path(path))

    def worker_pid(self, owner: str) -> int | None:
        """The process id of the owner's running worker (for operators and tests)."""
        with self._lock:
            job = self._latest(owner)
            return job.proc.pid if job and job.proc else None

    def close(self) -> None:
        """Stop the watcher and any running worker (SIGTERM, then SIGKILL after the grace)."""
        self._closed.set()
        self._thread.join(timeout=5)
        with self._lock:
            job = self._running
            if job is None or job.proc is None:
                return
            job.stop_reason = job.stop_reason or "because the app shut down"
            job.proc.terminate()
            try:
                job.proc.wait(self.caps.stop_grace_s)
            except subprocess.TimeoutExpired:
                job.proc.kill()
                job.proc.wait()
            self._read_events(job)
            self._finish(job, job.proc.returncode)

    # -- artefacts ----------------------------------------------------------------------------
    def zip_model(self, owner: str) -> Path:
        """Zip the owner's finished model inside their folder; returns the zip's path."""
        with self._lock:
            job = self._done_job(owner)
            folder = self._folder(owner)
        return _zip(job.model_path, job.label, folder)

    # -- My models ------------------------------------------------------------------------------
    def claim(self, owner: str, key: Any) -> list[tuple[LibraryItem, str | None]]:
        """Offer this browser's kept models to its current session; (item, model id) pairs."""
        _check_owner(owner)
        items = self.library.items(key)
        out = []
        for item in items:
            model_id = None
            if self.registry is not None:
                try:
                    model_id = self.registry.register_finetuned(item.folder, item.label, owner=owner,
                                                                model_id=_item_model_id(owner, item.folder))
                except (ValueError, OSError) as exc:  # an incomplete folder: listed, not offered
                    log.warning("My models: %s cannot be offered: %s", item.id, exc)
            with self._lock:
                if model_id:
                    self._claimed.setdefault(owner, set()).add(model_id)
            out.append((item, model_id))
        return out

    def forget(self, owner: str, key: Any, item_id: Any) -> LibraryItem:
        """Delete one of this browser's kept models (requests already running finish)."""
        item = self.library.get(key, item_id)
        if self.registry is not None:
            try:
                self.registry.unregister(_item_model_id(owner, item.folder), owner)
            except ValueError:
                pass
        with self._lock:
            for job in self._jobs.values():
                if job.published == item.folder:
                    job.model_id = None
        return self.library.remove(key, item_id)

    def zip_item(self, owner: str, key: Any, item_id: Any) -> Path:
        item = self.library.get(key, item_id)
        with self._lock:
            folder = self._folder(owner)
        return _zip(item.folder, item.label, folder)
    def push_to_hub(self, owner: str, repo_id: Any, token: Any, *, private: bool = True,
                    endpoint: str | None = None) -> str:
        """Upload the owner's finished model to the Hub repo `repo_id` ("user/name"); returns its
        URL. The token is used for this call only: never stored, logged or put in a message."""
        if not isinstance(repo_id, str) or not _HUB_REPO.match(repo_id.strip()) or ".." in repo_id:
            raise ValueError("repo_id: give the repository as your-name/model-name (letters, digits, - _ .)")
        if not isinstance(token, str) or not token.strip() or len(token) > 400:
            raise ValueError("token: paste a Hugging Face access token with write permission")
        repo_id, token = repo_id.strip(), token.strip()
        with self._lock:
            job = self._done_job(owner)
        try:
            from huggingface_hub import HfApi

            api = HfApi(token=token, endpoint=endpoint)
            url = api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
            api.upload_folder(folder_path=str(job.model_path), repo_id=repo_id, repo_type="model",
                              commit_message=f"textgen fine-tune: {job.label}")
        except Exception as exc:  # noqa: BLE001 - every failure becomes one clean message
            raise HubError(_hub_message(exc, token)) from None
        return str(url)

    # -- internals: bookkeeping ----------------------------------------------------------------
    def _folder(self, owner: str) -> Path:
        folder = self._folders.get(owner)
        if folder is None or not folder.is_dir():
            folder = self.root / secrets.token_hex(16)
            folder.mkdir(mode=0o700)
            _write_json(folder / OWNER, {"app": _APP, "manager": self._token, "pid": os.getpid()})
            self._folders[owner] = folder
        return folder

    def _latest(self, owner: str | None) -> Job | None:
        mine = [j for j in self._jobs.values() if owner is not None and j.owner == owner]
        return max(mine, key=lambda j: j.created) if mine else None

    def _done_job(self, owner: str) -> Job:
        job = self._latest(owner)
        if job is None or job.state != "done" or not job.model_path.is_dir():
            raise JobError("model: you have no finished fine-tune yet")
        return job

    def check_settings(self, settings: dict[str, Any]) -> None:
        """Raise ValueError naming the first bad field, as `start` would: this app's caps, then
        TrainConfig's own rules (before anything is uploaded or started)."""
        from ..config import TrainConfig

        bad = sorted(set(settings) & set(MANAGED))
        if bad:
            raise ValueError(f"{bad[0]}: is set by the job manager")
        self._check_caps(settings)
        try:
            TrainConfig(**{**settings, "data": "corpus.csv", "out": "model"})
        except TypeError as exc:
            raise ValueError(f"settings: {exc}") from None

    def _check_caps(self, settings: dict[str, Any]) -> None:
        """The web app's bounds, before TrainConfig checks its own (types, lower bounds)."""
        caps = self.caps
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

    def _check_free(self, owner: str) -> None:
        job = self._running
        if job is None:
            return
        if job.owner == owner:
            raise JobError("start: your fine-tune is still running; stop it first 你的微调仍在运行")
        raise Busy(_busy_message(job.eta(self.caps)), job.eta(self.caps))

    def _machine_lock(self) -> int:
        fd = os.open(self.root / LOCK, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise Busy(_busy_message(None)) from None
        return fd

    def _spawn(self, job: Job, lock_fd: int, *, resume: bool) -> None:
        spec = {"config": {**job.config, "resume": resume}, "max_steps_is_cap": bool(self.caps.max_steps)}
        _write_json(job.folder / SPEC, spec)
        env = {**os.environ, "TOKENIZERS_PARALLELISM": "false", "PYTHONUNBUFFERED": "1"}
        with open(job.folder / LOG, "ab") as log:
            job.proc = subprocess.Popen(
                [self.python, "-m", "finetune.web.jobs", str(job.folder)], cwd=REPO_ROOT, env=env,
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, pass_fds=(lock_fd,),
                start_new_session=True)  # Ctrl-C in the app's terminal reaches the app, not the worker
        job.state, job.phase, job.started = "starting", "starting the training process", time.monotonic()
        job.stop_requested, job.stop_reason, job.first_step, job.last_step = None, "", None, None
        self._save_state(job)

    def _request_stop(self, job: Job, reason: str) -> None:
        if job.stop_requested is not None or job.proc is None:
            return
        job.stop_requested, job.stop_reason, job.state = time.monotonic(), reason, "stopping"
        with contextlib.suppress(ProcessLookupError):
            job.proc.terminate()

    def _trim(self, owner: str) -> None:
        """Keep the owner's newest `keep_per_owner` jobs; remove older finished ones."""
        mine = sorted((j for j in self._jobs.values() if j.owner == owner), key=lambda j: j.created)
        for job in mine[:-self.keep_per_owner]:
            if job.state in FINAL:
                self._remove(job)

    def _remove(self, job: Job) -> None:
        if job.model_id:
            self._unregister(job)
        self._jobs.pop(job.id, None)
        shutil.rmtree(job.folder, ignore_errors=True)

    def _register(self, job: Job, owner: str) -> str | None:
        if self.registry is None:
            return None
        if job.published is not None:
            model_id = self.registry.register_finetuned(job.published, job.label, owner=owner,
                                                        model_id=_item_model_id(owner, job.published))
            self._claimed.setdefault(owner, set()).add(model_id)
            return model_id
        return self.registry.register_finetuned(job.model_dir, job.label, owner=owner)

    def _unregister(self, job: Job) -> None:
        try:
            self.registry.unregister(job.model_id, job.owner)
        except ValueError:  # already gone
            pass
        job.model_id = None

    def _save_state(self, job: Job) -> None:
        _write_json(job.folder / STATE, {"id": job.id, "state": job.state, "label": job.label,
                                         "message": job.message, "step": job.step, "app": _APP,
                                         "pid": os.getpid(), "time": time.time()})

    # -- internals: the watcher ------------------------------------------------------------------
    def _watch(self) -> None:
        last_sweep = 0.0
        while not self._closed.wait(self.poll_s):
            try:
                with self._lock:
                    if self._running is not None:
                        self._poll(self._running)
                    if time.monotonic() - last_sweep > 30:
                        last_sweep = time.monotonic()
                        self.sweep()
            except Exception:  # noqa: BLE001 - the watcher must outlive one bad event
                traceback.print_exc()

    def _poll(self, job: Job) -> None:
        self._read_events(job)
        code = job.proc.poll()
        now = time.monotonic()
        if code is None:
            if self.caps.max_seconds and job.stop_requested is None and now - job.started > self.caps.max_seconds:
                self._request_stop(job, f"by the time limit of {minutes(self.caps.max_seconds)}")
            elif job.stop_requested is not None and now - job.stop_requested > self.caps.stop_grace_s:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(job.proc.pid, signal.SIGKILL)
            return
        self._read_events(job)
        self._finish(job, code)

    def _read_events(self, job: Job) -> None:
        try:
            with open(job.folder / EVENTS, "rb") as fh:
                fh.seek(job.offset)
                data = fh.read()
        except FileNotFoundError:
            return
        end = data.rfind(b"\n") + 1  # a line still being written waits for the next read
        job.offset += end
        for line in data[:end].splitlines():
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if isinstance(event, dict):
                self._apply(job, event)

    def _apply(self, job: Job, event: dict[str, Any]) -> None:
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
                self._save_state(job)
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

    def _finish(self, job: Job, code: int) -> None:
        """The worker has exited: decide how the job ended."""
        from ..checkpoints import RunDir, run_dir_for

        job.proc, job.ended = None, time.monotonic()
        if self._running is job:
            self._running = None
        result, error = job.result or {}, job.error
        stopped = result.get("stopped") or code == EXIT_STOPPED or (job.stop_requested is not None and not error)
        if code == 0 and result.get("output_dir") and not result.get("stopped"):
            self._publish(job)
        elif stopped:
            last = RunDir(run_dir_for(job.model_dir)).last_complete()
            job.state, job.checkpoint = "stopped", str(last) if last else None
            reason = f" {job.stop_reason}" if job.stop_reason else ""
            step = int(last.name.rsplit("-", 1)[1]) if last else None
            job.message = (f"Stopped{reason} at step {job.step} of {job.max_steps}. "
                           + (f"Resume continues from step {step}." if step is not None
                              else "No checkpoint was saved yet, so it cannot be resumed."))
        elif error:
            job.state, job.message = "failed", str(error.get("message", "training failed"))[:500]
        else:
            how = f"killed by signal {-code}" if code < 0 else f"exit code {code}"
            hint = " (out of memory?)" if code == -signal.SIGKILL else ""
            job.state = "failed"
            job.message = f"The training process ended unexpectedly ({how}{hint}); nothing was saved as a model."
        if job.state in ("done", "failed"):
            job.corpus.unlink(missing_ok=True)
        if job.state == "failed":
            shutil.rmtree(run_dir_for(job.model_dir), ignore_errors=True)
        self._save_state(job)

    def _publish(self, job: Job) -> None:
        from textgen.loading import ModelLoadError

        from ..checkpoints import COMPLETE_MARKER, is_complete

        result = job.result or {}
        if Path(result["output_dir"]).resolve() != job.model_dir.resolve() or \
                not is_complete(job.model_dir, COMPLETE_MARKER):
            job.state, job.message = "failed", "The model folder is incomplete; nothing was registered."
            return
        if job.library_key:
            info = {"method": job.config.get("method"), "steps": result.get("global_step"),
                    "eval_loss": result.get("eval_loss"), "rows": (job.upload.report.rows_kept if job.upload else None),
                    "corpus": job.upload.name if job.upload else None}
            try:
                item = self.library.add(job.library_key, job.model_dir, job.label, info)
                job.published, job.library_id = item.folder, item.id
            except (LibraryError, OSError) as exc:
                job.library_note = str(exc)
        try:
            job.model_id = self._register(job, job.owner)
        except (ValueError, ModelLoadError) as exc:
            job.state, job.message = "failed", f"The model could not be offered: {exc}"
            return
        job.state = "done"
        loss = result.get("eval_loss")
        job.message = (f"Done: {result.get('global_step')} steps in {duration(result.get('elapsed_s') or 0)}"
                       + (f", eval loss {loss:.3f}, perplexity {result.get('perplexity'):.1f}" if loss is not None
                          else "") + ".")

    def sweep(self) -> None:
        """Remove jobs of sessions that ended `retain_s` ago, and what older app runs left
        (the watcher calls this every 30 s)."""
        with self._lock:
            self._sweep_locked()

    def _sweep_locked(self) -> None:
        now = time.monotonic()
        for job in list(self._jobs.values()):
            if job.proc is None and job.detached is not None and \
                    now - max(job.detached, job.ended or 0.0) > self.retain_s:
                self._remove(job)
        live = set(self._folders.values()) | {j.folder.parent for j in self._jobs.values()}
        for folder, found in list(self._stale.items()):
            if now - found > self.retain_s:
                shutil.rmtree(folder, ignore_errors=True)
                del self._stale[folder]
        for folder in self.root.iterdir():
            if folder.is_dir() and folder not in live and _made_by(folder).get("manager") == self._token \
                    and not any(p.is_dir() for p in folder.iterdir()):
                shutil.rmtree(folder, ignore_errors=True)

    def _recover(self) -> None:
        """Folders of an app process that is gone (the app restarted): their running jobs are
        marked failed and never registered; their uploads go now, the rest after `retain_s`."""
        for folder in self.root.iterdir():
            if not folder.is_dir() or _made_by(folder).get("app") == _APP or _owner_alive(folder):
                continue  # this process's, or another app's that still runs
            for state_file in folder.glob(f"*/{STATE}"):
                try:
                    state = json.loads(state_file.read_text(encoding="utf-8"))
                except (OSError, ValueError):
                    continue
                if state.get("state") not in FINAL:
                    state.update(state="failed", message="The app restarted while this fine-tune was running; "
                                                         "start it again.", time=time.time())
                    _write_json(state_file, state)
            for upload in folder.glob("upload-*"):
                upload.unlink(missing_ok=True)
            self._stale[folder] = time.monotonic()


def _checkpoint_step(path: str | None) -> int | None:
    try:
        return int(Path(path).name.rsplit("-", 1)[1]) if path else None
    except (IndexError, ValueError):
        return None


def _item_model_id(owner: str, folder: Path) -> str:
    """The registry id of a kept model for one session: the same at every claim."""
    return "ft-" + hashlib.sha256(f"{owner}\0{folder}".encode()).hexdigest()[:16]


def _zip(model: Path, label: str, folder: Path) -> Path:
    """Zip a model folder as <file stem of its label>.zip inside `folder`; returns its path."""
    name = file_stem(label)
    dest = folder / f"{name}.zip"
    tmp = folder / f".{name}-{secrets.token_hex(4)}.zip"
    try:
        with zipfile.ZipFile(tmp, "w") as zf:
            for path in sorted(model.iterdir()):
                if path.is_file() and not path.is_symlink():
                    packed = zipfile.ZIP_STORED if path.suffix == ".safetensors" else zipfile.ZIP_DEFLATED
                    zf.write(path, f"{name}/{path.name}", compress_type=packed)
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    return dest


def _check_owner(owner: Any) -> None:
    if not isinstance(owner, str) or not owner:
        raise JobError("session: no session; reload the page")


def _busy_message(eta: float | None) -> str:
    if eta is None:
        return ("busy: another fine-tune is running on this server; try again in a few minutes. "
                "正在训练另一个模型，请几分钟后再试。")
    n = max(1, math.ceil(eta / 60))
    return (f"busy: another fine-tune is running on this server; try again in ~{n} min. "
            f"正在训练另一个模型，请约 {n} 分钟后再试。")


def _made_by(folder: Path) -> dict[str, Any]:
    """owner.json of an owner folder: which app process and manager made it."""
    try:
        made = json.loads((folder / OWNER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return made if isinstance(made, dict) else {}


def _owner_alive(folder: Path) -> bool:
    """Whether the app process that made `folder` still runs (another app on this data folder)."""
    from ..checkpoints import pid_alive

    try:
        pid = int(_made_by(folder)["pid"])
    except (KeyError, ValueError, TypeError):
        return False
    if pid == os.getpid():
        return False  # our pid, another token: a process before us had the same pid
    return pid_alive(pid)


def _write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}")
    tmp.write_text(json.dumps(data, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def _link_or_copy(src: Path, dest: Path) -> None:
    try:
        os.link(src, dest)  # same file system: no second copy on disk
    except OSError:
        shutil.copyfile(src, dest)


def _remove_path(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def _hub_message(exc: Exception, token: str) -> str:
    """One clear sentence for a failed push, with the token scrubbed from anything quoted."""
    import httpx
    from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled

    status = getattr(getattr(exc, "response", None), "status_code", None)
    if isinstance(exc, (OfflineModeIsEnabled, httpx.TransportError, ConnectionError, TimeoutError)) or \
            "offline" in str(exc).lower():
        text = ("could not reach the Hugging Face Hub (offline or no network); the model was not pushed. "
                "Download the zip instead. 无法连接 Hugging Face Hub，请改为下载压缩包。")
    elif status in (401, 403):
        text = "the Hub refused the token: use an access token with write permission for this repository."
    elif isinstance(exc, HfHubHTTPError):
        text = f"the Hub refused the upload (HTTP {status}): {str(exc)[:200]}"
    else:
        text = f"pushing failed ({type(exc).__name__}): {str(exc)[:200]}"
    return "push: " + text.replace(token, "***")


# -- the worker process ---------------------------------------------------------------------------
class _EventWriter:
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
        from ..checkpoints import SaveError
        from ..events import TrainingDiverged
        from textgen.loading import ModelLoadError

        clear: tuple[type, ...] = (ValueError, SaveError, ModelLoadError, TrainingDiverged)  # DataError, OutputError
    except Exception:  # noqa: BLE001 - the import itself may be what failed
        clear = (ValueError,)
    text = str(exc)
    if isinstance(exc, MemoryError) or "out of memory" in text.lower():
        text = "out of memory: lower the batch size or max length, or pick a smaller base model, and start again"
    elif not isinstance(exc, clear):
        text = f"training failed ({type(exc).__name__}): {text[:300]}"
    return {"type": type(exc).__name__, "message": text}


def _train(spec: dict[str, Any], events: _EventWriter, stop: threading.Event):
    import transformers

    from ..config import TrainConfig
    from ..training import train

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    config = TrainConfig(**spec["config"])
    if spec.get("max_steps_is_cap"):  # web jobs: the app's step cap ends a run only if the epochs don't
        config = dataclasses.replace(config, steps_cap=True)
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
    events = _EventWriter(folder / EVENTS)
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
        raise SystemExit("usage: python -m finetune.web.jobs JOB_FOLDER (started by the web app's JobManager)")
    raise SystemExit(worker_main(sys.argv[1]))
