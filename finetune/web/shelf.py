"""Finished models as the job manager offers them: a job's model checked, kept in My models when
its browser asked (`Library`) and registered for the session; a browser's kept models registered
for its current session under ids that stay the same at every claim, and unregistered when the
session ends (they stay on disk for the next one)."""
from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

from .errors import LibraryError
from ..events import duration
from .job import Job
from .library import Library, LibraryItem
from .storage import item_model_id

log = logging.getLogger(__name__)


class Shelf:
    """Thread-safe; `registry` may be None (a manager without an app registers nothing)."""

    def __init__(self, library: Library, registry: Any) -> None:
        self.library, self.registry = library, registry
        self._lock = threading.Lock()
        self._claimed: dict[str, set[str]] = {}  # owner -> model ids registered from My models

    def claim(self, owner: str, key: Any) -> list[tuple[LibraryItem, str | None]]:
        """Offer this browser's kept models to its current session; (item, model id) pairs."""
        out = []
        for item in self.library.items(key):
            model_id = None
            if self.registry is not None:
                try:
                    model_id = self.register(owner, item.folder, item.label)
                except (ValueError, OSError) as exc:  # an incomplete folder: listed, not offered
                    log.warning("My models: %s cannot be offered: %s", item.id, exc)
            out.append((item, model_id))
        return out

    def register(self, owner: str, folder: Path, label: str) -> str:
        """Register a kept model's folder for the owner's session; returns its model id."""
        model_id = self.registry.register_finetuned(folder, label, owner=owner,
                                                    model_id=item_model_id(owner, folder))
        with self._lock:
            self._claimed.setdefault(owner, set()).add(model_id)
        return model_id

    def forget(self, owner: str, key: Any, item: LibraryItem) -> LibraryItem:
        """Unregister one kept model and delete it (requests already running finish)."""
        if self.registry is not None:
            try:
                self.registry.unregister(item_model_id(owner, item.folder), owner)
            except ValueError:
                pass
        return self.library.remove(key, item.id)

    def release(self, owner: str) -> None:
        """The session ended: its kept models leave the registry, not the disk."""
        with self._lock:
            claimed = self._claimed.pop(owner, set())
        for model_id in claimed:
            try:
                self.registry.unregister(model_id, owner)
            except ValueError:
                pass

    def receive(self, job: Job) -> None:
        """A job trained to the end: check its model folder, keep it in My models (when its
        browser asked), register it, and mark the job done or failed saying why."""
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
            job.model_id = self.offer(job, job.owner)
        except (ValueError, ModelLoadError) as exc:
            job.state, job.message = "failed", f"The model could not be offered: {exc}"
            return
        job.state = "done"
        loss = result.get("eval_loss")
        job.message = (f"Done: {result.get('global_step')} steps in {duration(result.get('elapsed_s') or 0)}"
                       + (f", eval loss {loss:.3f}, perplexity {result.get('perplexity'):.1f}" if loss is not None
                          else "") + ".")

    def offer(self, job: Job, owner: str) -> str | None:
        """Register a finished job's model for `owner`: from My models when it was kept there."""
        if self.registry is None:
            return None
        if job.published is not None:
            return self.register(owner, job.published, job.label)
        return self.registry.register_finetuned(job.model_dir, job.label, owner=owner)

    def withdraw(self, job: Job) -> None:
        """Unregister a job's model (it was removed, or moves to another session)."""
        try:
            self.registry.unregister(job.model_id, job.owner)
        except ValueError:  # already gone
            pass
        job.model_id = None
