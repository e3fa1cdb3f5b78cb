"""English Wikipedia as WikiExtractor writes it (XX/wiki_NN files of `<doc … title="…">`
blocks): one row per section, the lead under the article's title, later sections as
"Article: Section"; long sections cut between paragraphs."""
from __future__ import annotations

import html
import re
from collections.abc import Iterator
from pathlib import Path

from .rows import CorpusLayoutError, ReadReport, Row

_DOC_START = re.compile(r'<doc\s[^>]*title="([^"]*)"[^>]*>')
# WikiExtractor keeps a section heading as a short line ending in "."; a sentence rarely is
# one: it has a verb and is longer
_HEADING = re.compile(r"^[^.!?]{1,60}\.$")
WIKI_CHUNK_CHARS = 1500  # a section longer than this becomes several rows (cut between paragraphs)
WIKI_MIN_CHARS = 200  # shorter sections (stubs, lists cut by the extractor) teach little


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
            yield Row(name, [], text)
        else:
            report.dropped["sections shorter than 200 characters"] += 1
        chunk = [par] if par is not None else []
