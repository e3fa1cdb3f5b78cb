"""Saves that survive a crash, and resuming only from what this app wrote.

Layout for ``--out runs/poems``::

    runs/poems/                  the model, only ever complete (`publish`)
        textgen_complete.json    written last: the folder's files with sizes and SHA-256
    runs/poems.checkpoints/      the run folder while training (`RunDir`), removed on success
        textgen_run.json         says textgen made this folder, and with which settings
        metrics.jsonl            one JSON object per log and evaluation
        checkpoint-200/          a Trainer checkpoint ...
            textgen_checkpoint.json   ... complete only with this marker, written after it

Why. Trainer's checkpoints are not atomic and `get_last_checkpoint` picks the highest number
whether or not it was fully written (transformers PR #27820, fix #35580 reverted in #36112);
and resuming unpickles optimizer.pt and rng_state.pth, which can run code. So a checkpoint
counts only when its marker lists exactly the files in it with matching hashes, and only
inside a run folder that carries our marker.

A model is written to a hidden sibling folder, fsynced, given its marker, and renamed into
place; an existing model is swapped out atomically (renameat2 RENAME_EXCHANGE where the
kernel has it), so `--out` never holds half a model and a good model is never replaced by
a broken one (T1, T2).
"""
from __future__ import annotations

import ctypes
import errno
import hashlib
import json
import os
import re
import shutil
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .errors import OutputError, SaveError

COMPLETE_MARKER = "textgen_complete.json"
CHECKPOINT_MARKER = "textgen_checkpoint.json"
RUN_MARKER = "textgen_run.json"
METRICS_FILE = "metrics.jsonl"
KEEP_CHECKPOINTS = 2
_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")
_HASH_CHUNK = 1 << 20






# -- hashing and markers ----------------------------------------------------------------------
def file_digests(folder: Path, *, skip: tuple[str, ...] = ()) -> dict[str, dict[str, Any]]:
    """{name: {"size", "sha256"}} of the plain files in `folder` (not recursive)."""
    out = {}
    for path in sorted(folder.iterdir()):
        if path.name in skip:
            continue
        if path.is_symlink() or not path.is_file():
            raise OSError(f"{path}: not a plain file")
        digest = hashlib.sha256()
        with path.open("rb") as fh:
            while chunk := fh.read(_HASH_CHUNK):
                digest.update(chunk)
        out[path.name] = {"size": path.stat().st_size, "sha256": digest.hexdigest()}
    return out


def _write_json_durably(path: Path, data: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", encoding="utf-8") as fh:
        json.dump(data, fh, ensure_ascii=False, indent=2)
        fh.write("\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some file systems do not fsync directories; the data files were synced
    finally:
        os.close(fd)


def _fsync_files(folder: Path) -> None:
    for path in folder.iterdir():
        if path.is_file() and not path.is_symlink():
            with path.open("rb") as fh:
                os.fsync(fh.fileno())
    _fsync_dir(folder)


def is_complete(folder: Path, marker: str) -> bool:
    """True when `folder` holds exactly the files its marker lists, with their hashes."""
    path = folder / marker
    if folder.is_symlink() or not folder.is_dir() or not path.is_file():
        return False
    try:
        recorded = json.loads(path.read_text(encoding="utf-8"))["files"]
        return file_digests(folder, skip=(marker,)) == recorded
    except (OSError, ValueError, KeyError, TypeError):
        return False


# -- the published model -----------------------------------------------------------------------
def check_out(out: Path) -> None:
    """Refuse an --out that exists and is not a model this app wrote (or an empty folder)."""
    _recover_swap(out)
    if out.is_symlink():
        raise OutputError(f"out: {out} is a symbolic link; give a plain folder")
    if not out.exists():
        return
    if not out.is_dir():
        raise OutputError(f"out: {out} is a file; give a folder for the model")
    if any(out.iterdir()) and not (out / COMPLETE_MARKER).is_file():
        raise OutputError(f"out: {out} already holds files that textgen did not write; "
                          "choose a new folder (a previous textgen model there would be replaced)")


def publish(out: Path, write: Callable[[Path], None], *, info: dict[str, Any] | None = None) -> Path:
    """Write a model folder atomically: `write(tmp)` fills a hidden sibling, then the marker
    goes in last and the folder is renamed to `out` (replacing a previous model in one step).

    On any error the partial folder is removed, `out` is left as it was, and SaveError says why.
    """
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    tmp.mkdir()
    try:
        write(tmp)
        _fsync_files(tmp)
        marker = {"format": 1, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **(info or {}),
                  "files": file_digests(tmp)}
        _write_json_durably(tmp / COMPLETE_MARKER, marker)
        move_into_place(tmp, out)
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(exc, OSError):
            why = "the disk is full" if exc.errno == errno.ENOSPC else str(exc)
            raise SaveError(exc.errno, f"could not save the model to {out}: {why}; "
                                       "nothing there was changed") from exc
        raise
    return out


def move_into_place(tmp: Path, out: Path) -> None:
    """Put the folder `tmp` at `out` in one step, replacing what was there (a sibling of `out`)."""
    if not out.exists():
        os.rename(tmp, out)
    elif _exchange(tmp, out):
        shutil.rmtree(tmp)  # tmp now holds the previous model
    else:
        old = out.with_name(f".{out.name}.old-{uuid.uuid4().hex[:8]}")
        os.rename(out, old)  # a crash right here is undone by _recover_swap
        os.rename(tmp, out)
        shutil.rmtree(old, ignore_errors=True)
    _fsync_dir(out.parent)


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths atomically (Linux renameat2 RENAME_EXCHANGE); False where unsupported."""
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    return renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0


def _recover_swap(out: Path) -> None:
    """After a crash between the two renames of the fallback swap, put the old model back."""
    if out.exists():
        return
    for old in sorted(out.parent.glob(f".{out.name}.old-*")) if out.parent.is_dir() else []:
        if is_complete(old, COMPLETE_MARKER):
            os.rename(old, out)
            return


def remove_stale_temporaries(out: Path) -> None:
    """Remove hidden `.name.tmp-PID-*` folders of earlier publishes whose process is gone."""
    if not out.parent.is_dir():
        return
    for tmp in out.parent.glob(f".{out.name}.tmp-*"):
        pid = tmp.name.rsplit(".tmp-", 1)[1].split("-", 1)[0]
        if pid.isdigit() and not pid_alive(int(pid)) and tmp.is_dir() and not tmp.is_symlink():
            shutil.rmtree(tmp, ignore_errors=True)


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists (signal 0 probes without sending anything)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# -- the run folder ------------------------------------------------------------------------------
def run_dir_for(out: Path) -> Path:
    return out.with_name(out.name + ".checkpoints")


class RunDir:
    """The folder Trainer writes checkpoints to, and what we know about it."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @property
    def metrics(self) -> Path:
        return self.path / METRICS_FILE

    def is_ours(self) -> bool:
        return self.path.is_dir() and not self.path.is_symlink() and (self.path / RUN_MARKER).is_file()

    def settings(self) -> dict[str, Any]:
        return json.loads((self.path / RUN_MARKER).read_text(encoding="utf-8"))["settings"]

    def create(self, settings: dict[str, Any]) -> None:
        """Start afresh: an empty run folder with our marker."""
        if self.path.exists():
            shutil.rmtree(self.path)
        self.path.mkdir(parents=True)
        _write_json_durably(self.path / RUN_MARKER, {"format": 1, "settings": settings})

    def checkpoints(self) -> list[tuple[int, Path]]:
        """(step, folder) of every checkpoint-N folder, complete or not, lowest step first."""
        found = []
        for child in self.path.iterdir() if self.path.is_dir() else []:
            match = _CHECKPOINT.match(child.name)
            if match:
                found.append((int(match.group(1)), child))
        return sorted(found)

    def complete_checkpoints(self) -> list[tuple[int, Path]]:
        return [(step, p) for step, p in self.checkpoints() if is_complete(p, CHECKPOINT_MARKER)]

    def last_complete(self) -> Path | None:
        """The highest-numbered checkpoint whose marker checks out; None when there is none."""
        for step, folder in reversed(self.checkpoints()):
            if is_complete(folder, CHECKPOINT_MARKER):
                return folder
        return None

    def remove_incomplete(self) -> list[Path]:
        """Delete checkpoint folders without a valid marker (a crash mid-save, or planted)."""
        removed = []
        for _, folder in self.checkpoints():
            if not is_complete(folder, CHECKPOINT_MARKER):
                if folder.is_symlink() or not folder.is_dir():
                    folder.unlink()
                else:
                    shutil.rmtree(folder)
                removed.append(folder)
        return removed

    def mark_complete(self, folder: Path, step: int) -> None:
        """Called after Trainer has written `folder` in full (all ranks)."""
        _fsync_files(folder)
        marker = {"format": 1, "step": step, "files": file_digests(folder, skip=(CHECKPOINT_MARKER,))}
        _write_json_durably(folder / CHECKPOINT_MARKER, marker)

    def rotate(self, keep: int = KEEP_CHECKPOINTS) -> None:
        """Keep the newest `keep` complete checkpoints; remove the others and anything older."""
        complete = self.complete_checkpoints()
        if not complete:
            return
        keep_from = complete[-keep:][0][0]
        for step, folder in self.checkpoints():
            if step < keep_from:
                shutil.rmtree(folder, ignore_errors=True)

    def append_metrics(self, record: dict[str, Any]) -> None:
        with self.metrics.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(record, ensure_ascii=False) + "\n")

    def truncate_metrics(self, step: int) -> None:
        """Drop records after `step` (written after the checkpoint a run resumes from)."""
        if not self.metrics.is_file():
            return
        kept = []
        for line in self.metrics.read_text(encoding="utf-8").splitlines():
            try:
                if json.loads(line).get("step", 0) <= step:
                    kept.append(line)
            except ValueError:
                continue  # a line cut short by a crash
        self.metrics.write_text("".join(k + "\n" for k in kept), encoding="utf-8")

    def remove(self) -> None:
        if self.is_ours():
            shutil.rmtree(self.path, ignore_errors=True)
