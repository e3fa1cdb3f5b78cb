"""Keyword extraction for training rows that come without keywords.

>>> extract_keywords("The storm hit the harbour. The storm passed; the harbour slept.", k=2)
['storm', 'harbour']
>>> extract_keywords("人工智能正在改变医疗。人工智能让医生更快地读懂影像。", k=2)  # doctest: +SKIP
['人工智能', '读懂']

Chinese uses jieba's TF-IDF (`jieba.analyse.extract_tags`); English uses word frequency,
described in `extract_keywords`. jieba is imported on first Chinese call, never at import time.
"""
from __future__ import annotations

import logging
import re
from collections import Counter

from textgen.keywords import MAX_KEYWORD_CHARS
from textgen.lang import detect_language

# Function words that are frequent in every English text and say nothing about its topic.
_STOPWORDS = frozenset("""
a about above after again against all also am an and any are aren't as at be because been before
being below between both but by can can't cannot could couldn't did didn't do does doesn't doing don't
down during each even ever every few for from further get gets got had hadn't has hasn't have haven't
having he her here hers herself him himself his how however i if in into is isn't it it's its itself
just least less let like made make many may me might more most much must my myself near never no nor
not now of off often on once one only or other ought our ours ourselves out over own per perhaps
rather same say said says she should shouldn't since so some still such than that that's the their
theirs them themselves then there there's these they this those though through thus to too under
until up upon us very via was wasn't we well were weren't what when where whether which while who
whom whose why will with within without would wouldn't yet you your yours yourself yourselves
""".split())

# A word: letters, optionally joined by an apostrophe or hyphen ("don't", "well-known").
_WORD = re.compile(r"[^\W\d_]+(?:['’-][^\W\d_]+)*")


def extract_keywords(text: str, k: int = 5, language: str | None = None) -> list[str]:
    """Return up to `k` keywords that describe `text`, most important first.

    language: "zh" or "en"; None detects it (any CJK ideograph means Chinese).

    Chinese: jieba's TF-IDF ranking, `jieba.analyse.extract_tags(text, topK=k)`, keeping only
    tokens that contain a letter or ideograph.
    English: words of at least 3 letters that are not in a small built-in stopword list,
    ranked by how often they occur (case-insensitive), ties broken by first occurrence; each is
    returned in its most common spelling, so "Python" stays capitalised and "The" does not.

    >>> extract_keywords("Rain, rain and more rain over the quiet hills.", k=2)
    ['rain', 'quiet']
    """
    if k <= 0 or not text or not text.strip():
        return []
    language = language or detect_language(text)
    words = _extract_zh(text, k) if language == "zh" else _extract_en(text, k)
    # The prompt format rejects over-long keywords, so never produce one.
    return [w for w in words if len(w) <= MAX_KEYWORD_CHARS][:k]


def _extract_zh(text: str, k: int) -> list[str]:
    import jieba

    # jieba logs "Building prefix dict..." at DEBUG on first use; users should not see it.
    jieba.setLogLevel(logging.WARNING)
    import jieba.analyse

    # Ask for a few extra: numbers and punctuation runs are filtered out below.
    tags = jieba.analyse.extract_tags(text, topK=k + 5)
    return [t for t in tags if re.search(r"[^\W\d_]", t)][:k]


def _extract_en(text: str, k: int) -> list[str]:
    counts: Counter[str] = Counter()
    first_seen: dict[str, int] = {}
    spellings: dict[str, Counter[str]] = {}
    for index, match in enumerate(_WORD.finditer(text)):
        word = re.sub(r"['’]s$", "", match.group())  # "model's" counts as "model"
        key = word.casefold()
        if len(word) < 3 or key in _STOPWORDS:
            continue
        counts[key] += 1
        first_seen.setdefault(key, index)
        spellings.setdefault(key, Counter())[word] += 1
    ranked = sorted(counts, key=lambda key: (-counts[key], first_seen[key]))
    return [_display_form(key, spellings[key]) for key in ranked[:k]]


def _display_form(key: str, spellings: Counter[str]) -> str:
    # Sentence-initial capitals should not win over the usual lowercase spelling,
    # so prefer lowercase when it is at least as common as any other form.
    best, best_count = spellings.most_common(1)[0]
    return key if spellings.get(key, 0) >= best_count else best
