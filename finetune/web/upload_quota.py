"""A disk quota for gradio's upload folder: an ASGI middleware that answers an upload with
503 "busy" while the folder already holds `limit_bytes`.

Gradio bounds each file (`max_file_size`) but not their sum, and any client may post files
to ``/gradio_api/upload`` without ever running an event. The app's `delete_cache` purges
what it did not take within minutes; this bounds what can pile up meanwhile.

>>> Middleware(UploadQuota, folder="/tmp/gradio", limit_bytes=512 * 2**20)   # doctest: +SKIP

Written by hand because no middleware library measures a folder; it is pure ASGI (no
buffering of the request body) so an accepted upload streams as before.
"""
from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path
from typing import Any, Awaitable, Callable

BUSY = ("busy: the server's upload space is full; try again in a few minutes "
        "上传空间已满，请几分钟后再试")


def folder_bytes(folder: Path) -> int:
    """Total size of the regular files under `folder` (0 when it does not exist)."""
    total = 0
    stack = [str(folder)]
    while stack:
        try:
            with os.scandir(stack.pop()) as entries:
                for entry in entries:
                    try:
                        if entry.is_dir(follow_symlinks=False):
                            stack.append(entry.path)
                        elif entry.is_file(follow_symlinks=False):
                            total += entry.stat(follow_symlinks=False).st_size
                    except OSError:  # removed while we looked
                        continue
        except OSError:
            continue
    return total


class UploadQuota:
    """Refuse POSTs to a path ending in ``/upload`` while the folder is over its limit."""

    def __init__(self, app: Callable[..., Awaitable[None]], *, folder: str | Path, limit_bytes: int,
                 recheck_s: float = 2.0) -> None:
        self.app, self.folder, self.limit = app, Path(folder), int(limit_bytes)
        self.recheck_s = recheck_s
        self._lock = threading.Lock()
        self._measured: tuple[float, int] | None = None  # (when, bytes)

    def used(self) -> int:
        """Bytes in the folder, measured at most every `recheck_s` seconds."""
        with self._lock:
            now = time.monotonic()
            if self._measured is None or now - self._measured[0] >= self.recheck_s:
                self._measured = (now, folder_bytes(self.folder))
            return self._measured[1]

    async def __call__(self, scope: dict[str, Any], receive, send) -> None:
        if scope.get("type") == "http" and scope.get("method") == "POST" \
                and scope.get("path", "").rstrip("/").endswith("/upload"):
            length = _content_length(scope)
            if self.used() + length > self.limit:
                await _refuse(send)
                return
        await self.app(scope, receive, send)


def _content_length(scope: dict[str, Any]) -> int:
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            try:
                return max(0, int(value))
            except ValueError:
                return 0
    return 0


async def _refuse(send) -> None:
    body = json.dumps({"detail": BUSY}, ensure_ascii=False).encode("utf-8")
    await send({"type": "http.response.start", "status": 503,
                "headers": [(b"content-type", b"application/json; charset=utf-8"),
                            (b"content-length", str(len(body)).encode()), (b"retry-after", b"120")]})
    await send({"type": "http.response.body", "body": body})
