"""Which keywords a text contains, and where (character spans for highlighting).

One rule decides whether a keyword is written, for everything that asks: the keyword
processor (`constraints`), the ranking, the coverage report, the highlighted spans.

- A keyword in a script written without spaces between words (Chinese, Japanese kana,
  Korean Hangul, Thai and their neighbours) is found as a substring: "明月" is in "明月光".
  (Hangul does separate words with spaces, but glues particles to them: "사과를".)
- Any other keyword (Latin, Cyrillic, Greek…) counts only where it stands as a word,
  case-insensitively: no letter or digit of such a script right before it, and none right
  after it except a common English inflection of its last word (`word_forms`). So "hat" is
  not in "that" or "hatch", but is in "Hat.", "hats" and "hat's"; "sit" is in "(sit)" and
  "sitting". The words of a phrase match across any run of whitespace ("long\\nroad").
  A Chinese character next to a Latin keyword is a boundary: "用AI写" contains "AI".

>>> find_keyword("make that one", "hat") is None
True
>>> find_keyword("Two hats.", "hat")
Span(keyword='hat', start=4, end=8)

Coverage is judged on the decoded text, not on token ids, because a keyword can
appear through a tokenisation other than the one we would have chosen.
"""
from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Sequence

from .lang import has_cjk

# Scripts whose words are not separated by spaces: a keyword in them is matched as a
# substring, and their characters count as boundaries around a Latin keyword.
_NO_SPACE_RANGES = ("\u0e00-\u0eff\u1000-\u109f\u1780-\u17ff\u1100-\u11ff\u3040-\u30ff\u3130-\u318f"
                    "\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff\U00020000-\U0002ffff")
_NO_SPACE = re.compile(f"[{_NO_SPACE_RANGES}]")
# A letter or digit of a space-separated script: what may not touch a keyword.
_WORD_CHAR = f"[^\\W_{_NO_SPACE_RANGES}]"
_WORD_CHAR_RE = re.compile(_WORD_CHAR)
_VOWELS = "aeiou"


@dataclass(frozen=True)
class Span:
    keyword: str
    start: int
    end: int


class Written(enum.IntEnum):
    """How far a keyword is written in a text that may still grow."""

    NO = 0
    AT_END = 1  # only as the text's last word: letters still to come could glue onto it
    YES = 2


def is_word_char(ch: str) -> bool:
    """A letter or digit that joins a word of a space-separated script (not CJK, not punctuation)."""
    return bool(ch) and bool(_WORD_CHAR_RE.fullmatch(ch))


def matched_as_substring(keyword: str) -> bool:
    """Keywords of scripts without spaces between words are matched as substrings."""
    return bool(_NO_SPACE.search(keyword))


def word_forms(keyword: str) -> list[str]:
    """The lower-case spellings that count as the keyword, longest first: the keyword, and for
    an English last word (ASCII letters) its inflections: +s; +es after s, x, z, ch, sh, o;
    y → ies/ied/ier/iers after a consonant; +ed, +er, +ers, +ing (after a final e: +d, +r,
    +rs, and e → ing); a final consonant doubled before ing/ed/er/ers after one short vowel
    (sit → sitting, run → runner). A possessive ("hat's") needs no form: the apostrophe
    already ends the word.

    >>> {"sits", "sitting", "sitter"} <= set(word_forms("sit")), "sites" in word_forms("sit")
    (True, False)
    """
    base = " ".join(keyword.lower().split())
    if matched_as_substring(base):
        return [base]
    head, _, last = base.rpartition(" ")
    if not (last.isascii() and last.isalpha() and len(last) >= 2):
        return [base]
    forms = {last, last + "s", last + "ing"}
    if last.endswith("e"):
        forms |= {last + "d", last + "r", last + "rs", last[:-1] + "ing"}
    else:
        forms |= {last + "ed", last + "er", last + "ers"}
    if re.search(r"(s|x|z|ch|sh|o)$", last):
        forms.add(last + "es")
    if re.search(r"[^aeiou]y$", last):
        forms |= {last[:-1] + end for end in ("ies", "ied", "ier", "iers")}
    if re.search(r"(^|[^aeiou])[aeiou][b-df-hj-np-tvz]$", last):
        forms |= {last + last[-1] + end for end in ("ing", "ed", "er", "ers")}
    prefix = head + " " if head else ""
    return [prefix + form for form in sorted(forms, key=lambda f: (-len(f), f))]


@lru_cache(maxsize=4096)
def _pattern(keyword: str) -> re.Pattern | None:
    """The regex of a word keyword (None for substring keywords)."""
    if matched_as_substring(keyword):
        return None
    alternatives = []
    for form in word_forms(keyword):
        alternatives.append(r"\s+".join(re.escape(word) for word in form.split(" ")))
    body = "|".join(alternatives)
    # boundaries only where the keyword itself starts or ends with a letter ("C++", ".NET")
    before = f"(?<!{_WORD_CHAR})" if is_word_char(keyword[:1]) else ""
    after = f"(?!{_WORD_CHAR})" if is_word_char(keyword[-1:]) else ""
    return re.compile(f"{before}(?:{body}){after}", re.IGNORECASE)


def _matches(text: str, keyword: str):
    """(start, end) of each occurrence of the keyword, in order."""
    pattern = _pattern(keyword)
    if pattern is not None:
        for m in pattern.finditer(text):
            yield m.start(), m.end()
        return
    # substring scripts: CJK exactly, as always; kana/Hangul/Thai have no case to fold
    needle, haystack = (keyword, text) if has_cjk(keyword) else (keyword.lower(), text.lower())
    pos = haystack.find(needle)
    while pos >= 0:
        yield pos, pos + len(needle)
        pos = haystack.find(needle, pos + 1)


def find_keyword(text: str, keyword: str) -> Span | None:
    """First occurrence of `keyword` in `text` by the rule above (the span covers an inflection)."""
    if not keyword:
        return None
    for start, end in _matches(text, keyword):
        return Span(keyword, start, end)
    return None


def written(text: str, keyword: str) -> Written:
    """Whether `text`, which may still grow at its end, contains `keyword`: YES once an
    occurrence is followed by something that ends the word, AT_END while the only
    occurrences end the text (more letters would glue onto them: "hat" → "hatch")."""
    if not keyword:
        return Written.NO
    state = Written.NO
    glue = _pattern(keyword) is not None and is_word_char(keyword[-1:])
    for _, end in _matches(text, keyword):
        if not glue or end < len(text):
            return Written.YES
        state = Written.AT_END
    return state


def coverage(text: str, keywords: Sequence[str]) -> tuple[list[str], list[str], list[Span]]:
    """(covered, missing, spans) of `keywords` in `text`, in keyword order."""
    covered, missing, spans = [], [], []
    for kw in keywords:
        span = find_keyword(text, kw)
        if span is None:
            missing.append(kw)
        else:
            covered.append(kw)
            spans.append(span)
    return covered, missing, spans
