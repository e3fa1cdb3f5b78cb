"""textgen web app: write texts from a title and keywords. Run `python app.py`.

Tabs: "Generate 生成" from `finetune/web/generate_tab.py` (handlers in `generate.py`, cards in
`cards.py`); "Fine-tune 微调" from `finetune/web/ui.py`: `build_app` calls
``finetune.web.ui.build_tab(registry=..., generate=...)`` inside the `gr.Tabs()` context; the tab
opens its own ``with gr.Tab(...)``, may register models with ``registry.register_finetuned(...)``
and refresh the Generate tab's model list by outputting ``generate.refresh_models(request)`` to
``generate.model``.

API: ``Client(url).predict(title="Storm", keywords=["sea", "night"], api_name="/generate")``
returns ``Result.to_dict()``; every other input is optional (see `build_app`).

Environment (gradio reads GRADIO_SERVER_NAME / GRADIO_SERVER_PORT itself):
  TEXTGEN_HOME          data folder (default ./runs, or /data/textgen where /data exists)
  TEXTGEN_EXTRA_MODELS  local model folders to offer, separated by ":" (tests, private models)
  TEXTGEN_QUEUE_SIZE    requests that may wait for a generation slot (default 16); more get "busy"
  TEXTGEN_CONCURRENCY   generations that run at once, sharing one batch per model (default 8)
  TEXTGEN_MAX_REQUEST_TOKENS  n × max_new_tokens allowed per request (default 2048)
  TEXTGEN_MAX_SECONDS   wall time of one generation (default 60); the texts so far are kept
  TEXTGEN_BEHIND_PROXY  1: take the client's address from X-Forwarded-For (set on Spaces)
  TEXTGEN_TORCH_THREADS torch's threads for the model's arithmetic (default 1 on machines with
                        up to 2 cores, where the web server needs the other one; else torch's)

Fair share: a browser session or API client may have 2 requests waiting or running, one
network address 6; the next free slot goes to the client served least recently (`FairSlots`).

UI text is bilingual in place ("Title 标题") rather than switched by language.
"""
from __future__ import annotations

import logging
import os
import sys
from typing import Any, Sequence

import gradio as gr

from finetune.web.assets import asset
from finetune.web.generate import GenerateHandlers
from finetune.web.generate_tab import THEME, GenerateTab, api_endpoint, build_generate_tab, no_builtin_notice
from finetune.web.registry import ModelRegistry
from finetune.web.requests import ServeLimits, env_int
from textgen.loading import BUILTIN_DIR
from textgen.slots import FairSlots, SlotLimits

log = logging.getLogger("textgen.app")

QUEUE_SIZE = 16
CONCURRENCY = 8  # requests of one model share a batched decode loop (textgen.batching)
# Events gradio runs at once, and how many more may queue for that: every generation event
# enters its handler (FairSlots answers "busy"), so gradio's own limits only guard bursts of
# connections and should answer 503 "Queue is full" only beyond those.
GRADIO_THREADS = 128
GRADIO_QUEUE = 64
MAX_FILE_SIZE = "20mb"
# Gradio keeps each session's UI state (~170 kB) for its 10,000 most recent sessions unless told
# otherwise; a client that invents a session per request would grow the app by gigabytes.
SESSION_CAPACITY = 256
PURGE = (60, 600)  # every minute, delete cached files (uploads, downloads) older than 10 minutes
UPLOAD_LIMIT_MB = 512  # all uploads together; more is answered "busy" until the purge frees space


def _add_finetune_tab(registry: ModelRegistry, generate: GenerateTab) -> None:
    from finetune.web.ui import build_tab

    build_tab(registry=registry, generate=generate)


def build_app(registry: ModelRegistry, *, queue_size: int = QUEUE_SIZE, concurrency: int = CONCURRENCY,
              modes: Sequence[str] | None = None, finetune_tab: bool = True,
              purge: tuple[int, int] = PURGE, limits: ServeLimits | None = None,
              slot_limits: SlotLimits | None = None) -> gr.Blocks:
    """The whole app, queue configured; loads no model.

    concurrency: generations at once; queue_size: requests that may wait for one (their
    order is `FairSlots`', per client; gradio's queue only hands them over). purge: (every s,
    older than s) for gradio's cached files, raw uploads and those a handler refused included."""
    slots = FairSlots(slot_limits or SlotLimits(running=concurrency, waiting=queue_size))
    handlers = GenerateHandlers(registry, modes, limits=limits, slots=slots)
    with gr.Blocks(title="textgen · 标题关键词写作", delete_cache=purge) as demo:
        gr.Markdown("# textgen\nWrite a text from a title and keywords. 根据标题和关键词写作。",
                    elem_classes="tg-header")
        notice = no_builtin_notice(registry)
        if notice:
            gr.Markdown(notice, elem_classes="tg-notice", elem_id="tg-notice")
        with gr.Tabs():
            with gr.Tab("Generate 生成", id="generate") as generate_tab:
                # No gradio limit on generation events: each enters its handler at once, where
                # FairSlots admits it (or answers "busy") and orders the turns; gradio's FIFO
                # would let one client's flood sit ahead of everyone.
                tab = build_generate_tab(registry, handlers, concurrency=None)
            # a hidden tab may miss the slider's updates: bound it again when it is shown
            generate_tab.select(handlers.length_bounds, tab.length_inputs, tab.length_outputs,
                                api_visibility="private", show_progress="hidden", preprocess=False)
            if finetune_tab:
                _add_finetune_tab(registry, tab)
        api_endpoint(handlers, registry, concurrency=None)
        demo.load(tab.refresh_models, None, tab.model, queue=False, api_visibility="private",
                  show_progress="hidden")
        demo.load(handlers.length_bounds, tab.length_inputs, tab.length_outputs, api_visibility="private",
                  show_progress="hidden", preprocess=False)
    # api_open=False: REST calls cannot skip the queue; gradio_client goes through it.
    demo.max_threads = GRADIO_THREADS  # read by queue(); launch() sets it again (launch_kwargs)
    demo.queue(max_size=max(GRADIO_QUEUE, queue_size), default_concurrency_limit=concurrency, api_open=False)
    return demo


def launch_kwargs(registry: ModelRegistry, *, session_capacity: int = SESSION_CAPACITY,
                  upload_limit_mb: float = UPLOAD_LIMIT_MB) -> dict[str, Any]:
    """Options for `demo.launch`; the server name and port come from GRADIO_SERVER_* env vars."""
    from starlette.middleware import Middleware

    from finetune.web.upload_quota import UploadQuota

    quota = Middleware(UploadQuota, folder=gr.utils.get_upload_folder(),
                       limit_bytes=int(upload_limit_mb * 2**20))
    return dict(show_error=True, max_file_size=MAX_FILE_SIZE, theme=THEME, css=asset("page.css"),
                blocked_paths=[str(registry.home)], state_session_capacity=session_capacity,
                max_threads=GRADIO_THREADS,
                app_kwargs={"middleware": [quota]})


def _fewer_malloc_arenas(arenas: int = 2) -> None:
    """glibc gives each thread that allocates its own malloc arena (up to 8 per core), and
    gradio runs handlers in up to GRADIO_THREADS threads: RSS then creeps up under concurrent
    load though nothing leaks. Two arenas keep it flat (MALLOC_ARENA_MAX, set before any thread)."""
    import ctypes
    import ctypes.util

    if os.environ.get("MALLOC_ARENA_MAX"):
        return
    try:
        ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").mallopt(-8, arenas)  # M_ARENA_MAX
    except (OSError, AttributeError):  # not glibc (macOS, musl): nothing to tune
        pass


def _absent_matplotlib_fails_fast() -> None:
    """gradio imports matplotlib twice around every event it processes (to switch its backend);
    where matplotlib is not installed, each of those failed imports searches all of sys.path
    again (Python caches only imports that succeed): measured with py-spy under 8 streaming
    clients, 14% of the server's event loop. A None in sys.modules makes the same import fail
    at once, with the same ImportError."""
    import importlib.util

    if "matplotlib" not in sys.modules and importlib.util.find_spec("matplotlib") is None:
        sys.modules["matplotlib"] = None  # type: ignore[assignment]


def _torch_threads(cores: int | None = None) -> int:
    """Threads torch may use for the models' arithmetic: TEXTGEN_TORCH_THREADS, else 1 on a
    machine of up to 2 cores, else torch's own default (0: leave it).

    Why 1 there: the decode steps of many requests are small ops, where a second thread gains
    little and spins between them, on the core that gradio's request handling needs; measured
    on 2 cores (benchmarks/serve.py), 8 clients made ~20% more tokens/s with 1 thread and one
    client as many. Training runs in worker processes of its own, with its own threads."""
    cores = cores or os.cpu_count() or 1
    threads = env_int("TEXTGEN_TORCH_THREADS", 1 if cores <= 2 else 0)
    if threads < 0:
        raise SystemExit(f"TEXTGEN_TORCH_THREADS: must be 0 (torch's default) or more, got {threads}")
    return threads


def main() -> None:
    _fewer_malloc_arenas()
    _absent_matplotlib_fails_fast()
    threads = _torch_threads()
    if threads:
        import torch  # the models load later, in the registry's threads

        torch.set_num_threads(threads)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # gradio's own startup pings
    registry = ModelRegistry.from_env()
    if not registry.has_builtins():
        log.warning("no built-in model in %s; offering hub and TEXTGEN_EXTRA_MODELS models only", BUILTIN_DIR)
    demo = build_app(registry, queue_size=env_int("TEXTGEN_QUEUE_SIZE", QUEUE_SIZE),
                     concurrency=env_int("TEXTGEN_CONCURRENCY", CONCURRENCY), limits=ServeLimits.from_env())
    registry.preload()  # in the background: the page is up at once, the first request waits
    demo.launch(**launch_kwargs(registry))


if __name__ == "__main__":
    main()
