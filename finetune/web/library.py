""""My models 我的模型": the fine-tuned models of one browser, kept across reloads and restarts.

A browser proves which models are its own with a secret key it made and keeps (64 hex
digits in its localStorage, like a password nobody typed). The server never stores the key:
a browser's shelf is the folder named after the key's SHA-256, so the data folder alone
does not tell which browser owns what, and no id a user sends becomes a path (items are found
by listing the shelf, never by joining a name onto it).

Layout under the data folder (blocked from gradio's file route)::

    library/<sha256(key)[:32]>/<name>-<random>/
        item.json      label, when, how it was trained
        model/         the model folder (moved here whole from its job, in one rename)

>>> lib = Library(home)                                                  # doctest: +SKIP
>>> item = lib.add(key, job_folder / "model", "模型B", {"method": "lora"})   # doctest: +SKIP
>>> [i.label for i in lib.items(key)]                                    # doctest: +SKIP
['模型B']
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import LibraryError
from .names import file_stem

LIBRARY_DIR = "library"
ITEM, MODEL = "item.json", "model"
MAX_ITEMS = 12  # per browser: a fine-tuned GPT-2 small is ~0.5 GB
_KEY = re.compile(r"[0-9a-f]{64}")
_ITEM_ID = re.compile(r"[a-z0-9-]{1,80}")




@dataclass(frozen=True)
class LibraryItem:
    id: str
    label: str
    folder: Path  # the model folder
    created: float  # seconds since the epoch
    info: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "label": self.label, "created": self.created, "info": dict(self.info)}


def check_key(key: Any) -> str:
    if not isinstance(key, str) or not _KEY.fullmatch(key):
        raise LibraryError("library: the browser's key must be 64 hexadecimal digits; reload the page "
                           "我的模型：浏览器密钥无效，请刷新页面")
    return key


class Library:
    """Shelves of fine-tuned models, one per browser key. Thread- and process-safe by renames."""

    def __init__(self, home: str | Path, *, max_items: int = MAX_ITEMS) -> None:
        self.root = Path(home).expanduser().resolve() / LIBRARY_DIR
        self.max_items = max_items

    def shelf(self, key: Any) -> Path:
        return self.root / hashlib.sha256(check_key(key).encode()).hexdigest()[:32]

    def items(self, key: Any) -> list[LibraryItem]:
        """This browser's models, oldest first (complete ones only)."""
        shelf = self.shelf(key)
        if not shelf.is_dir():
            return []
        found = []
        for folder in shelf.iterdir():
            item = _read_item(folder)
            if item is not None:
                found.append(item)
        return sorted(found, key=lambda i: i.created)

    def get(self, key: Any, item_id: Any) -> LibraryItem:
        if not isinstance(item_id, str) or not _ITEM_ID.fullmatch(item_id):
            raise LibraryError(f"library: no model {str(item_id)[:40]!r} in your models 我的模型中没有这个模型")
        for item in self.items(key):
            if item.id == item_id:
                return item
        raise LibraryError(f"library: no model {item_id!r} in your models 我的模型中没有这个模型")

    def add(self, key: Any, model_dir: Path, label: str, info: dict[str, Any] | None = None) -> LibraryItem:
        """Move a finished model folder onto the browser's shelf (one rename: it is either in
        the job folder or on the shelf, never half in each)."""
        shelf = self.shelf(key)
        if len(self.items(key)) >= self.max_items:
            raise LibraryError(f"library: you keep {self.max_items} models already; delete one in "
                               f"My models to keep more 我的模型已满，请先删除一个")
        shelf.mkdir(parents=True, exist_ok=True, mode=0o700)
        item_id = f"{file_stem(label)}-{secrets.token_hex(4)}"
        staging = shelf / f".{item_id}.tmp"
        staging.mkdir(mode=0o700)
        try:
            record = {"id": item_id, "label": label, "created": time.time(), "info": dict(info or {})}
            (staging / ITEM).write_text(json.dumps(record, ensure_ascii=False), encoding="utf-8")
            os.rename(model_dir, staging / MODEL)
            os.rename(staging, shelf / item_id)
        except BaseException:
            if (staging / MODEL).is_dir() and not model_dir.exists():
                os.rename(staging / MODEL, model_dir)  # put it back where the job expects it
            shutil.rmtree(staging, ignore_errors=True)
            raise
        return _read_item(shelf / item_id)

    def remove(self, key: Any, item_id: Any) -> LibraryItem:
        """Delete one model: renamed away first, so it disappears at once, then removed."""
        item = self.get(key, item_id)
        folder = item.folder.parent
        trash = folder.with_name(f".{folder.name}.deleted-{secrets.token_hex(4)}")
        os.rename(folder, trash)
        shutil.rmtree(trash, ignore_errors=True)
        return item


def _read_item(folder: Path) -> LibraryItem | None:
    if folder.name.startswith(".") or not folder.is_dir() or folder.is_symlink():
        return None
    try:
        record = json.loads((folder / ITEM).read_text(encoding="utf-8"))
        model = folder / MODEL
        if not model.is_dir() or model.is_symlink() or record.get("id") != folder.name:
            return None
        return LibraryItem(folder.name, str(record["label"])[:60], model, float(record["created"]),
                           record.get("info") if isinstance(record.get("info"), dict) else {})
    except (OSError, ValueError, KeyError, TypeError):
        return None
