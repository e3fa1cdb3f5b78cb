"""Which text encoding a corpus file has, and refusing a file that is not text (a workbook, a
PDF, a binary) with what to do instead. The file is read in chunks, so memory stays bounded
whatever its size."""
from __future__ import annotations

import codecs
import re
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path


from .errors import DataError


SAVE_AS_UTF8 = "save the file as UTF-8 (in Excel: File > Save As > CSV UTF-8)"
SAMPLE_CHARS = 64 * 1024  # what the delimiter and language are judged on



_MAGIC = {
    b"PK\x03\x04": "an Excel workbook (.xlsx) or another zip archive",
    b"PK\x05\x06": "an empty zip archive",
    b"\xd0\xcf\x11\xe0": "an old Excel (.xls) or Word file",
    b"%PDF": "a PDF document",
    b"\x1f\x8b": "a gzip archive",
}



_CHUNK_BYTES = 1 << 20



def sniff_encoding(raw: bytes) -> str:
    """Return the encoding of a whole file's bytes, or raise DataError.

    >>> sniff_encoding("标题,正文".encode("gbk"))
    'gb18030'
    >>> sniff_encoding(b"\\xef\\xbb\\xbftitle,text")
    'utf-8-sig'
    """
    return sniff_file(lambda: iter([raw]))



def sniff_file(read_chunks: Callable[[], Iterator[bytes]]) -> str:
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



def file_chunks(path: Path) -> Callable[[], Iterator[bytes]]:
    def read() -> Iterator[bytes]:
        with open(path, "rb") as fh:
            while chunk := fh.read(_CHUNK_BYTES):
                yield chunk

    return read



def refuse_non_text(sample: str) -> None:
    start = sample.lstrip()[:1000].casefold()
    if start.startswith(("<!doctype html", "<html")) or (start.startswith("<") and "<body" in start):
        raise DataError("file is an HTML page, not CSV or JSONL: download the file itself, not the page showing it")
    if start.startswith(("<?xml", "<svg", "<!doctype svg")) or (start.startswith("<") and "<svg" in start):
        raise DataError("file is an SVG or XML document, not CSV or JSONL: save your table as CSV UTF-8 "
                        "不是 CSV 或 JSONL 文件")
    controls = len(re.findall(r"[\x01-\x08\x0b\x0c\x0e-\x1f\x7f]", sample))
    if controls > max(2, len(sample) // 100):
        raise DataError(f"file looks binary (many control characters), not CSV or JSONL: {SAVE_AS_UTF8}")



def first_chars(chunks: Iterable[bytes], encoding: str) -> Iterator[str]:
    taken = 0
    for text in _decoded(chunks, encoding):
        yield text[: SAMPLE_CHARS - taken]
        taken += len(text)
        if taken >= SAMPLE_CHARS:
            return
