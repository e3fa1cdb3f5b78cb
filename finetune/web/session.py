"""What the Generate tab keeps per session and client: the texts so far of the generation in
progress (for its Stop button), the files of a download, the client's network address."""
from __future__ import annotations

import json
import os
import secrets
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gradio as gr




@dataclass
class Partial:
    """A generation in progress, as far as its Stop button needs to know."""

    keywords: list[str]
    base: dict | None = None  # what was shown, when one candidate is being rewritten
    index: int | None = None
    event: Any = None  # the latest `textgen.results.StreamEvent`, decoded only if Stop needs it
    steps: int = 0
    started: float = field(default_factory=time.monotonic)

    @property
    def texts(self) -> list[str]:
        return list(self.event.texts) if self.event is not None else []


class Partials:
    """The latest generation of each session (the most recent `size` sessions)."""

    def __init__(self, size: int) -> None:
        self._size, self._items, self._lock = size, OrderedDict(), threading.Lock()

    def start(self, owner: str | None, partial: Partial) -> Partial:
        with self._lock:
            self._items[owner] = partial
            self._items.move_to_end(owner)
            while len(self._items) > self._size:
                self._items.popitem(last=False)
        return partial

    def pop(self, owner: str | None, partial: Partial | None = None) -> Partial | None:
        """Remove and return this session's (only if it is still `partial`, when given)."""
        with self._lock:
            found = self._items.get(owner)
            if found is None or (partial is not None and found is not partial):
                return None
            return self._items.pop(owner)


def write_exports(shown: dict) -> tuple[Path, Path]:
    """All candidates shown, as TXT and JSON files in a fresh folder of gradio's cache (deleted
    with the cache's other files, see PURGE)."""
    folder = Path(gr.utils.get_upload_folder()) / f"textgen-{secrets.token_hex(16)}"
    folder.mkdir(parents=True, mode=0o700)
    asked = shown["request"]
    lines = [f"Title 标题: {asked['title']}", f"Keywords 关键词: {', '.join(asked['keywords'])}",
             f"Model 模型: {shown['model']} · seed {shown['seed']}", ""]
    for rank, c in enumerate(shown["candidates"], 1):
        found = f" · {len(c['covered'])}/{len(asked['keywords'])} keywords" if asked["keywords"] else ""
        lines += [f"#{rank} · score {c['score']:.2f}{found}" + (f" · {c['note']}" if c.get("note") else ""),
                  c["text"], ""]
    txt, js = folder / "candidates.txt", folder / "candidates.json"
    txt.write_text("\n".join(lines), encoding="utf-8")
    data = {"title": asked["title"], "keywords": asked["keywords"], "model": shown["model"], "seed": shown["seed"],
            "params": asked["params"],
            "candidates": [{k: c[k] for k in ("text", "covered", "missing", "score", "tokens", "note")}
                           for c in shown["candidates"]]}
    js.write_text(json.dumps(data, ensure_ascii=False, indent=2), encoding="utf-8")
    return txt, js


def client_address(request: Any) -> str | None:
    """The client's network address for the per-address limit. Behind a reverse proxy
    (TEXTGEN_BEHIND_PROXY=1, or on a Hugging Face Space) every request comes from the proxy,
    which appends the real address to X-Forwarded-For: the last entry is the one it added."""
    if request is None:
        return None
    behind_proxy = os.environ.get("TEXTGEN_BEHIND_PROXY", "").strip() == "1" or "SPACE_ID" in os.environ
    headers = getattr(request, "headers", None) or {}
    forwarded = headers.get("x-forwarded-for", "") if behind_proxy else ""
    if forwarded.strip():
        return forwarded.split(",")[-1].strip()
    client = getattr(request, "client", None)
    return getattr(client, "host", None)
