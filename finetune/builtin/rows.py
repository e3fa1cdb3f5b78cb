"""Rows of the built-in corpora (title, keywords joined with ", ", text), their keywords, and
the CSV the training pipeline reads."""
from __future__ import annotations

import csv
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

KEYWORDS_PER_ROW = 5
CSV_HEADER = ("title", "keywords", "text")


@dataclass(frozen=True)
class Row:
    """One training example; keywords are joined with ", " as in the CSV."""

    title: str
    keywords: str
    text: str


def add_keywords(rows: Sequence[Row], k: int = KEYWORDS_PER_ROW) -> list[Row]:
    """Fill empty keywords with `finetune.extract.extract_keywords(text, k)`."""
    from ..extract import extract_keywords

    return [r if r.keywords else Row(r.title, ", ".join(extract_keywords(r.text, k=k)), r.text)
            for r in rows]


def write_csv(rows: Iterable[Row], path: str | Path) -> tuple[int, int]:
    """Write rows as UTF-8 CSV with header title,keywords,text; return (rows, characters of text)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    n_rows = n_chars = 0
    with path.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(CSV_HEADER)
        for row in rows:
            writer.writerow((row.title, row.keywords, row.text))
            n_rows += 1
            n_chars += len(row.text)
    return n_rows, n_chars


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
