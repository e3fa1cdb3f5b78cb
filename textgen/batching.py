"""Many requests in one decode loop (continuous batching) on the lean CPU GPT-2 path.

A request joins at the next step boundary and leaves when it finishes; in between, every
step runs one forward over the rows of all requests at once. At batch 1 a step of a small
model waits on memory and on Python, not on arithmetic, so eight requests cost little more
than one. Each request keeps its own `decoding.Rows` (sampling settings, keyword rules, seeded
random numbers, stream), so what it samples does not depend on who else is in the batch,
up to the float rounding of the kernels: on AVX2 machines fp32 gives the same texts; on
AVX-512 ones a one-row product and a masked attention over a longer cache round differently
(~1e-7 relative), and int8 quantizes each product's activations with one scale for the whole
batch, so logits move a little with the company and a text can differ. At float64 the texts
are the same (tests/test_batching.py).

Why by hand: serving libraries that batch continuously (vLLM, TGI) are GPU servers that
own the model and have no per-request logits hook of ours; transformers' generate() takes
one batch and holds it to the end.
"""
from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from .decoding import Rows, choose_together
from .steppers import DecodePath, GPT2Stepper


class SlotStepper(GPT2Stepper):
    """GPT2Stepper whose cache rows are slots of different requests, each at its own position.
    Rows in use are kept at the front (`move` closes gaps), so a step reads a plain slice.
    The cache grows with what the requests need (`reserve`), up to `rows` × `max_len`: a
    full one for a 124M GPT-2 would hold gigabytes nobody uses."""

    def __init__(self, model, rows: int, max_len: int, path: DecodePath | None = None) -> None:
        super().__init__(model, 1, 1, path)
        self.most_rows, self.most_len = rows, max_len
        if self.graph is not None:  # one session for every step, whatever rows it has
            self.graph_threads = self.graph.threads_for(rows)
        self.keys = self.values = torch.zeros((len(self.blocks), 0, self.heads, 0, self.head_dim),
                                              dtype=self.wte.dtype)
        self.max_len = 0
        self.lengths = torch.zeros(0, dtype=torch.long)
        self.reserve(1, 1)

    def reserve(self, rows: int, length: int) -> None:
        """Make room for `rows` slots of `length` tokens, keeping what the cache holds."""
        have_rows, have_len = self.lengths.shape[0], self.max_len
        if rows <= have_rows and length <= have_len:
            return
        if rows > self.most_rows or length > self.most_len:
            raise ValueError(f"{rows} rows of {length} tokens exceed the cache of {self.most_rows} × {self.most_len}")
        rows = min(max(rows, 2 * have_rows), self.most_rows)  # doubling: few regrowths
        length = min(max(length, 2 * have_len), self.most_len)
        shape = (len(self.blocks), rows, self.heads, length, self.head_dim)  # (L, rows, H, T, D)
        # zeros, not empty: PyTorch's masked attention still multiplies by the cache past a row's length,
        # so it must hold numbers (a NaN there times weight 0 is NaN)
        keys, values = torch.zeros(shape, dtype=self.wte.dtype), torch.zeros(shape, dtype=self.wte.dtype)
        keys[:, :have_rows, :, :have_len] = self.keys
        values[:, :have_rows, :, :have_len] = self.values
        lengths = torch.zeros(rows, dtype=torch.long)
        lengths[:have_rows] = self.lengths
        self.keys, self.values, self.lengths, self.max_len = keys, values, lengths, length

    def prefill_into(self, first: int, n: int, prompt: torch.Tensor) -> torch.Tensor:
        """Run the prompt (1, P) once into slots first … first + n - 1 → logits (n, V)."""
        P = prompt.shape[1]
        if P > self.max_len:
            raise ValueError(f"sequence of {P} tokens exceeds the cache of {self.max_len}")
        if self.graph is not None:  # the same graph as the steps, at batch size 1
            logits = self._prefill_graph(prompt, first, n)
            self.lengths[first:first + n] = P
            return logits
        H, D, E = self.heads, self.head_dim, self.width
        x = self.wte[prompt] + self.wpe[:P]  # (1, P, E)
        for i, (w1, b1, qkv_proj, out_proj, fc, fc_out, w2, b2, scale) in enumerate(self.blocks):
            h = F.layer_norm(x, (E,), w1, b1, self.eps)
            q, k, v = qkv_proj(h.reshape(-1, E)).view(1, P, 3, H, D).permute(2, 0, 3, 1, 4)  # (1, H, P, D)
            self.keys[i, first:first + n, :, :P] = k
            self.values[i, first:first + n, :, :P] = v
            att = F.scaled_dot_product_attention(q, k, v, is_causal=P > 1, scale=scale)
            x = x + out_proj(att.transpose(1, 2).reshape(-1, E)).view(1, P, E)
            h = self.act(fc(F.layer_norm(x, (E,), w2, b2, self.eps).reshape(-1, E)))
            x = x + fc_out(h).view(1, P, E)
        self.lengths[first:first + n] = P
        return self.lm_head(F.layer_norm(x[:, -1], (E,), *self.ln_f, self.eps)).float().repeat(n, 1)

    def step_rows(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens (R,) for slots 0 … R - 1, each after its own length → logits (R, V)."""
        R = tokens.shape[0]
        H, D, E = self.heads, self.head_dim, self.width
        pos = self.lengths[:R].clone()  # (R,)
        end = int(pos.max()) + 1
        if end > self.max_len:
            raise ValueError(f"sequence of {end} tokens exceeds the cache of {self.max_len}")
        if self.graph is not None:  # the graph reads each row's past and writes its new key and value, in place
            logits = self.graph.step(tokens, pos, self.keys[:, :R], self.values[:, :R], self.graph_threads)
            self.lengths[:R] = pos + 1
            return logits
        rows = torch.arange(R)
        seen = torch.arange(end)[None, :] <= pos[:, None]  # (R, end): each row's own past and itself
        mask = seen[:, None, None, :]  # (R, 1, 1, end)
        x = self.wte[tokens] + self.wpe[pos]  # (R, E)
        for i, (w1, b1, qkv_proj, out_proj, fc, fc_out, w2, b2, scale) in enumerate(self.blocks):
            h = F.layer_norm(x, (E,), w1, b1, self.eps)
            q, k, v = qkv_proj(h).view(R, 3, H, D).unbind(1)  # each (R, H, D)
            self.keys[i, rows, :, pos] = k
            self.values[i, rows, :, pos] = v
            att = F.scaled_dot_product_attention(q[:, :, None], self.keys[i, :R, :, :end],
                                                 self.values[i, :R, :, :end], attn_mask=mask, scale=scale)
            x = x + out_proj(att.reshape(R, E))
            h = self.act(fc(F.layer_norm(x, (E,), w2, b2, self.eps)))
            x = x + fc_out(h)
        self.lengths[:R] = pos + 1
        return self.lm_head(F.layer_norm(x, (E,), *self.ln_f, self.eps)).float()

    def move(self, src: int, dst: int, n: int) -> None:
        """Slots src … src + n - 1 become dst … dst + n - 1 (dst < src). Only the positions the
        moved rows hold are copied, not the whole reserved length, and through a copy only
        where the two ranges overlap."""
        used = int(self.lengths[src:src + n].max())
        for cache in (self.keys, self.values):
            part = cache[:, src:src + n, :, :used]
            cache[:, dst:dst + n, :, :used] = part.clone() if src < dst + n else part
        self.lengths[dst:dst + n] = self.lengths[src:src + n].clone()


@dataclass
class _Job:
    rows: Rows
    done: threading.Event = field(default_factory=threading.Event)
    first: int = 0  # its first slot
    logits: torch.Tensor | None = None
    tokens: torch.Tensor | None = None
    error: BaseException | None = None

    @property
    def n(self) -> int:
        return self.rows.settings.n


class DecodeLoop:
    """One thread that samples every submitted request of one model in a shared batch.

    `rows`: how many rows (a request has n) run at once; a request that does not fit waits
    for rows to free up, in order of arrival."""

    def __init__(self, model, path: DecodePath | None = None, *, rows: int = 32, context: int | None = None) -> None:
        if not GPT2Stepper.supports(model):
            raise ValueError("continuous batching runs on the lean CPU path of a GPT-2 model only")
        self.model, self.path, self.capacity = model, path, rows
        self.context = context or model.config.n_positions
        self._stepper: SlotStepper | None = None  # its cache is made at the first request
        self._cond = threading.Condition()
        self._waiting: deque[_Job] = deque()
        self._thread: threading.Thread | None = None

    def run(self, rows: Rows) -> tuple[torch.Tensor, torch.Tensor]:
        """Sample one request's rows with whoever else is running; blocks until they end."""
        if rows.settings.n > self.capacity:
            raise ValueError(f"n: at most {self.capacity} rows run at once here, got {rows.settings.n}")
        if rows.prompt_len + rows.settings.max_new_tokens > self.context:
            raise ValueError(f"max_new_tokens: the prompt and the text must fit the model's {self.context} tokens")
        job = _Job(rows)
        with self._cond:
            self._waiting.append(job)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._loop, name="textgen-decode-loop", daemon=True)
                self._thread.start()
            self._cond.notify()
        job.done.wait()
        if job.error is not None:
            raise job.error
        return rows.result()

    # -- the loop ------------------------------------------------------------------------------
    def _loop(self) -> None:
        active: list[_Job] = []
        while True:
            with self._cond:
                while not active and not self._waiting:
                    if not self._cond.wait(timeout=30.0) and not self._waiting:
                        self._thread = None  # idle: a later request starts a new thread
                        return
                joining = self._admit(active)
            try:
                with torch.inference_mode():
                    self._step(active, joining)
            except BaseException as exc:  # a failed forward fails everyone in it, never the loop
                for job in active:
                    self._finish(job, exc)
                active.clear()

    def _admit(self, active: list[_Job]) -> list[_Job]:
        used = sum(job.n for job in active)
        joining = []
        while self._waiting and used + self._waiting[0].n <= self.capacity:
            job = self._waiting.popleft()
            job.first = used
            used += job.n
            joining.append(job)
        active.extend(joining)
        return joining

    def _step(self, active: list[_Job], joining: list[_Job]) -> None:
        if self._stepper is None:
            self._stepper = SlotStepper(self.model, self.capacity, self.context, self.path)
        stepper = self._stepper
        if joining:
            last = joining[-1]
            stepper.reserve(last.first + last.n, max(j.rows.prompt_len + j.rows.settings.max_new_tokens
                                                     for j in active))
        for job in joining:
            job.logits = stepper.prefill_into(job.first, job.n, job.rows.prompt)
        going = []
        # one sampling pass over every request's rows; a request whose own rules fail ends alone
        for job, outcome in zip(active, choose_together([job.rows for job in active], [job.logits for job in active])):
            if isinstance(outcome, BaseException):
                self._finish(job, outcome)
                continue
            job.tokens, more = outcome
            if more:
                going.append(job)
            else:
                self._finish(job)
        at = 0
        for job in going:  # close the gaps the finished ones left
            if job.first != at:
                stepper.move(job.first, at, job.n)
                job.first = at
            at += job.n
        active[:] = going
        if going:
            logits = stepper.step_rows(torch.cat([job.tokens for job in going]))
            for job in going:
                job.logits = logits[job.first:job.first + job.n]

    @staticmethod
    def _finish(job: _Job, error: BaseException | None = None) -> None:
        job.error = error
        job.done.set()
