"""A folder of titled texts (e.g. Lu Xun's works: one file per text, the title its file name),
light Markdown removed."""
from __future__ import annotations

import re
from pathlib import Path

from .rows import CorpusLayoutError, ReadReport, Row

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
        rows.append(report.keep(Row(title, [], text)))
        if max_chars is not None and report.characters >= max_chars:
            break
    return rows, report
