"""Corpus ingestion: turn the CSV, TSV or JSONL file a real person saved into training rows.

>>> rows, report = load_corpus("articles.csv")          # doctest: +SKIP
>>> print(report.summary())                             # doctest: +SKIP
articles.csv: CSV, encoding utf-8, delimiter ',', header row
columns: title = 标题, keywords = 关键词, text = 正文
rows: 118 kept of 120 (dropped: 2 no text)
keywords: from the keywords column
text: 53,210 characters, language zh
>>> rows[0].title, rows[0].keywords                     # doctest: +SKIP
('春夜', ['春', '雨'])

Every refusal is a `DataError` that says what is wrong and what to do instead. The file is
first scanned in chunks to pick its encoding (`finetune.encoding`), then parsed as a stream of
records (`finetune.tables`), so memory stays bounded by `DataLimits`, not by the file's size.
"""
from __future__ import annotations

import csv
import json
import math
import sys
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from textgen.keywords import MAX_KEYWORDS, MAX_KEYWORD_CHARS, parse_keywords
from textgen.lang import detect_language

from .encoding import file_chunks, first_chars, refuse_non_text, sniff_file
from .errors import DataError
from .extract import extract_keywords
from .tables import (COLUMN_NAMES, DELIMITERS, Layout, Lines, column_layout, csv_records, field_size_limit, fit_columns,
                     json_fields, json_records, open_text, role_of, sniff_delimiter)


# What spreadsheets and pandas write for a missing value.
_NULL_CELLS = frozenset({"nan", "null", "none", "n/a", "na", "#n/a"})
_SUFFIXES = {".csv": "csv", ".tsv": "csv", ".txt": "csv", ".jsonl": "jsonl", ".json": "jsonl"}
_LANGUAGE_SAMPLE = 200  # texts looked at to decide the corpus language


@dataclass
class DataLimits:
    """Bounds that keep one uploaded file from exhausting memory or time."""

    max_file_bytes: int = 200 * 1024**2  # checked with stat() before the file is opened
    max_rows: int = 1_000_000  # data rows, counted while streaming
    max_cell_chars: int = 100_000  # a longer title/keywords/text cell drops its row
    max_columns: int = 64  # a row with more columns is an error
    min_total_chars: int = 200  # less text than this in kept rows is "not enough text"

    @property
    def max_record_chars(self) -> int:
        # A row this long is an unmatched quote swallowing the file, or a cell far over the
        # cell limit; stop reading there instead of holding it in memory.
        return 8 * self.max_cell_chars + 4096


@dataclass
class Row:
    """One training example."""

    title: str
    keywords: list[str]
    text: str
    keywords_auto: bool = False  # True when keywords were extracted from the text


@dataclass
class DataReport:
    """What load_corpus understood of the file; shown to the user before training."""

    path: str
    format: str  # "csv" | "tsv" | "jsonl"
    encoding: str  # "utf-8", "utf-8-sig", "gb18030", "utf-16"
    delimiter: str | None  # None for JSONL and one-column files
    has_header: bool
    columns: dict[str, str]  # role ("title", "keywords", "text") -> column name or "column 1"
    rows_total: int
    rows_kept: int
    dropped: dict[str, int]  # reason -> count
    keywords_source: str  # "column" | "auto" | "mixed"
    total_chars: int
    language: str  # "zh" | "en"

    def to_dict(self) -> dict:
        """Plain JSON-ready dict, e.g. for the UI or `json.dumps`."""
        return asdict(self)

    def summary(self) -> str:
        """A few human lines, as the CLI prints them."""
        delimiter = {None: "none", "\t": "tab"}.get(self.delimiter, repr(self.delimiter))
        shape = "" if self.format == "jsonl" else f"delimiter {delimiter}, "
        header = "fields by name" if self.format == "jsonl" else "header row" if self.has_header else "no header row"
        columns = ", ".join(f"{role} = {name}" for role, name in self.columns.items())
        dropped = ", ".join(f"{n} {reason}" for reason, n in self.dropped.items())
        source = {
            "column": "from the keywords column",
            "auto": "extracted from the text",
            "mixed": "from the keywords column, extracted from the text where empty",
        }[self.keywords_source]
        return "\n".join([
            f"{Path(self.path).name}: {self.format.upper()}, encoding {self.encoding}, {shape}{header}",
            f"columns: {columns}",
            f"rows: {self.rows_kept} kept of {self.rows_total}" + (f" (dropped: {dropped})" if dropped else ""),
            f"keywords: {source}",
            f"text: {self.total_chars:,} characters, language {self.language}",
        ])


def _as_text(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, str):
        text = value.replace("\r\n", "\n").replace("\r", "\n").strip()
        return "" if text.casefold() in _NULL_CELLS else text
    if isinstance(value, (list, dict)):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def _keywords_from_cell(value: Any) -> list[str]:
    """Parse a keywords cell leniently: too many or too long keywords are trimmed, not fatal.

    Decision: a row with 40 keywords is still a good training row, so keep the first
    MAX_KEYWORDS that are at most MAX_KEYWORD_CHARS long instead of dropping it.
    """
    raw = [_as_text(v) for v in value] if isinstance(value, list) else _as_text(value)
    try:
        return parse_keywords(raw)
    except ValueError:
        words = parse_keywords(raw, max_keywords=sys.maxsize, max_chars=sys.maxsize)
        return [w for w in words if len(w) <= MAX_KEYWORD_CHARS][:MAX_KEYWORDS]


def _make_row(fields: dict[str, Any], keywords_mode: str, limits: DataLimits) -> Row | str:
    """Build a Row from role -> raw value, or return the reason the row is dropped."""
    title, text = _as_text(fields.get("title")), _as_text(fields.get("text"))
    raw_keywords = fields.get("keywords")
    if max(len(title), len(text), len(_as_text(raw_keywords))) > limits.max_cell_chars:
        return f"cell too long (> {limits.max_cell_chars} characters)"
    if not text:
        return "no text"
    keywords = [] if keywords_mode == "auto" else _keywords_from_cell(raw_keywords)
    if keywords:
        return Row(title, keywords, text)
    return Row(title, extract_keywords(text), text, keywords_auto=True)


@dataclass
class _Tally:
    """Running counts while rows stream by."""

    limits: DataLimits
    rows: list[Row] = field(default_factory=list)
    rows_total: int = 0
    dropped: Counter[str] = field(default_factory=Counter)
    total_chars: int = 0
    auto: int = 0
    languages: Counter[str] = field(default_factory=Counter)

    def count_row(self) -> None:
        self.rows_total += 1
        if self.rows_total > self.limits.max_rows:
            raise DataError(
                f"more than {self.limits.max_rows:,} rows: split the file, or keep the rows you need"
            )

    def add(self, result: Row | str) -> None:
        """Keep a row, or count the reason it was dropped."""
        if isinstance(result, str):
            self.dropped[result] += 1
            return
        self.rows.append(result)
        self.total_chars += len(result.text)
        self.auto += result.keywords_auto
        if sum(self.languages.values()) < _LANGUAGE_SAMPLE:
            self.languages[detect_language(result.text[:1000])] += 1


def _read_delimited(path: Path, encoding: str, sample: str, keywords: str, limits: DataLimits) -> tuple[_Tally, dict]:
    suffix = path.suffix.lower()
    # A .txt is plain lines (prose full of , ; |) or Excel's "Text (Tab delimited)": tab only.
    candidates = ("\t",) if suffix == ".txt" else DELIMITERS
    delimiter, sniffed_columns = sniff_delimiter(sample, candidates, prefer="\t" if suffix == ".tsv" else ",")
    # A one-column .txt is plain lines of text, where a line may well start with a quote.
    quoting = csv.QUOTE_NONE if delimiter is None and suffix == ".txt" else csv.QUOTE_MINIMAL
    tally = _Tally(limits)
    layout: Layout | None = None
    with open_text(path, encoding) as fh, field_size_limit(limits.max_record_chars + 2):
        lines = Lines(fh, max_record_chars=limits.max_record_chars, max_cell_chars=limits.max_cell_chars)
        for cells in csv_records(lines, delimiter, quoting):
            if len(cells) > limits.max_columns:
                raise DataError(
                    f"line {lines.record_start}: {len(cells)} columns; at most {limits.max_columns} are allowed"
                )
            if layout is None:
                layout = column_layout(cells, sniffed_columns)
                if layout.has_header:
                    continue
            tally.count_row()
            fitted = fit_columns(cells, layout.width)
            if fitted is None:
                tally.add(f"wrong number of columns (expected {layout.width})")
            else:
                tally.add(_make_row({role: fitted[i] for role, i in layout.roles.items()}, keywords, limits))
    shape = dict(
        format="tsv" if delimiter == "\t" else "csv", delimiter=delimiter,
        has_header=bool(layout and layout.has_header), columns=layout.names if layout else {},
    )
    return tally, shape


def _read_jsonl(path: Path, encoding: str, keywords: str, limits: DataLimits) -> tuple[_Tally, dict]:
    tally = _Tally(limits)
    names: dict[str, str] | None = None
    with open_text(path, encoding) as fh:
        lines = Lines(fh, max_record_chars=limits.max_record_chars, max_cell_chars=limits.max_cell_chars)
        for obj in json_records(lines):
            if names is None:  # the first object names the fields, as a header row would
                names = _json_names(obj, lines.line_no)
            tally.count_row()
            tally.add(_make_row(json_fields(obj), keywords, limits))
    # has_header: fields are found by name, never by position.
    return tally, dict(format="jsonl", delimiter=None, has_header=True, columns=names or {})


def _json_names(obj: dict[str, Any], line: int) -> dict[str, str]:
    names: dict[str, str] = {}
    for key in obj:
        role = role_of(str(key))
        if role and role not in names:
            names[role] = str(key)
    if "text" not in names:
        raise DataError(
            f"line {line}: no text field: found keys {', '.join(repr(str(k)) for k in obj) or 'none'}; "
            f"name it one of {', '.join(COLUMN_NAMES['text'])}"
        )
    return names


def load_corpus(
    path: str | Path, *, keywords: str = "column", limits: DataLimits | None = None
) -> tuple[list[Row], DataReport]:
    """Read a training corpus; return its rows and a report of what was understood.

    keywords: "column" uses the keywords column where present and non-empty and extracts
    keywords from the text elsewhere; "auto" always extracts them.
    Raises DataError (a ValueError) with a message meant for the user.

    >>> rows, report = load_corpus("corpus.csv", keywords="auto")   # doctest: +SKIP
    """
    if keywords not in ("column", "auto"):
        raise ValueError(f"keywords: must be 'column' or 'auto', got {keywords!r}")
    limits = limits or DataLimits()
    path = Path(path)
    kind = _check_file(path, limits)
    encoding = sniff_file(file_chunks(path))
    sample = "".join(first_chars(file_chunks(path)(), encoding))
    refuse_non_text(sample)
    if kind == "jsonl":
        tally, shape = _read_jsonl(path, encoding, keywords, limits)
    else:
        tally, shape = _read_delimited(path, encoding, sample, keywords, limits)
    _check_enough(tally, shape["has_header"] and kind == "csv", limits)
    report = DataReport(
        path=str(path), encoding=encoding, rows_total=tally.rows_total, rows_kept=len(tally.rows),
        dropped=dict(tally.dropped), keywords_source=_keywords_source(tally.auto, len(tally.rows)),
        total_chars=tally.total_chars, language=_majority_language(tally.languages), **shape,
    )
    return tally.rows, report


def _check_file(path: Path, limits: DataLimits) -> str:
    """Return "csv" or "jsonl" from the extension; refuse missing, unknown or oversized files."""
    kind = _SUFFIXES.get(path.suffix.lower())
    if kind is None:
        excel = " (in Excel: File > Save As > CSV UTF-8)" if path.suffix.lower() in (".xlsx", ".xls") else ""
        raise DataError(
            f"unsupported file type {path.suffix or '(none)'!r}: use .csv, .tsv, .txt, .jsonl or .json{excel}"
        )
    if not path.is_file():
        raise DataError(f"file not found: {path}")
    size = path.stat().st_size  # before opening: never start reading a file that is too big
    if size > limits.max_file_bytes:
        raise DataError(f"file is {size:,} bytes; at most {limits.max_file_bytes:,} bytes are allowed")
    return kind


def _check_enough(tally: _Tally, has_header: bool, limits: DataLimits) -> None:
    """Refuse a corpus that would make a zero-step or pointless training run."""
    too_long = f"cell too long (> {limits.max_cell_chars} characters)"
    if tally.dropped[too_long] * 2 > tally.rows_total:
        raise DataError(
            f"most rows ({tally.dropped[too_long]} of {tally.rows_total}) have a cell over "
            f"{limits.max_cell_chars:,} characters: split long texts into several rows"
        )
    if tally.rows_total == 0:
        what = "the file has a header row but no data rows" if has_header else "the file is empty"
        raise DataError(f"not enough text to train on: {what}")
    if tally.total_chars < limits.min_total_chars:
        dropped = "; ".join(f"{n} dropped: {reason}" for reason, n in tally.dropped.items())
        raise DataError(
            f"not enough text to train on: {tally.total_chars} characters in {len(tally.rows)} usable rows "
            f"of {tally.rows_total}, at least {limits.min_total_chars} needed" + (f" ({dropped})" if dropped else "")
        )


def _keywords_source(auto: int, kept: int) -> str:
    return "auto" if auto == kept else "column" if auto == 0 else "mixed"


def _majority_language(languages: Counter[str]) -> str:
    return "zh" if languages["zh"] > languages["en"] else "en"


MAX_WORDS_BYTES = 20 * 1024**2  # a word list is a vocabulary, not a corpus


def load_words(path: str | Path) -> list[str]:
    """The words of a word list (`TrainConfig.insert_words`): one per line, UTF-8; text after a
    tab (a frequency, a reading) and blank or '#' lines are skipped; duplicates kept once."""
    path = Path(path)
    try:
        size = path.stat().st_size
    except OSError as err:
        raise DataError(f"insert_words: cannot read {path.name!r}: {err.strerror or err}") from None
    if size > MAX_WORDS_BYTES:
        raise DataError(f"insert_words: {path.name!r} is {size / 1024**2:.1f} MiB; a word list may be at most "
                        f"{MAX_WORDS_BYTES // 1024**2} MiB")
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise DataError(f"insert_words: {path.name!r} is not UTF-8 text (byte {err.start})") from None
    words: dict[str, None] = {}
    for number, line in enumerate(text.splitlines(), 1):
        word = line.split("\t", 1)[0].strip()
        if not word or word.startswith("#"):
            continue
        if len(word) > MAX_KEYWORD_CHARS or any(c in word for c in ",，、;；\x00"):
            raise DataError(f"insert_words: line {number} of {path.name!r} is not one word of at most "
                            f"{MAX_KEYWORD_CHARS} characters without separators: {word[:50]!r}")
        words[word] = None
    if not words:
        raise DataError(f"insert_words: {path.name!r} has no words (one word per line)")
    return list(words)
