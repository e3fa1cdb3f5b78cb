"""The Jargon File: one row per entry, headword as title, definition as text.

>>> rows = rows_from_jargon("   :foo: /foo/\\n\\n   A {metasyntactic variable}.\\n")
>>> rows[0].title, rows[0].text
('foo', 'A metasyntactic variable.')
"""
from __future__ import annotations

import re

from .rows import Row

_JARGON_HEAD = re.compile(r"^   :(?P<word>.+?):(?:\s.*)?$")
_JARGON_BODY = re.compile(r"^   (?P<line>\S.*)$")  # body text is indented by exactly 3 spaces
_CROSS_REF = re.compile(r"\{([^{}]+)\}")
_LEADING_TAG = re.compile(r"^(\d+\.\s+)?\[[^\]]*\]\s*")  # "[Usenet]", "2. [very common]"
_SENSE_POS = re.compile(
    r"^(\d+\.)\s+(?:(?:n|v|vt|vi|adj|adv|interj|excl|pref|suff|prep|conj|pron|num|obs|abbrev)\.,?\s+)+")
_SENSE_NUMBER = re.compile(r"^\d+\.\s")
_QUOTES = str.maketrans({"‘": "'", "’": "'", "“": '"', "”": '"'})
_NOT_PROSE = re.compile(r"[{}\u2500-\u257f]")  # braces left after cross-references: code; box drawing: tables
MIN_JARGON_CHARS = 20  # shorter entries are bare cross-references ("See bit rot.")
MAX_CAPTION_CHARS = 120


def _jargon_paragraphs(block: list[str]) -> list[str]:
    """Paragraphs of one entry, each on one line; blocks indented deeper (code, ASCII art,
    transcripts) are dropped because they are not prose."""
    paragraphs: list[str] = []
    current: list[str] = []
    for line in block + [""]:
        m = _JARGON_BODY.match(line)
        if m:
            current.append(m.group("line"))
            continue
        if current:
            paragraphs.append(" ".join(" ".join(current).split()))
            current = []
    return paragraphs


def _drop_cartoons(paragraphs: list[str]) -> list[str]:
    """Remove the Crunchly cartoons' captions and their "(The next cartoon …)" pointers: they
    describe pictures the text file does not have."""
    drop: set[int] = set()
    for i, par in enumerate(paragraphs):
        if par.startswith("(") and "cartoon" in par:
            drop.add(i)
            j = i - 1
            while j in drop:
                j -= 1
            # The caption is the short paragraph just above; never the entry's first paragraph.
            if j >= 1 and len(paragraphs[j]) <= MAX_CAPTION_CHARS and not _SENSE_NUMBER.match(paragraphs[j]):
                drop.add(j)
        elif "Crunchly" in par and not _SENSE_NUMBER.match(par):
            drop.add(i)
    return [p for i, p in enumerate(paragraphs) if i not in drop]


def _clean_jargon_paragraph(par: str) -> str:
    previous = None
    while previous != par:  # "{{VAX}}" needs two passes
        previous, par = par, _CROSS_REF.sub(r"\1", par)
    if _NOT_PROSE.search(par):
        return ""
    par = _LEADING_TAG.sub(lambda m: m.group(1) or "", par.translate(_QUOTES))
    return _SENSE_POS.sub(r"\1 ", par).strip()


def _jargon_row(word: str, block: list[str]) -> Row | None:
    paragraphs = [_clean_jargon_paragraph(p) for p in _drop_cartoons(_jargon_paragraphs(block))]
    text = "\n".join(p for p in paragraphs if p)
    if len(text) < MIN_JARGON_CHARS:
        return None
    return Row(" ".join(word.split()).translate(_QUOTES), [], text)


def rows_from_jargon(text: str) -> list[Row]:
    """Rows from the Jargon File's text version (jargon-text's jargon.txt): headword → title,
    definition → text, one line per paragraph.

    Dropped, as dictionary apparatus rather than prose: the pronunciation and part of speech,
    `{cross-reference}` braces (the word stays), leading `[usage/etymology]` tags, code and
    tables, entries that are only a cross-reference, and the cartoon captions.
    """
    entries: list[tuple[str, list[str]]] = []
    for line in text.replace("\r\n", "\n").split("\n"):
        if m := _JARGON_HEAD.match(line):
            entries.append((m.group("word"), []))
        elif entries:
            if " ".join(line.split()).startswith("Part III."):
                break  # the lexicon ends where the appendices begin
            entries[-1][1].append(line)
    return [row for word, block in entries if (row := _jargon_row(word, block))]
