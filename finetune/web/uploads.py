"""The corpus file each owner uploaded last, copied into their folder and validated by
`finetune.data.load_corpus` (the user's own file name is shown, never used as a path)."""
from __future__ import annotations

import shutil
import secrets
import threading
from pathlib import Path

from .errors import JobError
from .job import Upload

PREVIEW_ROWS = 8
CORPUS_SUFFIXES = (".csv", ".tsv", ".txt", ".jsonl", ".json")
SPREADSHEET_SUFFIXES = (".xlsx", ".xls", ".ods", ".numbers")


def check_upload_name(name: str) -> None:
    """Refuse a file whose kind the pipeline does not read, saying what to upload instead."""
    from ..errors import DataError

    suffix = Path(name).suffix.lower()
    if suffix in SPREADSHEET_SUFFIXES:
        raise DataError(f"file: {name[:80]!r} is a spreadsheet; save it as CSV UTF-8 and upload that "
                        "(Excel: File › Save As › CSV UTF-8; LibreOffice: Save As › Text CSV, UTF-8) "
                        "请将表格另存为 UTF-8 编码的 CSV 文件后再上传")
    if suffix not in CORPUS_SUFFIXES:
        raise DataError(f"file: {name[:80]!r} is not a .csv, .tsv, .txt, .jsonl or .json file "
                        "请上传 CSV、TSV、TXT、JSONL 或 JSON 文件")


class Uploads:
    """Each owner's current upload; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_owner: dict[str, Upload] = {}

    def save(self, owner: str, src: str | Path, folder: Path, *, keywords: str) -> tuple[Upload, list]:
        """Copy `src` into `folder` and validate it; it replaces the owner's previous upload."""
        name = Path(src).name
        check_upload_name(name)
        dest = folder / f"upload-{secrets.token_hex(8)}{Path(name).suffix.lower()}"
        shutil.copyfile(src, dest)
        try:
            upload, rows = validate(dest, name, keywords)
        except BaseException:
            dest.unlink(missing_ok=True)
            raise
        with self._lock:
            old = self._by_owner.get(owner)
            self._by_owner[owner] = upload
        if old is not None and old.path != dest:
            old.path.unlink(missing_ok=True)
        return upload, rows

    def reload(self, owner: str, *, keywords: str) -> tuple[Upload, list]:
        with self._lock:
            upload = self._by_owner.get(owner)
        if upload is None or not upload.path.is_file():
            raise JobError("data: upload a corpus first 请先上传语料")
        upload, rows = validate(upload.path, upload.name, keywords)
        with self._lock:
            self._by_owner[owner] = upload
        return upload, rows

    def get(self, owner: str | None) -> Upload | None:
        with self._lock:
            return self._by_owner.get(owner)

    def pop(self, owner: str) -> Upload | None:
        with self._lock:
            return self._by_owner.pop(owner, None)


def validate(path: Path, name: str, keywords: str) -> tuple[Upload, list]:
    """Read the corpus at `path` (the user called it `name`); the messages name their file."""
    from ..data import load_corpus
    from ..errors import DataError

    try:
        rows, report = load_corpus(path, keywords=keywords)
    except DataError as exc:  # the messages name our copy; the user knows their own name
        raise DataError(str(exc).replace(str(path), name)) from None
    return Upload(path, name, report, keywords, preview=list(rows[:PREVIEW_ROWS])), rows
