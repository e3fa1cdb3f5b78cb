"""Which models the app offers, by opaque id, and a small cache of loaded `Generator`s.

Users (and API callers) pick a model by its id or its label; the id is a key into this
table and is never handed to the loader, so no text a user types becomes a path or a hub
id. The table holds:

- "auto" and the built-in models of ``assets/models`` (`textgen.loading.builtin_models()`);
- a few hub models a user would expect (`gpt2`, `distilgpt2`, `uer/gpt2-chinese-cluecorpussmall`),
  loaded by the real hub code when the hub is reachable (`HubStatus` probes it once and
  remembers); while it is not, they are left out of `choices` and `get` refuses them at once;
- local folders the operator lists in ``TEXTGEN_EXTRA_MODELS`` (tests, private models);
- models fine-tuned in this app (`register_finetuned`), only from inside the data folder.

>>> registry = ModelRegistry.from_env()                        # doctest: +SKIP
>>> [(e.id, e.label) for e in registry.entries()]              # doctest: +SKIP
>>> gen = registry.get("auto")          # loaded once, then cached   # doctest: +SKIP

No gradio here: the UI turns the exceptions into `gr.Error`.
"""
from __future__ import annotations

import logging
import os
import re
import secrets
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from .. import REPO_ROOT
from .errors import UnknownModelError

log = logging.getLogger(__name__)

MAX_LABEL_CHARS = 60
FAILED_LOAD_TTL_S = 120.0  # a failed load is answered from memory this long, then tried again

# (id, label, hub repo, revision). Each is pinned to a commit, so that a repo changed on the
# hub cannot change what the app runs or fine-tunes (the hub serves a commit's files by hash,
# and with HF_HUB_OFFLINE the cached snapshot of exactly that commit). The hashes are the
# repos' main-branch commits as widely recorded in public snapshot paths; to move a pin,
# check the new commit's files (safetensors weights, GPT-2 config) first.
HUB_MODELS: tuple[tuple[str, str, str, str | None], ...] = (
    ("gpt2", "gpt2 · English · Hugging Face Hub", "gpt2", "607a30d783dfa663caf39e06633721c8d4cfcd7e"),
    ("distilgpt2", "distilgpt2 · English · Hugging Face Hub", "distilgpt2",
     "2290a62682d06624634c1f46a6ad5be0f47f38aa"),
    ("gpt2-chinese", "gpt2-chinese-cluecorpussmall · 中文 · Hugging Face Hub",
     "uer/gpt2-chinese-cluecorpussmall", "c2c0249d8a2731f269414cc3b22dff021f8e07a3"),
)
_BUILTIN_LABELS = {"textgen-zh": "textgen-zh · 中文 (built-in 内置)",
                   "textgen-en": "textgen-en · English (built-in 内置)"}




def data_home() -> Path:
    """Where the app keeps its data: $TEXTGEN_HOME, else /data/textgen where a persistent
    /data exists (a Space with storage), else ``runs/`` in the repository."""
    env = os.environ.get("TEXTGEN_HOME")
    if env:
        return Path(env).expanduser().resolve()
    if Path("/data").is_dir():
        return Path("/data/textgen")
    return REPO_ROOT / "runs"


def owner_from_request(request: Any) -> str | None:
    """Who a request belongs to: the logged-in user name, else the browser session.

    Duck-typed on gradio's `gr.Request` so this module needs no gradio."""
    if request is None:
        return None
    return getattr(request, "username", None) or getattr(request, "session_hash", None)


@dataclass(frozen=True)
class ModelEntry:
    """One choosable model. `source` is what the loader gets; it is never shown or accepted."""

    id: str
    label: str
    kind: str  # "auto" | "builtin" | "hub" | "local" | "finetuned"
    source: str | Path
    revision: str | None = None
    owner: str | None = None  # None: everyone may use it

    def visible_to(self, owner: str | None) -> bool:
        return self.owner is None or self.owner == owner


BATCH_ROWS = 64  # rows one model's shared decode loop runs at once (requests × their n)


def _load_generator(entry: ModelEntry):
    from textgen import Generator

    # the app's concurrent requests of one model share one batched decode loop
    return Generator.from_pretrained(entry.source, revision=entry.revision, batch_rows=BATCH_ROWS)


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:40] or "model"


def clean_label(label: str) -> str:
    """A label fit for a dropdown: one line, no control characters, at most 60 characters."""
    if not isinstance(label, str):
        raise ValueError(f"label: must be text, got {type(label).__name__}")
    label = " ".join("".join(ch for ch in label if ch.isprintable()).split())
    if not label:
        raise ValueError("label: must not be empty")
    if len(label) > MAX_LABEL_CHARS:
        raise ValueError(f"label: {len(label)} characters; at most {MAX_LABEL_CHARS} are allowed")
    return label


class ModelRegistry:
    """Opaque id → model source, plus a thread-safe LRU cache of loaded generators.

    `get()` returns the cached `Generator`; a caller keeps using the object it got even if
    the model is evicted or removed meanwhile (eviction only drops the cache's reference).
    """

    def __init__(self, home: str | Path | None = None, *, extra: Iterable[str | Path] = (),
                 builtins: bool = True, hub: bool = True, cache_size: int = 2,
                 loader: Callable[[ModelEntry], Any] = _load_generator, hub_status: Any = None) -> None:
        from .hub_status import HubStatus

        if cache_size < 1:
            raise ValueError(f"cache_size: must be at least 1, got {cache_size}")
        self.home = Path(home).expanduser().resolve() if home is not None else data_home()
        self._loader = loader
        self._cache_size = cache_size
        self._entries: dict[str, ModelEntry] = {}
        self._cache: OrderedDict[str, Any] = OrderedDict()
        self._lock = threading.RLock()
        self._loading: dict[str, threading.Lock] = {}
        self._failed: dict[str, tuple[float, Exception]] = {}  # id -> (when, the load's error)
        self.hub = hub_status if hub_status is not None else HubStatus()
        if builtins:
            self._add_builtins()
        for folder in extra:
            self._add_local(Path(folder))
        if hub:
            for model_id, label, repo, revision in HUB_MODELS:
                self._add(ModelEntry(model_id, label, "hub", repo, revision))

    @classmethod
    def from_env(cls, **kwargs: Any) -> "ModelRegistry":
        """Registry for `python app.py`: data folder from $TEXTGEN_HOME and local model
        folders from $TEXTGEN_EXTRA_MODELS (separated by ``os.pathsep``, ":" on Linux)."""
        extra = [p for p in os.environ.get("TEXTGEN_EXTRA_MODELS", "").split(os.pathsep) if p.strip()]
        return cls(data_home(), extra=extra, **kwargs)

    # -- the table ------------------------------------------------------------------------
    def _add(self, entry: ModelEntry) -> ModelEntry:
        with self._lock:
            if entry.id in self._entries:
                raise ValueError(f"model: id {entry.id!r} is taken")
            self._entries[entry.id] = entry
        return entry

    def _add_builtins(self) -> None:
        from textgen.loading import builtin_models

        models = builtin_models()
        if not models:
            return
        self._add(ModelEntry("auto", "auto · built-in model for the language 按语言自动选择", "auto", "auto"))
        for name, folder in models.items():
            self._add(ModelEntry(_slug(name), _BUILTIN_LABELS.get(name, f"{name} (built-in 内置)"),
                                 "builtin", folder))

    def _add_local(self, folder: Path) -> None:
        from textgen.loading import ModelLoadError, check_local_folder

        folder = folder.expanduser().resolve()
        try:
            check_local_folder(folder)
        except ModelLoadError as exc:  # an operator's typo must not stop the app
            log.warning("TEXTGEN_EXTRA_MODELS: skipping %s: %s", folder, exc)
            return
        base = f"local-{_slug(folder.name)}"
        model_id, i = base, 2
        while model_id in self._entries:
            model_id, i = f"{base}-{i}", i + 1
        self._add(ModelEntry(model_id, f"{folder.name} (local 本地)", "local", folder))

    def entries(self, owner: str | None = None) -> list[ModelEntry]:
        """Models this owner may choose, in display order."""
        with self._lock:
            return [e for e in self._entries.values() if e.visible_to(owner)]

    def choices(self, owner: str | None = None) -> list[tuple[str, str]]:
        """(label, id) pairs for a dropdown: hub models only while the hub is reachable (an
        unknown state starts a probe and leaves them out until it answers)."""
        return [(e.label, e.id) for e in self.entries(owner) if self.unavailable(e, wait=False) is None]

    def unavailable(self, entry: ModelEntry, *, wait: bool = True) -> str | None:
        """Why this model cannot be loaded now, or None. Only hub models depend on the network;
        with HF_HUB_OFFLINE they count as available when their pinned snapshot is cached."""
        if entry.kind != "hub":
            return None
        from .hub_status import offline_by_setting

        if offline_by_setting() and _cached_snapshot(entry):
            return None
        ok = self.hub.reachable(wait=wait)
        if ok:
            return None
        if ok is None:
            return "the server is still checking whether the Hugging Face Hub can be reached"
        return self.hub.reason() or "the Hugging Face Hub cannot be reached from this server"

    def hub_note(self, owner: str | None = None) -> str:
        """A line for the model picker when hub models are left out, else empty."""
        hidden = [e for e in self.entries(owner) if e.kind == "hub" and self.unavailable(e, wait=False)]
        if not hidden:
            return ""
        names = ", ".join(str(e.source) for e in hidden)
        return (f"Hub models ({names}) are not offered: {self.unavailable(hidden[0], wait=False)}. "
                f"Hub 模型暂不可用：服务器无法连接 Hugging Face Hub。")

    def default_id(self) -> str | None:
        """"auto" when built-ins exist, else the first local model, else the first hub model."""
        public = self.entries(None)
        for kind in ("auto", "builtin", "local", "hub"):
            for e in public:
                if e.kind == kind:
                    return e.id
        return None

    def has_builtins(self) -> bool:
        return any(e.kind in ("auto", "builtin") for e in self.entries(None))

    def resolve(self, key: Any, owner: str | None = None) -> ModelEntry:
        """The entry with this id (or, failing that, this label). Anything else — a path, a
        hub id, another user's model — is refused with the same message."""
        if isinstance(key, str):
            visible = self.entries(owner)
            entry = next((e for e in visible if e.id == key), None) or \
                next((e for e in visible if e.label == key), None)
            if entry is not None:
                return entry
        shown = repr(key[:40] + "…" if isinstance(key, str) and len(key) > 40 else key)
        ids = ", ".join(e.id for e in self.entries(owner)) or "none"
        raise UnknownModelError(f"model: unknown model {shown}; choose one of: {ids}")

    def register_finetuned(self, path: str | Path, label: str, owner: str | None = None, *,
                           model_id: str | None = None) -> str:
        """Offer a model this app fine-tuned; returns its opaque id (a new random one, or
        `model_id`, which registering the same folder again for the same owner keeps).

        Only complete model folders inside the data folder are accepted (symlinks are
        followed before the check), so a user can never point the loader elsewhere."""
        from textgen.loading import check_local_folder

        label = clean_label(label)
        try:
            folder = Path(path).resolve(strict=True)
        except (OSError, RuntimeError, TypeError):
            raise ValueError(f"path: {path!s:.200} does not exist") from None
        home = self.home.resolve()
        if folder == home or not folder.is_relative_to(home):
            raise ValueError(f"path: fine-tuned models must live inside the data folder {home}")
        check_local_folder(folder)  # ModelLoadError: incomplete or unsafe (M2, M3, M5)
        with self._lock:
            known = self._entries.get(model_id) if model_id else None
            if known is not None and known.owner == owner and Path(known.source) == folder:
                return model_id
            taken = {e.label for e in self._entries.values() if e.visible_to(owner)}
            unique, i = label, 2
            while unique in taken:
                unique, i = f"{label} ({i})", i + 1
            model_id = model_id or f"ft-{secrets.token_hex(8)}"
            self._add(ModelEntry(model_id, unique, "finetuned", folder, owner=owner))
        return model_id

    def unregister(self, model_id: str, owner: str | None = None) -> None:
        """Remove a fine-tuned model. Requests already running keep their generator."""
        entry = self.resolve(model_id, owner)
        if entry.kind != "finetuned" or entry.id != model_id:
            raise UnknownModelError(f"model: {model_id!r} is not a fine-tuned model you can remove")
        with self._lock:
            self._entries.pop(entry.id, None)
            self._cache.pop(entry.id, None)

    # -- the cache ------------------------------------------------------------------------
    def get(self, key: str, owner: str | None = None):
        """The loaded `Generator` for an id or label; loads it once, then serves the cache.

        Concurrent callers for the same model wait for one load. Raises UnknownModelError
        or textgen's ModelLoadError: at once for a hub model while the hub is unreachable, and
        from memory for `FAILED_LOAD_TTL_S` after a load failed."""
        from textgen.loading import ModelLoadError

        entry = self.resolve(key, owner)
        with self._lock:
            if entry.id in self._cache:
                self._cache.move_to_end(entry.id)
                return self._cache[entry.id]
            self._raise_if_failed(entry)
        why = self.unavailable(entry)
        if why:
            raise ModelLoadError(f"model: {entry.label} is not available: {why}; "
                                 "choose a built-in or local model 请选择内置或本地模型")
        with self._lock:
            loading = self._loading.setdefault(entry.id, threading.Lock())
        # one load per model; other models load meanwhile (taking turns while transformers builds them)
        with loading:
            with self._lock:
                if entry.id in self._cache:
                    self._cache.move_to_end(entry.id)
                    return self._cache[entry.id]
                self._raise_if_failed(entry)  # the load we waited for failed
            try:
                generator = self._loader(entry)
            except Exception as exc:
                with self._lock:
                    self._failed[entry.id] = (time.monotonic(), exc)
                    self._loading.pop(entry.id, None)
                raise
            with self._lock:
                self._failed.pop(entry.id, None)
                if entry.id in self._entries:  # not removed while it loaded
                    self._cache[entry.id] = generator
                    while len(self._cache) > self._cache_size:
                        self._cache.popitem(last=False)
                self._loading.pop(entry.id, None)
        return generator

    def _raise_if_failed(self, entry: ModelEntry) -> None:
        failed = self._failed.get(entry.id)
        if failed is None:
            return
        when, exc = failed
        left = FAILED_LOAD_TTL_S - (time.monotonic() - when)
        if left <= 0:
            del self._failed[entry.id]
            return
        from textgen.loading import ModelLoadError

        raise ModelLoadError(f"{exc} (this load failed {round(FAILED_LOAD_TTL_S - left)} s ago; "
                        f"it is tried again in {max(1, round(left))} s)") from None

    def cached_ids(self) -> list[str]:
        """Ids of the loaded models, least recently used first."""
        with self._lock:
            return list(self._cache)

    def preload(self, key: str | None = None, languages: Sequence[str] = ("en", "zh")) -> threading.Thread:
        """Load a model in a background thread so the app starts at once; the first request
        waits for this load instead of starting another. "auto" loads both languages."""
        key = key or self.default_id()
        if any(e.kind == "hub" for e in self.entries(None)):
            self.hub.reachable(wait=False)  # learn it now, not at the first request

        def work() -> None:
            if key is None:
                return
            try:
                gen = self.get(key)
                if self.resolve(key).kind == "auto":
                    samples = {"en": "text", "zh": "文"}
                    for lang in languages:
                        gen.backend_for(samples[lang], [])
            except Exception as exc:  # noqa: BLE001 - logged; the first request shows the error
                log.warning("preloading model %r failed: %s", key, exc)

        thread = threading.Thread(target=work, name="textgen-preload", daemon=True)
        thread.start()
        return thread


def _cached_snapshot(entry: ModelEntry) -> bool:
    """Whether the pinned revision's config is in the local hub cache."""
    try:
        from huggingface_hub import try_to_load_from_cache

        found = try_to_load_from_cache(str(entry.source), "config.json", revision=entry.revision)
    except Exception:  # noqa: BLE001 - an unreadable cache is no cache
        return False
    return isinstance(found, str)
