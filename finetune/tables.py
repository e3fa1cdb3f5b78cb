"""The records of a delimited (CSV, TSV) or JSON Lines file, streamed line by line within
bounds, and which column is the title, the keywords and the text (by header name or position)."""
from __future__ import annotations

import contextlib
import csv
import io
import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any


from .encoding import SAVE_AS_UTF8
from .errors import DataError


# Accepted column names per role, compared after strip + casefold.
COLUMN_NAMES: dict[str, tuple[str, ...]] = {
    "title": ("title", "标题", "题目"),
    "keywords": ("keywords", "keyword", "tags", "tag", "关键词", "关键字"),
    "text": ("text", "content", "body", "article", "正文", "内容", "文本"),
}



_ROLE_OF_NAME = {name: role for role, names in COLUMN_NAMES.items() for name in names}

DELIMITERS = (",", "\t", ";", "|")  # order breaks ties; never the full-width "，"



# A character that never occurs in text: lets csv.reader keep quoting rules for one-column files.
_NO_DELIMITER = "\x1f"



class Lines:
    """The file's lines for csv.reader / JSONL, with line numbers and bounded memory.

    readline() is capped so that one giant line or a row an unmatched quote keeps open
    cannot fill memory; NUL characters (e.g. inside UTF-16 text) are refused where they occur.
    """

    def __init__(self, fh: IO[str], *, max_record_chars: int, max_cell_chars: int) -> None:
        self._fh = fh
        self._max = max_record_chars
        self._max_cell = max_cell_chars
        self.line_no = 0  # lines read so far
        self.record_start = 1  # first line of the row being read
        self._record_chars = 0

    def start_record(self) -> None:
        self.record_start = self.line_no + 1
        self._record_chars = 0

    def __iter__(self) -> Lines:
        return self

    def __next__(self) -> str:
        try:
            line = self._fh.readline(self._max + 1)
        except UnicodeDecodeError as err:  # only if the file changed since it was scanned
            raise DataError(
                f"line {self.line_no + 1}: bytes that are not valid {self._fh.encoding} "
                f"(the file mixes encodings): {SAVE_AS_UTF8}"
            ) from err
        if not line:
            raise StopIteration
        self.line_no += 1
        self._record_chars += len(line)
        if self._record_chars > self._max:
            raise DataError(
                f"line {self.record_start}: the row starting here runs past {self._max:,} characters: "
                f'an unmatched quote (") opened on that line, or a cell far over the '
                f"{self._max_cell:,}-character limit"
            )
        if "\x00" in line:
            raise DataError(f"line {self.line_no}: NUL character: the file is binary or damaged; {SAVE_AS_UTF8}")
        return line



@contextlib.contextmanager
def open_text(path: Path, encoding: str) -> Iterator[IO[str]]:
    # newline="" hands "\r\n" inside quoted cells to csv untouched, as the csv docs require.
    with open(path, encoding=encoding, errors="strict", newline="") as fh:
        yield fh



@contextlib.contextmanager
def field_size_limit(limit: int) -> Iterator[None]:
    # csv's limit is process-wide; raise it only while reading and put it back.
    previous = csv.field_size_limit(limit)
    try:
        yield
    finally:
        csv.field_size_limit(previous)



def sniff_delimiter(sample: str, candidates: tuple[str, ...], prefer: str) -> tuple[str | None, int]:
    """Return (delimiter, columns) that splits the sample's rows most consistently.

    A delimiter counts only if it gives the same number (at least 2) of columns in 60% of the
    first rows: a few malformed rows must not turn a 3-column file into one column, while
    commas scattered through plain text rarely line up that often. None means one column.
    The last row of the sample may be cut, so it is ignored.
    """
    lines = sample[: sample.rfind("\n") + 1] or sample
    best: tuple[float, bool, int] | None = None
    choice: tuple[str | None, int] = (None, 1)
    for order, delimiter in enumerate(candidates):
        counts = _column_counts(lines, delimiter)
        if not counts:
            continue
        columns, hits = Counter(counts).most_common(1)[0]
        consistency = hits / len(counts)
        if columns < 2 or consistency < 0.6:
            continue
        key = (consistency, delimiter == prefer, -order)
        if best is None or key > best:
            best, choice = key, (delimiter, columns)
    return choice



def _column_counts(text: str, delimiter: str, max_rows: int = 50) -> list[int]:
    counts: list[int] = []
    # StringIO(newline="") splits lines exactly as the real read will (\n, \r\n, \r only).
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    with contextlib.suppress(csv.Error):  # a broken sample just gives fewer rows to judge by
        for cells in reader:
            if any(c.strip() for c in cells):
                counts.append(len(cells))
            if len(counts) >= max_rows:
                break
    return counts



def csv_records(lines: Lines, delimiter: str | None, quoting: int) -> Iterator[list[str]]:
    """Yield each non-blank row's cells; csv errors become DataErrors with the line number."""
    # strict: an unmatched quote at the end of the file is an error, not a silently huge cell.
    reader = csv.reader(lines, delimiter=delimiter or _NO_DELIMITER, quoting=quoting, strict=True)
    while True:
        lines.start_record()
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as err:
            raise _quote_error(lines.record_start, err) from err
        if any(c.strip() for c in cells):  # blank lines are not rows
            yield cells



def _quote_error(line: int, err: csv.Error) -> DataError:
    if "end of data" in str(err):
        return DataError(f'line {line}: a quoted cell opened on this line never closes (unmatched ")')
    return DataError(
        f'line {line}: misplaced quote ("): a cell with quotes must be wrapped in quotes, '
        f'with each quote inside written twice ("") ({err})'
    )



def role_of(name: str) -> str | None:
    return _ROLE_OF_NAME.get(name.strip().lstrip("\ufeff").casefold())



def _header_roles(cells: list[str]) -> dict[str, int] | None:
    """Role -> column index when the row is a header, else None. First matching column wins."""
    roles: dict[str, int] = {}
    for index, cell in enumerate(cells):
        role = role_of(cell)
        if role and role not in roles:
            roles[role] = index
    if not roles:
        return None
    if "text" not in roles:
        raise DataError(
            f"header row has no text column: found {', '.join(repr(c) for c in cells)}; "
            f"name the text column one of {', '.join(COLUMN_NAMES['text'])}"
        )
    return roles



def _positional_roles(columns: int) -> dict[str, int]:
    if columns > 3:
        raise DataError(
            f"found {columns} columns and no header row, so it is unclear which holds the text: "
            "add a first row naming the columns, e.g. title,keywords,text or 标题,关键词,正文"
        )
    return {1: {"text": 0}, 2: {"title": 0, "text": 1}, 3: {"title": 0, "keywords": 1, "text": 2}}[columns]



def json_records(lines: Lines) -> Iterator[dict[str, Any]]:
    """Yield one object per non-blank line; a bad line is a DataError with its number."""
    for line in lines:
        if not line.strip():
            continue
        if lines.line_no == 1 and line.lstrip().startswith("["):
            raise DataError("line 1: a JSON array is not supported: write one JSON object per line (JSON Lines)")
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as err:
            raise DataError(
                f"line {lines.line_no}: not valid JSON ({err.msg} at column {err.colno}): "
                "each line must hold one JSON object"
            ) from err
        if not isinstance(obj, dict):
            raise DataError(f"line {lines.line_no}: expected a JSON object {{...}}, got {type(obj).__name__}")
        yield obj
        lines.start_record()  # the length limit applies to each line on its own



def json_fields(obj: dict[str, Any]) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    for key, value in obj.items():
        role = role_of(str(key))
        if role and role not in fields:
            fields[role] = value
    return fields



@dataclass
class Layout:
    """Which column holds which role, decided from the first row."""

    roles: dict[str, int]  # role -> column index
    width: int  # columns every data row must have
    has_header: bool
    names: dict[str, str]  # role -> header name or "column N", for the report



def column_layout(first: list[str], sniffed_columns: int) -> Layout:
    roles = _header_roles(first)
    if roles is not None:
        names = {role: first[i].strip().lstrip("\ufeff") for role, i in roles.items()}
        return Layout(roles, len(first), True, names)
    roles = _positional_roles(sniffed_columns)
    return Layout(roles, sniffed_columns, False, {role: f"column {i + 1}" for role, i in roles.items()})



def fit_columns(cells: list[str], width: int) -> list[str] | None:
    """Cells trimmed to `width`, or None when the row has a different shape.

    Trailing empty cells are allowed (spreadsheets add them); anything else means a
    delimiter inside an unquoted cell or a missing cell, and guessing would mix up columns.
    """
    if len(cells) > width and not any(c.strip() for c in cells[width:]):
        cells = cells[:width]
    return cells if len(cells) == width else None
