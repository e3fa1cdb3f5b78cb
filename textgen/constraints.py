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
Latin keyword as a word, "hat" not inside "that"; Chinese as a substring), since it can
appear through a tokenisation we did not plan. Each keyword therefore has several token
sequences ("variants"): its surface forms (as given, lower-case, Capitalised, Title Case),
with and without a leading space, and as a continuation after a word — which covers GPT-2's
"Ġstorm"/"storm"/"Storm", sentencepiece's "▁" marker and BERT's per-character Chinese
vocabularies. Variants are checked by decoding them. A Latin keyword is only ever started
as a word of its own (after a space, punctuation or the start; after a letter, only a
variant that brings its own space), and until a token after it ends the word it is held
open: a letter glued onto it ("hat" → "hatch") unwrites it. Such letters are not allowed
right after a keyword we wrote, nor where the budget could not write it again.

transformers applies custom processors *before* its temperature/top-k/top-p warpers
(`GenerationMixin._get_logits_processor`). A forced token is therefore made the only
finite logit of its row: every warper keeps the maximum, so it survives in any order.
"""
from __future__ import annotations

import bisect
import math
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from transformers import LogitsProcessor

from .cleanup import decode_text, spaces_between_cjk, visible
from .coverage import Written, find_keyword, is_word_char, matched_as_substring, word_forms, written
from .lang import has_cjk

Decode = Callable[[Sequence[int]], str]

# Logit boost of pending keywords' first tokens: small at the start, so the model picks
# its own moment, and larger towards the end of the budget (applied before temperature).
BOOST_START = 1.0
BOOST_END = 4.0
# Soft mode: share of the end tokens' probability moved to the pending keywords' first
# tokens, so that where the model would stop it writes a keyword instead. (Guaranteed mode
# blocks the end tokens and lets their mass spread over all tokens: moving it to the keywords
# there placed them early in short texts and cost more perplexity, see benchmarks/README.md.)
SOFT_END_TRANSFER = 0.5
# Tokens decoded beyond a keyword's UTF-8 length when looking for it at the end of a row:
# every token carries at least one byte, plus room for a leading space or special tokens.
_TAIL_SLACK = 8
# Words the variants are tried after, as the continuation of a text ("astorm", "。明月").
_ANCHORS = ("a", "。")
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


@dataclass(frozen=True)
class Variant:
    """One token sequence that writes a keyword."""

    ids: tuple[int, ...]
    lead: bool  # its own text starts with whitespace (" storm")
    spaced: bool  # written after a word, it starts a new word ("▁storm", BERT's "storm")


@dataclass(frozen=True)
class KeywordForms:
    keyword: str
    cjk: bool  # matched as a substring (Chinese and other scripts without spaces)
    variants: tuple[Variant, ...]  # shortest first; empty when the vocabulary cannot write it

    @property
    def safe(self) -> tuple[Variant, ...]:
        """The variants that write the keyword as a word after any text, shortest first: for a
        word keyword those that bring their own space after a word."""
        return self.variants if self.cjk else tuple(v for v in self.variants if v.spaced)

    @property
    def min_len(self) -> int:
        """Tokens the budget must keep for it: its shortest variant that fits anywhere."""
        safe = self.safe
        return len(safe[0].ids) if safe else 0


# Per tokenizer: keyword variants and single-token texts, so repeated requests cost nothing.
_CACHE: "weakref.WeakKeyDictionary[Any, dict]" = weakref.WeakKeyDictionary()


_MAX_CACHED_ANSWERS = 200_000


def _cache(tokenizer) -> dict:
    try:
        return _CACHE.setdefault(tokenizer, {"forms": {}, "texts": {}, "ends_keyword": {}, "glue": {}})
    except TypeError:  # not weak-referenceable: no caching
        return {"forms": {}, "texts": {}, "ends_keyword": {}, "glue": {}}


def _raw_decode(tokenizer, ids: Sequence[int]) -> str:
    return tokenizer.decode(list(ids), skip_special_tokens=True, clean_up_tokenization_spaces=False)


def _encode(tokenizer, text: str) -> list[int]:
    return tokenizer.encode(text, add_special_tokens=False)


def _surface_forms(keyword: str) -> list[str]:
    if has_cjk(keyword):
        return [keyword]
    forms = [keyword, keyword.lower(), keyword[:1].upper() + keyword[1:], keyword.title()]
    return list(dict.fromkeys(forms))


def _candidate_ids(tokenizer, form: str) -> list[list[int]]:
    out = [_encode(tokenizer, form), _encode(tokenizer, " " + form)]
    for anchor in _ANCHORS:
        head, whole = _encode(tokenizer, anchor), _encode(tokenizer, anchor + form)
        if whole[:len(head)] == head:  # the form did not merge into the anchor
            out.append(whole[len(head):])
    return out


def keyword_forms(tokenizer, keyword: str, *, decode: Decode, end_ids: Sequence[int]) -> KeywordForms:
    """The token sequences that write `keyword` with this tokenizer (cached per tokenizer).

    A sequence qualifies when its decoded text contains the keyword, and it holds no special
    or end token; a Chinese keyword must also survive after a word (it could merge into it).
    """
    key = (keyword, tuple(sorted(end_ids)))
    cache = _cache(tokenizer)["forms"]
    if key in cache:
        return cache[key]
    banned = set(end_ids) | set(getattr(tokenizer, "all_special_ids", []))
    anchor = _encode(tokenizer, _ANCHORS[0])
    anchor_text = _raw_decode(tokenizer, anchor)
    cjk = matched_as_substring(keyword)
    found: dict[tuple[int, ...], Variant] = {}
    for form in _surface_forms(keyword):
        for ids in _candidate_ids(tokenizer, form):
            ids_t = tuple(ids)
            if not ids or ids_t in found or banned.intersection(ids):
                continue
            if find_keyword(decode(ids), keyword) is None:
                continue
            after = find_keyword(decode(anchor + ids), keyword) is not None
            if cjk and not after:
                continue
            after_word = _raw_decode(tokenizer, anchor + ids)
            spaced = after and after_word.startswith(anchor_text) and after_word[len(anchor_text):][:1].isspace()
            found[ids_t] = Variant(ids_t, _raw_decode(tokenizer, ids)[:1].isspace(), spaced)
    variants = tuple(sorted(found.values(), key=lambda v: (len(v.ids), v.lead)))
    cache[key] = forms = KeywordForms(keyword, cjk, variants)
    return forms


def tokens_needed(tokenizer, keywords: Sequence[str], *, decode: Decode, end_ids: Sequence[int]) -> int:
    """New tokens that guaranteed mode needs at least to write every keyword.

    Raises ValueError naming `keywords` when the vocabulary cannot write one of them.
    """
    total = 0
    for kw in keywords:
        forms = keyword_forms(tokenizer, kw, decode=decode, end_ids=end_ids)
        if not forms.safe:
            how = "with this model's vocabulary" if not forms.variants else "as a word of its own by this model"
            raise ValueError(f"keywords: {kw!r} cannot be written {how}, "
                             "so it cannot be guaranteed; use keyword_mode 'soft' or change it")
        total += forms.min_len
    return total


def default_decode(tokenizer, end_ids: Sequence[int]) -> Decode:
    """The decoding `Generator` applies to a candidate's ids (for callers that pass none)."""
    strip = spaces_between_cjk(tokenizer)
    return lambda ids: decode_text(tokenizer, ids, end_ids=end_ids, strip_cjk_spaces=strip)


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


@dataclass
class _Row:
    """Decoding state of one batch row."""

    pending: list[int]  # indices of keywords not yet in the text
    ids: list[int] = field(default_factory=list)  # generated so far, without end/pad tokens
    # keywords written only as the text's last word so far (`Written.AT_END`): a glued letter
    # would unwrite them; the budget counts them as written
    open: list[int] = field(default_factory=list)
    # open keywords this processor finished writing at the row's last token
    sealed: list[int] = field(default_factory=list)
    finished: bool = False
    # keyword variants being written: their first `depth` tokens are the row's last tokens
    partial: list[tuple[int, Variant]] = field(default_factory=list)
    depth: int = 0
    # first tokens boosted or forced at the last step → the variants they would start
    offered: dict[int, list[tuple[int, Variant]]] = field(default_factory=dict)
    # guaranteed mode: keyword → its worth at this row's steps so far, sorted
    worth: dict[int, list[float]] = field(default_factory=dict)


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
        self.tokenizer, self.decode, self.guaranteed = tokenizer, decode, guaranteed
        self.prompt_len, self.max_new_tokens = prompt_len, max_new_tokens
        self.horizon = min(horizon, max_new_tokens) if horizon > 0 else max_new_tokens
        self.end_ids = sorted(set(end_ids))
        self._end_set = set(self.end_ids)
        self._texts: dict[int, str] = _cache(tokenizer)["texts"]
        self._lower = [f.keyword.lower() for f in self.forms]
        self._forms_lower = [word_forms(f.keyword) for f in self.forms]  # inflections included
        self._tail = [max(len(w.encode("utf-8")) for w in forms) + _TAIL_SLACK for forms in self._forms_lower]
        self.rows = [_Row(list(range(len(self.forms)))) for _ in range(n)]
        self._seen = 0  # generated tokens already observed
        # (token, lower-case keyword) → whether the token can end it; shared across requests,
        # emptied when it grows past a bound (a server sees endless new keywords)
        self._ends_keyword: dict[tuple[int, str], bool] = _cache(tokenizer)["ends_keyword"]
        if len(self._ends_keyword) > _MAX_CACHED_ANSWERS:
            self._ends_keyword.clear()
        self._ends: torch.Tensor | None = None  # end ids on the scores' device
        self._glue: torch.Tensor | None = None  # `_glue_mask` on the scores' device
        free = self.horizon - sum(f.min_len for f in self.forms)
        self._watch = min(max(int(WATCH_SHARE * free), WATCH_STEPS[0]), WATCH_STEPS[1])

    # -- state ------------------------------------------------------------------------------
    def _text(self, tid: int) -> str:
        text = self._texts.get(tid)
        if text is None:
            text = self._texts[tid] = _raw_decode(self.tokenizer, [tid])
        return text

    def _last_char(self, row: _Row) -> str:
        """The row's last character as a reader will see it ("" at the start): a token of
        unfinished bytes or of a control character that decoding drops ("\\r") shows nothing."""
        for tid in reversed(row.ids[-_TAIL_SLACK:]):
            text = visible(self._text(tid))
            if text:
                return text[-1]
        return ""

    def _observe(self, row: _Row, tid: int) -> None:
        if row.finished:
            return
        if tid in self._end_set:  # ended (or padding after the end): never touched again
            row.finished = True
            return
        row.ids.append(tid)
        row.sealed = []
        if not row.partial and tid not in row.offered:  # the common case: no keyword under way
            row.offered = {}
            if row.open or (row.pending and self._could_complete(tid, row.pending)):
                self._detect(row)
            row.depth = 0
            return
        if row.partial:
            row.partial = [(k, v) for k, v in row.partial if v.ids[row.depth] == tid]
            row.depth += 1
        elif tid in row.offered:
            row.partial, row.depth = list(row.offered[tid]), 1
        row.offered = {}
        finished = [k for k, v in row.partial if len(v.ids) == row.depth]
        row.partial = [(k, v) for k, v in row.partial if len(v.ids) > row.depth]
        if row.open or (row.pending and (finished or self._could_complete(tid, row.pending))):
            self._detect(row)
        row.sealed = [k for k in finished if k in row.open]
        row.partial = [(k, v) for k, v in row.partial if k in row.pending]
        if not row.partial:
            row.depth = 0

    def _could_complete(self, tid: int, pending: list[int]) -> bool:
        """Whether this token can end a keyword, so that a decode is worth it: the keyword (or
        an inflection of it, `word_forms`) is in its text, or a start of its text is an end of
        one ("ea" ends "sea", "ting" ends "sitting").
        A token that decodes to nothing or to U+FFFD may finish a multi-byte character.
        A miss only costs fluency (the keyword is forced again), never the guarantee.
        Answers are remembered per tokenizer: the same tokens come back request after request."""
        for k in pending:
            key = (tid, self._lower[k])
            answer = self._ends_keyword.get(key)
            if answer is None:
                text = self._text(tid).lower().removeprefix("##")  # WordPiece continuation marker
                answer = self._ends_keyword[key] = (
                    not text or "\ufffd" in text
                    or any(kw in text or any(kw.endswith(text[:j]) for j in range(1, min(len(text), len(kw)) + 1))
                           for kw in self._forms_lower[k]))
            if answer:
                return True
        return False

    def _detect(self, row: _Row) -> None:
        """Mark keywords found in the decoded text: a short tail first, then the whole row
        to confirm, so that coverage here agrees with `coverage()` on the final text. A tail
        finds every occurrence near the end that the whole text has (and maybe more: it
        cannot see the letter before its start), so an open keyword gone from it is unwritten."""
        keys = row.pending + row.open
        tail = self.decode(row.ids[-max(self._tail[k] for k in keys):])
        hits = [k for k in keys if written(tail, self.forms[k].keyword)]
        states = dict.fromkeys(row.open, Written.NO)
        if hits:
            full = self.decode(row.ids)
            states.update((k, written(full, self.forms[k].keyword)) for k in hits)
        if not states:
            return
        if self._last_char(row).isspace():  # decoding strips it, yet it ends the word
            states = {k: Written.YES if s == Written.AT_END else s for k, s in states.items()}
        row.pending = sorted(k for k in keys if states.get(k, Written.NO) == Written.NO)
        row.open = [k for k in keys if states.get(k) == Written.AT_END]

    # -- decisions --------------------------------------------------------------------------
    def _options(self, row: _Row, remaining: int, need: int) -> tuple[list, list]:
        """(fitting, clean) keyword variants for the row's next token. Fitting: it leaves room
        for the other pending keywords' shortest variants, and a word keyword stays a word
        (never glued to a letter before it). Clean: it reads naturally here, i.e. a word of
        its own after a word, no stray space at the start or inside Chinese."""
        last = self._last_char(row)
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
                    self._observe(row, tid)
            self._seen = generated
        budget_left = self.max_new_tokens - generated  # tokens left, this one included
        left = max(self.horizon - generated, 0)  # ... of the keywords' horizon
        plan = _Plan(boost=BOOST_START + (BOOST_END - BOOST_START) * min(generated / self.horizon, 1.0))
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
        return self._apply(scores, plan)

    def _judge_moments(self, scores: torch.FloatTensor, judged: list, plan: "_Plan") -> None:
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
        with a letter or digit, or is unfinished bytes or nothing. Found once per tokenizer by
        decoding each token after a letter; the end tokens stay allowed (ending ends the word)."""
        if self._glue is not None and self._glue.shape[0] == vocab and self._glue.device == device:
            return self._glue
        cache = _cache(self.tokenizer)["glue"]
        flags = cache.get(vocab)
        if flags is None:
            anchor = _encode(self.tokenizer, _ANCHORS[0])
            anchor_text = _raw_decode(self.tokenizer, anchor)
            known = min(vocab, len(self.tokenizer))
            texts = self.tokenizer.batch_decode([anchor + [t] for t in range(known)], skip_special_tokens=True,
                                                clean_up_tokenization_spaces=False)
            flags = torch.ones(vocab, dtype=torch.bool)  # ids past the tokenizer: never wanted
            for t, text in enumerate(texts):
                rest = text[len(anchor_text):] if text.startswith(anchor_text) else text
                flags[t] = not rest or "\ufffd" in rest or is_word_char(rest[0])
            cache[vocab] = flags
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

    def _apply(self, scores: torch.FloatTensor, plan: "_Plan") -> torch.FloatTensor:
        if not (plan.forced or plan.offers or plan.ending or plan.unglued):
            return scores
        scores = scores.clone()
        dev = scores.device
        if plan.unglued:
            rows = torch.tensor(plan.unglued, device=dev)
            scores[rows] = scores[rows].masked_fill(self._glue_mask(scores.shape[1], dev), float("-inf"))
        if self._ends is None or self._ends.device != dev:
            self._ends = torch.tensor(self.end_ids, device=dev)
        ends = self._ends
        if self.guaranteed:  # offers nothing (it judges moments instead): holds back the ends
            # few, batched tensor ops: at these sizes each op costs more than its arithmetic
            if len(plan.ending) == scores.shape[0]:
                scores[:, ends] = float("-inf")
            elif plan.ending:
                scores[torch.tensor(plan.ending, device=dev)[:, None], ends[None, :]] = float("-inf")
        else:
            if plan.offers:  # a share of the wish to end, split evenly among them
                rows_l, toks_l, shares = zip(*plan.offers)
                rows, toks = torch.tensor(rows_l, device=dev), torch.tensor(toks_l, device=dev)
                boosted = scores[rows, toks] + plan.boost
                moved = torch.logsumexp(scores[:, ends], dim=1)[rows] + math.log(SOFT_END_TRANSFER)
                boosted = torch.logaddexp(boosted, moved + torch.tensor(shares, dtype=scores.dtype, device=dev))
                scores[rows, toks] = boosted
            if plan.ending:
                rows = torch.tensor(plan.ending, device=dev)[:, None]
                scores[rows, ends[None, :]] += math.log1p(-SOFT_END_TRANSFER)
        if plan.forced:
            rows, toks = (torch.tensor(x, device=dev) for x in zip(*plan.forced))
            scores[rows] = float("-inf")  # top-k/top-p keep the maximum, so this survives them
            # its value is moot as the only finite one, but must stay finite through any
            # temperature (a blocked token's -inf, or the dtype's minimum ÷ 0.9, would not)
            scores[rows, toks] = 0.0
        return scores


@dataclass
class _Plan:
    """What one step does to the logits, gathered over the rows and then applied at once."""

    boost: float
    forced: list[tuple[int, int]] = field(default_factory=list)  # (row, token): the only choice
    offers: list[tuple[int, int, float]] = field(default_factory=list)  # (row, first token, log share)
    ending: list[int] = field(default_factory=list)  # rows whose end tokens are held back
    unglued: list[int] = field(default_factory=list)  # rows where no token may join the last word
