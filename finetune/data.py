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
first scanned in chunks to pick its encoding, then parsed as a stream, so memory stays bounded
by `DataLimits`, not by the file's size.
"""
from __future__ import annotations

import codecs
import contextlib
import csv
import io
import json
import math
import re
import sys
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any

from textgen.keywords import MAX_KEYWORD_CHARS, MAX_KEYWORDS, parse_keywords
from textgen.lang import detect_language

from .extract import extract_keywords

SAVE_AS_UTF8 = "save the file as UTF-8 (in Excel: File > Save As > CSV UTF-8)"

# Accepted column names per role, compared after strip + casefold.
COLUMN_NAMES: dict[str, tuple[str, ...]] = {
    "title": ("title", "标题", "题目"),
    "keywords": ("keywords", "keyword", "tags", "tag", "关键词", "关键字"),
    "text": ("text", "content", "body", "article", "正文", "内容", "文本"),
}
_ROLE_OF_NAME = {name: role for role, names in COLUMN_NAMES.items() for name in names}

_DELIMITERS = (",", "\t", ";", "|")  # order breaks ties; never the full-width "，"
# A character that never occurs in text: lets csv.reader keep quoting rules for one-column files.
_NO_DELIMITER = "\x1f"
# What spreadsheets and pandas write for a missing value.
_NULL_CELLS = frozenset({"nan", "null", "none", "n/a", "na", "#n/a"})
_SUFFIXES = {".csv": "csv", ".tsv": "csv", ".txt": "csv", ".jsonl": "jsonl", ".json": "jsonl"}
_MAGIC = {
    b"PK\x03\x04": "an Excel workbook (.xlsx) or another zip archive",
    b"PK\x05\x06": "an empty zip archive",
    b"\xd0\xcf\x11\xe0": "an old Excel (.xls) or Word file",
    b"%PDF": "a PDF document",
    b"\x1f\x8b": "a gzip archive",
}
_CHUNK_BYTES = 1 << 20
_SAMPLE_CHARS = 64 * 1024
_LANGUAGE_SAMPLE = 200  # texts looked at to decide the corpus language


class DataError(ValueError):
    """The file cannot be used for training; the message says why and what is allowed."""


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


# ---------------------------------------------------------------- encoding


def sniff_encoding(raw: bytes) -> str:
    """Return the encoding of a whole file's bytes, or raise DataError.

    >>> sniff_encoding("标题,正文".encode("gbk"))
    'gb18030'
    >>> sniff_encoding(b"\\xef\\xbb\\xbftitle,text")
    'utf-8-sig'
    """
    return _sniff(lambda: iter([raw]))


def _sniff(read_chunks: Callable[[], Iterator[bytes]]) -> str:
    """Pick the encoding from a re-readable stream of byte chunks.

    Order: binary magic, BOM, NUL bytes, strict UTF-8, strict GB18030 that reads as Chinese.
    Anything else is refused: a wrong guess would train the model on mojibake.
    """
    head = next(read_chunks(), b"")[:4]
    _refuse_magic(head)
    encoding = _bom_encoding(head)
    if encoding is not None and not _decodes(read_chunks(), encoding):
        name = encoding.removesuffix("-sig").upper()
        raise DataError(f"file starts with a {name} byte-order mark but is not valid {name}: {SAVE_AS_UTF8}")
    if encoding is None:
        if any(b"\x00" in chunk for chunk in read_chunks()):
            raise DataError(
                "file contains NUL bytes: it is binary, or UTF-16 without a byte-order mark; " + SAVE_AS_UTF8
            )
        if _decodes(read_chunks(), "utf-8"):
            encoding = "utf-8"
        elif _decodes(read_chunks(), "gb18030") and _reads_as_chinese(_non_ascii(read_chunks(), "gb18030")):
            encoding = "gb18030"
        else:
            raise DataError(f"file is not UTF-8, GB18030 or UTF-16: {SAVE_AS_UTF8}")
    _refuse_replacement_chars(read_chunks(), encoding)
    return encoding


def _refuse_magic(head: bytes) -> None:
    for magic, what in _MAGIC.items():
        if head.startswith(magic):
            raise DataError(f"file is {what}, not a CSV or JSONL text file: save your data as CSV UTF-8 "
                            "(in Excel: File > Save As > CSV UTF-8)")


def _bom_encoding(head: bytes) -> str | None:
    if head.startswith((codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE)):  # before UTF-16: FF FE 00 00
        raise DataError(f"file is UTF-32, which is not supported: {SAVE_AS_UTF8}")
    if head.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"  # the codec strips the BOM, so the header's first name stays clean
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16"
    return None


def _decoded(chunks: Iterable[bytes], encoding: str) -> Iterator[str]:
    """Decode chunk by chunk (strict), so a multi-byte character split across chunks is fine."""
    decoder = codecs.getincrementaldecoder(encoding)(errors="strict")
    for chunk in chunks:
        yield decoder.decode(chunk)
    yield decoder.decode(b"", final=True)


def _decodes(chunks: Iterable[bytes], encoding: str) -> bool:
    try:
        for _ in _decoded(chunks, encoding):
            pass
    except UnicodeDecodeError:
        return False
    return True


def _non_ascii(chunks: Iterable[bytes], encoding: str, limit: int = 20_000) -> str:
    """The first `limit` non-ASCII characters: the only ones that tell encodings apart."""
    found: list[str] = []
    size = 0
    for text in _decoded(chunks, encoding):
        part = re.sub(r"[\x00-\x7f]+", "", text)
        found.append(part)
        size += len(part)
        if size >= limit:
            break
    return "".join(found)[:limit]


# The 300 most frequent ideographs in jieba's dictionary (characters weighted by word
# frequency). They are 40-70% of simplified text, a quarter even of a traditional poem, but
# about 8% of evenly spread GB2312 ideographs, which is what EUC-KR read as GB18030 gives.
_COMMON_HANZI = frozenset(
    "一是人了不在有大中国和为这上他个地年来我会以到时要出的生学说道民家子也成行下们于后就发自之对得主长可过天作分方用多你着部"
    "能市等业全里工公经本都而高政法面门动日进区事代那去心小同北定开产前其军还然起种所如现理机体表力好外与文当两实重新三么只山"
    "水关明从化平建又制南内西没此将员名手最东头者月间无安看见各城十相但已些正口通想度加第她合院物性战由位常点海意场武使次二向"
    "治因立数样身情入原问把路被并利石老教万知级量任江及应省资委务元美特期世湖回系比气汉总展电科金先声提品设或义王社很统处四首"
    "共马形己儿司太目基领队直计别女权话少流命至报米给打变果书清活几州华解议更称程今决张导术府才保交放管结师便走达族反再题色五"
)


def _reads_as_chinese(non_ascii: str) -> bool:
    """Whether text decoded as GB18030 is real Chinese rather than another encoding misread.

    Nearly any byte pairs decode "validly" as GB18030. Big5 read as GB18030 comes out as
    private-use characters, kana, Greek and Cyrillic among rare ideographs; Latin-1 accents
    as rare ideographs; EUC-KR Korean as a uniform spread of ideographs. Real text, simplified
    or traditional, is ideographs and CJK punctuation, many of them very common ones.
    """
    if not non_ascii:
        return True
    ideographs = [ch for ch in non_ascii if "\u4e00" <= ch <= "\u9fff" or "\U00020000" <= ch <= "\U0003ffff"]
    punctuation = sum(
        1 for ch in non_ascii if "\u3000" <= ch <= "\u303f" or "\uff00" <= ch <= "\uffef" or "\u2010" <= ch <= "\u206f"
    )
    chinese_share = (len(ideographs) + punctuation) / len(non_ascii)
    common_share = sum(ch in _COMMON_HANZI for ch in ideographs) / max(len(ideographs), 1)
    return chinese_share >= 0.9 and common_share >= 0.15


def _refuse_replacement_chars(chunks: Iterable[bytes], encoding: str) -> None:
    # U+FFFD means the text was already mangled by an earlier wrong decode; training on it
    # teaches the model to write "�".
    chars = bad = 0
    for text in _decoded(chunks, encoding):
        chars += len(text)
        bad += text.count("\ufffd")
    if bad > max(2, chars // 100):
        raise DataError(
            f"file contains {bad} replacement characters (\ufffd): it was damaged by a wrong "
            f"encoding earlier; open the original and {SAVE_AS_UTF8}"
        )


def _file_chunks(path: Path) -> Callable[[], Iterator[bytes]]:
    def read() -> Iterator[bytes]:
        with open(path, "rb") as fh:
            while chunk := fh.read(_CHUNK_BYTES):
                yield chunk

    return read


def _refuse_non_text(sample: str) -> None:
    start = sample.lstrip()[:1000].casefold()
    if start.startswith(("<!doctype html", "<html")) or (start.startswith("<") and "<body" in start):
        raise DataError("file is an HTML page, not CSV or JSONL: download the file itself, not the page showing it")
    if start.startswith(("<?xml", "<svg", "<!doctype svg")) or (start.startswith("<") and "<svg" in start):
        raise DataError("file is an SVG or XML document, not CSV or JSONL: save your table as CSV UTF-8 "
                        "不是 CSV 或 JSONL 文件")
    controls = len(re.findall(r"[\x01-\x08\x0b\x0c\x0e-\x1f\x7f]", sample))
    if controls > max(2, len(sample) // 100):
        raise DataError(f"file looks binary (many control characters), not CSV or JSONL: {SAVE_AS_UTF8}")


# ---------------------------------------------------------------- reading lines


class _Lines:
    """The file's lines for csv.reader / JSONL, with line numbers and bounded memory.

    readline() is capped so that one giant line or a row an unmatched quote keeps open
    cannot fill memory; NUL characters (e.g. inside UTF-16 text) are refused where they occur.
    """

    def __init__(self, fh: IO[str], limits: DataLimits) -> None:
        self._fh = fh
        self._max = limits.max_record_chars
        self._max_cell = limits.max_cell_chars
        self.line_no = 0  # lines read so far
        self.record_start = 1  # first line of the row being read
        self._record_chars = 0

    def start_record(self) -> None:
        self.record_start = self.line_no + 1
        self._record_chars = 0

    def __iter__(self) -> _Lines:
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
def _open_text(path: Path, encoding: str) -> Iterator[IO[str]]:
    # newline="" hands "\r\n" inside quoted cells to csv untouched, as the csv docs require.
    with open(path, encoding=encoding, errors="strict", newline="") as fh:
        yield fh


@contextlib.contextmanager
def _field_size_limit(limit: int) -> Iterator[None]:
    # csv's limit is process-wide; raise it only while reading and put it back.
    previous = csv.field_size_limit(limit)
    try:
        yield
    finally:
        csv.field_size_limit(previous)


# ---------------------------------------------------------------- CSV / TSV


def _sniff_delimiter(sample: str, candidates: tuple[str, ...], prefer: str) -> tuple[str | None, int]:
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


def _csv_records(lines: _Lines, delimiter: str | None, quoting: int) -> Iterator[list[str]]:
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


def _role_of(name: str) -> str | None:
    return _ROLE_OF_NAME.get(name.strip().lstrip("\ufeff").casefold())


def _header_roles(cells: list[str]) -> dict[str, int] | None:
    """Role -> column index when the row is a header, else None. First matching column wins."""
    roles: dict[str, int] = {}
    for index, cell in enumerate(cells):
        role = _role_of(cell)
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


# ---------------------------------------------------------------- JSONL


def _json_records(lines: _Lines) -> Iterator[dict[str, Any]]:
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


def _json_fields(obj: dict[str, Any]) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    for key, value in obj.items():
        role = _role_of(str(key))
        if role and role not in fields:
            fields[role] = value
    return fields


# ---------------------------------------------------------------- rows


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


@dataclass
class _Layout:
    """Which column holds which role, decided from the first row."""

    roles: dict[str, int]  # role -> column index
    width: int  # columns every data row must have
    has_header: bool
    names: dict[str, str]  # role -> header name or "column N", for the report


def _layout(first: list[str], sniffed_columns: int) -> _Layout:
    roles = _header_roles(first)
    if roles is not None:
        names = {role: first[i].strip().lstrip("\ufeff") for role, i in roles.items()}
        return _Layout(roles, len(first), True, names)
    roles = _positional_roles(sniffed_columns)
    return _Layout(roles, sniffed_columns, False, {role: f"column {i + 1}" for role, i in roles.items()})


def _fit_columns(cells: list[str], width: int) -> list[str] | None:
    """Cells trimmed to `width`, or None when the row has a different shape.

    Trailing empty cells are allowed (spreadsheets add them); anything else means a
    delimiter inside an unquoted cell or a missing cell, and guessing would mix up columns.
    """
    if len(cells) > width and not any(c.strip() for c in cells[width:]):
        cells = cells[:width]
    return cells if len(cells) == width else None


def _read_delimited(path: Path, encoding: str, sample: str, keywords: str, limits: DataLimits) -> tuple[_Tally, dict]:
    suffix = path.suffix.lower()
    # A .txt is plain lines (prose full of , ; |) or Excel's "Text (Tab delimited)": tab only.
    candidates = ("\t",) if suffix == ".txt" else _DELIMITERS
    delimiter, sniffed_columns = _sniff_delimiter(sample, candidates, prefer="\t" if suffix == ".tsv" else ",")
    # A one-column .txt is plain lines of text, where a line may well start with a quote.
    quoting = csv.QUOTE_NONE if delimiter is None and suffix == ".txt" else csv.QUOTE_MINIMAL
    tally = _Tally(limits)
    layout: _Layout | None = None
    with _open_text(path, encoding) as fh, _field_size_limit(limits.max_record_chars + 2):
        lines = _Lines(fh, limits)
        for cells in _csv_records(lines, delimiter, quoting):
            if len(cells) > limits.max_columns:
                raise DataError(
                    f"line {lines.record_start}: {len(cells)} columns; at most {limits.max_columns} are allowed"
                )
            if layout is None:
                layout = _layout(cells, sniffed_columns)
                if layout.has_header:
                    continue
            tally.count_row()
            fitted = _fit_columns(cells, layout.width)
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
    with _open_text(path, encoding) as fh:
        lines = _Lines(fh, limits)
        for obj in _json_records(lines):
            if names is None:  # the first object names the fields, as a header row would
                names = _json_names(obj, lines.line_no)
            tally.count_row()
            tally.add(_make_row(_json_fields(obj), keywords, limits))
    # has_header: fields are found by name, never by position.
    return tally, dict(format="jsonl", delimiter=None, has_header=True, columns=names or {})


def _json_names(obj: dict[str, Any], line: int) -> dict[str, str]:
    names: dict[str, str] = {}
    for key in obj:
        role = _role_of(str(key))
        if role and role not in names:
            names[role] = str(key)
    if "text" not in names:
        raise DataError(
            f"line {line}: no text field: found keys {', '.join(repr(str(k)) for k in obj) or 'none'}; "
            f"name it one of {', '.join(COLUMN_NAMES['text'])}"
        )
    return names


# ---------------------------------------------------------------- entry point


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
    encoding = _sniff(_file_chunks(path))
    sample = "".join(_first_chars(_file_chunks(path)(), encoding))
    _refuse_non_text(sample)
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


def _first_chars(chunks: Iterable[bytes], encoding: str) -> Iterator[str]:
    taken = 0
    for text in _decoded(chunks, encoding):
        yield text[: _SAMPLE_CHARS - taken]
        taken += len(text)
        if taken >= _SAMPLE_CHARS:
            return


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
