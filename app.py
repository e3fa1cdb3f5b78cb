"""textgen web app: write texts from a title and keywords. Run `python app.py`.

Tabs: "Generate 生成" (this file); "Fine-tune 微调" from `finetune/web/ui.py`: `build_app` calls
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

Fair share: a browser session or API client may have 2 requests waiting or running, one
network address 6; the next free slot goes to the client served least recently (`FairSlots`).

UI text is bilingual in place ("Title 标题") rather than switched by language.
"""
from __future__ import annotations

import html
import json
import logging
import os
import secrets
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

import gradio as gr

from finetune.web.registry import ModelEntry, ModelRegistry, UnknownModelError, owner_from_request
from textgen.coverage import Span, coverage
from textgen.keywords import MAX_KEYWORDS, parse_keywords
from textgen.loading import BUILTIN_DIR, ModelLoadError
from textgen.messages import bilingual
from textgen.params import KEYWORD_MODES, GenerationParams, param_specs
from textgen.prompt import MAX_TITLE_CHARS, check_title
from textgen.slots import Busy, FairSlots, SlotLimits

try:  # ZeroGPU on Hugging Face Spaces: GPU work must run inside a spaces.GPU function
    import spaces
except ImportError:
    spaces = None

log = logging.getLogger("textgen.app")

QUEUE_SIZE = 16
CONCURRENCY = 8  # requests of one model share a batched decode loop (textgen.batching)
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
DEFAULT_LENGTH = {"zh": 100, "en": 80}  # characters, words: about what 120 tokens wrote before
PARTIALS_KEPT = 256  # sessions whose texts-so-far are kept for their Stop button

FORM_LABELS = [("free 自由", "free"), ("五言绝句", "wujue"), ("七言绝句", "qijue"), ("五言律诗", "wulv"),
               ("七言律诗", "qilv")]
MODE_LABELS = {"guaranteed": "guaranteed 保证出现", "soft": "soft 尽量出现", "off": "off 不约束"}
# what the built-in models write best: classical poem titles (zh, trained on Tang and Song
# poems) and encyclopedic or everyday titles (en, trained on Wikipedia)
EXAMPLES = [
    ["春夜", ["月", "花", "雨"]],
    ["送别", ["江", "柳", "酒"]],
    ["Volcano", ["lava", "island"]],
    ["The history of tea", ["China", "trade", "ships"]],
]
# offered in the keyword box's list; gr.Examples also shows only values among the choices
SUGGESTED_KEYWORDS = list(dict.fromkeys(k for _, words in EXAMPLES for k in words))
EMPTY_HTML = ('<div class="tg-empty">Candidates appear here as they are written.<br>'
              '候选文本会在生成时逐字显示在这里。</div>')


# -- input checks ---------------------------------------------------------------------------
KEYWORD_MODES_BEST_FIRST = ("guaranteed", "soft", "off")  # the first is the form's default


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
    # the page's Length slider means "about this long, at most what fits": a value above a bound
    # that changed meanwhile (another model, a longer prompt) is lowered to it, not refused
    fit_length: bool = False


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


SCORE_HELP = ("score: the mean log-probability per token under the model; closer to 0 means the model "
              "finds the text more likely. Cards are ranked by keywords written first, then by score. "
              "得分：模型给每个词元的平均对数概率，越接近 0 越通顺；先按写出的关键词数排序，再按得分。")


def render_card(rank: str, text: str, keywords: Sequence[str], *, score: float | None = None,
                best: bool = False, spans: Sequence[Span] | None = None, note: str = "",
                index: int | None = None, waiting: bool = True, form: dict | None = None) -> str:
    """One candidate. `spans` (a finished candidate's own coverage) saves finding the keywords
    again; `index` adds a "Rewrite" button for that sample row; `note` marks a cut text."""
    if spans is None:
        covered, missing, spans = coverage(text, keywords)
    else:
        found = {s.keyword for s in spans}
        covered, missing = [k for k in keywords if k in found], [k for k in keywords if k not in found]
    meta = [f'<span class="tg-rank">{escape(rank)}</span>']
    if best:
        meta.append('<span class="tg-best">best 最佳</span>')
    if note:
        meta.append(f'<span class="tg-note">{escape(note)}</span>')
    if score is not None:
        meta.append(f'<span class="tg-score" title="{escape(SCORE_HELP)}">score {score:.2f}</span>')
    summary = ""
    if keywords:
        summary = (f'<div class="tg-summary"><span class="tg-count">{len(covered)}/{len(keywords)} '
                   f'keywords 关键词</span>{_chips(covered, "tg-covered")}{_chips(missing, "tg-missing")}</div>')
    if form:
        summary += render_form(form)
    if text:
        body = highlight(text, spans)
    elif waiting:
        body = '<span class="tg-wait">…</span>'
    else:
        body = '<span class="tg-wait">(nothing written 未写出文本)</span>'
    again = (f'<button type="button" class="tg-again" data-index="{index}" title="Write this candidate again '
             f'with a new seed 用新种子重写这一条">Rewrite 重写</button>' if index is not None else "")
    return (f'<div class="tg-card{" tg-card-best" if best else ""}"><div class="tg-head">{"".join(meta)}'
            f'<span class="tg-actions">{again}<button type="button" class="tg-copy" title="Copy text 复制文本">'
            f'Copy 复制</button></span></div><div class="tg-text">{body}</div>{summary}</div>')


def render_form(report: dict) -> str:
    """A candidate's form report: its shape and rhyme, as ✓/✗ chips."""
    from textgen.forms import FORMS

    label = FORMS[report["form"]].label
    shape = _chips([f"{label} shape 格式"], "tg-covered" if report["shape_ok"] else "tg-missing")
    group = report.get("rhyme_group")
    lines = ", ".join(str(n) for n in report.get("rhyming_lines", []))
    rhyme = _chips([f"rhyme 押韵 -{group} (lines 句 {lines})" if group else "rhyme 押韵"],
                   "tg-covered" if report["rhymes"] else "tg-missing")
    return f'<div class="tg-summary tg-form">{shape}{rhyme}</div>'


def render_stream(texts: Sequence[str], keywords: Sequence[str], *, note: str = "", waiting: bool = True) -> str:
    cards = [render_card(f"Candidate {i} 候选 {i}", t, keywords, note=note, waiting=waiting)
             for i, t in enumerate(texts, 1)]
    return f'<div class="tg-cards">{"".join(cards)}</div>'


def render_result(result, keywords: Sequence[str], note: str = "") -> str:
    """The ranked cards of a `Result` or of `Shown.candidates` (dicts), with the score legend."""
    cards = []
    for rank, c in enumerate(result, 1):
        c = c if isinstance(c, dict) else _candidate_dict(c)
        spans = [Span(*s) for s in c["spans"]]
        cards.append(render_card(f"#{rank}", c["text"], keywords, score=c["score"], best=rank == 1, spans=spans,
                                 note=c.get("note") or note, index=rank - 1, waiting=False, form=c.get("form")))
    legend = f'<div class="tg-legend">{escape(SCORE_HELP)}</div>' if cards else ""
    return f'<div class="tg-cards">{"".join(cards)}{legend}</div>'


def render_notice(message: str, title: str) -> str:
    """The cards area when nothing was written: why, in place of empty cards."""
    return (f'<div class="tg-empty tg-refused"><b>{escape(title)}</b><br>{escape(message)}</div>')


def _candidate_dict(c) -> dict[str, Any]:
    return {"text": c.text, "covered": list(c.covered), "missing": list(c.missing), "score": float(c.score),
            "tokens": int(c.tokens), "spans": [[s.keyword, s.start, s.end] for s in c.spans], "note": "",
            "form": c.form}


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
        self.modes = list(modes) if modes is not None else list(KEYWORD_MODES_BEST_FIRST)
        self.limits = limits or ServeLimits()
        self.slots = slots or FairSlots(SlotLimits())
        self._partials = _Partials(PARTIALS_KEPT)
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
            self._check_budget(gen, req)
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

    def _check_budget(self, gen, req: Request) -> None:
        """n × the token budget of a `length` (known once the model is) within the request cap."""
        if req.params.length is None or req.params.form != "free":  # a form sets its own length
            return
        try:
            plan = gen.length_plan(req.title, req.keywords)
        except ValueError as exc:
            raise gr.Error(str(exc), title="Invalid input 输入有误", print_exception=False) from None
        most = min(plan.max_units, plan.units_for(self.limits.request_tokens // req.params.n))
        if req.fit_length and req.params.length > most >= 1:
            req.params = req.params.replace(length=most)
        if req.params.length > plan.max_units:
            raise gr.Error(f"length: at most {plan.max_units} {plan.unit} for this prompt and model, got "
                           f"{req.params.length} 长度超出模型上限", title="Invalid input 输入有误", print_exception=False)
        tokens = plan.tokens_for(req.params.length)
        if req.params.n * tokens > self.limits.request_tokens:
            raise gr.Error(f"length: {req.params.n} texts of {req.params.length} {plan.unit} need about "
                           f"{req.params.n * tokens} tokens; this server allows {self.limits.request_tokens} per "
                           f"request, so at most {most} {plan.unit} each 长度超出上限",
                           title="Invalid input 输入有误", print_exception=False)

    # -- the Generate tab -------------------------------------------------------------------
    def stream(self, model: str, title: str, keywords: Any, keyword_mode: str, n: float,
               length: float | None, temperature: float, top_k: float, top_p: float,
               repetition_penalty: float, seed: float | None, random_seed: bool, form: str = "free",
               rhyme: bool = True, request: gr.Request | None = None) -> Iterator[tuple]:
        """Generate-button handler. Yields the values of GENERATE_OUTPUTS: cards html, best text,
        status, seed, what is shown (for Rewrite and Export), the TXT and JSON exports.

        Every way it ends leaves a final state: done, cut at the time limit, refused or failed
        (the status says which, in both languages); Stop is `stopped`'s."""
        owner = owner_from_request(request)
        try:
            req = self.check(title, keywords, keyword_mode, n=n, length=length, temperature=temperature,
                             top_k=top_k, top_p=top_p, repetition_penalty=repetition_penalty,
                             seed=None if random_seed or seed is None else seed, form=form, rhyme=rhyme)
            entry = self.entry(model, owner)
        except gr.Error as exc:
            yield self._refused(exc)
            return
        req.fit_length = True
        yield from self._write(entry, owner, req, request)

    def again(self, index: Any, shown: dict | None, request: gr.Request | None = None) -> Iterator[tuple]:
        """Rewrite one candidate of what is shown with a new random seed, in its place."""
        owner = owner_from_request(request)
        cands = (shown or {}).get("candidates") or []
        if isinstance(index, bool) or not isinstance(index, (int, float)) or not 0 <= int(index) < len(cands):
            yield self._refused(gr.Error("rewrite: nothing to rewrite; generate first 请先生成",
                                         title="Nothing to rewrite 无可重写"))
            return
        asked = shown["request"]
        try:
            params = GenerationParams(**{**asked["params"], "n": 1, "seed": None})
            entry = self.entry(asked["model"], owner)
        except (ValueError, TypeError, gr.Error) as exc:
            yield self._refused(exc if isinstance(exc, gr.Error) else gr.Error(str(exc), title="Invalid input 输入有误"))
            return
        yield from self._write(entry, owner, Request(asked["title"], list(asked["keywords"]), params), request,
                               base=shown, index=int(index))

    def stopped(self, request: gr.Request | None = None) -> tuple:
        """After a generation ends: if it was cancelled by Stop (it is still the session's
        latest and never reached a final state), the texts so far stay, marked "stopped", and
        the status says so; after any other ending nothing changes."""
        partial = self._partials.pop(owner_from_request(request))
        if partial is None:
            return (gr.skip(),) * len(GENERATE_OUTPUTS)
        took = time.monotonic() - partial.started
        if not partial.texts:
            return (gr.skip(), gr.skip(), _status(f"Stopped before writing began 已停止（尚未开始写作） · "
                                                  f"{took:.1f} s"), *(gr.skip(),) * 4)
        note = "stopped 已停止"
        if partial.base is None:
            cards, best = render_stream(partial.texts, partial.keywords, note=note, waiting=False), \
                next((t for t in partial.texts if t), "")
        else:
            cards, best = self._rewriting(partial.base, partial.index, partial.texts[0], note), gr.skip()
        tokens = partial.steps * len(partial.texts)
        return (cards, best, _status(f"Stopped 已停止 · the texts so far are kept 已保留已写出的部分 · "
                                     f"{tokens} tokens in {took:.1f} s"), *(gr.skip(),) * 4)

    def _write(self, entry: ModelEntry, owner: str | None, req: Request, request: Any, *,
               base: dict | None = None, index: int | None = None) -> Iterator[tuple]:
        skip = gr.skip()
        rest = (skip,) * 4
        partial = self._partials.start(owner, _Partial(req.keywords, base, index))
        started, last = time.monotonic(), 0.0
        try:
            for kind, value in self._run(entry, owner, req, request):
                if kind == "loading":
                    yield (skip, skip, _status(f"Loading {entry.label} … 正在加载模型"), *rest)
                elif kind == "waiting":
                    yield (skip, skip, _status(f"Waiting for a free slot: {value} ahead … "
                                               f"排队中，前面还有 {value} 个"), *rest)
                elif kind == "start":
                    started = partial.started = time.monotonic()
                    cards = (render_stream([""] * req.params.n, req.keywords) if base is None
                             else self._rewriting(base, index, "", ""))
                    what = "Generating … 生成中" if base is None else f"Rewriting #{index + 1} … 正在重写"
                    yield (cards, "" if base is None else skip, _status(what), *rest)
                elif kind == "text":
                    partial.texts, partial.steps = list(value.texts), partial.steps + 1
                    if time.monotonic() - last >= STREAM_EVERY_S:
                        last = time.monotonic()
                        cards = (render_stream(value.texts, req.keywords) if base is None
                                 else self._rewriting(base, index, value.texts[0], ""))
                        yield (cards, *(skip,) * 6)
                elif kind == "done":
                    self._partials.pop(owner, partial)
                    yield self._finished(value, entry, req, time.monotonic() - started, base, index)
        except gr.Error as exc:
            self._partials.pop(owner, partial)
            yield self._refused(exc, partial.texts if partial.steps else None, req.keywords)

    def _refused(self, exc: gr.Error, texts: Sequence[str] | None = None, keywords: Sequence[str] = ()) -> tuple:
        """The final state of a request that was refused or failed: why, in both languages, in
        the status, in a toast, and in place of the cards (texts written before a failure stay)."""
        title, message = exc.title or "Not generated 未生成", bilingual(str(exc.message))
        gr.Warning(message, title=title)
        cards = (render_stream(texts, keywords, note="ended by an error 因错误中止", waiting=False) if texts
                 else render_notice(message, title))
        return (cards, gr.skip() if texts else "", _status(f"{title}: {message}"), *(gr.skip(),) * 4)

    def _finished(self, result, entry: ModelEntry, req: Request, took: float, base: dict | None,
                  index: int | None) -> tuple:
        took = max(took, 1e-6)
        cut = "cut at the time limit 已达时间上限" if result.stopped == "time_limit" else ""
        cands = [{**_candidate_dict(c), "note": cut} for c in result]
        if base is not None:
            cands, cands[index] = list(base["candidates"]), {**cands[0], "note": cut or "rewritten 已重写"}
        shown = {"request": {"model": entry.id, "title": req.title, "keywords": req.keywords,
                             "params": req.params.to_dict()},
                 "model": result.model, "seed": result.seed if base is None else base["seed"], "candidates": cands}
        txt, js = write_exports(shown)
        speed = f"{result.tokens} tokens in {took:.1f} s ({result.tokens / took:.0f} tokens/s)"
        if base is None:
            status = (f"{result.model} · seed {result.seed} · {len(result)} candidates 候选 · {speed}"
                      + (f" · stopped at the {self.limits.seconds:.0f} s limit 已达时间上限" if cut else ""))
        else:
            status = f"Rewrote #{index + 1} 已重写 · {result.model} · seed {result.seed} · {speed}"
        return (render_result(cands, req.keywords), cands[0]["text"] if cands else "", _status(status),
                result.seed if base is None else gr.skip(), shown,
                gr.update(value=str(txt), visible=True), gr.update(value=str(js), visible=True))

    @staticmethod
    def _rewriting(base: dict, index: int, text: str, note: str) -> str:
        """What is shown, with candidate `index` being written again."""
        keywords = base["request"]["keywords"]
        cards = []
        for rank, c in enumerate(base["candidates"], 1):
            if rank - 1 == index:
                cards.append(render_card(f"#{rank}", text, keywords, note=note or "rewriting 重写中",
                                         waiting=not note))
            else:
                cards.append(render_card(f"#{rank}", c["text"], keywords, score=c["score"], best=rank == 1,
                                         spans=[Span(*s) for s in c["spans"]], note=c.get("note", ""),
                                         index=rank - 1, waiting=False, form=c.get("form")))
        return f'<div class="tg-cards">{"".join(cards)}</div>'

    def length_bounds(self, model: Any, title: Any, keywords: Any, n: Any, length: Any, unit: Any,
                      request: gr.Request | None = None) -> tuple:
        """(Length slider, unit, poem form row: shown for Chinese only, else back to free)."""
        """The Length slider for this model and prompt: its unit (characters for Chinese,
        words for English) and its maximum (what the context leaves after the prompt, and
        this server's per-request budget). Leaves the slider as it is when the model cannot
        be loaded now: Generate then says why."""
        owner = owner_from_request(request)
        try:
            entry = self.registry.resolve(model, owner)
            if entry.id not in self.registry.cached_ids() and self.registry.unavailable(entry, wait=False):
                return gr.skip(), gr.skip(), gr.skip(), gr.skip()
            gen = self.registry.get(entry.id, owner)
            plan = gen.length_plan(check_title(title or ""), keyword_list(keywords))
        except (ValueError, ModelLoadError, UnknownModelError):
            return gr.skip(), gr.skip(), gr.skip(), gr.skip()
        rows = int(n) if isinstance(n, (int, float)) and not isinstance(n, bool) and n >= 1 else 1
        high = max(1, min(plan.max_units, plan.units_for(self.limits.request_tokens // rows)))
        value = length if isinstance(length, (int, float)) and not isinstance(length, bool) else None
        if unit != plan.language or value is None:
            value = DEFAULT_LENGTH[plan.language]
        # the value is sent only when it must change: this runs after a blur or a model change,
        # and a value typed meanwhile would otherwise be overwritten by the one read before it
        changed = {} if value == length and value <= high else {"value": min(value, high)}
        return (gr.update(maximum=high, **changed, label=f"Length 长度 ({plan.label})",
                          info=f"about how many {plan.unit} each text has, at most {high} here; the model "
                               f"may end sooner 每条文本大约的长度，模型可能提前结束"), plan.language,
                gr.update(visible=plan.language == "zh"),
                gr.skip() if plan.language == "zh" else gr.update(value="free"))

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


@dataclass
class _Partial:
    """A generation in progress, as far as its Stop button needs to know."""

    keywords: list[str]
    base: dict | None = None  # what was shown, when one candidate is being rewritten
    index: int | None = None
    texts: list[str] = field(default_factory=list)
    steps: int = 0
    started: float = field(default_factory=time.monotonic)


class _Partials:
    """The latest generation of each session (the most recent `size` sessions)."""

    def __init__(self, size: int) -> None:
        self._size, self._items, self._lock = size, OrderedDict(), threading.Lock()

    def start(self, owner: str | None, partial: _Partial) -> _Partial:
        with self._lock:
            self._items[owner] = partial
            self._items.move_to_end(owner)
            while len(self._items) > self._size:
                self._items.popitem(last=False)
        return partial

    def pop(self, owner: str | None, partial: _Partial | None = None) -> _Partial | None:
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
    length_inputs: list | None = None  # what `GenerateHandlers.length_bounds` reads and writes
    length_outputs: list | None = None

    def refresh_models(self, request: gr.Request | None = None):
        return self.handlers.refresh_models(request)


def _slider(name: str, label: str) -> gr.Slider:
    spec = SPECS[name]
    low = spec["min"] + spec["step"] if spec["low_open"] else spec["min"]
    return gr.Slider(low, spec["max"], value=spec["default"], step=spec["step"], label=label,
                     info=spec["help"], elem_id=f"tg-{name}")


UI_DIR = Path(__file__).resolve().parent / "assets" / "ui"


def asset(name: str) -> str:
    """A CSS or JS file of the page (assets/ui/), read when the app is built."""
    return (UI_DIR / name).read_text(encoding="utf-8")


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


GENERATE_OUTPUTS = ("cards", "best", "status", "seed", "shown", "export_txt", "export_json")


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
            with gr.Row(visible=False, elem_id="tg-form-row") as form_row:
                form = gr.Radio(FORM_LABELS, value="free", label="Poem form 诗体", info=SPECS["form"]["help"],
                                elem_id="tg-form", scale=3)
                rhyme = gr.Checkbox(True, label="Rhyme 押韵", info=SPECS["rhyme"]["help"], elem_id="tg-rhyme",
                                    scale=1)
            length = gr.Slider(
                minimum=1, maximum=400, value=DEFAULT_LENGTH["zh"], step=1, label="Length 长度",
                info="about how long each text is: characters for Chinese, words for English "
                     "每条文本大约的长度：中文按字，英文按词", elem_id="tg-length")
            with gr.Row():
                run = gr.Button("Generate 生成", variant="primary", elem_id="tg-generate")
                stop = gr.Button("Stop 停止", variant="stop", elem_id="tg-stop")
            with gr.Accordion("Sampling 采样设置", open=False):
                n = _slider("n", "Candidates 候选数")
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
            cards = gr.HTML(EMPTY_HTML, css_template=asset("cards.css"), js_on_load=asset("cards.js"),
                            elem_id="tg-cards", min_height=160)
            best = gr.Textbox(label="Best text 最佳文本", lines=4, interactive=False,
                              buttons=["copy"], elem_id="tg-best")
            with gr.Row():
                export_txt = gr.DownloadButton("Export TXT 导出文本", visible=False, size="sm", elem_id="tg-export-txt")
                export_json = gr.DownloadButton("Export JSON 导出 JSON", visible=False, size="sm",
                                                elem_id="tg-export-json")
            # The cards' Rewrite buttons write the candidate's index here and click `again`
            # (cards.js): hidden by CSS, since gradio does not render invisible components.
            with gr.Row(elem_classes="tg-hidden"):
                again_index = gr.Number(-1, precision=0, elem_id="tg-again-index", show_label=False)
                again = gr.Button("again", elem_id="tg-again")
    shown = gr.State(None)
    unit = gr.State(None)

    outputs = [cards, best, status, seed, shown, export_txt, export_json]
    inputs = [model, title, keywords, mode, n, length, temperature, top_k, top_p,
              repetition_penalty, seed, random_seed, form, rhyme]
    # preprocess=False: the handlers check every value themselves, and the Length slider's own
    # check would refuse, with gradio's bare "Error", a value above a bound that changed while
    # its tab was hidden (the length check then answers in words the user reads)
    private = dict(api_visibility="private")
    event = gr.on([run.click, title.submit], handlers.stream, inputs, outputs, preprocess=False,
                  concurrency_limit=concurrency, concurrency_id="generate",
                  show_progress="minimal", show_progress_on=[status], **private)
    rewrite = again.click(handlers.again, [again_index, shown], outputs, concurrency_limit=concurrency,
                          concurrency_id="generate", show_progress="minimal", show_progress_on=[status], **private)
    # Stop cancels; the stopped state is drawn by a `.then` of the cancelled event, which the page
    # runs only once the cancel is done and the event's own late updates can no longer land on
    # top of it (after a normal ending there is nothing left to mark, and it changes nothing)
    stop.click(None, None, None, cancels=[event, rewrite], queue=False, show_progress="hidden", **private)
    for ended in (event, rewrite):
        ended.then(handlers.stopped, None, outputs, queue=False, show_progress="hidden", **private)
    keywords.change(handlers.split_tags, keywords, keywords, queue=False, show_progress="hidden", **private)
    seed.input(lambda: False, None, random_seed, queue=False, show_progress="hidden", **private)
    gr.on([model.change, title.blur, keywords.change, n.change], handlers.length_bounds,
          [model, title, keywords, n, length, unit], [length, unit, form_row, form], show_progress="hidden",
          preprocess=False,
          **private)
    return GenerateTab(model=model, handlers=handlers, length_inputs=[model, title, keywords, n, length, unit],
                       length_outputs=[length, unit, form_row, form])


def _api_endpoint(handlers: GenerateHandlers, registry: ModelRegistry, *, concurrency: int | None) -> None:
    s = {k: v["default"] for k, v in SPECS.items()}
    default_model, default_mode = registry.default_id() or "", handlers.default_mode

    def generate(title: str, keywords: list[str] | str = "", model: str = default_model,
                 keyword_mode: str = default_mode, n: int = s["n"],
                 max_new_tokens: int = s["max_new_tokens"], temperature: float = s["temperature"],
                 top_k: int = s["top_k"], top_p: float = s["top_p"],
                 repetition_penalty: float = s["repetition_penalty"], seed: int | None = None,
                 length: int | None = None, form: str = "free", rhyme: bool = True,
                 request: gr.Request = None) -> Iterator[dict]:
        """Write texts from a title and keywords; the final answer (what `predict` returns) is
        {"done": true, "candidates": [{"text", "covered", "missing", "score"}, …], "model",
        "seed", "stopped", …}, best candidate first; `submit` also sees progress
        {"done": false, "status": "loading" | "waiting" | "generating", "position", "tokens"}.
        `keywords` is a list or a text separated by , ， 、 ; |; `model` is a model id or label
        from the app's list; `length` (characters for Chinese, words for English) replaces
        `max_new_tokens` when given (gradio_client fills it in when left out, so older
        clients keep working); each candidate also says how many `tokens` it took. `form` (wujue,
        qijue, wulv, qilv) writes a Chinese poem of that shape, rhyming unless `rhyme` is false;
        each candidate then has a "form" report (shape_ok, rhyme_group, rhyming_lines, rhymes)."""
        yield from handlers.generate_events(model, title, keywords, keyword_mode, owner_from_request(request),
                                            request, n=n, max_new_tokens=max_new_tokens, length=length,
                                            temperature=temperature, top_k=top_k, top_p=top_p,
                                            repetition_penalty=repetition_penalty, seed=seed, form=form,
                                            rhyme=rhyme)

    gr.api(generate, api_name="generate", concurrency_limit=concurrency, concurrency_id="generate")


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
        notice = _no_builtin_notice(registry)
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
        _api_endpoint(handlers, registry, concurrency=None)
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
