"""Corpus builders on small samples in the real formats of the Debian files, written here."""
from __future__ import annotations

import csv
import gzip
from pathlib import Path

import pytest

from finetune.builtin import debian, words
from finetune.builtin.debian import SOURCES, SourceMissingError, build, main, read_source
from finetune.builtin.fortunes import rows_from_fortunes
from finetune.builtin.jargon import rows_from_jargon
from finetune.builtin.rows import Row, add_keywords, write_csv
from finetune.builtin.wordnet import rows_from_wordnet
from textgen.keywords import parse_keywords

ESC = "\x1b"

# tang300: green 《title》, yellow author line, verse lines, "%" separators.
TANG300 = f"""{ESC}[32m《静夜思》{ESC}[m
{ESC}[33m作者：李白{ESC}[m
床前明月光，疑是地上霜。
举头望明月，低头思故乡。
%
{ESC}[32m《感遇・其一》{ESC}[m
{ESC}[33m作者：张九龄{ESC}[m
兰叶春葳蕤，桂华秋皎洁。
欣欣此生意，自尔为佳节。
%
"""

# song100: "题目:" prefix, a suffix after the title, author with dates, centred 其一/其二.
SONG100 = f"""{ESC}[32m题目:《春居杂兴》二首{ESC}[m
{ESC}[33m作者:王禹偁（９５４－１００１）{ESC}[m

            其一

两株桃杏映篱斜，妆点商山副使家，
何事春风容不得，和莺吹折数枝花。
%
"""

# chinese: attributed quotations, a centred fable heading, proverbs, and entries to skip.
CHINESE = """君不见黄河之水天上来，奔流到海不复回。
    -- 李白《将进酒》
%
孔子于乡党，恂恂如也，似不能言者。
    -- 乡党第十
    --《论语》
%
庸医治标，名医治本。
    --《谚语》
%
             郑人买履
           [先秦] 韩非

郑人有欲买履者，先自度其足，而置之其坐。
人曰：“何不试之以足? ”
%
永嘉草草，封狼居胥（xū），赢得仓皇北顾。
    -- 佚名
%
当局者迷，旁观者清。
%
<ESC>[37;1m3.1. 指导原则<ESC>[;m

    写作本文档时，遵循下列指导原则。保持文字简短紧凑。（KISS 原则）

<ESC>[33m                           -- Osamu Aoki (青木修), Debian 参考手册（版本 2.73）<ESC>[m
%
围在城里的人想逃出来，城外的人想冲进去。
    -- 钱钟书《围城》
%
七律《长征》
毛泽东 一九三五年十月
红军不怕远征难，万水千山只等闲。
%
(╯‵□′)╯︵┻━┻
%
某营业厅内...
你好!充话费!
%
床前明月光，疑是地上霜。
举头望明月，低头思故乡。
%偓佺
落日绣帘卷，亭下水连空。
    -- 苏轼《水调歌头·黄州快哉亭赠张偓佺 / 快哉亭作》
%
""".replace("<ESC>", ESC)


def test_fortunes_rows_titles_text_and_skips():
    rows = rows_from_fortunes(TANG300, SONG100, CHINESE)
    by_title = {r.title: r.text for r in rows}
    assert by_title["静夜思"] == "床前明月光，疑是地上霜。\n举头望明月，低头思故乡。"
    assert by_title["感遇·其一"].startswith("兰叶春葳蕤")  # "・" normalised to "·"
    # Sub-headings and the author line are not text; verse lines stay lines.
    assert by_title["春居杂兴"] == "两株桃杏映篱斜，妆点商山副使家，\n何事春风容不得，和莺吹折数枝花。"
    assert by_title["将进酒"] == "君不见黄河之水天上来，奔流到海不复回。"
    assert by_title["论语"] == "孔子于乡党，恂恂如也，似不能言者。"  # the book, not the chapter
    assert by_title["谚语"] == "庸医治标，名医治本。"
    # Centred heading with a dynasty line; ASCII "?" becomes "？", layout spaces go.
    assert by_title["郑人买履"] == "郑人有欲买履者，先自度其足，而置之其坐。\n人曰：“何不试之以足？”"
    # A known author with no work: no title; the pinyin gloss is dropped.
    assert Row("", [], "永嘉草草，封狼居胥，赢得仓皇北顾。") in rows
    assert Row("", [], "当局者迷，旁观者清。") in rows
    # "%偓佺" still separates entries; the first of two alternative titles is kept.
    assert by_title["水调歌头·黄州快哉亭赠张偓佺"] == "落日绣帘卷，亭下水连空。"
    texts = "".join(r.text + r.title for r in rows)
    for skipped in ("指导原则", "围城", "红军", "┻", "充话费", "李白", "作者", "\x1b", "%"):
        assert skipped not in texts
    assert sum(r.text.startswith("床前明月光") for r in rows) == 1  # duplicates removed
    assert all(r.keywords == [] for r in rows)


JARGON = """\
                          Part II. The Jargon Lexicon

   :(TM): //

   [Usenet] ASCII rendition of the ™ appended to phrases that the author
   feels should be recorded for posterity. See also {UN*X}.

   :ad-hockery: /ad-hok'@r-ee/, n.

   [Purdue] 1. Gratuitous assumptions made inside certain programs, esp.
   {expert system}s, which lead to the appearance of semi-intelligent
   behavior.

   2. n. Special-case code to cope with some awkward input that would
   otherwise cause a program to {choke}. “I think we should buy a
   {{VAX}}.”

   This is {ad-hockery} in action.

   (The next cartoon in the Crunchly saga is 74-08-18. The previous one is
   73-07-29.)

   :alpha particles: n.

   See {bit rot}.

   :indent style: n.

   Any of the layouts of C code, for example:

       if (x) {
           y();
       }

   The ‘One True Brace Style’ is one of them.

   :zorkmid: /zork'mid/, n.

   The canonical unit of currency in hacker-written games.

                             Part III. Appendices

   :not an entry: n.

   Appendix text is not part of the lexicon.
"""


def test_jargon_rows():
    rows = rows_from_jargon(JARGON)
    assert [r.title for r in rows] == ["(TM)", "ad-hockery", "indent style", "zorkmid"]
    by_title = {r.title: r.text for r in rows}
    assert by_title["(TM)"] == ("ASCII rendition of the ™ appended to phrases that the author feels "
                                "should be recorded for posterity. See also UN*X.")
    # Tags and parts of speech go, cross-references keep their word, the cartoon goes.
    assert by_title["ad-hockery"] == (
        "1. Gratuitous assumptions made inside certain programs, esp. expert systems, which lead to "
        "the appearance of semi-intelligent behavior.\n"
        "2. Special-case code to cope with some awkward input that would otherwise cause a program "
        "to choke. \"I think we should buy a VAX.\"")
    # The code block is dropped; curly quotes become ASCII.
    assert by_title["indent style"] == ("Any of the layouts of C code, for example:\n"
                                        "The 'One True Brace Style' is one of them.")
    assert by_title["zorkmid"] == "The canonical unit of currency in hacker-written games."


WORDNET = """\
  1 This software and database is being provided to you, the LICENSEE, by  
  2 Princeton University under the following license. | not an entry  
00406612 04 n 02 fold 0 folding 0 005 @ 00404403 n 0000 | the act of folding; "he gave the napkins a double fold"  
00406800 04 n 02 plication 0 pleating 0 003 @ 00406612 n 0000 | the act of folding in parallel folds  
01277992 35 v 02 fold 0 fold_up 1 001 @ 01278000 v 0000 | bend or lay so that one part covers the other; "fold up the newspaper"; "turn up your collar"  
00001740 00 a 01 ice_cold(a) 0 000 | (usually followed by `to') very cold; "an ice_cold drink"  
"""


def test_wordnet_rows_one_per_word_with_examples_only():
    rows = rows_from_wordnet(WORDNET)
    assert rows == [
        Row("fold", [], "The act of folding. He gave the napkins a double fold.\n"
                        "Bend or lay so that one part covers the other. Fold up the newspaper. "
                        "Turn up your collar."),
        Row("ice cold", [], "(usually followed by 'to') very cold. An ice_cold drink."),
    ]


def _install(root: Path, name: str, texts: list[str]) -> None:
    for file, text in zip(SOURCES[name].files, texts):
        path = root / file.lstrip("/")
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.suffix == ".gz":
            path.write_bytes(gzip.compress(text.encode("utf-8")))
        else:
            path.write_text(text, encoding="utf-8")


def test_missing_source_names_the_package(tmp_path):
    with pytest.raises(SourceMissingError, match="apt-get install fortunes-zh"):
        read_source("fortunes-zh", root=tmp_path)
    with pytest.raises(SourceMissingError, match="apt-get install jargon-text.*usr/share/doc"):
        read_source("jargon", root=tmp_path)
    with pytest.raises(ValueError, match="source: unknown"):
        read_source("nope", root=tmp_path)


def test_sources_document_licence_and_package():
    for name, source in SOURCES.items():
        assert source.package and source.licence and source.description, name
        assert source.language in debian.LANGUAGES
        assert all(f.startswith("/") for f in source.files)


def test_cli_writes_csv_from_installed_files(tmp_path, capsys):
    _install(tmp_path, "fortunes-zh", [TANG300, SONG100, CHINESE])
    out = tmp_path / "data" / "zh.csv"
    assert main(["zh", "--out", str(out), "--root", str(tmp_path), "--no-keywords"]) == 0
    printed = capsys.readouterr().out
    with out.open(encoding="utf-8", newline="") as fh:
        rows = list(csv.reader(fh))
    assert rows[0] == ["title", "keywords", "text"]
    assert ["静夜思", "", "床前明月光，疑是地上霜。\n举头望明月，低头思故乡。"] in rows
    n_chars = sum(len(r[2]) for r in rows[1:])
    assert f"{len(rows) - 1} rows, {n_chars} characters" in printed


def test_cli_reports_missing_package(tmp_path, capsys):
    assert main(["en", "--out", str(tmp_path / "en.csv"), "--root", str(tmp_path)]) == 2
    assert "apt-get install jargon-text" in capsys.readouterr().err


def test_build_en_reads_gzip_and_checks_sources(tmp_path):
    _install(tmp_path, "jargon", [JARGON])
    _install(tmp_path, "wordnet", [WORDNET, "", "", ""])
    rows = build("en", keywords=False, root=tmp_path)
    assert [r.title for r in rows] == ["(TM)", "ad-hockery", "indent style", "zorkmid", "fold", "ice cold"]
    assert build("en", keywords=False, root=tmp_path, sources=["jargon"])[-1].title == "zorkmid"
    with pytest.raises(ValueError, match="sources: 'fortunes-zh' is not a en source"):
        build("en", root=tmp_path, sources=["fortunes-zh"])
    with pytest.raises(ValueError, match="language: must be one of"):
        build("fr", root=tmp_path)


def test_add_keywords_fills_empty_only():
    from finetune.extract import extract_keywords

    text = "The storm hit the harbour. The storm broke boats in the harbour at night."
    rows = [Row("storm", [], text), Row("kept", ["given"], "Some text.")]
    filled = add_keywords(rows, k=2)
    assert filled[0].keywords == extract_keywords(text, k=2) != []
    assert filled[1] == rows[1]


def test_write_csv_round_trips_newlines_and_quotes(tmp_path):
    rows = [Row("a, b", ["x", "y"], 'line "one"\nline two'), Row("", [], "只有正文。")]
    assert write_csv(rows, tmp_path / "c.csv") == (2, len(rows[0].text) + len(rows[1].text))
    with (tmp_path / "c.csv").open(encoding="utf-8", newline="") as fh:
        back = [Row(r["title"], parse_keywords(r["keywords"]), r["text"]) for r in csv.DictReader(fh)]
    assert back == rows


@pytest.mark.skipif(not Path(SOURCES["fortunes-zh"].files[0]).is_file(), reason="fortunes-zh not installed")
def test_installed_fortunes_zh():
    rows = build("zh", keywords=False)
    assert len(rows) > 4000
    assert any(r.title == "春晓" and r.text.startswith("春眠不觉晓") for r in rows)
    assert not any("\x1b" in r.text or "Debian" in r.text for r in rows)


RIME_DICT = """# Rime dictionary
---
name: pinyin_simp
sort: by_weight
...

鼥\tba\t0
发展\tfa zhan\t120
经济\tjing ji\t300
发展\tfa zhan\t90
计算机\tji suan ji\t80
中华人民共和国\tzhong hua\t500
T恤\tt xu\t400
好\thao\t999
"""


def test_rime_word_list_keeps_chinese_words_most_frequent_first():
    assert words.words_from_rime_dict(RIME_DICT) == ["经济", "发展", "计算机"]  # 1 char, 7 chars, Latin: out
    assert words.words_from_rime_dict(RIME_DICT, min_chars=1, max_chars=8)[:2] == ["好", "中华人民共和国"]


def test_build_words_reads_the_installed_list_or_names_the_package(tmp_path):
    with pytest.raises(SourceMissingError, match="apt-get install rime-data-pinyin-simp"):
        words.build_words("pinyin-simp", 10, root=tmp_path)
    path = tmp_path / words.WORD_LISTS["pinyin-simp"].files[0].lstrip("/")
    path.parent.mkdir(parents=True)
    path.write_text(RIME_DICT, encoding="utf-8")
    assert words.build_words("pinyin-simp", 2, root=tmp_path) == ["经济", "发展"]
    with pytest.raises(ValueError, match="word list: unknown"):
        words.build_words("nope", 2, root=tmp_path)
    source = words.WORD_LISTS["pinyin-simp"]
    assert source.licence.startswith("Apache-2.0") and source.package == "rime-data-pinyin-simp"
