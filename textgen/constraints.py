"""Keyword modes: how hard decoding pushes the keywords into the generated text.

- ``off``: nothing is added; keywords only condition the prompt.
- ``soft``: the first tokens of keywords not yet written get a boost that grows as the
  budget runs out, and part of the end tokens' probability; once the model picks such a
  first token, the keyword's remaining tokens are written. Fluent, usually covers, no promise.
- ``guaranteed``: the end tokens are blocked while a keyword is missing; each keyword is
  started at a step chosen as a good moment for it (its first token likely there, see
  `KeywordProcessor._judge_moments`), and when the remaining budget only just fits the
  missing keywords the next one is forced. The model may also write a keyword by itself.
  Every row then contains every keyword (`Generator` refuses budgets that cannot fit them).

>>> build_constraints("off", tokenizer=None, keywords=["sea"], n=1, prompt_len=3,
...                   max_new_tokens=20, end_ids=[0]).processors
[]

Why by hand: transformers 5 moved constrained beam search (``force_words_ids``,
``Constraint``) out of its core into hub remote code, which textgen never runs; and beam
search could neither sample nor stream anyway. One `LogitsProcessor` with a little state
per batch row keeps sampling, seeds and streaming exactly as in ``off`` mode.

A keyword counts as written when the *decoded* text contains it by `coverage`'s rule (a
Latin keyword as a word, "hat" not inside "that"; Chinese as a substring); `tracking`
follows that per row, and each keyword has several token sequences (`variants`) that
write it. A Latin keyword is only ever started as a word of its own (after a space,
punctuation or the start; after a letter, only a variant that brings its own space), and until a token after it ends the word it is held
open: a letter glued onto it ("hat" → "hatch") unwrites it. Such letters are not allowed
right after a keyword we wrote, nor where the budget could not write it again. What a
step does to the logits is gathered in a `logit_plan.Plan` and applied at once.
"""
from __future__ import annotations

import bisect
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from transformers import LogitsProcessor

from .coverage import is_word_char
from .logit_plan import Plan, apply_plan
from .tracking import KeywordTracker, RowState
from .variants import Decode, KeywordForms, Variant, default_decode, glue_flags, keyword_forms, tokens_needed

__all__ = ["Constraints", "KeywordProcessor", "build_constraints", "keyword_forms", "tokens_needed"]

# Logit boost of pending keywords' first tokens: small at the start, so the model picks
# its own moment, and larger towards the end of the budget (applied before temperature).
BOOST_START = 1.0
BOOST_END = 4.0
# Guaranteed mode chooses *when* to start a keyword (`KeywordProcessor._judge_moments`). A
# variant's worth at a step is its first token's log-probability less this many nats for each
# further token (the built-in models pay about 6.3 nats for each later token of a keyword
# wherever it stands), so that shorter spellings win.
CONTINUATION_COST = 5.0
# Steps a keyword's worth is watched in a row before a moment can be judged good: this share
# of the free steps (budget less the keywords' tokens), within these bounds.
WATCH_SHARE = 0.25
WATCH_STEPS = (2, 16)


@dataclass
class Constraints:
    processors: list[Any] = field(default_factory=list)
    stopping: list[Any] = field(default_factory=list)


def build_constraints(mode: str, *, tokenizer, keywords: Sequence[str], n: int, prompt_len: int,
                      max_new_tokens: int, end_ids: Sequence[int], decode: Decode | None = None,
                      horizon: int = 0) -> Constraints:
    """Logits processors (and stopping criteria) for a keyword mode; fresh state per call.

    horizon > 0: the keywords are placed within the first `horizon` new tokens rather than
    across all of `max_new_tokens` (`KeywordProcessor`)."""
    if mode == "off" or not keywords:
        return Constraints()
    if mode not in ("soft", "guaranteed"):
        raise ValueError(f"keyword_mode: must be one of off, soft, guaranteed, got {mode!r}")
    decode = decode or default_decode(tokenizer, end_ids)
    forms = [keyword_forms(tokenizer, kw, decode=decode, end_ids=end_ids) for kw in keywords]
    # soft mode simply skips what cannot be written (`tokens_needed` refuses it for guaranteed)
    forms = [f for f in forms if (f.safe if mode == "guaranteed" else f.variants)]
    if not forms:
        return Constraints()
    processor = KeywordProcessor(forms, tokenizer=tokenizer, decode=decode, guaranteed=mode == "guaranteed",
                                 n=n, prompt_len=prompt_len, max_new_tokens=max_new_tokens, end_ids=end_ids,
                                 horizon=horizon)
    return Constraints(processors=[processor])


class KeywordProcessor(LogitsProcessor):
    """Steers each row towards the keywords it has not written yet (soft or guaranteed).

    Called once per step with the ids so far (B, T) and the next-token logits (B, V). State
    is updated from the tokens appended since the previous call, so the same seed gives the
    same output, streamed or not.

    The keywords are scheduled (boost, good moments, the forced deadline) over the first
    `horizon` new tokens when one is given below `max_new_tokens`: a length the model's texts
    mostly reach (`PromptFormat.text_tokens`). Spread over the whole budget instead, a short
    text's keywords mostly came after the point where the model would have ended it, so blocked
    end tokens made it write on (a poem grew extra lines to hold them): on textgen-zh, 21% of
    guaranteed texts were regular poems, 52% with the horizon, 47% in off mode.
    """

    def __init__(self, forms: Sequence[KeywordForms], *, tokenizer, decode: Decode, guaranteed: bool,
                 n: int, prompt_len: int, max_new_tokens: int, end_ids: Sequence[int], horizon: int = 0) -> None:
        self.forms = list(forms)
        self.tokenizer, self.guaranteed = tokenizer, guaranteed
        self.prompt_len, self.max_new_tokens = prompt_len, max_new_tokens
        self.horizon = min(horizon, max_new_tokens) if horizon > 0 else max_new_tokens
        self.end_ids = sorted(set(end_ids))
        self.tracker = KeywordTracker(self.forms, tokenizer=tokenizer, decode=decode, end_ids=self.end_ids)
        self.rows = [self.tracker.new_row() for _ in range(n)]
        self._seen = 0  # generated tokens already observed
        self._ends: torch.Tensor | None = None  # end ids on the scores' device
        self._glue: torch.Tensor | None = None  # `_glue_mask` on the scores' device
        free = self.horizon - sum(f.min_len for f in self.forms)
        self._watch = min(max(int(WATCH_SHARE * free), WATCH_STEPS[0]), WATCH_STEPS[1])

    # -- decisions --------------------------------------------------------------------------
    def _options(self, row: RowState, remaining: int, need: int) -> tuple[list, list]:
        """(fitting, clean) keyword variants for the row's next token. Fitting: it leaves room
        for the other pending keywords' shortest variants, and a word keyword stays a word
        (never glued to a letter before it). Clean: it reads naturally here, i.e. a word of
        its own after a word, no stray space at the start or inside Chinese."""
        last = self.tracker.last_char(row)
        at_word_start = not last or last.isspace()
        after_letter = is_word_char(last)
        fitting, clean = [], []
        for k in row.pending:
            form = self.forms[k]
            room = remaining - need + form.min_len
            for v in form.variants:  # shortest first
                if len(v.ids) > room:
                    break
                if not form.cjk and after_letter and not v.spaced:
                    continue
                fitting.append((k, v))
                if (not v.lead) if (form.cjk or at_word_start) else v.spaced:
                    clean.append((k, v))
        return fitting, clean

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        generated = input_ids.shape[1] - self.prompt_len
        if generated > self._seen:
            for row, new in zip(self.rows, input_ids[:, self.prompt_len + self._seen:].tolist()):
                for tid in new:
                    self.tracker.observe(row, tid)
            self._seen = generated
        budget_left = self.max_new_tokens - generated  # tokens left, this one included
        left = max(self.horizon - generated, 0)  # ... of the keywords' horizon
        plan = Plan(boost=BOOST_START + (BOOST_END - BOOST_START) * min(generated / self.horizon, 1.0))
        judged: list = []  # guaranteed rows free to start a keyword now: (r, row, clean, slack)
        for r, row in enumerate(self.rows):
            if row.finished or not (row.pending or row.partial or row.open):
                continue
            if row.partial:  # a keyword begun: complete it (measured: far better than a nudge)
                nexts = list(dict.fromkeys(v.ids[row.depth] for _, v in row.partial))
                plan.forced.append((r, self._best(scores, r, nexts)))
                continue
            need = sum(self.forms[k].min_len for k in row.pending)
            # past the horizon a keyword still pending (one unwritten again) is due at once
            remaining = min(budget_left, max(left, need))
            # A keyword just written by us is closed by the next token (measured: letting the
            # model glue on "-ly" or "-ness" and writing the keyword again cost more fluency);
            # one the model wrote itself is closed so only when the budget could not write it again.
            if self.guaranteed and row.open and (
                    row.sealed or remaining - 1 < need + sum(self.forms[k].min_len for k in row.open)):
                plan.unglued.append(r)
            if not row.pending:
                continue
            fitting, clean = self._options(row, remaining, need)
            plan.ending.append(r)
            if self.guaranteed and remaining <= need:  # one free token more and they would not fit
                options = clean or fitting or [(k, self.forms[k].safe[0]) for k in row.pending]
                k, v = self._best_variant(scores, r, options)
                row.offered = {v.ids[0]: [(k, v)]}
                plan.forced.append((r, v.ids[0]))
                continue
            row.offered = {}
            for k, v in clean:
                row.offered.setdefault(v.ids[0], []).append((k, v))
            if self.guaranteed:  # no boost: a boosted keyword comes at a random moment
                if clean:
                    judged.append((r, row, clean, remaining - need))
                continue
            plan.offers.extend((r, t, -math.log(len(row.offered))) for t in row.offered)
        if judged:
            self._judge_moments(scores, judged, plan)
        if self._ends is None or self._ends.device != scores.device:
            self._ends = torch.tensor(self.end_ids, device=scores.device)
        return apply_plan(scores, plan, ends=self._ends, guaranteed=self.guaranteed, glue=self._glue_mask)

    def _judge_moments(self, scores: torch.FloatTensor, judged: list, plan: Plan) -> None:
        """Guaranteed mode: start a keyword now when this step is a good moment for it.

        Every keyword must be written before the budget runs out, so the question is only
        *where*. Each row notes, at every step, the worth of each pending keyword (its best
        clean variant's log-probability here, `CONTINUATION_COST` off per further token).
        After watching a few steps, it starts a keyword when no more than 1/(m+1) of the
        steps seen so far were worth more, m being the free steps left per pending keyword:
        roughly, when this is as good as the best of the m chances still to come. The bar is
        high while there is room and falls as the budget runs out, so few keywords are left
        to the forced end. (A rank, not a mean and spread: the worth is two-humped, a word's
        start after a word and the middle of one, and a normal model of it waited too long.)
        Measured on the built-in models: keywords at good moments and shorter spellings cut
        guaranteed ÷ off perplexity from 1.59 to 1.47 (en) and 1.41 to 1.38 (zh), see
        benchmarks/README.md.
        """
        vocab = scores.shape[1]
        flat = [r * vocab + v.ids[0] for r, _, clean, _ in judged for _, v in clean]
        # one gather from the log-softmax (measured: about half the cost of logsumexp + index)
        logps = iter(torch.log_softmax(scores, dim=-1).view(-1)[torch.tensor(flat, device=scores.device)].tolist())
        for r, row, clean, slack in judged:
            free = slack / len(row.pending)
            best: dict[int, tuple[float, Variant]] = {}
            for k, v in clean:
                worth = next(logps) - CONTINUATION_COST * (len(v.ids) - 1)
                if k not in best or worth > best[k][0]:
                    best[k] = (worth, v)
            choice, rank = None, 1.0
            for k, (worth, v) in best.items():
                seen = row.worth.setdefault(k, [])
                if len(seen) >= self._watch:
                    # share of the watched steps where it was worth more than now
                    better = (len(seen) - bisect.bisect_right(seen, worth)) / len(seen)
                    if better * (free + 1) <= 1 and (choice is None or better < rank):
                        choice, rank = (k, v), better
                bisect.insort(seen, worth)
            if choice is not None:
                k, v = choice
                row.offered = {v.ids[0]: [(k, v)]}
                plan.forced.append((r, v.ids[0]))

    def _glue_mask(self, vocab: int, device: torch.device) -> torch.Tensor:
        """(V,) True for the tokens that would join the word before them: their text starts
        with a letter or digit, or is unfinished bytes or nothing (`glue_flags`); the end tokens
        stay allowed (ending ends the word)."""
        if self._glue is not None and self._glue.shape[0] == vocab and self._glue.device == device:
            return self._glue
        flags = glue_flags(self.tokenizer, vocab)
        mask = flags.clone()
        mask[[e for e in self.end_ids if e < vocab]] = False
        self._glue = mask.to(device)
        return self._glue

    @staticmethod
    def _best_variant(scores: torch.FloatTensor, r: int, options: list) -> tuple[int, Variant]:
        """The (keyword, variant) worth most here: first token's logit less the later tokens' cost."""
        if len(options) == 1:
            return options[0]
        values = scores[r, [v.ids[0] for _, v in options]].tolist()
        worth = [x - CONTINUATION_COST * (len(v.ids) - 1) for x, (_, v) in zip(values, options)]
        return options[max(range(len(options)), key=worth.__getitem__)]

    @staticmethod
    def _best(scores: torch.FloatTensor, r: int, tids: list[int]) -> int:
        """The candidate token the model likes best (ties: the first)."""
        if len(tids) == 1:
            return tids[0]
        values = scores[r, tids].tolist()
        return tids[max(range(len(tids)), key=values.__getitem__)]
