"""Small corpora from Debian packages, as title/keywords/text rows: classical Chinese poems and
sayings (fortunes-zh), the Jargon File and WordNet glosses. The built-in models are trained on
the large open corpora of `upstream`; these serve the fine-tune benchmarks and tests, which need
a corpus every machine can install.

    python -m finetune.builtin.debian zh --out data/zh.csv     # classical poems and sayings (fortunes-zh)
    python -m finetune.builtin.debian en --out data/en.csv     # Jargon File + WordNet glosses

Each source has a pure parser over the file's text (`fortunes`, `jargon`, `wordnet`), so tests
feed it a sample, and `read_source` reads the installed files and names the Debian package to
install when they are missing.
"""
from __future__ import annotations

import argparse
import gzip
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from .fortunes import rows_from_fortunes
from .jargon import rows_from_jargon
from .rows import Row, add_keywords, write_csv
from .wordnet import rows_from_wordnet

@dataclass(frozen=True)
class Source:
    """One corpus: where it comes from and under which terms."""

    language: str  # "zh" or "en": which built-in model it trains
    package: str  # Debian package that installs the files
    files: tuple[str, ...]  # absolute paths of the files the parser reads, in order
    licence: str  # licence of the text itself, from /usr/share/doc/<package>/copyright
    description: str  # one line for the model card


SOURCES: dict[str, Source] = {
    "fortunes-zh": Source(
        language="zh",
        package="fortunes-zh",
        files=("/usr/share/games/fortunes/tang300", "/usr/share/games/fortunes/song100",
               "/usr/share/games/fortunes/chinese"),
        licence="GPL-3.0-or-later (the Debian compilation); the classical texts kept are public domain",
        description="Classical Chinese poems, ci and sayings (唐诗三百首, 宋诗, 论语, 道德经, 菜根谭, 增广贤文, "
                    "谚语) from the fortunes-zh package; modern and technical entries are left out.",
    ),
    "jargon": Source(
        language="en",
        package="jargon-text",
        files=("/usr/share/doc/jargon-text/jargon.txt.gz",),
        licence="Public domain (The Jargon File 4.4.7, Eric S. Raymond et al.)",
        description="The Jargon File 4.4.7: the hacker lexicon, one row per entry "
                    "(headword as title, definition as text).",
    ),
    "wordnet": Source(
        language="en",
        package="wordnet-base",
        files=tuple(f"/usr/share/wordnet/data.{pos}" for pos in ("noun", "verb", "adj", "adv")),
        licence="WordNet 3.0 licence (permissive, BSD-like; keep Princeton's copyright notice)",
        description="WordNet 3.0 glosses with example sentences, one row per word "
                    "(the word as title, its senses as text).",
    ),
}

# Which sources each built-in model is trained on.
LANGUAGES: dict[str, tuple[str, ...]] = {"zh": ("fortunes-zh",), "en": ("jargon", "wordnet")}


class SourceMissingError(FileNotFoundError):
    """A corpus file is not installed; the message names the Debian package."""


_PARSERS: dict[str, Callable[..., list[Row]]] = {
    "fortunes-zh": rows_from_fortunes,
    "jargon": rows_from_jargon,
    "wordnet": rows_from_wordnet,
}


def read_source(name: str, root: str | Path = "/") -> list[str]:
    """The texts of an installed source's files, in `SOURCES[name].files` order.

    root: prefix for the absolute paths (tests point it at a temporary folder).
    Raises SourceMissingError naming the Debian package when a file is missing.
    """
    if name not in SOURCES:
        raise ValueError(f"source: unknown {name!r}; known: {', '.join(SOURCES)}")
    return read_files(SOURCES[name], root)


def read_files(source: Source, root: str | Path) -> list[str]:
    texts = []
    for file in source.files:
        path = Path(root) / file.lstrip("/")
        if not path.is_file():
            hint = (" (the package is installed but /usr/share/doc was excluded by dpkg, as in slim "
                    "container images: see /etc/dpkg/dpkg.cfg.d/)" if "/usr/share/doc/" in file else "")
            raise SourceMissingError(f"{path} not found: install it with "
                                     f"`sudo apt-get install {source.package}`{hint}")
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rt", encoding="utf-8") as fh:
            texts.append(fh.read())
    return texts


def build_source(name: str, root: str | Path = "/") -> list[Row]:
    """Rows of one installed source, without keywords."""
    return _PARSERS[name](*read_source(name, root))


def build(language: str, *, keywords: bool = True, root: str | Path = "/",
          sources: Sequence[str] | None = None) -> list[Row]:
    """All rows for a built-in model's language ("zh" or "en")."""
    if language not in LANGUAGES:
        raise ValueError(f"language: must be one of {', '.join(LANGUAGES)}, got {language!r}")
    names = list(sources) if sources else list(LANGUAGES[language])
    for name in names:
        if name not in SOURCES or SOURCES[name].language != language:
            raise ValueError(f"sources: {name!r} is not a {language} source; "
                             f"known: {', '.join(n for n, s in SOURCES.items() if s.language == language)}")
    rows = [row for name in names for row in build_source(name, root)]
    return add_keywords(rows) if keywords else rows


def main(argv: Sequence[str] | None = None) -> int:
    """Build a built-in corpus and write it as CSV."""
    parser = argparse.ArgumentParser(prog="python -m finetune.builtin.debian", description=__doc__.split("\n")[0])
    parser.add_argument("language", choices=sorted(LANGUAGES), help="which built-in model's corpus")
    parser.add_argument("--out", required=True, type=Path, help="CSV file to write (title,keywords,text)")
    parser.add_argument("--sources", default=None,
                        help="comma-separated subset of sources; default: all of the language's")
    parser.add_argument("--no-keywords", action="store_true",
                        help="leave keywords empty (the training pipeline extracts them)")
    parser.add_argument("--root", type=Path, default=Path("/"),
                        help="folder the sources' absolute paths are relative to (a chroot, a test)")
    args = parser.parse_args(argv)
    sources = [s.strip() for s in args.sources.split(",")] if args.sources else None
    try:
        rows = build(args.language, keywords=not args.no_keywords, root=args.root, sources=sources)
    except (SourceMissingError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    n_rows, n_chars = write_csv(rows, args.out)
    print(f"{args.out}: {n_rows} rows, {n_chars} characters of text")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
