"""A keyword's spellings as token sequences ("variants") for one tokenizer.

A keyword counts as written when the *decoded* text contains it by `coverage`'s rule, and it
can appear through a tokenisation nobody planned. So each keyword gets several token
sequences: its surface forms (as given, lower-case, Capitalised, Title Case), with and
without a leading space, and as a continuation after a word. That covers GPT-2's
"Ġstorm"/"storm"/"Storm", sentencepiece's "▁" marker and BERT's per-character Chinese
vocabularies. Each is checked by decoding it, alone and after a word.
"""
from __future__ import annotations

import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from .cleanup import decode_text, spaces_between_cjk
from .coverage import find_keyword, is_word_char, matched_as_substring
from .lang import has_cjk

Decode = Callable[[Sequence[int]], str]

# Words the variants are tried after, as the continuation of a text ("astorm", "。明月").
ANCHORS = ("a", "。")


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


def cache(tokenizer) -> dict:
    try:
        return _CACHE.setdefault(tokenizer, {"forms": {}, "texts": {}, "ends_keyword": {}, "glue": {}})
    except TypeError:  # not weak-referenceable: no caching
        return {"forms": {}, "texts": {}, "ends_keyword": {}, "glue": {}}


def raw_decode(tokenizer, ids: Sequence[int]) -> str:
    return tokenizer.decode(list(ids), skip_special_tokens=True, clean_up_tokenization_spaces=False)


def encode(tokenizer, text: str) -> list[int]:
    return tokenizer.encode(text, add_special_tokens=False)


def _surface_forms(keyword: str) -> list[str]:
    if has_cjk(keyword):
        return [keyword]
    forms = [keyword, keyword.lower(), keyword[:1].upper() + keyword[1:], keyword.title()]
    return list(dict.fromkeys(forms))


def _candidate_ids(tokenizer, form: str) -> list[list[int]]:
    out = [encode(tokenizer, form), encode(tokenizer, " " + form)]
    for anchor in ANCHORS:
        head, whole = encode(tokenizer, anchor), encode(tokenizer, anchor + form)
        if whole[:len(head)] == head:  # the form did not merge into the anchor
            out.append(whole[len(head):])
    return out


def keyword_forms(tokenizer, keyword: str, *, decode: Decode, end_ids: Sequence[int]) -> KeywordForms:
    """The token sequences that write `keyword` with this tokenizer (cached per tokenizer).

    A sequence qualifies when its decoded text contains the keyword, and it holds no special
    or end token; a Chinese keyword must also survive after a word (it could merge into it).
    """
    key = (keyword, tuple(sorted(end_ids)))
    known = cache(tokenizer)["forms"]
    if key in known:
        return known[key]
    banned = set(end_ids) | set(getattr(tokenizer, "all_special_ids", []))
    anchor = encode(tokenizer, ANCHORS[0])
    anchor_text = raw_decode(tokenizer, anchor)
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
            after_word = raw_decode(tokenizer, anchor + ids)
            spaced = after and after_word.startswith(anchor_text) and after_word[len(anchor_text):][:1].isspace()
            found[ids_t] = Variant(ids_t, raw_decode(tokenizer, ids)[:1].isspace(), spaced)
    variants = tuple(sorted(found.values(), key=lambda v: (len(v.ids), v.lead)))
    known[key] = forms = KeywordForms(keyword, cjk, variants)
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


def glue_flags(tokenizer, vocab: int) -> torch.Tensor:
    """(V,) True for the tokens that would join the word before them: their text starts with a
    letter or digit, or is unfinished bytes or nothing; ids past the tokenizer too (never
    wanted). Found once per tokenizer and vocabulary size by decoding each token after a letter."""
    store = cache(tokenizer)["glue"]
    flags = store.get(vocab)
    if flags is None:
        anchor = encode(tokenizer, ANCHORS[0])
        anchor_text = raw_decode(tokenizer, anchor)
        known = min(vocab, len(tokenizer))
        texts = tokenizer.batch_decode([anchor + [t] for t in range(known)], skip_special_tokens=True,
                                       clean_up_tokenization_spaces=False)
        flags = torch.ones(vocab, dtype=torch.bool)
        for t, text in enumerate(texts):
            rest = text[len(anchor_text):] if text.startswith(anchor_text) else text
            flags[t] = not rest or "\ufffd" in rest or is_word_char(rest[0])
        store[vocab] = flags
    return flags
