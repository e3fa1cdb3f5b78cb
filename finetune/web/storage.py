"""The job manager's folders on disk: one per owner (session), named at random, each with an
``owner.json`` that says which app process made it, so that a restarted app can tell its
predecessors' folders from those of another app still running on the same data folder.

Layout under the data folder (blocked from gradio's file route)::

    finetune/<random>/               one folder per owner (session), name not derived from it
        owner.json                   which app process made it
        upload-<random>.csv          the owner's current upload (deleted when the session ends)
        <job id>/                    128 random bits; the page keeps it to re-attach after a reload
            spec.json  events.jsonl  worker.log  state.json
            corpus.csv               the job's own link to the upload (deleted once it is done)
            model/                   the published model (atomic, `finetune.checkpoints`)
            model.checkpoints/       while training
"""
from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
import time
from pathlib import Path
from typing import Any

from .job import FINAL
from .protocol import STATE

JOBS_DIR = "finetune"
OWNER = "owner.json"
LOCK = ".train.lock"
# Tells this process's managers from those of an app that ran before on the same data folder.
APP_RUN = secrets.token_hex(8)


def item_model_id(owner: str, folder: Path) -> str:
    """The registry id of a kept model for one session: the same at every claim."""
    return "ft-" + hashlib.sha256(f"{owner}\0{folder}".encode()).hexdigest()[:16]


def orphaned_folders(root: Path) -> list[Path]:
    """Folders of an app process that is gone (the app restarted): their running jobs are marked
    failed and never registered, their uploads deleted; the folders themselves are returned, for
    removal after the manager's retention time."""
    stale = []
    for folder in root.iterdir():
        if not folder.is_dir() or made_by(folder).get("app") == APP_RUN or owner_alive(folder):
            continue  # this process's, or another app's that still runs
        for state_file in folder.glob(f"*/{STATE}"):
            try:
                state = json.loads(state_file.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue
            if state.get("state") not in FINAL:
                state.update(state="failed", message="The app restarted while this fine-tune was running; "
                                                     "start it again.", time=time.time())
                write_json(state_file, state)
        for upload in folder.glob("upload-*"):
            upload.unlink(missing_ok=True)
        stale.append(folder)
    return stale


def made_by(folder: Path) -> dict[str, Any]:
    """owner.json of an owner folder: which app process and manager made it."""
    try:
        made = json.loads((folder / OWNER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return made if isinstance(made, dict) else {}


def owner_alive(folder: Path) -> bool:
    """Whether the app process that made `folder` still runs (another app on this data folder)."""
    from ..checkpoints import pid_alive

    try:
        pid = int(made_by(folder)["pid"])
    except (KeyError, ValueError, TypeError):
        return False
    if pid == os.getpid():
        return False  # our pid, another token: a process before us had the same pid
    return pid_alive(pid)


def write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}")
    tmp.write_text(json.dumps(data, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def link_or_copy(src: Path, dest: Path) -> None:
    try:
        os.link(src, dest)  # same file system: no second copy on disk
    except OSError:
        shutil.copyfile(src, dest)


def remove_path(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)
