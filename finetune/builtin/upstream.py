"""Readers of large open corpora in their upstream layouts, as title/keywords/text rows.

    rows, report = read_chinese_poetry("chinese-poetry")   # a clone of chinese-poetry/chinese-poetry
    rows, report = read_wikiextractor("text")              # WikiExtractor output: XX/wiki_NN files
    rows, report = read_titled_folder("luxun/data/raw")    # one file per text, title = file name

One module per source (`poetry`, `wikipedia`, `folder`); each reader walks the files in a fixed
order, keeps what is well formed, and counts what it drops and why (`ReadReport`), so a
malformed entry never stops a build and never goes unnoticed. Keywords are left empty except for
poems (`PoemKeywords`): the training pipeline extracts them for the other rows.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .folder import read_titled_folder
from .poetry import read_chinese_poetry
from .rows import CorpusLayoutError, ReadReport, Row
from .wikipedia import read_wikiextractor


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
