"""`Generator`: the library's front door.

>>> g = Generator.from_pretrained("auto")                     # doctest: +SKIP
>>> best = g.generate("Storm", ["sea", "night"], n=3, seed=0)[0]   # doctest: +SKIP
>>> best.text, best.covered, best.missing                      # doctest: +SKIP
>>> for event in g.stream("春夜", "月, 花", n=2):                # doctest: +SKIP
...     print(event.texts)
"""
from __future__ import annotations

import queue
import random
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

import torch

from .backend import Backend
from .cleanup import decode_text
from .constraints import build_constraints, tokens_needed
from .coverage import coverage
from .keywords import parse_keywords
from .lang import detect_language
from .length import LengthPlan
from .loading import LoadedModel, builtin_for_language, load
from .params import GenerationParams, param_specs
from .prompt import check_title, encode_prompt
from .batching import DecodeLoop
from .decoding import Rows, SamplingSettings, sample
from .results import Candidate, Result, StreamEvent, sorted_texts
from .steppers import GPT2Stepper
from .sampling import GeneratedRepetitionPenalty

_STREAM_POLL_S = 0.5


@dataclass
class _Request:
    title: str
    keywords: list[str]
    params: GenerationParams
    seed: int
    backend: Backend
    prompt_ids: list[int]
    stop: threading.Event = field(default_factory=threading.Event)


def _random(loaded: LoadedModel, seed: int) -> torch.Generator:
    """A request's own random numbers: a seed gives the same texts whatever else runs at once
    (torch's global generator is shared by every thread)."""
    return torch.Generator(device=loaded.model.device).manual_seed(seed)


class Generator:
    """Generates texts from a title and keywords with one model, or with the built-in
    model for each prompt's language when loaded as "auto"."""

    def __init__(self, loaded: LoadedModel | None = None, *, device: str | None = None,
                 dtype: str | None = None, quantize: str | None = None, runtime: str | None = None,
                 batch_rows: int = 0) -> None:
        """batch_rows > 0: requests from several threads run in one shared decode loop of that
        many rows (`textgen.batching`), where the model allows (GPT-2 on the CPU)."""
        from .onnx_step import check_runtime
        from .quantize import resolve_quantize

        if isinstance(loaded, (str, Path)):  # the likeliest slip in a notebook: say what to call instead
            raise TypeError(f"Generator(...) takes a loaded model, not a path or name ({str(loaded)!r}); "
                            f"use Generator.from_pretrained({str(loaded)!r})")
        resolve_quantize(quantize, lean=True)  # a misspelt choice is refused now, not at first use
        check_runtime(runtime)
        self._batch_rows = batch_rows
        self._fixed = self._wrap(loaded) if loaded is not None else None
        self._device, self._dtype, self._quantize, self._runtime = device, dtype, quantize, runtime
        self._by_language: dict[str, Backend] = {}
        self._load_lock = threading.Lock()

    @classmethod
    def from_pretrained(cls, source: str | Path = "auto", *, device: str | None = None,
                        dtype: str | None = None, revision: str | None = None,
                        quantize: str | None = None, runtime: str | None = None,
                        batch_rows: int = 0) -> "Generator":
        """Load "auto" (built-in model per prompt language), a built-in name, a local folder
        or a hub id. Device and dtype are chosen now ("auto": CUDA, else bf16 on capable CPUs)."""
        if source == "auto":
            return cls(device=device, dtype=dtype, quantize=quantize, runtime=runtime, batch_rows=batch_rows)
        return cls(load(source, device=device, dtype=dtype, revision=revision, quantize=quantize,
                        runtime=runtime), batch_rows=batch_rows)

    # -- public API -------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self._fixed.loaded.name if self._fixed else "auto"

    def backend_for(self, title: str, keywords: Sequence[str]) -> LoadedModel:
        return self._backend(title, keywords).loaded

    def length_plan(self, title: str = "", keywords: str | Sequence[str] | None = None) -> LengthPlan:
        """What `length` counts for this prompt (characters or words) and the most it may be.

        >>> plan = Generator.from_pretrained("textgen-zh").length_plan("春夜", ["月"])  # doctest: +SKIP
        >>> plan.unit, plan.max_units                                                   # doctest: +SKIP
        ('characters', 460)
        """
        title, words = check_title(title), parse_keywords(keywords)
        backend = self._backend(title, words)
        prompt = encode_prompt(backend.loaded.tokenizer, backend.loaded.fmt, title, words)
        return backend.lengths.plan(prompt_tokens=len(prompt), context=backend.context, texts=(title, *words))

    def generate(self, title: str = "", keywords: str | Sequence[str] | None = None,
                 params: GenerationParams | None = None, *, stop: threading.Event | None = None,
                 **overrides: Any) -> Result:
        """Sample `params.n` candidates in one batch; best first. Setting `stop` (from another
        thread) ends sampling after the current step, keeping the texts so far."""
        req = self._prepare(title, keywords, params, overrides)
        if stop is not None:
            req.stop = stop
        sequences = self._sample(req, streamer=None, stop=req.stop)
        return self._finish(req, sequences, stopped=req.stop.is_set())

    def stream(self, title: str = "", keywords: str | Sequence[str] | None = None,
               params: GenerationParams | None = None, *, interval: float = 0.0,
               **overrides: Any) -> Iterator[StreamEvent]:
        """Yield the growing texts of all candidates; the last event holds the ranked result.

        interval: seconds between events at most (0: one per step). Each event holds every step
        since the one before; the first token and the end come at once. A server that shows
        a few updates a second should say so: a reader woken at every token takes the
        interpreter from the decode loop that many requests share.
        Closing the iterator (a client went away) stops generation within one token.
        """
        if not (isinstance(interval, (int, float)) and 0 <= interval <= 10):
            raise ValueError(f"interval: must be a number of seconds from 0 to 10, got {interval!r}")
        req = self._prepare(title, keywords, params, overrides)
        tokens: queue.Queue = queue.Queue()
        stop = req.stop
        outcome: dict[str, Any] = {}

        def work() -> None:
            try:
                outcome["sequences"] = self._sample(req, streamer=tokens.put, stop=stop)
            except BaseException as exc:  # handed to the consumer, which re-raises it
                outcome["error"] = exc
            finally:
                tokens.put(None)

        thread = threading.Thread(target=work, name="textgen-generate", daemon=True)
        thread.start()
        rows: list[list[int]] = [[] for _ in range(req.params.n)]
        shown = 0  # steps the last event held
        try:
            while True:
                try:
                    step = tokens.get(timeout=_STREAM_POLL_S)
                except queue.Empty:
                    if not thread.is_alive():
                        break
                    continue
                ended = step is None
                # every step queued meanwhile goes into this one event: a consumer that fell
                # behind catches up at once instead of replaying each token
                while not ended:
                    for row, tid in zip(rows, step):
                        row.append(tid)
                    try:
                        step = tokens.get_nowait()
                    except queue.Empty:
                        break
                    ended = step is None
                if len(rows[0]) > shown:
                    shown = len(rows[0])
                    # rows only grow, so the event keeps its length and slices when read
                    yield StreamEvent(steps=shown, decode=lambda upto=shown: [
                        self._decode(req.backend, r[:upto]) for r in rows])
                if ended:
                    break
                if interval:  # asleep, the reader is not woken per token; the work's end wakes it
                    thread.join(interval)
        finally:
            stop.set()
            thread.join()
        if "error" in outcome:
            raise outcome["error"]
        result = self._finish(req, outcome["sequences"], stopped=False)  # a closed stream never gets here
        yield StreamEvent(sorted_texts(result, req.params.n), done=True, result=result)

    # -- internals --------------------------------------------------------------------------
    def _backend(self, title: str, keywords: Sequence[str]) -> Backend:
        if self._fixed is not None:
            return self._fixed
        language = detect_language(title, *keywords)
        with self._load_lock:
            if language not in self._by_language:
                folder = builtin_for_language(language)
                self._by_language[language] = self._wrap(
                    load(folder, device=self._device, dtype=self._dtype, quantize=self._quantize,
                         runtime=self._runtime))
            return self._by_language[language]

    def _prepare(self, title: str, keywords, params: GenerationParams | None,
                 overrides: dict[str, Any]) -> _Request:
        params = (params or GenerationParams())
        if overrides:
            params = params.replace(**overrides)
        title = check_title(title)
        words = parse_keywords(keywords)
        if not title and not words:
            raise ValueError("title: give a title or at least one keyword (both are empty)")
        backend = self._backend(title, words)
        loaded = backend.loaded
        prompt = encode_prompt(loaded.tokenizer, loaded.fmt, title, words)
        context = backend.context
        if len(prompt) >= context:
            raise ValueError(f"title/keywords: the prompt is {len(prompt)} tokens; "
                             f"this model reads at most {context - 1} before the text")
        if params.form != "free":
            params = self._form_budget(backend, params, words, len(prompt))
        elif params.length is not None:
            params = self._length_budget(backend, params, len(prompt), (title, *words))
        if len(prompt) + params.max_new_tokens > context:
            raise ValueError(f"max_new_tokens: at most {context - len(prompt)} for this prompt "
                             f"(the model's context is {context} tokens, the prompt uses {len(prompt)})")
        if params.keyword_mode == "guaranteed" and words and params.form == "free":
            needed = tokens_needed(loaded.tokenizer, words, end_ids=backend.end_ids,
                                   decode=lambda ids: self._decode(backend, ids))
            if params.max_new_tokens < needed:
                raise ValueError(f"max_new_tokens: {params.max_new_tokens} is too small to guarantee the "
                                 f"keywords; writing them needs at least {needed} new tokens")
        seed = params.seed if params.seed is not None else random.SystemRandom().randrange(2**32)
        return _Request(title, words, params, seed, backend, prompt)

    def _form_budget(self, backend: Backend, params: GenerationParams, words: list[str],
                     prompt_len: int) -> GenerationParams:
        from .forms import FORMS, FormVocab, check_form_keywords

        form = FORMS[params.form]
        if params.keyword_mode == "guaranteed":
            check_form_keywords(form, words)
        if backend.form_vocab is None:
            backend.form_vocab = FormVocab.build(backend.loaded.tokenizer, lambda ids: self._decode(backend, ids))
        if prompt_len + form.tokens > backend.context:
            raise ValueError(f"form: a {form.label} needs {form.tokens} tokens after the prompt; this model reads "
                             f"{backend.context - prompt_len} more")
        return params.replace(max_new_tokens=form.tokens, length=None)

    @staticmethod
    def _length_budget(backend: Backend, params: GenerationParams, prompt_len: int,
                       texts: tuple[str, ...]) -> GenerationParams:
        plan = backend.lengths.plan(prompt_tokens=prompt_len, context=backend.context, texts=texts)
        if params.length > plan.max_units:
            raise ValueError(f"length: at most {plan.max_units} {plan.unit} for this prompt and model, got "
                             f"{params.length} (the model reads {backend.context} tokens, about "
                             f"{plan.tokens_per_unit:.2f} per {plan.unit[:-1]}) 长度超出模型上限")
        cap = fields_max("max_new_tokens")
        return params.replace(max_new_tokens=min(plan.tokens_for(params.length), backend.context - prompt_len, cap))

    def _sample(self, req: _Request, *, streamer, stop: threading.Event) -> tuple[torch.Tensor, torch.Tensor]:
        """(sequences (n, prompt_len + new), log-probs (n, new)), the n rows sampled in one batch."""
        loaded, p = req.backend.loaded, req.params
        prompt_len = len(req.prompt_ids)
        if p.form != "free":
            return self._sample_form(req, streamer=streamer, stop=stop)
        constraints = build_constraints(
            p.keyword_mode, tokenizer=loaded.tokenizer, keywords=req.keywords, n=p.n,
            prompt_len=prompt_len, max_new_tokens=p.max_new_tokens, end_ids=req.backend.end_ids,
            decode=lambda ids: self._decode(req.backend, ids),  # the very decoding `_finish` judges
            horizon=loaded.fmt.text_tokens)  # keywords where the model's texts are still going
        settings = SamplingSettings(
            n=p.n, max_new_tokens=p.max_new_tokens, temperature=p.temperature, top_k=p.top_k,
            top_p=p.top_p, max_seconds=p.max_seconds,
            # transformers' own knob, honoured as generate() did (the benchmarks pin lengths with it)
            min_new_tokens=int(getattr(loaded.model.generation_config, "min_new_tokens", None) or 0))
        processors = [GeneratedRepetitionPenalty(p.repetition_penalty, prompt_len), *constraints.processors]
        return self._run(req, settings, processors, streamer=streamer, stop=stop)

    def _sample_form(self, req: _Request, *, streamer, stop: threading.Event) -> tuple[torch.Tensor, torch.Tensor]:
        from .forms import FORMS, FormProcessor

        p, prompt_len = req.params, len(req.prompt_ids)
        form = FormProcessor(FORMS[p.form], req.backend.form_vocab, keywords=req.keywords,
                             guaranteed=p.keyword_mode == "guaranteed", rhyme=p.rhyme, n=p.n,
                             prompt_len=prompt_len, end_ids=req.backend.end_ids)
        settings = SamplingSettings(n=p.n, max_new_tokens=p.max_new_tokens, temperature=p.temperature,
                                    top_k=p.top_k, top_p=p.top_p, max_seconds=p.max_seconds)
        processors = [GeneratedRepetitionPenalty(p.repetition_penalty, prompt_len), form]
        return self._run(req, settings, processors, streamer=streamer, stop=stop)

    def _wrap(self, loaded: LoadedModel) -> Backend:
        backend = Backend.wrap(loaded)
        if self._batch_rows > 0 and GPT2Stepper.supports(loaded.model):
            backend.loop = DecodeLoop(loaded.model, loaded.decode_path, rows=self._batch_rows,
                                      context=backend.context)
        return backend

    def _run(self, req: _Request, settings: SamplingSettings, processors: list, *, streamer,
             stop: threading.Event) -> tuple[torch.Tensor, torch.Tensor]:
        """The request's rows sampled alone, or in the shared loop with other requests."""
        loaded = req.backend.loaded
        generator = _random(loaded, req.seed)
        if req.backend.loop is not None:
            rows = Rows(req.prompt_ids, settings, end_ids=req.backend.end_ids, processors=processors,
                        on_step=streamer, stop=stop, generator=generator, device=loaded.model.device)
            return req.backend.loop.run(rows)
        with torch.inference_mode():
            return sample(loaded.model, req.prompt_ids, settings, end_ids=req.backend.end_ids,
                          processors=processors, on_step=streamer, stop=stop, path=loaded.decode_path,
                          generator=generator)

    def _decode(self, backend: Backend, ids: Sequence[int]) -> str:
        return decode_text(backend.loaded.tokenizer, ids, end_ids=backend.end_ids,
                           strip_cjk_spaces=backend.strip_cjk_spaces)

    def _finish(self, req: _Request, sampled: tuple[torch.Tensor, torch.Tensor], *, stopped: bool) -> Result:
        sequences, log_probs = sampled
        prompt_len = len(req.prompt_ids)
        new = sequences[:, prompt_len:].tolist()
        scores, lengths = self._scores(req, sequences, log_probs)
        cands = []
        for i, ids in enumerate(new):
            text = self._decode(req.backend, ids)
            covered, missing, spans = coverage(text, req.keywords)
            cands.append(Candidate(text, covered, missing, spans, scores[i], i, lengths[i], self._form_report(req, text)))
        # full coverage first, then fewer missing keywords, then fluency
        cands.sort(key=lambda c: (len(c.missing), -c.score))
        return Result(cands, model=req.backend.loaded.name, prompt_style=req.backend.loaded.fmt.style,
                      seed=req.seed, title=req.title, keywords=req.keywords, stopped=self._why_short(req, new, stopped))

    @staticmethod
    def _form_report(req: _Request, text: str) -> dict | None:
        if req.params.form == "free":
            return None
        from .forms import FORMS, form_report

        return form_report(FORMS[req.params.form], text).to_dict()

    @staticmethod
    def _why_short(req: _Request, new: list[list[int]], stopped: bool) -> str | None:
        """Why sampling ended before every row did: the time limit, or a stop request."""
        ends = set(req.backend.end_ids)
        if all(len(ids) >= req.params.max_new_tokens or ends.intersection(ids) for ids in new):
            return None
        return "stopped" if stopped else "time_limit"

    def _scores(self, req: _Request, sequences: torch.Tensor, logp: torch.Tensor) -> tuple[list[float], list[int]]:
        """Mean log-probability of each row's generated tokens through its end token, and how
        many tokens that is; `logp` (n, T_new) was recorded while sampling (`decoding.sample`)."""
        prompt_len = len(req.prompt_ids)
        ends = torch.tensor(req.backend.end_ids, device=sequences.device)
        new = sequences[:, prompt_len:]
        if new.shape[1] == 0:
            return [0.0] * sequences.shape[0], [0] * sequences.shape[0]
        is_end = torch.isin(new, ends)
        # count tokens up to and including the first end token; later ones are padding
        no_end = torch.full_like(is_end[:, 0], new.shape[1], dtype=torch.long)
        first_end = torch.where(is_end.any(1), is_end.int().argmax(1), no_end)
        lengths = torch.clamp(first_end + 1, max=new.shape[1])
        mask = torch.arange(new.shape[1], device=new.device)[None, :] < lengths[:, None]
        logp = logp.to(new.device)
        return ((logp * mask).sum(1) / lengths).tolist(), lengths.tolist()


def fields_max(name: str) -> int:
    return int(param_specs()[name]["max"])
