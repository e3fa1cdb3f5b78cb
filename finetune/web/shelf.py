"""My models as the job manager offers them: a browser's kept models (`Library`), registered for
its current session under ids that stay the same at every claim, and unregistered when the
session ends (they stay on disk for the next one)."""
from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

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

    def forget(self, owner: str, key: Any, item_id: Any) -> LibraryItem:
        """Unregister one kept model and delete it (requests already running finish)."""
        item = self.library.get(key, item_id)
        if self.registry is not None:
            try:
                self.registry.unregister(item_model_id(owner, item.folder), owner)
            except ValueError:
                pass
        return self.library.remove(key, item_id)

    def release(self, owner: str) -> None:
        """The session ended: its kept models leave the registry, not the disk."""
        with self._lock:
            claimed = self._claimed.pop(owner, set())
        for model_id in claimed:
            try:
                self.registry.unregister(model_id, owner)
            except ValueError:
                pass
