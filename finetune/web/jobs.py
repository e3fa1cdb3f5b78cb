"""Training jobs for the web app: one worker process at a time, reporting through a file.

>>> manager = JobManager(registry.home, registry)                         # doctest: +SKIP
>>> upload, rows = manager.save_upload(owner, "poems.csv")               # doctest: +SKIP
>>> manager.start(owner, {"method": "lora", "max_steps": 60}, label="poems")   # doctest: +SKIP
>>> manager.view(owner).state, manager.view(owner).step                   # doctest: +SKIP
('running', 12)
>>> manager.stop(owner)           # the worker stops after this step and keeps a checkpoint  # doctest: +SKIP

The manager starts a worker process (`finetune.web.worker`, started and stopped by
`finetune.web.process`) and follows it through the files of `finetune.web.protocol`; a thread reads the events and applies them to the job's record
(`finetune.web.job`).

Stop. SIGTERM sets the worker's stop flag: `train()` ends at the end of the current step with
a checkpoint (resumable with `resume`). A worker that has not ended `Caps.stop_grace_s` later
gets SIGKILL. The manager sends the same SIGTERM when a job passes `Caps.max_seconds`; a job's
steps are capped at `Caps.max_steps` (`finetune.web.caps`). The command line
(`python -m finetune`) has no caps.

One at a time. The manager runs one job; across processes a lock file held by the worker
(`finetune.web.process`) keeps it so. Others get `Busy` with the running job's ETA.

A job whose worker died (crash, kill, or an app restart mid-training) is marked failed and its
model is never registered (`finetune.web.storage`). No gradio here: the UI turns the
exceptions into `gr.Error`.
"""
from __future__ import annotations

import dataclasses
import os
import secrets
import shutil
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any

from .caps import Caps, check_caps, check_settings
from .errors import Busy, JobError
from .export import check_push, push_model, zip_model
from .job import ACTIVE, FINAL, MODEL, Job, JobView, Upload, busy_message
from .library import Library, LibraryItem, check_key
from .process import machine_lock, poll, request_stop, save_state, spawn, terminate
from .shelf import Shelf
from .storage import APP_RUN, JOBS_DIR, OWNER, link_or_copy, made_by, orphaned_folders, remove_path, write_json
from .uploads import Uploads


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
        self.uploads = Uploads()
        self._jobs: dict[str, Job] = {}
        self._running: Job | None = None
        self._session_files: dict[str, list[Path]] = {}
        self._stale: dict[Path, float] = {}
        self._closed = threading.Event()
        self._token = secrets.token_hex(8)  # marks the owner folders this manager made
        self.library = Library(home)
        self.shelf = Shelf(self.library, registry)
        self._stale.update({f: time.monotonic() for f in orphaned_folders(self.root)})
        self._thread = threading.Thread(target=self._watch, name="textgen-jobs", daemon=True)
        self._thread.start()

    # -- uploads ---------------------------------------------------------------------------
    def save_upload(self, owner: str, src: str | Path, *, keywords: str = "column") -> tuple[Upload, list]:
        """Copy an uploaded file into the owner's folder and validate it; returns (upload, rows).

        The new upload replaces the owner's previous one. Raises DataError (bad file)."""
        _check_owner(owner)
        with self._lock:
            folder = self._folder(owner)
        return self.uploads.save(owner, src, folder, keywords=keywords)

    def reload_upload(self, owner: str, *, keywords: str) -> tuple[Upload, list]:
        """Validate the owner's current upload again, e.g. with another keywords mode."""
        return self.uploads.reload(owner, keywords=keywords)

    def upload(self, owner: str) -> Upload | None:
        return self.uploads.get(owner)

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
        check_caps(self.caps, settings)
        with self._lock:
            self._check_free(owner)
            upload = self.uploads.get(owner)
            if upload is None or not upload.path.is_file():
                upload = self._stopped_corpus(owner)
            if upload is None:
                raise JobError("data: upload a corpus first 请先上传语料")
            job_id = secrets.token_hex(16)
            folder = self._folder(owner) / job_id
            try:
                # with a step cap, a job ends at its epochs or at the cap, whichever comes first
                config = TrainConfig(**{**settings, "keywords": upload.keywords, "name": label,
                                        "steps_cap": bool(self.caps.max_steps),
                                        "data": str(folder / f"corpus{upload.path.suffix}"),
                                        "out": str(folder / MODEL)})
            except TypeError as exc:
                raise ValueError(f"settings: {exc}") from None
            job = Job(job_id, owner, folder, label, config.to_dict(), form=dict(form or {}), upload=upload,
                      library_key=library_key)
            lock_fd = machine_lock(self.root)
            try:
                folder.mkdir(mode=0o700)
                link_or_copy(upload.path, job.corpus)
                spawn(job, lock_fd, python=self.python, resume=False)
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
            lock_fd = machine_lock(self.root)
            try:
                spawn(job, lock_fd, python=self.python, resume=True)
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
            request_stop(job, reason)
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
            return busy_message(job.eta(self.caps))

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
                    self.shelf.withdraw(job)
                    job.model_id = self.shelf.offer(job, owner)
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
            upload = self.uploads.pop(owner)
            files = self._session_files.pop(owner, [])
        self.shelf.release(owner)  # kept on disk: the next session of this browser claims them again
        with self._lock:
            self._folders.pop(owner, None)
            now = time.monotonic()
            for job in self._jobs.values():
                if job.owner == owner:
                    job.detached = now
        for path in ([upload.path] if upload else []) + files:
            remove_path(path)

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
            self._finish(job, terminate(job, self.caps.stop_grace_s))

    # -- artefacts ----------------------------------------------------------------------------
    def zip_model(self, owner: str) -> Path:
        """Zip the owner's finished model inside their folder; returns the zip's path."""
        with self._lock:
            job = self._done_job(owner)
            folder = self._folder(owner)
        return zip_model(job.model_path, job.label, folder)

    # -- My models ------------------------------------------------------------------------------
    def claim(self, owner: str, key: Any) -> list[tuple[LibraryItem, str | None]]:
        """Offer this browser's kept models to its current session; (item, model id) pairs."""
        _check_owner(owner)
        return self.shelf.claim(owner, key)

    def forget(self, owner: str, key: Any, item_id: Any) -> LibraryItem:
        """Delete one of this browser's kept models (requests already running finish)."""
        item = self.library.get(key, item_id)
        with self._lock:
            for job in self._jobs.values():
                if job.published == item.folder:
                    job.model_id = None
        return self.shelf.forget(owner, key, item)

    def zip_item(self, owner: str, key: Any, item_id: Any) -> Path:
        item = self.library.get(key, item_id)
        with self._lock:
            folder = self._folder(owner)
        return zip_model(item.folder, item.label, folder)

    def push_to_hub(self, owner: str, repo_id: Any, token: Any, *, private: bool = True,
                    endpoint: str | None = None) -> str:
        """Upload the owner's finished model to the Hub repo `repo_id` ("user/name"); returns its
        URL. The token is used for this call only: never stored, logged or put in a message."""
        check_push(repo_id, token)
        with self._lock:
            job = self._done_job(owner)
        return push_model(job.model_path, job.label, repo_id, token, private=private, endpoint=endpoint)

    # -- internals: bookkeeping ----------------------------------------------------------------
    def _folder(self, owner: str) -> Path:
        folder = self._folders.get(owner)
        if folder is None or not folder.is_dir():
            folder = self.root / secrets.token_hex(16)
            folder.mkdir(mode=0o700)
            write_json(folder / OWNER, {"app": APP_RUN, "manager": self._token, "pid": os.getpid()})
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
        """Raise ValueError naming the first bad field, as `start` would (before anything is
        uploaded or started)."""
        check_settings(self.caps, settings)

    def _check_free(self, owner: str) -> None:
        job = self._running
        if job is None:
            return
        if job.owner == owner:
            raise JobError("start: your fine-tune is still running; stop it first 你的微调仍在运行")
        raise Busy(busy_message(job.eta(self.caps)), job.eta(self.caps))

    def _trim(self, owner: str) -> None:
        """Keep the owner's newest `keep_per_owner` jobs; remove older finished ones."""
        mine = sorted((j for j in self._jobs.values() if j.owner == owner), key=lambda j: j.created)
        for job in mine[:-self.keep_per_owner]:
            if job.state in FINAL:
                self._remove(job)

    def _remove(self, job: Job) -> None:
        if job.model_id:
            self.shelf.withdraw(job)
        self._jobs.pop(job.id, None)
        shutil.rmtree(job.folder, ignore_errors=True)

    # -- internals: the watcher ------------------------------------------------------------------
    def _watch(self) -> None:
        last_sweep = 0.0
        while not self._closed.wait(self.poll_s):
            try:
                with self._lock:
                    job = self._running
                    if job is not None and (code := poll(job, self.caps)) is not None:
                        self._finish(job, code)
                    if time.monotonic() - last_sweep > 30:
                        last_sweep = time.monotonic()
                        self.sweep()
            except Exception:  # noqa: BLE001 - the watcher must outlive one bad event
                traceback.print_exc()

    def _finish(self, job: Job, code: int) -> None:
        """The worker has exited: decide how the job ended."""
        from ..checkpoints import RunDir, run_dir_for

        job.proc, job.ended = None, time.monotonic()
        if self._running is job:
            self._running = None
        if job.conclude(code, lambda: RunDir(run_dir_for(job.model_dir)).last_complete()):
            self.shelf.receive(job)
        if job.state in ("done", "failed"):
            job.corpus.unlink(missing_ok=True)
        if job.state == "failed":
            shutil.rmtree(run_dir_for(job.model_dir), ignore_errors=True)
        save_state(job)

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
            if folder.is_dir() and folder not in live and made_by(folder).get("manager") == self._token \
                    and not any(p.is_dir() for p in folder.iterdir()):
                shutil.rmtree(folder, ignore_errors=True)


def _check_owner(owner: Any) -> None:
    if not isinstance(owner, str) or not owner:
        raise JobError("session: no session; reload the page")
