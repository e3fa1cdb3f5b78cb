"""What each batch row has written so far: which keywords are in its text, which are open.

`KeywordTracker.observe` is fed every generated token; it decodes only when a token could
end a keyword (`_could_complete`), and then confirms on the whole row, so that what counts
here is what `coverage()` reports on the final text.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from .coverage import Written, word_forms, written
from .cleanup import visible
from .variants import Decode, KeywordForms, Variant, cache, raw_decode

# Tokens decoded beyond a keyword's UTF-8 length when looking for it at the end of a row:
# every token carries at least one byte, plus room for a leading space or special tokens.
TAIL_SLACK = 8
# Remembered (token, keyword) answers per tokenizer; a server sees endless new keywords.
MAX_CACHED_ANSWERS = 200_000


@dataclass
class RowState:
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


class KeywordTracker:
    """Follows the rows' texts token by token for a set of keywords (state lives in `RowState`)."""

    def __init__(self, forms: Sequence[KeywordForms], *, tokenizer, decode: Decode, end_ids: Sequence[int]) -> None:
        self.forms = list(forms)
        self.tokenizer, self.decode = tokenizer, decode
        self._end_set = set(end_ids)
        self._texts: dict[int, str] = cache(tokenizer)["texts"]
        self._lower = [f.keyword.lower() for f in self.forms]
        self._forms_lower = [word_forms(f.keyword) for f in self.forms]  # inflections included
        self._tail = [max(len(w.encode("utf-8")) for w in forms) + TAIL_SLACK for forms in self._forms_lower]
        # (token, lower-case keyword) → whether the token can end it; shared across requests,
        # emptied when it grows past a bound
        self._ends_keyword: dict[tuple[int, str], bool] = cache(tokenizer)["ends_keyword"]
        if len(self._ends_keyword) > MAX_CACHED_ANSWERS:
            self._ends_keyword.clear()

    def new_row(self) -> RowState:
        return RowState(list(range(len(self.forms))))

    def text(self, tid: int) -> str:
        text = self._texts.get(tid)
        if text is None:
            text = self._texts[tid] = raw_decode(self.tokenizer, [tid])
        return text

    def last_char(self, row: RowState) -> str:
        """The row's last character as a reader will see it ("" at the start): a token of
        unfinished bytes or of a control character that decoding drops ("\\r") shows nothing."""
        for tid in reversed(row.ids[-TAIL_SLACK:]):
            text = visible(self.text(tid))
            if text:
                return text[-1]
        return ""

    def observe(self, row: RowState, tid: int) -> None:
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
                text = self.text(tid).lower().removeprefix("##")  # WordPiece continuation marker
                answer = self._ends_keyword[key] = (
                    not text or "\ufffd" in text
                    or any(kw in text or any(kw.endswith(text[:j]) for j in range(1, min(len(text), len(kw)) + 1))
                           for kw in self._forms_lower[k]))
            if answer:
                return True
        return False

    def _detect(self, row: RowState) -> None:
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
        if self.last_char(row).isspace():  # decoding strips it, yet it ends the word
            states = {k: Written.YES if s == Written.AT_END else s for k, s in states.items()}
        row.pending = sorted(k for k in keys if states.get(k, Written.NO) == Written.NO)
        row.open = [k for k in keys if states.get(k) == Written.AT_END]
