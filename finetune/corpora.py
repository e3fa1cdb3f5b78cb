"""Built-in training corpora: openly licensed text from Debian packages, as title/keywords/text rows.

The built-in models are trained from scratch on these rows, so the app works offline and
every word it learned from has a recorded licence (`SOURCES`, quoted by the model card).

    python -m finetune.corpora zh --out data/zh.csv     # classical poems and sayings (fortunes-zh)
    python -m finetune.corpora en --out data/en.csv     # Jargon File + WordNet glosses

>>> rows = rows_from_jargon("   :foo: /foo/\\n\\n   A {metasyntactic variable}.\\n")
>>> rows[0].title, rows[0].text
('foo', 'A metasyntactic variable.')

Each source has a pure parser over the file's text (`rows_from_fortunes`, `rows_from_jargon`,
`rows_from_wordnet`), so tests feed it a sample, and `read_source`, which reads the installed
files and names the Debian package to install when they are missing.
"""
from __future__ import annotations

import argparse
import csv
import gzip
import re
import sys
import unicodedata
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

KEYWORDS_PER_ROW = 5
CSV_HEADER = ("title", "keywords", "text")


@dataclass(frozen=True)
class Source:
    """One corpus: where it comes from and under which terms."""

    language: str  # "zh" or "en": which built-in model it trains
    package: str  # Debian package that installs the files
    files: tuple[str, ...]  # absolute paths of the files the parser reads, in order
    licence: str  # licence of the text itself, from /usr/share/doc/<package>/copyright
    description: str  # one line for the model card


SOURCES: dict[str, Source] = {
    "fortunes-zh": Source(
        language="zh",
        package="fortunes-zh",
        files=("/usr/share/games/fortunes/tang300", "/usr/share/games/fortunes/song100",
               "/usr/share/games/fortunes/chinese"),
        licence="GPL-3.0-or-later (the Debian compilation); the classical texts kept are public domain",
        description="Classical Chinese poems, ci and sayings (唐诗三百首, 宋诗, 论语, 道德经, 菜根谭, 增广贤文, "
                    "谚语) from the fortunes-zh package; modern and technical entries are left out.",
    ),
    "jargon": Source(
        language="en",
        package="jargon-text",
        files=("/usr/share/doc/jargon-text/jargon.txt.gz",),
        licence="Public domain (The Jargon File 4.4.7, Eric S. Raymond et al.)",
        description="The Jargon File 4.4.7: the hacker lexicon, one row per entry "
                    "(headword as title, definition as text).",
    ),
    "wordnet": Source(
        language="en",
        package="wordnet-base",
        files=tuple(f"/usr/share/wordnet/data.{pos}" for pos in ("noun", "verb", "adj", "adv")),
        licence="WordNet 3.0 licence (permissive, BSD-like; keep Princeton's copyright notice)",
        description="WordNet 3.0 glosses with example sentences, one row per word "
                    "(the word as title, its senses as text).",
    ),
}

# Which sources each built-in model is trained on.
LANGUAGES: dict[str, tuple[str, ...]] = {"zh": ("fortunes-zh",), "en": ("jargon", "wordnet")}


@dataclass(frozen=True)
class Row:
    """One training example; keywords are joined with ", " as in the CSV."""

    title: str
    keywords: str
    text: str


class SourceMissingError(FileNotFoundError):
    """A corpus file is not installed; the message names the Debian package."""


# ---------------------------------------------------------------------------------------------
# Chinese: fortunes-zh
# ---------------------------------------------------------------------------------------------

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
# A line starting with "%" ends an entry; one line in `chinese` reads "%偓佺" (a typo).
_FORTUNE_SEPARATOR = re.compile(r"^%[^\n]*$", re.M)
_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0002ffff]")
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
    return bool(letters) and len(_CJK.findall("".join(letters))) / len(letters) >= MIN_CJK_SHARE


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
        rows.append(Row(fortune.title, "", text))
    return rows


# ---------------------------------------------------------------------------------------------
# English: the Jargon File
# ---------------------------------------------------------------------------------------------

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
    return Row(" ".join(word.split()).translate(_QUOTES), "", text)


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


# ---------------------------------------------------------------------------------------------
# English: WordNet glosses
# ---------------------------------------------------------------------------------------------

_WN_EXAMPLE = re.compile(r'"([^"]+)"')
_WN_MARKER = re.compile(r"\((?:a|p|ip)\)$")  # adjective position markers: "galore(ip)"


def _sentence(text: str) -> str:
    text = " ".join(text.split()).strip(" ;")
    if not text:
        return ""
    text = text[0].upper() + text[1:]
    return text if text[-1] in ".!?" else text + "."


def rows_from_wordnet(*texts: str) -> list[Row]:
    """Rows from WordNet 3.0 data files (data.noun, data.verb, …): one row per word, its senses
    that come with an example sentence, one sense per line ("Definition. Example.").

    Senses without an example are skipped: a bare gloss is a fragment, not prose, and there are
    enough of them to drown the Jargon File's paragraphs.
    """
    senses: dict[str, list[str]] = {}
    for text in texts:
        for line in text.split("\n"):
            if not line or line.startswith(" ") or " | " not in line:
                continue  # licence header lines start with two spaces
            fields, gloss = line.split(" | ", 1)
            parts = fields.split()
            try:
                count = int(parts[3], 16)
            except (IndexError, ValueError):
                continue
            if count < 1:
                continue
            word = _WN_MARKER.sub("", parts[4]).replace("_", " ")
            examples = _WN_EXAMPLE.findall(gloss)
            definition = gloss.split('"')[0]
            if not examples or not definition.strip(" ;"):
                continue
            sense = " ".join([_sentence(definition)] + [_sentence(e) for e in examples])
            sense = sense.replace("`", "'")  # WordNet quotes as `this'; make it 'this'
            senses.setdefault(word, []).append(sense)
    return [Row(word, "", "\n".join(lines)) for word, lines in senses.items()]


# ---------------------------------------------------------------------------------------------
# Reading installed files, keywords, CSV, CLI
# ---------------------------------------------------------------------------------------------

_PARSERS: dict[str, Callable[..., list[Row]]] = {
    "fortunes-zh": rows_from_fortunes,
    "jargon": rows_from_jargon,
    "wordnet": rows_from_wordnet,
}


# ---------------------------------------------------------------------------------------------
# Word lists: vocabulary to insert while training (`TrainConfig.insert_words`), not corpora
# ---------------------------------------------------------------------------------------------

WORD_LISTS: dict[str, Source] = {
    "pinyin-simp": Source(
        language="zh",
        package="rime-data-pinyin-simp",
        files=("/usr/share/rime-data/pinyin_simp.dict.yaml",),
        licence="Apache-2.0 (Rime's pinyin_simp dictionary, derived from the Android Pinyin IME's)",
        description="Modern Simplified Chinese words ranked by frequency: the dictionary of the Rime "
                    "input method's pinyin_simp schema.",
    ),
}
_RIME_ENTRY = re.compile(r"^(?P<word>[^\t#][^\t]*)\t[^\t]*\t(?P<weight>\d+)\s*$")  # word, reading, weight


def words_from_rime_dict(text: str, *, min_chars: int = 2, max_chars: int = 4) -> list[str]:
    """The all-CJK words of `min_chars`-`max_chars` characters of a Rime dictionary (a YAML
    header ended by "...", then one word, reading and weight per line), most frequent first."""
    body = text.split("\n...\n", 1)[-1]
    weight: dict[str, int] = {}
    for line in body.splitlines():
        m = _RIME_ENTRY.match(line)
        word = m["word"].strip() if m else ""
        if min_chars <= len(word) <= max_chars and all(_CJK.match(c) for c in word):
            weight[word] = max(weight.get(word, 0), int(m["weight"]))  # a word with several readings
    return sorted(weight, key=lambda w: (-weight[w], w))


def build_words(name: str, top: int, root: str | Path = "/") -> list[str]:
    """The `top` most frequent words of an installed word list (`WORD_LISTS`)."""
    if name not in WORD_LISTS:
        raise ValueError(f"word list: unknown {name!r}; known: {', '.join(WORD_LISTS)}")
    return words_from_rime_dict(*_read_files(WORD_LISTS[name], root))[:top]


def jieba_top_words(count: int, length: int = 2) -> list[str]:
    """The `count` most frequent all-CJK words of `length` characters in jieba's dictionary:
    the keywords benchmark's Chinese pool (`benchmarks/keywords.py`), which the built-in
    model's insertion list leaves out (`finetune.builtin.Recipe.hold_out_benchmark_words`)."""
    import jieba

    ranked = []
    with (Path(jieba.__file__).parent / "dict.txt").open(encoding="utf-8") as fh:
        for line in fh:
            word, freq, *_ = line.split()
            if len(word) == length and all("\u4e00" <= ch <= "\u9fff" for ch in word):
                ranked.append((-int(freq), word))
    return [w for _, w in sorted(ranked)[:count]]


def read_source(name: str, root: str | Path = "/") -> list[str]:
    """The texts of an installed source's files, in `SOURCES[name].files` order.

    root: prefix for the absolute paths (tests point it at a temporary folder).
    Raises SourceMissingError naming the Debian package when a file is missing.
    """
    if name not in SOURCES:
        raise ValueError(f"source: unknown {name!r}; known: {', '.join(SOURCES)}")
    return _read_files(SOURCES[name], root)


def _read_files(source: Source, root: str | Path) -> list[str]:
    texts = []
    for file in source.files:
        path = Path(root) / file.lstrip("/")
        if not path.is_file():
            hint = (" (the package is installed but /usr/share/doc was excluded by dpkg, as in slim "
                    "container images: see /etc/dpkg/dpkg.cfg.d/)" if "/usr/share/doc/" in file else "")
            raise SourceMissingError(f"{path} not found: install it with "
                                     f"`sudo apt-get install {source.package}`{hint}")
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rt", encoding="utf-8") as fh:
            texts.append(fh.read())
    return texts


def build_source(name: str, root: str | Path = "/") -> list[Row]:
    """Rows of one installed source, without keywords."""
    return _PARSERS[name](*read_source(name, root))


def add_keywords(rows: Sequence[Row], k: int = KEYWORDS_PER_ROW) -> list[Row]:
    """Fill empty keywords with `finetune.extract.extract_keywords(text, k)`."""
    from finetune.extract import extract_keywords

    return [r if r.keywords else Row(r.title, ", ".join(extract_keywords(r.text, k=k)), r.text)
            for r in rows]


def build(language: str, *, keywords: bool = True, root: str | Path = "/",
          sources: Sequence[str] | None = None) -> list[Row]:
    """All rows for a built-in model's language ("zh" or "en")."""
    if language not in LANGUAGES:
        raise ValueError(f"language: must be one of {', '.join(LANGUAGES)}, got {language!r}")
    names = list(sources) if sources else list(LANGUAGES[language])
    for name in names:
        if name not in SOURCES or SOURCES[name].language != language:
            raise ValueError(f"sources: {name!r} is not a {language} source; "
                             f"known: {', '.join(n for n, s in SOURCES.items() if s.language == language)}")
    rows = [row for name in names for row in build_source(name, root)]
    return add_keywords(rows) if keywords else rows


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


def main(argv: Sequence[str] | None = None) -> int:
    """Build a built-in corpus and write it as CSV."""
    parser = argparse.ArgumentParser(prog="python -m finetune.corpora", description=__doc__.split("\n")[0])
    parser.add_argument("language", choices=sorted(LANGUAGES), help="which built-in model's corpus")
    parser.add_argument("--out", required=True, type=Path, help="CSV file to write (title,keywords,text)")
    parser.add_argument("--sources", default=None,
                        help="comma-separated subset of sources; default: all of the language's")
    parser.add_argument("--no-keywords", action="store_true",
                        help="leave keywords empty (the training pipeline extracts them)")
    parser.add_argument("--root", type=Path, default=Path("/"),
                        help="folder the sources' absolute paths are relative to (a chroot, a test)")
    args = parser.parse_args(argv)
    sources = [s.strip() for s in args.sources.split(",")] if args.sources else None
    try:
        rows = build(args.language, keywords=not args.no_keywords, root=args.root, sources=sources)
    except (SourceMissingError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    n_rows, n_chars = write_csv(rows, args.out)
    print(f"{args.out}: {n_rows} rows, {n_chars} characters of text")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
