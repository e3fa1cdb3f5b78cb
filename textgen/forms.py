"""Chinese poem forms while sampling: 五言/七言 绝句/律诗, keywords and rhyme guaranteed.

A form fixes the shape: `lines` lines of `chars` Chinese characters, ending in ， and 。 in
turn (？ or ！ where the model prefers them), then the end. `FormProcessor` keeps, for each
sampled row, its place in the poem and lets only what fits there through: a Chinese
character inside a line (tokens of exactly one character: the count stays exact whatever the
tokenizer, and the built-in and BERT-style Chinese vocabularies write nearly everything one
character a token anyway), the line's punctuation at its end, the end token after the last line.
After each couplet the model may also break the line ("\n"), as poems are written on the page.

Keywords (guaranteed mode) are written inside lines, never across a line break: when the
model starts one by itself where the line can hold it, the rest follows; when the lines left
can only just hold the keywords still missing, the next one is started. Rhyme: the last
character of every even line is restricted to the rhyme group of line 2's last character
(sampled by the model's own probabilities among that group's characters). Groups are
pypinyin's standard finals with the medial dropped (an, ian, uan, üan rhyme; in, ün with en),
a modern approximation in the spirit of 中华新韵 rather than the classical 平水韵, for which
no maintained package with a cited table exists.

>>> FORMS["wujue"].lines, FORMS["wujue"].chars
(4, 5)
>>> rhyme_group("光"), rhyme_group("霜"), rhyme_group("乡")
('ang', 'ang', 'ang')
"""
from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from transformers import LogitsProcessor



@dataclass(frozen=True)
class Form:
    name: str
    label: str
    lines: int
    chars: int

    @property
    def tokens(self) -> int:
        """Tokens a poem of this form takes: every character and mark, a line break after
        each couplet but the last, and the end."""
        return self.lines * (self.chars + 1) + self.lines // 2 - 1 + 1


FORMS = {f.name: f for f in (Form("wujue", "五言绝句", 4, 5), Form("qijue", "七言绝句", 4, 7),
                             Form("wulv", "五言律诗", 8, 5), Form("qilv", "七言律诗", 8, 7))}
FORM_CHOICES = ("free", *FORMS)
ODD_END, EVEN_END = ("，", "？", "！"), ("。", "？", "！")
_HAN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_MEDIALS = ("i", "u", "v")
# Pushes the first character of a keyword still missing, where its line can hold it, so that
# the model tends to start it by itself instead of being forced late (logits, before warpers).
KEYWORD_BOOST = 2.0


def rhyme_group(char: str) -> str | None:
    """The rhyme group of one Chinese character: its standard final with the medial (i, u, ü)
    dropped, and -n/-ng finals of i and ü folded into en/eng (天 先 间 → an; 人 心 → en)."""
    from pypinyin import Style, pinyin

    final = pinyin(char, style=Style.FINALS, strict=True, errors=lambda _: [""])[0][0]
    if not final:
        return None
    final = final.replace("ü", "v")
    if final in ("i", "u", "v"):
        return final
    rest = final[1:] if final[0] in _MEDIALS and len(final) > 1 else final
    return "e" + rest if rest.startswith("n") else rest


def check_form_keywords(form: Form, keywords: Sequence[str]) -> None:
    """Refuse keywords a poem of this form cannot hold, saying why."""
    for kw in keywords:
        if not kw or not all(_HAN.match(ch) for ch in kw):
            raise ValueError(f"keywords: {kw!r} is not all Chinese characters; a {form.label} holds only "
                             f"Chinese characters 格律诗的关键词只能是汉字")
        if len(kw) > form.chars - 1:
            raise ValueError(f"keywords: {kw!r} has {len(kw)} characters; in a {form.label} a keyword may have at "
                             f"most {form.chars - 1} (a line has {form.chars}, its last one may rhyme) 关键词过长")
    room = form.lines * (form.chars - 1)
    total = sum(len(k) for k in keywords)
    if total > room:
        raise ValueError(f"keywords: {total} characters of keywords do not fit a {form.label} "
                         f"({form.lines} lines of {form.chars}; at most {room} for keywords) 关键词太多")


@dataclass
class FormVocab:
    """Which token writes which single character, and the punctuation tokens."""

    char_of: dict[int, str]  # token id -> its one Chinese character
    ids_of: dict[str, int]  # character -> a token id writing it alone
    marks: dict[str, int]  # "，" -> token id …
    group_ids: dict[str, list[int]] = field(default_factory=dict)  # rhyme group -> char token ids
    newline: int | None = None  # the token of "\n": a model trained on poems breaks lines after a couplet

    @classmethod
    def build(cls, tokenizer, decode: Callable[[Sequence[int]], str]) -> "FormVocab":
        char_of: dict[int, str] = {}
        for tid in range(len(tokenizer)):
            text = decode([tid]).strip()
            if len(text) == 1 and _HAN.match(text):
                char_of[tid] = text
        ids_of: dict[str, int] = {}
        for tid, ch in char_of.items():
            ids_of.setdefault(ch, tid)
        marks = {}
        for mark in ("，", "。", "？", "！"):
            ids = tokenizer(mark, add_special_tokens=False)["input_ids"]
            if len(ids) == 1 and decode(ids).strip() == mark:
                marks[mark] = ids[0]
        if "，" not in marks or "。" not in marks:
            raise ValueError("form: this model's vocabulary has no single tokens for ， and 。; "
                             "poem forms need a Chinese model 格律诗需要中文模型")
        groups: dict[str, list[int]] = {}
        for ch, tid in ids_of.items():
            group = rhyme_group(ch)
            if group:
                groups.setdefault(group, []).append(tid)
        newline = tokenizer("\n", add_special_tokens=False)["input_ids"]
        # the tokenizer's own decode: the caller's strips the text, and this one is whitespace
        newline = newline[0] if len(newline) == 1 and tokenizer.decode(newline) == "\n" else None
        return cls(char_of, ids_of, marks, groups, newline)


@dataclass
class _Row:
    line: int = 0  # 0-based line being written
    pos: int = 0  # characters written in it
    text: str = ""
    forcing: str = ""  # the rest of a keyword being written
    group: str | None = None
    done: bool = False
    after_couplet: bool = False  # a couplet just ended: a line break may come before the next line


class FormProcessor(LogitsProcessor):
    """Shape, keywords and rhyme of a poem form, per sampled row (see the module docstring)."""

    def __init__(self, form: Form, vocab: FormVocab, *, keywords: Sequence[str], guaranteed: bool,
                 rhyme: bool, n: int, prompt_len: int, end_ids: Sequence[int]) -> None:
        self.form, self.vocab, self.rhyme = form, vocab, rhyme
        self.keywords = list(dict.fromkeys(keywords)) if guaranteed else []
        self.prompt_len, self.end_id = prompt_len, end_ids[0]
        self.rows = [_Row() for _ in range(n)]
        self._char_ids = torch.tensor(sorted(vocab.char_of), dtype=torch.long)

    # -- bookkeeping --------------------------------------------------------------------------
    def _observe(self, row: _Row, tid: int) -> None:
        if row.done:
            return
        if row.after_couplet and tid == self.vocab.newline:
            row.text += "\n"
            row.after_couplet = False
            return
        row.after_couplet = False
        if row.pos == self.form.chars:  # the mark that ends the line
            row.text += next((m for m, i in self.vocab.marks.items() if i == tid), "。")
            if row.line == 1 and self.rhyme and row.group is None:
                row.group = rhyme_group(row.text[-2]) if len(row.text) >= 2 else None
            row.line, row.pos = row.line + 1, 0
            row.done = row.line == self.form.lines
            row.after_couplet = row.line % 2 == 0 and not row.done
            return
        ch = self.vocab.char_of.get(tid, "")
        row.text += ch
        row.pos += 1
        if row.forcing:
            row.forcing = row.forcing[1:]
        else:
            started = [k for k in self._pending(row) if k[0] == ch and len(k) <= self._room(row) + 1]
            if started and self.keywords:
                row.forcing = max(started, key=len)[1:]

    def _pending(self, row: _Row) -> list[str]:
        """Keywords not yet in the poem (never asked while one is being written)."""
        return [k for k in self.keywords if k not in row.text]

    def _room(self, row: _Row) -> int:
        """Free character slots left in the current line (its rhyme slot excluded)."""
        last = self.form.chars - (1 if self._rhymes(row.line) else 0)
        return max(0, last - row.pos)

    def _rhymes(self, line: int) -> bool:
        return self.rhyme and line % 2 == 1

    def _fits(self, row: _Row, lengths: list[int], *, now_used: int) -> bool:
        """Whether keywords of `lengths` fit the lines left, greedily, longest first, when
        `now_used` more slots of the current line are taken first."""
        rooms = [self._room(row) - now_used] + [self.form.chars - (1 if self._rhymes(i) else 0)
                                                 for i in range(row.line + 1, self.form.lines)]
        for n in sorted(lengths, reverse=True):
            best = next((i for i, r in enumerate(rooms) if r >= n), None)
            if best is None:
                return False
            rooms[best] -= n
        return True

    # -- the step -----------------------------------------------------------------------------
    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        if input_ids.shape[1] > self.prompt_len:
            for row, tid in zip(self.rows, input_ids[:, -1].tolist()):
                self._observe(row, tid)
        out = torch.full_like(scores, -math.inf)
        for r, row in enumerate(self.rows):
            self._allow(r, row, scores, out)
        return out

    def _allow(self, r: int, row: _Row, scores: torch.FloatTensor, out: torch.FloatTensor) -> None:
        def force(tid: int) -> None:
            out[r, tid] = 0.0

        if row.done:
            return force(self.end_id)
        if row.pos == self.form.chars:
            ends = EVEN_END if row.line % 2 == 1 or row.line == self.form.lines - 1 else ODD_END
            ids = [self.vocab.marks[m] for m in ends if m in self.vocab.marks]
            out[r, ids] = scores[r, ids]
            return None
        if row.forcing:
            return force(self.vocab.ids_of[row.forcing[0]])
        pending = self._pending(row)
        lengths = [len(k) for k in pending]
        if pending and not self._fits(row, lengths, now_used=1):  # the last moment for one of them
            fit = [k for k in pending if len(k) <= self._room(row)]
            if fit:
                first = [self.vocab.ids_of[k[0]] for k in fit]
                return force(first[int(torch.argmax(scores[r, first]))])
        ids = self._char_ids.to(scores.device)
        if self._rhymes(row.line) and row.pos == self.form.chars - 1 and row.group is not None:
            group = self.vocab.group_ids.get(row.group)
            if group:
                ids = torch.tensor(group, device=scores.device)
        out[r, ids] = scores[r, ids]
        if row.after_couplet and self.vocab.newline is not None:
            out[r, self.vocab.newline] = scores[r, self.vocab.newline]
        if pending and not (self._rhymes(row.line) and row.pos == self.form.chars - 1):
            boost = [self.vocab.ids_of[k[0]] for k in pending if len(k) <= self._room(row)]
            if boost:
                out[r, boost] = scores[r, boost] + KEYWORD_BOOST
        return None


@dataclass(frozen=True)
class FormReport:
    """How a finished text matches its form."""

    form: str
    shape_ok: bool
    rhyme_group: str | None
    rhyming_lines: tuple[int, ...]  # 1-based even lines whose last character is in the group
    rhymes: bool

    def to_dict(self) -> dict:
        return {"form": self.form, "shape_ok": self.shape_ok, "rhyme_group": self.rhyme_group,
                "rhyming_lines": list(self.rhyming_lines), "rhymes": self.rhymes}


def form_report(form: Form, text: str) -> FormReport:
    lines = [ln.lstrip("\n") for ln in re.split(r"[，。？！]", text.strip()) if ln.strip("\n") != ""]
    marks = re.findall(r"[，。？！]", text)
    shape_ok = (len(lines) == form.lines and len(marks) == form.lines and
                all(len(ln) == form.chars and all(_HAN.match(c) for c in ln) for ln in lines) and
                bool(re.fullmatch(r"(?:[\u3400-\u9fff\uf900-\ufaff]+[，。？！]\n?)+", text.strip())))
    even = [ln for i, ln in enumerate(lines) if i % 2 == 1]
    group = rhyme_group(even[0][-1]) if even and even[0] else None
    rhyming = tuple(2 * i + 2 for i, ln in enumerate(even) if ln and group and rhyme_group(ln[-1]) == group)
    return FormReport(form.name, shape_ok, group, rhyming, bool(even) and len(rhyming) == len(even))

