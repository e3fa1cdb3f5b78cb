"""Readers of large open corpora in their upstream layouts, as title/keywords/text rows.

    rows, report = read_chinese_poetry("chinese-poetry")   # a clone of chinese-poetry/chinese-poetry
    rows, report = read_wikiextractor("text")              # WikiExtractor output: XX/wiki_NN files
    rows, report = read_titled_folder("luxun/data/raw")    # one file per text, title = file name

Each reader walks the files in a fixed order, keeps what is well formed, and counts what it
drops and why (`ReadReport`), so a malformed entry never stops a build and never goes
unnoticed. Keywords are left empty except for poems (`PoemKeywords`): the training pipeline
extracts them for the other rows.
"""
from __future__ import annotations

import html
import json
import re
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from .rows import Row

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
_DOC_START = re.compile(r'<doc\s[^>]*title="([^"]*)"[^>]*>')
# WikiExtractor keeps a section heading as a short line ending in "."; a sentence rarely is
# one: it has a verb and is longer
_HEADING = re.compile(r"^[^.!?]{1,60}\.$")
WIKI_CHUNK_CHARS = 1500  # a section longer than this becomes several rows (cut between paragraphs)
WIKI_MIN_CHARS = 200  # shorter sections (stubs, lists cut by the extractor) teach little


@dataclass
class ReadReport:
    """What a reader kept and what it dropped, by reason."""

    files: int = 0
    rows: int = 0
    characters: int = 0
    dropped: Counter[str] = field(default_factory=Counter)

    def keep(self, row: Row) -> Row:
        self.rows += 1
        self.characters += len(row.text)
        return row

    def summary(self) -> str:
        why = "; ".join(f"{n} {reason}" for reason, n in self.dropped.most_common())
        return f"{self.files} files, {self.rows:,} rows, {self.characters:,} characters" + \
            (f" (dropped: {why})" if why else "")


class CorpusLayoutError(FileNotFoundError):
    """The folder is not in the layout the reader expects; the message says what it looked for."""


# -- chinese-poetry -----------------------------------------------------------------------------
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
    return [Row(r.title, ", ".join(chosen.of(i, k)), r.text) for i, r in enumerate(rows)]


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
    return Row(title, "", text)


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


# -- WikiExtractor ------------------------------------------------------------------------------
def read_wikiextractor(root: str | Path, *, max_chars: int | None = None) -> tuple[list[Row], ReadReport]:
    """Articles of WikiExtractor output (`XX/wiki_NN` files of `<doc … title="…">` blocks).

    Rows: the lead section under the article's title, each later section under
    "Article: Section"; a section longer than WIKI_CHUNK_CHARS becomes several rows, cut
    between paragraphs; sections shorter than WIKI_MIN_CHARS are dropped."""
    root = Path(root)
    files = sorted(p for p in root.rglob("wiki_*") if p.is_file())
    if not files:
        raise CorpusLayoutError(f"{root}: no wiki_NN files; give a folder of WikiExtractor output "
                                "(its AA/, AB/, … folders or one of them)")
    report, rows = ReadReport(), []
    for path in files:
        report.files += 1
        for title, body in _docs(path, report):
            for row in _article_rows(title, body, report):
                rows.append(report.keep(row))
            if max_chars is not None and report.characters >= max_chars:
                return rows, report
    return rows, report


def _docs(path: Path, report: ReadReport) -> Iterator[tuple[str, list[str]]]:
    title, body = None, []
    with path.open(encoding="utf-8", errors="replace") as fh:
        for line in fh:
            line = line.rstrip("\n")
            start = _DOC_START.match(line)
            if start:
                if title is not None:
                    report.dropped["articles without </doc>"] += 1
                title, body = html.unescape(start.group(1)).strip(), []
            elif line.startswith("</doc>"):
                if title:
                    yield title, body
                elif title is not None:
                    report.dropped["articles without a title"] += 1
                title = None
            elif title is not None:
                body.append(line)
    if title is not None:
        report.dropped["articles without </doc>"] += 1


def _article_rows(title: str, body: list[str], report: ReadReport) -> Iterator[Row]:
    lines = [x.strip() for x in body]
    if lines and html.unescape(lines[0]) == title:  # WikiExtractor repeats the title as the first line
        lines = lines[1:]
    section, paragraphs = "", []
    for line in lines:
        if _HEADING.match(line):
            yield from _section_rows(title, section, paragraphs, report)
            section, paragraphs = line[:-1].strip(), []
        elif line:
            paragraphs.append(line)
    yield from _section_rows(title, section, paragraphs, report)


def _section_rows(title: str, section: str, paragraphs: list[str], report: ReadReport) -> Iterator[Row]:
    if not paragraphs:
        return
    name = f"{title}: {section}" if section else title
    chunk: list[str] = []
    for par in paragraphs + [None]:
        if par is not None and sum(map(len, chunk)) + len(par) <= WIKI_CHUNK_CHARS or (par is not None and not chunk):
            chunk.append(par)
            continue
        text = "\n".join(chunk)
        if len(text) >= WIKI_MIN_CHARS:
            yield Row(name, "", text)
        else:
            report.dropped["sections shorter than 200 characters"] += 1
        chunk = [par] if par is not None else []


# -- a folder of titled texts --------------------------------------------------------------------
TEXT_SUFFIXES = (".md", ".txt")
_MARKUP = re.compile(r"^#+\s*|^\s*[-*]\s+|\*\*|__|^```\w*$")


def read_titled_folder(root: str | Path, *, min_chars: int = 100,
                       max_chars: int | None = None) -> tuple[list[Row], ReadReport]:
    """One row per .md or .txt file under `root` (any depth): title = file name without its
    suffix, text = its paragraphs (Markdown headings and emphasis marks removed). A file that
    repeats its title as a first heading has it removed; files under `min_chars` are dropped
    (a table of contents, an empty file); max_chars: stop once this much text is read."""
    root = Path(root)
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in TEXT_SUFFIXES)
    if not files:
        raise CorpusLayoutError(f"{root}: no .md or .txt files")
    report, rows = ReadReport(), []
    for path in files:
        report.files += 1
        try:
            raw = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            report.dropped["files that are not UTF-8"] += 1
            continue
        title = path.stem.strip()
        lines = [_MARKUP.sub("", x).strip() for x in raw.splitlines()]
        lines = [x for x in lines if x]
        if lines and lines[0] == title:
            lines = lines[1:]
        text = "\n".join(lines)
        if len(text) < min_chars:
            report.dropped[f"files under {min_chars} characters"] += 1
            continue
        rows.append(report.keep(Row(title, "", text)))
        if max_chars is not None and report.characters >= max_chars:
            break
    return rows, report


@dataclass(frozen=True)
class Corpus:
    """An upstream corpus: its reader, and what a model card says of it."""

    language: str
    reader: Callable[..., tuple[list[Row], ReadReport]]
    origin: str
    licence: str
    description: str


CORPORA = {
    "chinese-poetry": Corpus(
        "zh", read_chinese_poetry, "github.com/chinese-poetry/chinese-poetry (simplified edition)",
        "MIT (the collection); the poems are public domain",
        "绝句 and 律诗 (4 or 8 lines of 5 or 7 characters) of 全唐诗 and 宋诗, one row per poem (title → poem, "
        "one couplet per line), Tang first; keywords: up to 4 of the poem's common nouns (`PoemKeywords`)."),
    "wikiextractor": Corpus(
        "en", read_wikiextractor, "English Wikipedia (WikiExtractor output)",
        "CC BY-SA 3.0; text by Wikipedia contributors (https://en.wikipedia.org), used under that licence",
        "Wikipedia articles, one row per section (the lead under the article's title, later sections as "
        "\"Article: Section\"), long sections cut between paragraphs; keywords extracted from each row."),
    "titled-folder": Corpus(
        "zh", read_titled_folder, "a folder of text files, title = file name", "the files' own",
        "One row per file."),
}


def read_corpus(name: str, root: str | Path, *, max_chars: int | None = None) -> tuple[list[Row], ReadReport]:
    """Rows of upstream corpus `name` (a `CORPORA` key) from folder `root`."""
    if name not in CORPORA:
        raise ValueError(f"corpus: unknown {name!r}; known: {', '.join(CORPORA)}")
    if not Path(root).is_dir():
        raise CorpusLayoutError(f"{root}: not a folder")
    return CORPORA[name].reader(root, max_chars=max_chars)


def main(argv: list[str] | None = None) -> int:
    """Write an upstream corpus as a title,keywords,text CSV that `python -m finetune` takes."""
    import argparse
    import sys

    from .rows import add_keywords, write_csv

    parser = argparse.ArgumentParser(prog="python -m finetune.builtin.upstream", description=main.__doc__)
    parser.add_argument("corpus", choices=sorted(CORPORA), help="the upstream layout of FOLDER")
    parser.add_argument("folder", type=Path, help="the upstream copy (a clone, an extract, a folder of files)")
    parser.add_argument("--out", type=Path, required=True, help="CSV file to write")
    parser.add_argument("--max-chars", type=int, default=None, help="read at most this much text")
    parser.add_argument("--no-keywords", action="store_true", help="leave keywords empty (training extracts them)")
    args = parser.parse_args(argv)
    try:
        rows, report = read_corpus(args.corpus, args.folder, max_chars=args.max_chars)
    except (CorpusLayoutError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    n_rows, n_chars = write_csv(rows if args.no_keywords else add_keywords(rows), args.out)
    print(f"{args.out}: {n_rows} rows, {n_chars:,} characters ({report.summary()})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
