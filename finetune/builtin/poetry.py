"""chinese-poetry (github.com/chinese-poetry/chinese-poetry) in its upstream layout: its JSON
files of Tang and Song poems, as title → poem rows (one couplet per line), keywords the
poems' common nouns (`PoemKeywords`)."""
from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

from .rows import CorpusLayoutError, ReadReport, Row

# chinese-poetry's collections, by the file-name prefix of its JSON files (simplified edition
# where upstream has one); the title field of ci is the tune name
POETRY_COLLECTIONS = {
    "tang": ("全唐诗", "poet.tang.*.simplified.json", "title"),
    "song": ("全唐诗", "poet.song.*.simplified.json", "title"),
    "ci": ("宋词", "ci.song.*.json", "rhythmic"),
}
REGULAR_SHAPES = ((4, 5), (4, 7), (8, 5), (8, 7))  # (lines, characters per line): 绝句 and 律诗
_CLAUSE = re.compile(r"[，。？！；]")
_HAN = re.compile(r"^[\u4e00-\u9fff]+$")


def poem_shape(lines: list[str]) -> tuple[int, int] | None:
    """(lines, characters per line) of a regular poem (绝句, 律诗), else None; `lines` are the
    paragraphs, each split at its clause punctuation."""
    clauses = [c for line in lines for c in _CLAUSE.split(line) if c]
    if not clauses or len({len(c) for c in clauses}) != 1 or not all(_HAN.match(c) for c in clauses):
        return None
    shape = (len(clauses), len(clauses[0]))
    return shape if shape in REGULAR_SHAPES else None


def read_chinese_poetry(root: str | Path, collections: tuple[str, ...] = ("tang", "song"), *,
                        regular_only: bool = True, max_chars: int | None = None,
                        keywords: int = 4) -> tuple[list[Row], ReadReport]:
    """Poems of a chinese-poetry clone: title → the poem, one paragraph (a couplet) per line.

    regular_only: keep 绝句 and 律诗 only (4 or 8 lines of 5 or 7 characters), the forms people
    ask a poem generator for; max_chars: stop once this much text is read (collections in the
    order given, files in numeric order); keywords: how many per poem (`PoemKeywords`)."""
    root = Path(root)
    report, rows, seen = ReadReport(), [], set()
    for name in collections:
        if name not in POETRY_COLLECTIONS:
            raise ValueError(f"collections: unknown {name!r}; known: {', '.join(POETRY_COLLECTIONS)}")
        folder, pattern, title_key = POETRY_COLLECTIONS[name]
        files = sorted((root / folder).glob(pattern), key=_number_in_name)
        if not files:
            raise CorpusLayoutError(f"{root / folder}: no {pattern} files; give the root of a chinese-poetry "
                                    "clone (the folder that holds 全唐诗/ and 宋词/)")
        for path in files:
            report.files += 1
            for poem in _json_entries(path, report):
                row = _poem_row(poem, title_key, regular_only, report, seen)
                if row is not None:
                    rows.append(report.keep(row))
                    if max_chars is not None and report.characters >= max_chars:
                        return _with_keywords(rows, keywords), report
    return _with_keywords(rows, keywords), report


def _with_keywords(rows: list[Row], k: int) -> list[Row]:
    chosen = PoemKeywords([r.text for r in rows])
    return [Row(r.title, list(chosen.of(i, k)), r.text) for i, r in enumerate(rows)]


def _number_in_name(path: Path) -> tuple[int, str]:
    found = re.search(r"\.(\d+)\.", path.name)
    return (int(found.group(1)) if found else -1, path.name)


def _json_entries(path: Path, report: ReadReport) -> Iterator[dict]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        report.dropped["files that are not UTF-8 JSON"] += 1
        return
    if not isinstance(data, list):
        report.dropped["files that are not a JSON list"] += 1
        return
    for entry in data:
        if isinstance(entry, dict):
            yield entry
        else:
            report.dropped["entries that are not objects"] += 1


def _poem_row(poem: dict, title_key: str, regular_only: bool, report: ReadReport, seen: set) -> Row | None:
    title = poem.get(title_key)
    paragraphs = poem.get("paragraphs")
    if not isinstance(title, str) or not title.strip():
        report.dropped["poems without a title"] += 1
        return None
    if not isinstance(paragraphs, list) or not all(isinstance(p, str) for p in paragraphs):
        report.dropped["poems without paragraphs"] += 1
        return None
    lines = [p.strip() for p in paragraphs if p.strip()]
    if not lines:
        report.dropped["poems with empty paragraphs"] += 1
        return None
    if regular_only and poem_shape(lines) is None:
        report.dropped["poems that are not 绝句 or 律诗"] += 1
        return None
    text = "\n".join(lines)
    if text in seen:  # the same poem under two authors or titles
        report.dropped["duplicate poems"] += 1
        return None
    seen.add(text)
    title = re.sub(r"\s+", " ", title.strip())
    return Row(title, [], text)


NOUN_TAGS = {"n", "ns", "nr", "nz", "ng", "t", "s", "tg"}  # nouns, places, names, times, spaces


class PoemKeywords:
    """Keywords of poems, chosen the way people type them for a poem: words of 1-2 characters
    that many poems of the corpus use (月, 花, 明月, 故乡): nouns (jieba's part-of-speech tags),
    neither the corpus's rare characters nor its most common words.

    Counts come from the poems themselves (document frequency of jieba's words), so the same
    rule serves any classical corpus."""

    def __init__(self, texts: list[str], *, skip_top: int = 20, min_poems: int = 20) -> None:
        import jieba
        import jieba.posseg

        jieba.setLogLevel(60)
        self.words = [sorted({p.word for p in jieba.posseg.lcut(t, HMM=False)
                              if len(p.word) <= 2 and p.flag in NOUN_TAGS and _HAN.match(p.word)}, key=t.index)
                      for t in texts]
        df = Counter(w for ws in self.words for w in ws)
        function_words = {w for w, _ in df.most_common(skip_top)}
        self.df = {w: n for w, n in df.items() if n >= min_poems and w not in function_words}

    def of(self, index: int, k: int = 4) -> list[str]:
        """Keywords of poem `index`, the most common first (ties: where they appear first)."""
        ranked = sorted((w for w in self.words[index] if w in self.df), key=lambda w: -self.df[w])
        return ranked[:k]
