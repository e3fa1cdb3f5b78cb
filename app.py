"""textgen web app: write texts from a title and keywords. Run `python app.py`.

Tabs: "Generate 生成" (this file); "Fine-tune 微调" plugs in from `finetune/ui.py` when that
module exists: `build_app` calls ``finetune.ui.build_tab(registry=..., generate=...)`` inside
the `gr.Tabs()` context; the tab opens its own ``with gr.Tab(...)``, may register models with
``registry.register_finetuned(...)`` and refresh the Generate tab's model list by outputting
``generate.refresh_models(request)`` to ``generate.model``.

API: ``Client(url).predict(title="Storm", keywords=["sea", "night"], api_name="/generate")``
returns ``Result.to_dict()``; every other input is optional (see `build_app`).

Environment (gradio reads GRADIO_SERVER_NAME / GRADIO_SERVER_PORT itself):
  TEXTGEN_HOME          data folder (default ./runs, or /data/textgen where /data exists)
  TEXTGEN_EXTRA_MODELS  local model folders to offer, separated by ":" (tests, private models)
  TEXTGEN_QUEUE_SIZE    requests that may wait for a generation slot (default 16); more get "busy"
  TEXTGEN_CONCURRENCY   generations that run at once (default 1)
  TEXTGEN_MAX_REQUEST_TOKENS  n × max_new_tokens allowed per request (default 2048)
  TEXTGEN_MAX_SECONDS   wall time of one generation (default 60); the texts so far are kept
  TEXTGEN_BEHIND_PROXY  1: take the client's address from X-Forwarded-For (set on Spaces)

Fair share: a browser session or API client may have 2 requests waiting or running, one
network address 6; the next free slot goes to the client served least recently (`FairSlots`).

UI text is bilingual in place ("Title 标题") rather than switched by language.
"""
from __future__ import annotations

import html
import logging
import os
import threading
import time
from dataclasses import dataclass
from typing import Any, Iterator, Sequence

import gradio as gr

from finetune.registry import ModelEntry, ModelRegistry, UnknownModelError, owner_from_request
from textgen.coverage import Span, coverage
from textgen.keywords import MAX_KEYWORDS, parse_keywords
from textgen.loading import BUILTIN_DIR, ModelLoadError
from textgen.params import KEYWORD_MODES, GenerationParams, param_specs
from textgen.prompt import MAX_TITLE_CHARS, check_title
from textgen.slots import Busy, FairSlots, SlotLimits

try:  # ZeroGPU on Hugging Face Spaces: GPU work must run inside a spaces.GPU function
    import spaces
except ImportError:
    spaces = None

log = logging.getLogger("textgen.app")

QUEUE_SIZE = 16
CONCURRENCY = 1  # textgen samples one request at a time anyway (seeded RNG lock)
# Events gradio runs at once, and how many more may queue for that: every generation event
# enters its handler (FairSlots answers "busy"), so gradio's own limits only guard bursts of
# connections and should answer 503 "Queue is full" only beyond those.
GRADIO_THREADS = 128
GRADIO_QUEUE = 64
POLL_S = 0.1  # how often a loading or waiting request looks up (and yields, to notice a gone client)
MAX_FILE_SIZE = "20mb"
# Gradio keeps each session's UI state (~170 kB) for its 10,000 most recent sessions unless told
# otherwise; a client that invents a session per request would grow the app by gigabytes.
SESSION_CAPACITY = 256
PURGE = (60, 600)  # every minute, delete cached files (uploads, downloads) older than 10 minutes
UPLOAD_LIMIT_MB = 512  # all uploads together; more is answered "busy" until the purge frees space
GPU_SECONDS = 120  # ZeroGPU reservation per call
STREAM_EVERY_S = 0.1  # at most ~10 page updates a second while streaming
SPECS = param_specs()

MODE_LABELS = {"guaranteed": "guaranteed 保证出现", "soft": "soft 尽量出现", "off": "off 不约束"}
EXAMPLES = [
    ["春夜", ["月", "花", "雨"]],
    ["夏日海边", ["海浪", "沙滩", "夕阳"]],
    ["The Storm", ["sea", "night", "lightning"]],
    ["A Letter Home", ["mountains", "river", "long road"]],
]
# offered in the keyword box's list; gr.Examples also shows only values among the choices
SUGGESTED_KEYWORDS = list(dict.fromkeys(k for _, words in EXAMPLES for k in words))
EMPTY_HTML = ('<div class="tg-empty">Candidates appear here as they are written.<br>'
              '候选文本会在生成时逐字显示在这里。</div>')


# -- input checks ---------------------------------------------------------------------------
def available_keyword_modes() -> list[str]:
    """Keyword modes this build of textgen implements, best first."""
    from textgen.constraints import build_constraints

    modes = []
    for mode in ("guaranteed", "soft", "off"):
        try:
            build_constraints(mode, tokenizer=None, keywords=["x"], n=1, prompt_len=1,
                              max_new_tokens=1, end_ids=[0])
        except NotImplementedError:
            continue
        except Exception:  # noqa: BLE001 - implemented, it only choked on the probe's dummy tokenizer
            pass
        modes.append(mode)
    return modes


def keyword_list(value: Any) -> list[str]:
    """Tags or text → keywords. A tag stays one keyword even with spaces ("long road");
    separators inside a tag (a pasted "月, 花、雨") split it; a string is split as the CLI does."""
    if value is None:
        return []
    if isinstance(value, str):
        return parse_keywords(value)
    if isinstance(value, (list, tuple)):
        if not all(isinstance(v, str) for v in value):
            raise ValueError("keywords: each keyword must be text")
        if len(value) > MAX_KEYWORDS * 4:
            raise ValueError(f"keywords: at most {MAX_KEYWORDS} keywords are allowed")
        return parse_keywords(_keyword_text(value))
    raise ValueError(f"keywords: must be a list of keywords or a text, got {type(value).__name__}")


def _keyword_text(words: Sequence[str]) -> str:
    # parse_keywords splits a separator-free string on spaces; a trailing newline (a
    # separator) makes it split only on separators, so "long road" stays one keyword.
    return "\n".join(words) + "\n"


@dataclass(frozen=True)
class ServeLimits:
    """What one request may ask of this server, on top of `GenerationParams`' own bounds."""

    request_tokens: int = 2048  # n × max_new_tokens: 8 × 256, 4 × 512 …
    seconds: float = 60.0  # wall time of one generation; the texts so far are kept
    load_seconds: float = 120.0  # a request waits this long for its model to load

    @classmethod
    def from_env(cls) -> "ServeLimits":
        d = cls()
        return cls(request_tokens=_env_int("TEXTGEN_MAX_REQUEST_TOKENS", d.request_tokens),
                   seconds=float(_env_int("TEXTGEN_MAX_SECONDS", int(d.seconds))))


@dataclass
class Request:
    """A checked generation request."""

    title: str
    keywords: list[str]
    params: GenerationParams


def check_request(title: Any, keywords: Any, keyword_mode: Any, *, modes: Sequence[str],
                  limits: ServeLimits | None = None, **numbers: Any) -> Request:
    """Validate every input server-side; raises gr.Error naming the field."""
    limits = limits or ServeLimits()
    try:
        title = check_title(title)
        words = keyword_list(keywords)
        if keyword_mode in KEYWORD_MODES and keyword_mode not in modes:
            raise ValueError(f"keyword_mode: {keyword_mode!r} is not available yet; "
                             f"choose one of {', '.join(modes)}")
        params = GenerationParams(keyword_mode=keyword_mode, **numbers)
        if params.n * params.max_new_tokens > limits.request_tokens:
            raise ValueError(f"max_new_tokens: n × max_new_tokens may be at most {limits.request_tokens} per "
                             f"request here, got {params.n} × {params.max_new_tokens} = "
                             f"{params.n * params.max_new_tokens}; ask for fewer candidates or shorter texts "
                             f"候选数 × 最大长度超出上限")
        params = params.replace(max_seconds=min(params.max_seconds, limits.seconds))
    except (ValueError, TypeError) as exc:
        raise gr.Error(str(exc), title="Invalid input 输入有误", print_exception=False) from None
    if not title and not words:
        raise gr.Error("title: give a title or at least one keyword 请填写标题或至少一个关键词",
                       title="Invalid input 输入有误", print_exception=False)
    return Request(title, words, params)


# -- rendering ------------------------------------------------------------------------------
def escape(text: str) -> str:
    """HTML-escape, and also neutralise the template syntax gr.HTML understands (${…}, {{…}})."""
    return (html.escape(text, quote=True)
            .replace("$", "&#36;").replace("{", "&#123;").replace("}", "&#125;"))


def highlight(text: str, spans: Sequence[Span]) -> str:
    """Text as safe HTML with each keyword occurrence in <mark>; overlapping spans are merged away."""
    out, pos = [], 0
    for span in sorted(spans, key=lambda s: (s.start, -s.end)):
        if span.start < pos:
            continue
        out.append(escape(text[pos:span.start]))
        out.append(f'<mark class="tg-kw" title="{escape(span.keyword)}">{escape(text[span.start:span.end])}</mark>')
        pos = span.end
    out.append(escape(text[pos:]))
    return "".join(out)


def _chips(words: Sequence[str], cls: str) -> str:
    return "".join(f'<span class="tg-chip {cls}">{escape(w)}</span>' for w in words)


def render_card(rank: str, text: str, keywords: Sequence[str], *, score: float | None = None,
                best: bool = False) -> str:
    covered, missing, spans = coverage(text, keywords)
    meta = [f'<span class="tg-rank">{escape(rank)}</span>']
    if best:
        meta.append('<span class="tg-best">best 最佳</span>')
    if score is not None:
        meta.append(f'<span class="tg-score" title="mean log-probability per token 平均对数概率">'
                    f'score {score:.2f}</span>')
    summary = ""
    if keywords:
        summary = (f'<div class="tg-summary"><span class="tg-count">{len(covered)}/{len(keywords)} '
                   f'keywords 关键词</span>{_chips(covered, "tg-covered")}{_chips(missing, "tg-missing")}</div>')
    body = highlight(text, spans) if text else '<span class="tg-wait">…</span>'
    return (f'<div class="tg-card{" tg-card-best" if best else ""}"><div class="tg-head">{"".join(meta)}'
            f'<button type="button" class="tg-copy" title="Copy text 复制文本">Copy 复制</button></div>'
            f'<div class="tg-text">{body}</div>{summary}</div>')


def render_stream(texts: Sequence[str], keywords: Sequence[str]) -> str:
    cards = [render_card(f"Candidate {i} 候选 {i}", t, keywords) for i, t in enumerate(texts, 1)]
    return f'<div class="tg-cards">{"".join(cards)}</div>'


def render_result(result, keywords: Sequence[str]) -> str:
    cards = [render_card(f"#{rank}", c.text, keywords, score=c.score, best=rank == 1)
             for rank, c in enumerate(result, 1)]
    return f'<div class="tg-cards">{"".join(cards)}</div>'


def _status(text: str) -> str:
    return f'<span class="tg-status">{escape(text)}</span>'


# -- handlers -------------------------------------------------------------------------------
class GenerateHandlers:
    """The Generate tab's and the API's server-side functions, testable without a server.

    Every request takes the same path (`_run`): checked, its model loaded in a thread of its
    own (never inside a generation slot), then in line at `FairSlots` for its turn, then
    streamed. Each step of that path yields, so a client that stops or goes away is noticed
    at the next yield (gradio closes the generator) and frees its place at once."""

    def __init__(self, registry: ModelRegistry, modes: Sequence[str] | None = None, *,
                 limits: ServeLimits | None = None, slots: FairSlots | None = None) -> None:
        self.registry = registry
        self.modes = list(modes) if modes is not None else available_keyword_modes()
        self.limits = limits or ServeLimits()
        self.slots = slots or FairSlots(SlotLimits())
        # ZeroGPU pickles arguments into a GPU worker: hand it the model id, never the model.
        self._gpu_stream = spaces.GPU(duration=GPU_SECONDS)(self._stream_by_id) if spaces else None

    @property
    def default_mode(self) -> str:
        return self.modes[0]

    def check(self, title: Any, keywords: Any, keyword_mode: Any, **numbers: Any) -> Request:
        return check_request(title, keywords, keyword_mode, modes=self.modes, limits=self.limits, **numbers)

    def entry(self, model: Any, owner: str | None) -> ModelEntry:
        try:
            return self.registry.resolve(model, owner)
        except UnknownModelError as exc:
            raise gr.Error(str(exc), title="Unknown model 未知模型", print_exception=False) from None

    def generator(self, entry: ModelEntry, owner: str | None):
        """The cached generator; a request keeps this object even if the model is switched."""
        try:
            return self.registry.get(entry.id, owner)
        except (ModelLoadError, UnknownModelError) as exc:
            raise gr.Error(str(exc), title="Model not available 模型不可用", print_exception=False) from None

    def _stream_by_id(self, model_id: str, owner: str | None, title: str, keywords: list[str],
                      params: GenerationParams) -> Iterator[Any]:
        yield from self.registry.get(model_id, owner).stream(title, keywords, params)

    # -- the one path every request takes -------------------------------------------------------
    def _load(self, entry: ModelEntry, owner: str | None) -> Iterator[Any]:
        """Yields None while the model loads (in its own thread), then the generator."""
        if entry.id in self.registry.cached_ids():
            yield self.generator(entry, owner)
            return
        box: dict[str, Any] = {}
        done = threading.Event()

        def work() -> None:
            try:
                box["gen"] = self.registry.get(entry.id, owner)
            except BaseException as exc:  # handed to the request, which re-raises it
                box["error"] = exc
            finally:
                done.set()

        threading.Thread(target=work, name="textgen-load", daemon=True).start()
        deadline = time.monotonic() + self.limits.load_seconds
        yield None
        while not done.wait(POLL_S):
            if time.monotonic() > deadline:
                raise gr.Error(f"model: loading {entry.label} takes more than {self.limits.load_seconds:.0f} s; "
                               "try again in a minute (it goes on loading) 模型加载较慢，请稍后再试",
                               title="Model not available 模型不可用", print_exception=False)
            yield None
        if "error" in box:
            exc = box["error"]
            if isinstance(exc, (ModelLoadError, UnknownModelError)):
                raise gr.Error(str(exc), title="Model not available 模型不可用", print_exception=False) from None
            raise exc
        yield box["gen"]

    def _run(self, entry: ModelEntry, owner: str | None, req: Request, request: Any) -> Iterator[tuple[str, Any]]:
        """("loading", None) … ("waiting", position) … ("start", None), ("text", StreamEvent) …,
        ("done", Result)."""
        try:
            ticket = self.slots.enter(session=owner, address=client_address(request))
        except Busy as exc:
            raise gr.Error(str(exc), title="Busy 忙", print_exception=False) from None
        try:
            gen = None
            for gen in self._load(entry, owner):
                if gen is None:
                    yield "loading", None
            ticket.mark_ready()
            while not ticket.wait(POLL_S):
                yield "waiting", ticket.position
            yield "start", None
            events = (self._gpu_stream(entry.id, owner, req.title, req.keywords, req.params) if self._gpu_stream
                      else gen.stream(req.title, req.keywords, req.params))
            try:
                for event in events:
                    if event.done:
                        _label_result(event.result, entry)
                        yield "done", event.result
                    else:
                        yield "text", event
            except (ValueError, NotImplementedError, ModelLoadError) as exc:
                raise gr.Error(str(exc), title="Generation failed 生成失败", print_exception=False) from None
            finally:
                events.close()  # Stop / a closed tab / a gone API client: stop sampling now
        finally:
            ticket.release()

    # -- the Generate tab -------------------------------------------------------------------
    def stream(self, model: str, title: str, keywords: Any, keyword_mode: str, n: float,
               max_new_tokens: float, temperature: float, top_k: float, top_p: float,
               repetition_penalty: float, seed: float | None, random_seed: bool,
               request: gr.Request | None = None) -> Iterator[tuple]:
        """Generate-button handler. Yields (cards html, best text, status, seed)."""
        owner = owner_from_request(request)
        req = self.check(title, keywords, keyword_mode, n=n, max_new_tokens=max_new_tokens,
                         temperature=temperature, top_k=top_k, top_p=top_p,
                         repetition_penalty=repetition_penalty,
                         seed=None if random_seed or seed is None else seed)
        entry = self.entry(model, owner)
        started, last = time.monotonic(), 0.0
        for kind, value in self._run(entry, owner, req, request):
            if kind == "loading":
                yield (gr.skip(), gr.skip(), _status(f"Loading {entry.label} … 正在加载模型"), gr.skip())
            elif kind == "waiting":
                yield (gr.skip(), gr.skip(), _status(f"Waiting for a free slot: {value} ahead … "
                                                     f"排队中，前面还有 {value} 个"), gr.skip())
            elif kind == "start":
                started = time.monotonic()
                yield (render_stream([""] * req.params.n, req.keywords), "", _status("Generating … 生成中"), gr.skip())
            elif kind == "text" and time.monotonic() - last >= STREAM_EVERY_S:
                last = time.monotonic()
                yield (render_stream(value.texts, req.keywords), gr.skip(), gr.skip(), gr.skip())
            elif kind == "done":
                took = time.monotonic() - started
                note = (f" · stopped at the {self.limits.seconds:.0f} s limit 已达时间上限"
                        if value.stopped == "time_limit" else "")
                yield (render_result(value, req.keywords), value[0].text if value else "",
                       _status(f"{value.model} · seed {value.seed} · {len(value)} candidates 候选 · "
                               f"{took:.1f} s{note}"), value.seed)

    # -- the /generate API ------------------------------------------------------------------
    def generate_events(self, model: str, title: Any, keywords: Any, keyword_mode: Any,
                        owner: str | None = None, request: Any = None, **numbers: Any) -> Iterator[dict[str, Any]]:
        """The /generate API: progress as {"done": false, "status": …}, at least every
        `POLL_S` (so that a client that went away is noticed), then `Result.to_dict()` with
        "done": true."""
        req = self.check(title, keywords, keyword_mode, **numbers)
        entry = self.entry(model, owner)
        last, tokens = 0.0, 0
        for kind, value in self._run(entry, owner, req, request):
            if kind == "done":
                yield {**value.to_dict(), "done": True}
                return
            tokens += kind == "text"
            if kind != "text" or time.monotonic() - last >= STREAM_EVERY_S:
                last = time.monotonic()
                status = {"loading": "loading", "waiting": "waiting", "start": "generating",
                          "text": "generating"}[kind]
                yield {"done": False, "status": status, "position": value if kind == "waiting" else 0,
                       "tokens": tokens}

    def generate(self, model: str, title: Any, keywords: Any, keyword_mode: Any,
                 owner: str | None = None, **numbers: Any) -> dict[str, Any]:
        """The /generate API's final answer, for callers in this process."""
        final: dict[str, Any] = {}
        for final in self.generate_events(model, title, keywords, keyword_mode, owner, **numbers):
            pass
        return final

    def refresh_models(self, request: gr.Request | None = None):
        """The model dropdown's choices for this user (their own fine-tuned models included);
        its note says which models are left out and why (the hub offline)."""
        owner = owner_from_request(request)
        return gr.update(choices=self.registry.choices(owner), info=self.registry.hub_note(owner) or None)

    @staticmethod
    def split_tags(tags: Any):
        """Split a pasted "a, b、c" tag into separate tags."""
        try:
            words = keyword_list(tags or [])
        except ValueError as exc:
            gr.Warning(str(exc))
            return gr.skip()
        if words == list(tags or []):
            return gr.skip()  # nothing to split; answering would fire `change` again
        return gr.update(value=words)


def _label_result(result, entry: ModelEntry) -> None:
    """Results name a fine-tuned model by its label, as the user knows it (its folder is always
    named "model"); the others by their own names (built-in, folder, hub id)."""
    if entry.kind == "finetuned":
        result.model = entry.label


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



# -- layout ---------------------------------------------------------------------------------
@dataclass
class GenerateTab:
    """What the Generate tab offers to other tabs."""

    model: gr.Dropdown
    handlers: GenerateHandlers

    def refresh_models(self, request: gr.Request | None = None):
        return self.handlers.refresh_models(request)


def _slider(name: str, label: str) -> gr.Slider:
    spec = SPECS[name]
    low = spec["min"] + spec["step"] if spec["low_open"] else spec["min"]
    return gr.Slider(low, spec["max"], value=spec["default"], step=spec["step"], label=label,
                     info=spec["help"], elem_id=f"tg-{name}")


CARDS_CSS = """
.tg-cards { display: flex; flex-direction: column; gap: 12px; }
.tg-card { border: 1px solid var(--border-color-primary); border-radius: 10px; padding: 12px 14px;
  background: var(--block-background-fill); }
.tg-card-best { border-color: var(--color-accent); box-shadow: 0 0 0 1px var(--color-accent-soft); }
.tg-head { display: flex; align-items: center; gap: 8px; margin-bottom: 6px; font-size: 0.85em;
  color: var(--body-text-color-subdued); }
.tg-rank { font-weight: 600; color: var(--body-text-color); }
.tg-best { background: var(--color-accent); color: white; border-radius: 999px; padding: 0 8px; }
.tg-copy { margin-left: auto; border: 1px solid var(--border-color-primary); border-radius: 6px;
  padding: 2px 10px; background: var(--button-secondary-background-fill); cursor: pointer;
  color: var(--body-text-color); font-size: 0.95em; }
.tg-copy:hover { background: var(--button-secondary-background-fill-hover); }
.tg-text { white-space: pre-wrap; line-height: 1.7; font-size: 1.02em; color: var(--body-text-color);
  overflow-wrap: anywhere; }
.tg-kw { background: #fde68a; color: #111827; border-radius: 4px; padding: 0 2px; }
.tg-summary { margin-top: 8px; display: flex; flex-wrap: wrap; gap: 6px; align-items: center;
  font-size: 0.85em; }
.tg-count { color: var(--body-text-color-subdued); margin-right: 4px; }
.tg-chip { border-radius: 999px; padding: 1px 9px; border: 1px solid transparent; }
.tg-covered { background: #dcfce7; color: #166534; }
.tg-covered::before { content: "✓ "; }
.tg-missing { background: #fee2e2; color: #991b1b; text-decoration: line-through; }
.tg-missing::before { content: "✗ "; }
.tg-wait { color: var(--body-text-color-subdued); }
.tg-empty { color: var(--body-text-color-subdued); text-align: center; padding: 48px 12px;
  border: 1px dashed var(--border-color-primary); border-radius: 10px; line-height: 1.8; }
"""
# Copy buttons inside the cards: one delegated listener, installed once per page.
COPY_JS = """
element.addEventListener('click', (event) => {
  const button = event.target.closest('.tg-copy');
  if (!button) return;
  const text = button.closest('.tg-card').querySelector('.tg-text').innerText;
  const done = () => { button.textContent = 'Copied 已复制';
                       setTimeout(() => { button.textContent = 'Copy 复制'; }, 1500); };
  if (navigator.clipboard && window.isSecureContext) {
    navigator.clipboard.writeText(text).then(done);
  } else {
    const area = document.createElement('textarea');
    area.value = text; document.body.appendChild(area); area.select();
    document.execCommand('copy'); area.remove(); done();
  }
});
"""
PAGE_CSS = """
.tg-header h1 { margin-bottom: 0; }
.tg-header p { margin-top: 4px; color: var(--body-text-color-subdued); }
.tg-notice { border-left: 4px solid #f59e0b; padding: 6px 12px; background: var(--block-background-fill); }
.tg-status { color: var(--body-text-color-subdued); font-size: 0.9em; }
"""
THEME = gr.themes.Soft(primary_hue="indigo", secondary_hue="amber").set(
    button_primary_background_fill="*primary_600", button_primary_background_fill_hover="*primary_700",
    button_primary_text_color="white", button_primary_background_fill_dark="*primary_600",
    button_primary_background_fill_hover_dark="*primary_500", button_primary_text_color_dark="white")


def _no_builtin_notice(registry: ModelRegistry) -> str:
    if registry.has_builtins():
        return ""
    return ("**No built-in model installed yet 尚未安装内置模型** (expected in `assets/models/textgen-zh`, "
            "`textgen-en`). Choose a model below: Hugging Face Hub models need a network connection; "
            "set `TEXTGEN_EXTRA_MODELS=/path/to/model` to offer a local one. "
            "请选择下方模型：Hub 模型需要联网，或用 `TEXTGEN_EXTRA_MODELS` 指定本地模型文件夹。")


def build_generate_tab(registry: ModelRegistry, handlers: GenerateHandlers, *,
                       concurrency: int | None) -> GenerateTab:
    with gr.Row(equal_height=False):
        with gr.Column(scale=2, min_width=320):
            # custom values: the registry checks every id server-side, and a session whose state
            # gradio dropped still holds choices (its fine-tuned models) the default list lacks
            model = gr.Dropdown(registry.choices(), value=registry.default_id(), label="Model 模型",
                                allow_custom_value=True, elem_id="tg-model")
            title = gr.Textbox(label="Title 标题", placeholder="e.g. 春夜 / The Storm",
                               max_length=MAX_TITLE_CHARS, elem_id="tg-title")
            keywords = gr.Dropdown(choices=SUGGESTED_KEYWORDS, value=[], multiselect=True, allow_custom_value=True,
                                   max_choices=MAX_KEYWORDS, label="Keywords 关键词", elem_id="tg-keywords",
                                   info="Type a keyword and press Enter, or paste a list separated by , ， 、 ; "
                                        "— × removes one. 输入关键词后按回车，或粘贴用逗号、顿号分隔的列表。")
            mode = gr.Radio([(MODE_LABELS[m], m) for m in handlers.modes], value=handlers.default_mode,
                            label="Keyword mode 关键词模式", info=SPECS["keyword_mode"]["help"],
                            elem_id="tg-mode")
            with gr.Row():
                run = gr.Button("Generate 生成", variant="primary", elem_id="tg-generate")
                stop = gr.Button("Stop 停止", variant="stop", elem_id="tg-stop")
            with gr.Accordion("Sampling 采样设置", open=False):
                n = _slider("n", "Candidates 候选数")
                max_new_tokens = _slider("max_new_tokens", "Max new tokens 最大生成长度")
                temperature = _slider("temperature", "Temperature 温度")
                top_k = _slider("top_k", "Top-k")
                top_p = _slider("top_p", "Top-p")
                repetition_penalty = _slider("repetition_penalty", "Repetition penalty 重复惩罚")
                with gr.Row():
                    seed = gr.Number(label="Seed 随机种子", precision=0, minimum=SPECS["seed"]["min"],
                                     maximum=SPECS["seed"]["max"], value=0, elem_id="tg-seed")
                    random_seed = gr.Checkbox(label="Random seed 随机", value=True, elem_id="tg-random")
            gr.Examples(EXAMPLES, inputs=[title, keywords], label="Examples 示例")
        with gr.Column(scale=3, min_width=360):
            status = gr.HTML(_status("Ready 就绪"), elem_id="tg-status")
            cards = gr.HTML(EMPTY_HTML, css_template=CARDS_CSS, js_on_load=COPY_JS, elem_id="tg-cards",
                            min_height=160)
            best = gr.Textbox(label="Best text 最佳文本", lines=4, interactive=False,
                              buttons=["copy"], elem_id="tg-best")

    inputs = [model, title, keywords, mode, n, max_new_tokens, temperature, top_k, top_p,
              repetition_penalty, seed, random_seed]
    event = gr.on([run.click, title.submit], handlers.stream, inputs, [cards, best, status, seed],
                  api_visibility="private", concurrency_limit=concurrency, concurrency_id="generate",
                  show_progress="minimal", show_progress_on=[status])
    stop.click(None, cancels=[event], queue=False, api_visibility="private")
    keywords.change(handlers.split_tags, keywords, keywords, queue=False, api_visibility="private",
                   show_progress="hidden")
    seed.input(lambda: False, None, random_seed, queue=False, api_visibility="private",
               show_progress="hidden")
    return GenerateTab(model=model, handlers=handlers)


def _api_endpoint(handlers: GenerateHandlers, registry: ModelRegistry, *, concurrency: int | None) -> None:
    s = {k: v["default"] for k, v in SPECS.items()}
    default_model, default_mode = registry.default_id() or "", handlers.default_mode

    def generate(title: str, keywords: list[str] | str = "", model: str = default_model,
                 keyword_mode: str = default_mode, n: int = s["n"],
                 max_new_tokens: int = s["max_new_tokens"], temperature: float = s["temperature"],
                 top_k: int = s["top_k"], top_p: float = s["top_p"],
                 repetition_penalty: float = s["repetition_penalty"], seed: int | None = None,
                 request: gr.Request = None) -> Iterator[dict]:
        """Write texts from a title and keywords; the final answer (what `predict` returns) is
        {"done": true, "candidates": [{"text", "covered", "missing", "score"}, …], "model",
        "seed", "stopped", …}, best candidate first; `submit` also sees progress
        {"done": false, "status": "loading" | "waiting" | "generating", "position", "tokens"}.
        `keywords` is a list or a text separated by , ， 、 ; |; `model` is a model id or label
        from the app's list."""
        yield from handlers.generate_events(model, title, keywords, keyword_mode, owner_from_request(request),
                                            request, n=n, max_new_tokens=max_new_tokens,
                                            temperature=temperature, top_k=top_k, top_p=top_p,
                                            repetition_penalty=repetition_penalty, seed=seed)

    gr.api(generate, api_name="generate", concurrency_limit=concurrency, concurrency_id="generate")


def _add_finetune_tab(registry: ModelRegistry, generate: GenerateTab) -> None:
    import importlib.util

    if importlib.util.find_spec("finetune.ui") is None:  # not written yet
        return
    from finetune.ui import build_tab

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
        notice = _no_builtin_notice(registry)
        if notice:
            gr.Markdown(notice, elem_classes="tg-notice", elem_id="tg-notice")
        with gr.Tabs():
            with gr.Tab("Generate 生成", id="generate"):
                # No gradio limit on generation events: each enters its handler at once, where
                # FairSlots admits it (or answers "busy") and orders the turns; gradio's FIFO
                # would let one client's flood sit ahead of everyone.
                tab = build_generate_tab(registry, handlers, concurrency=None)
            if finetune_tab:
                _add_finetune_tab(registry, tab)
        _api_endpoint(handlers, registry, concurrency=None)
        demo.load(tab.refresh_models, None, tab.model, queue=False, api_visibility="private",
                  show_progress="hidden")
    # api_open=False: REST calls cannot skip the queue; gradio_client goes through it.
    demo.max_threads = GRADIO_THREADS  # read by queue(); launch() sets it again (launch_kwargs)
    demo.queue(max_size=max(GRADIO_QUEUE, queue_size), default_concurrency_limit=concurrency, api_open=False)
    return demo


def launch_kwargs(registry: ModelRegistry, *, session_capacity: int = SESSION_CAPACITY,
                  upload_limit_mb: float = UPLOAD_LIMIT_MB) -> dict[str, Any]:
    """Options for `demo.launch`; the server name and port come from GRADIO_SERVER_* env vars."""
    from starlette.middleware import Middleware

    from finetune.upload_quota import UploadQuota

    quota = Middleware(UploadQuota, folder=gr.utils.get_upload_folder(),
                       limit_bytes=int(upload_limit_mb * 2**20))
    return dict(show_error=True, max_file_size=MAX_FILE_SIZE, theme=THEME, css=PAGE_CSS,
                blocked_paths=[str(registry.home)], state_session_capacity=session_capacity,
                max_threads=GRADIO_THREADS,
                app_kwargs={"middleware": [quota]})


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "")
    try:
        return int(value) if value.strip() else default
    except ValueError:
        raise SystemExit(f"{name}: must be a whole number, got {value!r}") from None


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


def main() -> None:
    _fewer_malloc_arenas()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # gradio's own startup pings
    registry = ModelRegistry.from_env()
    if not registry.has_builtins():
        log.warning("no built-in model in %s; offering hub and TEXTGEN_EXTRA_MODELS models only", BUILTIN_DIR)
    demo = build_app(registry, queue_size=_env_int("TEXTGEN_QUEUE_SIZE", QUEUE_SIZE),
                     concurrency=_env_int("TEXTGEN_CONCURRENCY", CONCURRENCY), limits=ServeLimits.from_env())
    registry.preload()  # in the background: the page is up at once, the first request waits
    demo.launch(**launch_kwargs(registry))


if __name__ == "__main__":
    main()
