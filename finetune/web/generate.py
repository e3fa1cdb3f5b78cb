"""The Generate tab's handlers: load the model, wait for a fair turn, stream the candidates,
rank and show them, rewrite one, stop. Every input is checked again here (`requests`)."""
from __future__ import annotations

import threading
import time
from typing import Any, Iterator, Sequence

import gradio as gr

from textgen.coverage import Span
from textgen.loading import ModelLoadError
from textgen.messages import bilingual
from textgen.params import GenerationParams
from textgen.prompt import check_title
from textgen.slots import Busy, FairSlots, SlotLimits

from .cards import candidate_dict, render_card, render_notice, render_result, render_stream, status_html
from .errors import UnknownModelError
from .registry import ModelEntry, ModelRegistry, owner_from_request
from .requests import KEYWORD_MODES_BEST_FIRST, Request, ServeLimits, check_request, keyword_list
from .session import Partial, Partials, client_address, write_exports

try:  # ZeroGPU on Hugging Face Spaces: GPU work must run inside a spaces.GPU function
    import spaces
except ImportError:
    spaces = None


POLL_S = 0.1  # how often a loading or waiting request looks up (and yields, to notice a gone client)
GPU_SECONDS = 120  # ZeroGPU reservation per call
STREAM_EVERY_S = 0.1  # at most ~10 page updates a second while streaming
EVENTS_EVERY_S = STREAM_EVERY_S / 2  # the model's stream, paced: each page update is at most this stale
DEFAULT_LENGTH = {"zh": 100, "en": 80}  # characters, words: about what 120 tokens wrote before
PARTIALS_KEPT = 256  # sessions whose texts-so-far are kept for their Stop button
GENERATE_OUTPUTS = ("cards", "best", "status", "seed", "shown", "export_txt", "export_json")


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
        self._partials = Partials(PARTIALS_KEPT)
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
        yield from self.registry.get(model_id, owner).stream(title, keywords, params, interval=EVENTS_EVERY_S)

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
                      else gen.stream(req.title, req.keywords, req.params, interval=EVENTS_EVERY_S))
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
            return (gr.skip(), gr.skip(), status_html(f"Stopped before writing began 已停止（尚未开始写作） · "
                                                  f"{took:.1f} s"), *(gr.skip(),) * 4)
        note = "stopped 已停止"
        if partial.base is None:
            cards, best = render_stream(partial.texts, partial.keywords, note=note, waiting=False), \
                next((t for t in partial.texts if t), "")
        else:
            cards, best = self._rewriting(partial.base, partial.index, partial.texts[0], note), gr.skip()
        tokens = partial.steps * len(partial.texts)
        return (cards, best, status_html(f"Stopped 已停止 · the texts so far are kept 已保留已写出的部分 · "
                                     f"{tokens} tokens in {took:.1f} s"), *(gr.skip(),) * 4)

    def _write(self, entry: ModelEntry, owner: str | None, req: Request, request: Any, *,
               base: dict | None = None, index: int | None = None) -> Iterator[tuple]:
        skip = gr.skip()
        rest = (skip,) * 4
        partial = self._partials.start(owner, Partial(req.keywords, base, index))
        started, last = time.monotonic(), 0.0
        try:
            for kind, value in self._run(entry, owner, req, request):
                if kind == "loading":
                    yield (skip, skip, status_html(f"Loading {entry.label} … 正在加载模型"), *rest)
                elif kind == "waiting":
                    yield (skip, skip, status_html(f"Waiting for a free slot: {value} ahead … "
                                               f"排队中，前面还有 {value} 个"), *rest)
                elif kind == "start":
                    started = partial.started = time.monotonic()
                    cards = (render_stream([""] * req.params.n, req.keywords) if base is None
                             else self._rewriting(base, index, "", ""))
                    what = "Generating … 生成中" if base is None else f"Rewriting #{index + 1} … 正在重写"
                    yield (cards, "" if base is None else skip, status_html(what), *rest)
                elif kind == "text":
                    partial.event, partial.steps = value, value.steps or partial.steps + 1
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
        return (cards, gr.skip() if texts else "", status_html(f"{title}: {message}"), *(gr.skip(),) * 4)

    def _finished(self, result, entry: ModelEntry, req: Request, took: float, base: dict | None,
                  index: int | None) -> tuple:
        took = max(took, 1e-6)
        cut = "cut at the time limit 已达时间上限" if result.stopped == "time_limit" else ""
        cands = [{**candidate_dict(c), "note": cut} for c in result]
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
        return (render_result(cands, req.keywords), cands[0]["text"] if cands else "", status_html(status),
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
            first = kind == "text" and tokens == 0  # the first token goes out at once, as the stream's does
            if kind == "text":
                tokens = value.steps or tokens + 1
            if kind != "text" or first or time.monotonic() - last >= STREAM_EVERY_S:
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
