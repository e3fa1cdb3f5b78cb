"""The sampling loop: n rows sampled together from one prompt, token by token.

Why a loop of our own rather than transformers' `generate()`: we use one narrow path of it
(multinomial sampling, one shared prompt, no padding), and on the small models this project
ships its per-step bookkeeping costs about a third of a step — `LogitsProcessorList` calls
`inspect.signature` on every processor at every step, the 4-D attention mask is rebuilt
each step, and a deprecation shim wraps every call (measured: benchmarks/generate.py,
benchmarks/README.md). The temperature / top-k / top-p / min-new-tokens processors are
transformers' own, applied in the order `generate()` applies them; the forward steps are
`steppers.py`'s (the model's own forward, or a lean GPT-2 path on the CPU).

Every row starts from the same prompt, so no row is ever padded on the left and the model
needs no attention mask; a row that has ended is fed its end token again and its output
is ignored.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Callable, Sequence

import torch

from .steppers import DecodePath, stepper_for

@dataclass(frozen=True)
class SamplingSettings:
    """What the loop needs beyond the model and the prompt."""

    n: int
    max_new_tokens: int
    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    min_new_tokens: int = 0
    max_seconds: float | None = None


def nucleus(scores: torch.Tensor, settings: SamplingSettings) -> tuple[torch.Tensor, torch.Tensor]:
    """(probabilities (n, k), token ids (n, k)) of the k most likely tokens after temperature,
    top-k and top-p, the distribution transformers' three warpers leave (top-p keeps a token
    while the tokens above it hold less than top_p, so the first one always stays).

    Why not the warpers themselves: they work on the whole vocabulary, and top-p sorts all of it
    at every step; with the multinomial draw over the vocabulary that followed, this cost more
    than the model's forward on the built-ins (0.8 ms per step at n=1, 3.5 ms at n=4, against
    0.1-0.2 ms here; benchmarks/README.md). Only top_k > 0 takes this path."""
    k = min(settings.top_k, scores.shape[-1])
    values, ids = scores.topk(k, dim=-1)  # (n, k), most likely first
    if settings.temperature != 1.0:
        values = values / settings.temperature
    probs = torch.softmax(values, dim=-1)
    if settings.top_p < 1.0:
        above = probs.cumsum(dim=-1) - probs  # what the tokens ranked higher hold
        probs = torch.softmax(values.masked_fill(above >= settings.top_p, float("-inf")), dim=-1)
    return probs, ids


class MinNewTokens:
    """The end tokens blocked until `least` new tokens are written: what transformers'
    MinNewTokensLengthLogitsProcessor does, without the search of the whole vocabulary for the
    end ids that it repeats at every step (0.1 ms, a fifth of a small model's step)."""

    def __init__(self, prompt_len: int, least: int, end_ids: Sequence[int], device="cpu") -> None:
        self.prompt_len, self.least = prompt_len, least
        self.ends = torch.tensor(list(end_ids), dtype=torch.long, device=device)

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        if input_ids.shape[-1] - self.prompt_len >= self.least:
            return scores
        return scores.index_fill(1, self.ends, float("-inf"))


def warpers(settings: SamplingSettings, end_ids: Sequence[int], prompt_len: int,
            device="cpu") -> tuple[list, list]:
    """(processors before ours, warpers after ours), as transformers' generate() orders them;
    with top_k > 0 the loop applies the warpers' distribution itself (`nucleus`).
    device: the model's; the min-new-tokens rule keeps its end ids there (CUDA: else it fails)."""
    from transformers.generation.logits_process import (TemperatureLogitsWarper, TopKLogitsWarper,
                                                        TopPLogitsWarper)

    before = []
    if settings.min_new_tokens > 0:
        before.append(MinNewTokens(prompt_len, settings.min_new_tokens, end_ids, device))
    after = []
    if settings.temperature != 1.0:
        after.append(TemperatureLogitsWarper(settings.temperature))
    if settings.top_k > 0:
        after.append(TopKLogitsWarper(top_k=settings.top_k))
    if settings.top_p < 1.0:
        after.append(TopPLogitsWarper(top_p=settings.top_p))
    return before, after


class Rows:
    """One request's n rows while they are sampled: its rules, its random numbers, its tokens.

    `choose(logits)` turns the model's next-token logits (n, V) into the next tokens and
    reports whether the request goes on; the forward steps are someone else's (`sample`
    below for one request, `textgen.batching` for many at once), so a request samples the
    same way alone and in a shared batch."""

    def __init__(self, prompt_ids: Sequence[int], settings: SamplingSettings, *, end_ids: Sequence[int],
                 processors: Sequence[Callable] = (), on_step: Callable[[list[int]], None] | None = None,
                 stop: threading.Event | None = None, generator: torch.Generator | None = None,
                 device="cpu") -> None:
        self.settings, self.on_step, self.stop, self.generator = settings, on_step, stop, generator
        self.prompt_len = len(prompt_ids)
        self.fill = int(end_ids[0])
        self.ends = torch.tensor(list(end_ids), device=device)
        before, after = warpers(settings, end_ids, self.prompt_len, device)
        self.fused = settings.top_k > 0
        self.chain = [*before, *processors] if self.fused else [*before, *processors, *after]
        self.deadline = time.monotonic() + settings.max_seconds if settings.max_seconds else None
        prompt = torch.tensor([list(prompt_ids)], dtype=torch.long, device=device)  # (1, P)
        self.input_ids = prompt.repeat(settings.n, 1)  # (n, P)
        self.unfinished = torch.ones(settings.n, dtype=torch.bool, device=device)  # (n,)
        self.live = settings.n  # rows not yet ended (`unfinished`, counted here without a tensor op)
        self._end_set = {int(e) for e in end_ids}
        self._noise: torch.Tensor | None = None
        self.fills = torch.full((settings.n,), self.fill, dtype=torch.long, device=device)
        self.picked: list[torch.Tensor] = []  # one (n,) tensor of log-probs per step

    @property
    def prompt(self) -> torch.Tensor:
        return self.input_ids[:1, :self.prompt_len]  # (1, P)

    @property
    def draw_key(self) -> tuple | None:
        """Rows with the same key draw from one batched nucleus (`choose_together`); None: this
        request samples over the whole vocabulary on its own (top_k = 0)."""
        s = self.settings
        return (s.top_k, s.temperature, s.top_p) if self.fused else None

    def warp(self, logits: torch.Tensor) -> torch.Tensor:
        """logits (n, V) → scores (n, V) after this request's own rules (min-new-tokens,
        repetition penalty, keyword steering; the warpers too when it is not fused)."""
        scores = logits
        for proc in self.chain:
            scores = proc(self.input_ids, scores)
        return scores

    def noise(self, k: int) -> torch.Tensor:
        """(n, k) Exp(1) draws from this request's random numbers. argmax(probs / noise) picks a
        token with probability probs, exactly as torch.multinomial(probs, 1) does with the same
        generator (it draws the same numbers), without its per-call checks."""
        if self._noise is None or self._noise.shape[1] != k:  # one buffer, refilled at each step
            # fp32 named: the default dtype is process-wide, and a model loading in another thread changes it
            self._noise = torch.empty((self.settings.n, k), dtype=torch.float32, device=self.ends.device)
        return self._noise.exponential_(1, generator=self.generator)

    def accept(self, token: torch.Tensor, log_prob: torch.Tensor) -> bool:
        """Record the step's tokens (n,) (a finished row already holds its fill) and their
        log-probabilities (n,); whether another step is wanted."""
        self.picked.append(log_prob)
        self.input_ids = torch.cat([self.input_ids, token[:, None]], dim=1)
        tokens = token.tolist()
        if self.on_step is not None:
            self.on_step(tokens)
        # the rows' ends read off the Python list: a few tensor ops fewer at every step
        ended = [r for r, t in enumerate(tokens) if t in self._end_set and self.unfinished[r]]
        if ended:
            self.unfinished[ended] = False
            self.live -= len(ended)
        return (self.live > 0 and not (self.stop is not None and self.stop.is_set())
                and not (self.deadline is not None and time.monotonic() > self.deadline)
                and len(self.picked) < self.settings.max_new_tokens)  # no forward for a token never sampled

    def choose(self, logits: torch.Tensor) -> tuple[torch.Tensor, bool]:
        """logits (n, V) → (tokens (n,), whether another step is wanted)."""
        outcome = choose_together([self], [logits])[0]
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    def result(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(sequences (n, P + T) with the prompt, log-probabilities (n, T) of the sampled tokens)."""
        if not self.picked:
            return self.input_ids, torch.zeros(self.settings.n, 0, dtype=torch.float32, device=self.ends.device)
        return self.input_ids, torch.stack(self.picked, dim=1)


def choose_together(requests: Sequence[Rows], logits: Sequence[torch.Tensor]
                    ) -> list[tuple[torch.Tensor, bool] | BaseException]:
    """One step of several requests: each request's logits (n_i, V) → (tokens (n_i,), more), or
    the exception its own rules raised (the others go on).

    Requests with the same sampling settings share one nucleus over all their rows, one
    log-softmax and one draw; each draws its own random numbers (`Rows.noise`), and every op is
    row by row, so a request samples what it samples alone whoever is beside it."""
    outcomes: list = [None] * len(requests)
    scores: list = [None] * len(requests)
    for i, (rows, x) in enumerate(zip(requests, logits)):
        try:
            scores[i] = rows.warp(x)
        except BaseException as exc:  # noqa: BLE001 - handed back to that request alone
            outcomes[i] = exc
    live = [i for i in range(len(requests)) if outcomes[i] is None]
    if not live:
        return outcomes
    tokens: list = [None] * len(requests)
    groups: dict = {}
    for i in live:
        groups.setdefault(requests[i].draw_key, []).append(i)
    for key, members in groups.items():
        for i, token in zip(members, _draw(key, [requests[i] for i in members], [scores[i] for i in members])):
            tokens[i] = token
    raw, unfinished, fill, x = (_joined([parts[i] for i in live]) for parts in (
        tokens, [r.unfinished for r in requests], [r.fills for r in requests], logits))
    # a finished row repeats its end token
    running = all(requests[i].live == requests[i].settings.n for i in live)
    chosen = raw if running else torch.where(unfinished, raw, fill)
    picked = torch.log_softmax(x, dim=-1).gather(1, chosen[:, None]).squeeze(1)
    at = 0
    for i in live:
        n = requests[i].settings.n
        token = chosen[at:at + n]
        try:
            outcomes[i] = (token, requests[i].accept(token, picked[at:at + n]))
        except BaseException as exc:  # noqa: BLE001 - a failing stream callback ends only its request
            outcomes[i] = exc
        at += n
    return outcomes


def _joined(parts: list[torch.Tensor]) -> torch.Tensor:
    """The parts one after the other (a lone part as it is: most steps have one request)."""
    return parts[0] if len(parts) == 1 else torch.cat(parts)


def _draw(key: tuple | None, requests: list[Rows], scores: list[torch.Tensor]) -> list[torch.Tensor]:
    """Raw tokens (n_i,) of requests that share `key` (their settings)."""
    if key is None:  # the warpers have run: sample over the whole vocabulary, one request at a time
        return [(torch.softmax(s, dim=-1) / rows.noise(s.shape[-1])).argmax(dim=1)
                for rows, s in zip(requests, scores)]
    probs, ids = nucleus(_joined(scores), requests[0].settings)
    noise = _joined([rows.noise(ids.shape[1]) for rows in requests])
    token = ids.gather(1, (probs / noise).argmax(dim=1, keepdim=True)).squeeze(1)
    out, at = [], 0
    for rows in requests:
        out.append(token[at:at + rows.settings.n])
        at += rows.settings.n
    return out


def sample(model, prompt_ids: Sequence[int], settings: SamplingSettings, *, end_ids: Sequence[int],
           processors: Sequence[Callable] = (), on_step: Callable[[list[int]], None] | None = None,
           stop: threading.Event | None = None, path: DecodePath | None = None,
           generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Sample `settings.n` continuations of `prompt_ids` in one batch.

    processors: called as ``p(input_ids (n, T), scores (n, V)) -> scores`` between the
    min-new-tokens rule and the warpers (repetition penalty, keyword steering).
    on_step: receives each step's new token per row (a finished row repeats `end_ids[0]`).
    stop: when set, sampling ends after the current step.
    path: what else runs the lean CPU path (int8 matrices or ONNX Runtime's graph), as loaded.
    generator: the random numbers to draw with (torch's global ones when None).

    Returns (sequences (n, P + T) with the prompt, log-probabilities (n, T) of the sampled
    tokens under the model's own distribution, before any processor or warper).
    """
    rows = Rows(prompt_ids, settings, end_ids=end_ids, processors=processors, on_step=on_step, stop=stop,
                generator=generator, device=model.device)
    if settings.max_new_tokens <= 0:
        return rows.result()
    stepper = stepper_for(model, settings.n, len(prompt_ids) + settings.max_new_tokens, path)
    logits = stepper.prefill(rows.prompt)  # (n, V)
    while True:
        token, more = rows.choose(logits)
        if not more:
            return rows.result()
        logits = stepper.step(token)
