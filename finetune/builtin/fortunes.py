"""fortunes-zh: the classical Chinese poems, ci and sayings of the Debian package, one row per
entry (title from 《…》 or the first line), modern and technical entries left out."""
from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass

from textgen.lang import CJK

from .rows import Row

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
# A line starting with "%" ends an entry; one line in `chinese` reads "%偓佺" (a typo).
_FORTUNE_SEPARATOR = re.compile(r"^%[^\n]*$", re.M)

_LATIN = re.compile(r"[A-Za-z]")
# "《T》", "题目:《T》二首", "七律《T》": a title line; the suffix must not be verse.
_TITLE_LINE = re.compile(r"^(?:题目[:：])?\s*[^《。，！？]{0,4}《(?P<title>[^》]+)》(?P<rest>[^。，！？；]{0,6})$")
_AUTHOR_LINE = re.compile(r"^作者[:：]")
_DYNASTY_LINE = re.compile(r"^\[[^\]]{1,4}\][\s\u3000]*(?P<author>\S+)$")  # "[唐] 韩愈"
_ATTRIBUTION = re.compile(r"^(?:--|——)\s*(?P<who>.*)$")
_WORK = re.compile(r"《(?P<work>[^》]+)》")
_SUBHEAD = re.compile(r"^其[一二三四五六七八九十]+$")  # "其一" between the poems of a set
# Pinyin glosses such as 封狼居胥（xū）: a reading aid, not part of the text.
_PINYIN = re.compile(r"[（(][a-zA-Zāáǎàēéěèīíǐìōóǒòūúǔùǖǘǚǜü\s,，]+[)）]")
_MIDDLE_DOTS = str.maketrans({"・": "·", "‧": "·", "•": "·"})
# ASCII punctuation typed into Chinese text ("焉得虎子?"): one form per mark means fewer tokens.
_FULLWIDTH = str.maketrans({"?": "？", "!": "！", ",": "，", ";": "；", ":": "："})
_SENTENCE_PUNCT = re.compile(r"[。，！？；：]")
# Sources that are modern (in copyright, or not classical) or technical; matched against the
# title, author and attribution. Entries with Latin letters are dropped separately.
_MODERN = ("钱钟书", "赫拉利", "斯托曼", "吴军", "老舍", "巴金", "冰心", "毛泽东", "鲁迅", "朱自清",
           "余光中", "钢之炼金术师", "显卡吧", "央视", "李彦宏", "王健林", "乔布斯", "胡志明", "黑格尔",
           "陈毅", "网吧", "梗", "言峰绮礼", "卫宫切嗣", "中国时报", "にちじょう", "行为准则")
_MODERN_YEAR = re.compile(r"一九|[12][0-9]{3}年")
MIN_CJK_SHARE = 0.8  # below this an entry is an emoticon, a table or code


@dataclass
class _Fortune:
    title: str
    author: str
    attribution: str
    body: list[str]


def split_fortunes(text: str) -> list[str]:
    """The entries of a fortune file: colour codes removed, split on `%` lines."""
    text = _ANSI.sub("", text.replace("\r\n", "\n"))
    return [e.strip("\n") for e in _FORTUNE_SEPARATOR.split(text) if e.strip()]


def _clean_zh_line(line: str) -> str:
    line = _PINYIN.sub("", line).translate(_FULLWIDTH)
    # Spaces inside Chinese text are layout (centring, 'a ， b'), not words: drop them.
    return "".join(line.split())


def _clean_title(title: str) -> str:
    title = title.translate(_MIDDLE_DOTS)
    title = title.split(" / ")[0].split("/")[0]  # "早发白帝城 / 白帝下江陵": keep the first name
    title = re.sub(r"[（(][^)）]*[)）]$", "", title.strip())  # "刻舟求剑（楚人涉江）"
    return " ".join(title.split())


def _split_attribution(lines: list[str]) -> tuple[list[str], list[str]]:
    """Body lines and the trailing "-- who《work》" lines ("-- 乡党第十", then "--《论语》")."""
    lines = list(lines)
    attribution: list[str] = []
    while lines and (m := _ATTRIBUTION.match(lines[-1].strip())):
        attribution.insert(0, m.group("who").strip())
        lines.pop()
    return lines, attribution


def _split_header(lines: list[str]) -> tuple[str, str, list[str]]:
    """(title, author, remaining lines) for a poem's 《title》 line or a fable's centred heading."""
    while lines and not lines[0].strip():
        lines = lines[1:]
    if not lines:
        return "", "", lines
    head, rest = lines[0].strip(), lines[1:]
    if m := _TITLE_LINE.match(head):
        # The author line: "作者：杜甫", or a name and a date ("毛泽东 一九三五年十月").
        if rest and (_AUTHOR_LINE.match(rest[0].strip()) or _MODERN_YEAR.search(rest[0])):
            return m.group("title"), _AUTHOR_LINE.sub("", rest[0].strip()), rest[1:]
        return m.group("title"), "", rest
    below = rest[0].strip() if rest else None
    if (lines[0][:2].isspace() and len(head) <= 20 and not _SENTENCE_PUNCT.search(head)
            and below is not None and (not below or _DYNASTY_LINE.match(below))):
        # A centred heading over a fable or essay, then "[唐] 韩愈" or a blank line.
        title = head.replace(" - ", "·")  # "大学 - 第一章"
        if m := _DYNASTY_LINE.match(below):
            return title, m.group("author"), rest[1:]
        return title, "", rest
    return "", "", lines


def _parse_fortune(entry: str, known_authors: set[str]) -> _Fortune:
    lines, attribution = _split_attribution([ln.rstrip() for ln in entry.split("\n")])
    title, author, lines = _split_header(lines)
    if not title and attribution:
        works = [w for a in attribution for w in _WORK.findall(a)]
        if works:
            title = works[-1]  # "-- 乡党第十 / --《论语》": the book, not the chapter
            author = _WORK.split(attribution[-1])[0].strip()
        elif attribution[-1] in known_authors:
            author = attribution[-1]  # "-- 佚名": an author, no title
        else:
            title = attribution[-1]  # "-- 岳阳楼记": a work named without brackets
    body = [_clean_zh_line(ln) for ln in lines]
    body = [ln for ln in body if ln and not _SUBHEAD.match(ln)]
    return _Fortune(_clean_title(title), author, " ".join(attribution), body)


def _is_classical(f: _Fortune) -> bool:
    meta = f"{f.title} {f.author} {f.attribution}"
    text = "".join(f.body)
    if not text or _LATIN.search(text) or _LATIN.search(meta):
        return False  # technical notes, English quotations, modern sources with Latin names
    if any(name in meta for name in _MODERN) or _MODERN_YEAR.search(meta):
        return False
    if "..." in text or "--" in text:
        return False  # internet jokes; the classical entries write …… and ——
    # Share of ideographs among the characters that are not punctuation: emoticons and
    # box drawings score near zero, a 论语 dialogue full of “”：！ still scores 1.
    letters = [ch for ch in text if not unicodedata.category(ch).startswith("P")]
    return bool(letters) and len(CJK.findall("".join(letters))) / len(letters) >= MIN_CJK_SHARE


def _known_authors(entries: Iterable[str]) -> set[str]:
    """Authors named in the files themselves ("作者：李白", "-- 李白《将进酒》")."""
    names: set[str] = set()
    for entry in entries:
        for line in entry.split("\n"):
            line = line.strip()
            if m := re.match(r"^作者[:：](?P<name>[^（(\s]+)", line):
                names.add(m.group("name"))
            elif (m := _ATTRIBUTION.match(line)) and "《" in m.group("who"):
                name = m.group("who").split("《")[0].strip()
                if name:
                    names.add(name)
            elif m := _DYNASTY_LINE.match(line):
                names.add(m.group("author"))
    return names | {"佚名"}


def rows_from_fortunes(*texts: str) -> list[Row]:
    """Rows from fortune files (fortunes-zh's tang300, song100, chinese), deduplicated by text.

    Title: the poem's 《title》, a fable's heading, or the book a saying is quoted from
    (《论语》, 《谚语》); empty for an unattributed saying. The author is dropped: users type a
    title, not a poet, and a name the text never mentions teaches the model nothing.
    Text: one line per verse line (poems keep their shape; a tiny model learns the 5- and
    7-character rhythm only when it can see where lines end), no blank lines, no spaces.
    Modern, technical and non-Chinese entries are skipped (see `_MODERN`).
    """
    entries = [e for text in texts for e in split_fortunes(text)]
    authors = _known_authors(entries)
    rows: list[Row] = []
    seen: set[str] = set()
    for entry in entries:
        fortune = _parse_fortune(entry, authors)
        if not _is_classical(fortune):
            continue
        text = "\n".join(fortune.body)
        if text in seen:
            continue
        seen.add(text)
        rows.append(Row(fortune.title, [], text))
    return rows
