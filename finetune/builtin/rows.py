"""What every corpus source of the built-ins shares: the rows (`finetune.data.Row`, the same
rows the training pipeline reads), their keywords, the read report, and the CSV it writes."""
from __future__ import annotations

import csv
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..data import Row

__all__ = ["CSV_HEADER", "CorpusLayoutError", "KEYWORDS_PER_ROW", "ReadReport", "Row", "add_keywords", "write_csv"]

KEYWORDS_PER_ROW = 5
CSV_HEADER = ("title", "keywords", "text")


def add_keywords(rows: Sequence[Row], k: int = KEYWORDS_PER_ROW) -> list[Row]:
    """Fill empty keywords with `finetune.extract.extract_keywords(text, k)`."""
    from ..extract import extract_keywords

    return [r if r.keywords else Row(r.title, extract_keywords(r.text, k=k), r.text, keywords_auto=True)
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
            writer.writerow((row.title, ", ".join(row.keywords), row.text))
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
