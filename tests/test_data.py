"""Corpus ingestion on real files written to tmp_path: encodings, delimiters, headers, limits.

Every refusal test checks the message, because the message is what the user sees.
"""
from __future__ import annotations

import codecs
import csv
import json
import zipfile
from pathlib import Path

import pytest

from finetune.data import DataLimits, DataReport, Row, load_corpus, load_words
from finetune.encoding import sniff_encoding
from finetune.errors import DataError
from finetune.extract import extract_keywords

POEM = "好雨知时节，当春乃发生。随风潜入夜，润物细无声。野径云俱黑，江船火独明。晓看红湿处，花重锦官城。"
TRAD = "好雨知時節，當春乃發生。隨風潛入夜，潤物細無聲。野徑雲俱黑，江船火獨明。曉看紅濕處，花重錦官城。"
EN = "The storm rolled over the harbour at night, and the sailors watched the storm from the harbour wall."


def write(tmp_path: Path, name: str, content: str | bytes, encoding: str = "utf-8") -> Path:
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode(encoding))
    return path


def zh_csv(rows: int = 8, title: str = "春夜喜雨") -> str:
    """Headerless, like the seed corpus: title,kw1 kw2 kw3,text."""
    return "".join(f"{title}{i},春 雨 夜,{POEM}\n" for i in range(rows))


def refused(path: Path, *fragments: str, **kwargs) -> str:
    with pytest.raises(DataError) as info:
        load_corpus(path, **kwargs)
    message = str(info.value)
    for fragment in fragments:
        assert fragment in message, message
    return message


# ---------------------------------------------------------------- encodings


@pytest.mark.parametrize(
    ("encoding", "bom", "reported"),
    [
        ("utf-8", b"", "utf-8"),
        ("utf-8", codecs.BOM_UTF8, "utf-8-sig"),
        ("gbk", b"", "gb18030"),
        ("gb18030", b"", "gb18030"),
        ("utf-16-le", codecs.BOM_UTF16_LE, "utf-16"),
        ("utf-16-be", codecs.BOM_UTF16_BE, "utf-16"),
    ],
)
def test_encodings_decode_to_the_same_rows(tmp_path, encoding, bom, reported):
    title = "春夜" if encoding == "gbk" else "𠀀春夜"  # CJK Ext-B: GB18030 four-byte, UTF-16 surrogates
    text = "title,keywords,text\r\n" + zh_csv(title=title).replace("\n", "\r\n")
    rows, report = load_corpus(write(tmp_path, "c.csv", bom + text.encode(encoding)))
    assert report.encoding == reported
    assert report.has_header and report.columns["title"] == "title"  # no BOM glued to the name
    assert rows[0] == Row(f"{title}0", ["春", "雨", "夜"], POEM)
    assert report.rows_kept == 8 and report.language == "zh"


def test_traditional_chinese_in_gbk_is_accepted(tmp_path):
    rows, report = load_corpus(write(tmp_path, "t.csv", f"標題,{TRAD}\n" * 6, "gbk"))
    assert report.encoding == "gb18030" and rows[0].text == TRAD


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        pytest.param(f"標題,{TRAD}\n".encode("big5") * 6, "not UTF-8, GB18030 or UTF-16", id="big5"),
        pytest.param("title,text\nCafé crème,Zoë’s naïve fiancée\n".encode("cp1252") * 9, "not UTF-8", id="cp1252-latin1"),
        pytest.param("대한민국의 수도는 서울입니다. 오늘은 날씨가 좋네요.\n".encode("euc-kr") * 9, "not UTF-8",
                     id="euc-kr"),
        pytest.param(f"title,text\nx,{EN}\n".encode("utf-16-le") * 3, "UTF-16 without a byte-order mark",
                     id="utf16-no-bom"),
        pytest.param(b"\x00\x01\x02binary\xff" * 50, "NUL bytes", id="binary"),
        pytest.param(("text\n" + "Ã©\ufffd\ufffd story\n" * 40).encode(), "replacement characters", id="fffd"),
        pytest.param(codecs.BOM_UTF32_LE + "text\n".encode("utf-32-le"), "UTF-32", id="utf32"),
        pytest.param(codecs.BOM_UTF8 + f"text\n{POEM}\n".encode("gbk"), "UTF-8 byte-order mark but is not valid UTF-8:",
                     id="bom-then-gbk"),
    ],
)
def test_other_encodings_and_binary_are_refused(tmp_path, content, fragment):
    refused(write(tmp_path, "bad.csv", content), fragment, "save the file as UTF-8")


def test_sniff_encoding_directly():
    assert sniff_encoding(POEM.encode("utf-8")) == "utf-8"
    assert sniff_encoding(codecs.BOM_UTF8 + b"a") == "utf-8-sig"
    assert sniff_encoding(("𠀀" + POEM).encode("gb18030")) == "gb18030"
    assert sniff_encoding(codecs.BOM_UTF16_LE + "a".encode("utf-16-le")) == "utf-16"
    assert sniff_encoding(b"") == "utf-8"
    with pytest.raises(DataError, match="UTF-8"):
        sniff_encoding(TRAD.encode("big5"))


def test_mixed_encodings_are_refused(tmp_path):
    content = zh_csv(5).encode("utf-8") + zh_csv(1).encode("gbk")
    refused(write(tmp_path, "mixed.csv", content), "not UTF-8, GB18030")  # the whole file is scanned first


# ---------------------------------------------------------------- headers and columns


def test_headerless_chinese_csv_with_space_separated_keywords(tmp_path):
    rows, report = load_corpus(write(tmp_path, "seed.csv", zh_csv()))
    assert not report.has_header and report.format == "csv" and report.delimiter == ","
    assert report.columns == {"title": "column 1", "keywords": "column 2", "text": "column 3"}
    assert rows[3] == Row("春夜喜雨3", ["春", "雨", "夜"], POEM)
    assert report.keywords_source == "column"


def test_header_by_english_names_in_any_order_and_case(tmp_path):
    header = "ID,Body,Tags,Title,Date\n"
    data = "".join(f'{i},"{EN} {i}","storm; harbour",Night {i},2024-01-0{i}\n' for i in range(1, 6))
    rows, report = load_corpus(write(tmp_path, "en.csv", header + data))
    assert report.columns == {"text": "Body", "keywords": "Tags", "title": "Title"}
    assert rows[0] == Row("Night 1", ["storm", "harbour"], f"{EN} 1")
    assert report.language == "en"


def test_header_by_chinese_names(tmp_path):
    content = "题目,正文,关键字\n" + "".join(f"春夜{i},{POEM},春、雨\n" for i in range(6))
    rows, report = load_corpus(write(tmp_path, "zh.csv", content))
    assert report.columns == {"title": "题目", "text": "正文", "keywords": "关键字"}
    assert rows[0].keywords == ["春", "雨"] and rows[0].text == POEM


def test_header_without_text_column_lists_what_was_found(tmp_path):
    path = write(tmp_path, "h.csv", "title,summary\n" + f"a,{POEM}\n" * 8)
    refused(path, "no text column", "'title', 'summary'", "content", "正文")


def test_many_columns_without_header_asks_for_one(tmp_path):
    refused(write(tmp_path, "w.csv", f"1,a,b,{POEM}\n" * 8), "4 columns and no header row", "标题,关键词,正文")


def test_two_columns_title_text_get_auto_keywords(tmp_path):
    rows, report = load_corpus(write(tmp_path, "two.csv", "".join(f"春夜{i},{POEM}\n" for i in range(6))))
    assert report.columns == {"title": "column 1", "text": "column 2"}
    assert report.keywords_source == "auto"
    assert rows[0].keywords_auto and rows[0].keywords and all(k in POEM for k in rows[0].keywords)


def test_one_column_txt_is_one_text_per_line(tmp_path):
    lines = [f'"Storm," she said, {EN}', f"Rain; wind, {EN}", f"Calm | {EN} again"]
    rows, report = load_corpus(write(tmp_path, "lines.txt", "\n".join(lines) + "\n"))
    assert report.delimiter is None and report.columns == {"text": "column 1"}
    assert [r.text for r in rows] == lines and rows[0].title == ""


def test_rows_with_the_wrong_number_of_columns_are_dropped_with_reason(tmp_path):
    content = zh_csv(6) + f"extra,春,{POEM},surplus\n" + "only two,cells\n" + "trailing,春,{POEM},,\n"
    rows, report = load_corpus(write(tmp_path, "shape.csv", content))
    assert report.rows_total == 9 and report.rows_kept == 7  # trailing empty cells are fine
    assert report.dropped == {"wrong number of columns (expected 3)": 2}


def test_too_many_columns_is_refused(tmp_path):
    refused(write(tmp_path, "wide.csv", ",".join(["x"] * 100) + "\n"), "line 1: 100 columns", "at most 64")


# ---------------------------------------------------------------- delimiters and quoting


@pytest.mark.parametrize(
    ("delimiter", "name"), [("\t", "c.tsv"), ("\t", "c.txt"), ("\t", "c.csv"), (";", "c.csv"), ("|", "c.csv")]
)
def test_other_delimiters(tmp_path, delimiter, name):
    text = f"A storm, then rain; {EN}"  # commas and semicolons inside the text
    if delimiter == ";":
        text = text.replace(";", ",")
    content = f"title{delimiter}text\n" + "".join(f"T{i}{delimiter}{text}\n" for i in range(5))
    rows, report = load_corpus(write(tmp_path, name, content))
    assert report.delimiter == delimiter and (rows[4].title, rows[4].text) == ("T4", text)
    assert report.format == ("tsv" if delimiter == "\t" else "csv")


def test_full_width_comma_never_splits(tmp_path):
    rows, report = load_corpus(write(tmp_path, "fw.csv", "".join(f"春，夜{i},{POEM}\n" for i in range(6))))
    assert report.columns == {"title": "column 1", "text": "column 2"}
    assert rows[0].title == "春，夜0" and rows[0].text == POEM


def test_quoted_multiline_text_with_doubled_quotes_and_crlf(tmp_path):
    text = f'He said ""hello"",\r\nthen left.\r\n{EN}'
    content = "title,keywords,text\r\n" + "".join(f'T{i},"storm, night","{text}"\r\n' for i in range(4))
    rows, report = load_corpus(write(tmp_path, "q.csv", content))
    assert report.rows_kept == 4
    assert rows[0].text == f'He said "hello",\nthen left.\n{EN}'  # CRLF inside cells becomes \n
    assert rows[0].keywords == ["storm", "night"]


def test_unmatched_quote_names_its_line(tmp_path):
    content = "title,text\n" + f"a,{EN}\n" * 3 + f'b,"{EN}\n' + f"c,{EN}\n" * 3
    refused(write(tmp_path, "uq.csv", content), "line 5", "never closes")


def test_unmatched_quote_in_a_big_file_stops_at_the_limit(tmp_path):
    limits = DataLimits(max_cell_chars=1000)
    content = "title,text\n" + f'a,"{EN}\n' + f"c,{EN}\n" * 500 + 'd,"x"\n'
    refused(write(tmp_path, "uq.csv", content), "line 2", "unmatched quote", limits=limits)


def test_misplaced_quote_names_its_line(tmp_path):
    content = "title,text\n" + f"a,{EN}\n" * 3 + f'b,"{EN}" and more\n' + f"c,{EN}\n"
    refused(write(tmp_path, "mq.csv", content), "line 5", '""')


# ---------------------------------------------------------------- JSONL


def test_jsonl_with_list_and_string_keywords(tmp_path):
    objs = [{"title": "春夜", "keywords": ["春", "雨"], "text": POEM}, {"标题": "x", "关键词": "月 花", "内容": POEM},
            {"Title": "y", "content": POEM, "tags": None}, {"text": POEM, "keywords": 3}]
    path = write(tmp_path, "c.jsonl", "\n".join(json.dumps(o, ensure_ascii=False) for o in objs) + "\n\n")
    rows, report = load_corpus(path, limits=DataLimits(min_total_chars=100))
    assert report.format == "jsonl" and report.columns == {"title": "title", "keywords": "keywords", "text": "text"}
    assert rows[0].keywords == ["春", "雨"] and rows[1].keywords == ["月", "花"] and rows[1].title == "x"
    assert rows[2].keywords_auto and report.keywords_source == "mixed"
    assert rows[3].keywords == ["3"]  # a number in the keywords field is still a keyword


def test_bad_jsonl_line_names_its_number(tmp_path):
    good = json.dumps({"text": POEM}, ensure_ascii=False)
    refused(write(tmp_path, "b.jsonl", f"{good}\n{good}\n{{'text': 'single quotes'}}\n"), "line 3", "not valid JSON")
    refused(write(tmp_path, "l.jsonl", f"{good}\n[1, 2]\n"), "line 2", "JSON object")


def test_jsonl_without_text_field(tmp_path):
    refused(write(tmp_path, "n.jsonl", '{"title": "a", "summary": "b"}\n'), "no text field", "'summary'", "content")


def test_json_array_is_refused_with_advice(tmp_path):
    refused(write(tmp_path, "a.json", json.dumps([{"text": POEM}])), "one JSON object per line")


# ---------------------------------------------------------------- not enough text


def test_empty_file(tmp_path):
    refused(write(tmp_path, "e.csv", ""), "not enough text to train on", "empty")
    refused(write(tmp_path, "blank.csv", "\n\r\n  \n"), "not enough text to train on")


def test_header_only(tmp_path):
    path = write(tmp_path, "h.csv", "title,keywords,text\r\n")
    refused(path, "not enough text to train on", "header row but no data")


def test_nan_and_blank_texts_are_dropped_with_reason(tmp_path):
    content = "title,text\n" + f"a,{POEM}\n" * 6 + "b,NaN\nc,   \nd,\ne,null\n"
    rows, report = load_corpus(write(tmp_path, "nan.csv", content))
    assert report.rows_total == 10 and report.rows_kept == 6
    assert report.dropped == {"no text": 4}


def test_too_little_text(tmp_path):
    refused(write(tmp_path, "s.csv", "title,text\na,short\nb,NaN\n"), "not enough text to train on",
            "5 characters", "at least 200", "1 dropped: no text")


# ---------------------------------------------------------------- not a text file, limits


def test_zip_or_xlsx_renamed_csv(tmp_path):
    path = tmp_path / "book.csv"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("xl/workbook.xml", "<workbook/>")
    refused(path, "Excel workbook", "CSV UTF-8")
    refused(write(tmp_path, "book.xlsx", b"PK\x03\x04"), "unsupported file type '.xlsx'", "CSV UTF-8")


def test_html_named_csv(tmp_path):
    refused(write(tmp_path, "page.csv", "<!DOCTYPE html>\n<html><body>" + EN * 5 + "</body></html>"), "HTML page")


def test_nul_bytes(tmp_path):
    refused(write(tmp_path, "nul.csv", f"title,text\na,{POEM}\x00\n".encode() * 5), "NUL", "UTF-8")
    utf16 = codecs.BOM_UTF16_LE + f"title,text\na,{POEM}\nb,{POEM}\x00\n".encode("utf-16-le")
    refused(write(tmp_path, "nul16.csv", utf16), "line 3: NUL", "UTF-8")


def test_file_over_size_limit_is_refused_before_reading(tmp_path):
    path = write(tmp_path, "big.csv", zh_csv(50))
    refused(path, "bytes; at most 1,000 bytes", limits=DataLimits(max_file_bytes=1000))


def test_too_many_rows(tmp_path):
    refused(write(tmp_path, "rows.csv", zh_csv(20)), "more than 10 rows", limits=DataLimits(max_rows=10))


def test_cell_over_limit_drops_the_row(tmp_path):
    limits = DataLimits(max_cell_chars=500)
    content = zh_csv(6) + f"long,春,{'长' * 600}\n"
    rows, report = load_corpus(write(tmp_path, "long.csv", content), limits=limits)
    assert report.rows_kept == 6 and report.dropped == {"cell too long (> 500 characters)": 1}


def test_most_cells_over_limit_is_an_error(tmp_path):
    content = f"a,{POEM}\n" + f"long,{'长' * 600}\n" * 3
    refused(write(tmp_path, "long.csv", content), "most rows (3 of 4)", "500", limits=DataLimits(max_cell_chars=500))


def test_huge_cell_stops_reading_with_its_line(tmp_path):
    content = zh_csv(3) + f"huge,春,{'长' * 20_000}\n"
    refused(write(tmp_path, "huge.csv", content), "line 4", "runs past", "500-character limit",
            limits=DataLimits(max_cell_chars=500))


def test_unsupported_extension_and_missing_file(tmp_path):
    refused(write(tmp_path, "c.docx", "x"), "unsupported file type '.docx'", ".csv, .tsv")
    refused(tmp_path / "missing.csv", "file not found")


def test_field_size_limit_is_restored(tmp_path):
    before = csv.field_size_limit()
    load_corpus(write(tmp_path, "c.csv", zh_csv()))
    assert csv.field_size_limit() == before


# ---------------------------------------------------------------- keywords


def test_keywords_auto_ignores_the_column(tmp_path):
    rows, report = load_corpus(write(tmp_path, "c.csv", zh_csv()), keywords="auto")
    assert report.keywords_source == "auto" and all(r.keywords_auto for r in rows)
    assert rows[0].keywords != ["春", "雨", "夜"]


def test_empty_keyword_cells_are_extracted_and_reported_mixed(tmp_path):
    content = "title,keywords,text\n" + f'a,,"{EN}"\n' + f'b,storm,"{EN}"\n' * 3
    rows, report = load_corpus(write(tmp_path, "m.csv", content))
    assert report.keywords_source == "mixed"
    assert rows[0].keywords_auto and rows[0].keywords[:2] == ["storm", "harbour"]
    assert rows[1].keywords == ["storm"] and not rows[1].keywords_auto


def test_too_many_or_too_long_keywords_are_trimmed_not_dropped(tmp_path):
    cell = " ".join(f"k{i}" for i in range(40)) + " " + "x" * 50
    rows, report = load_corpus(write(tmp_path, "k.csv", f"a,{cell},{POEM}\n" * 6))
    assert rows[0].keywords == [f"k{i}" for i in range(32)] and report.rows_kept == 6


def test_bad_keywords_mode():
    with pytest.raises(ValueError, match="'column' or 'auto'"):
        load_corpus("x.csv", keywords="magic")


def test_extract_keywords_english():
    text = "Python is a language. The Python community loves language design; design matters."
    assert extract_keywords(text, k=3) == ["Python", "language", "design"]
    assert extract_keywords("the and of it", k=3) == []
    assert extract_keywords("", k=3) == []


def test_extract_keywords_chinese_with_jieba():
    text = "人工智能正在改变我们的生活。人工智能在医疗、教育和交通领域都有应用，机器学习是人工智能的核心。"
    words = extract_keywords(text, k=3)
    assert len(words) == 3 and "人工智能" in words and all(w in text for w in words)
    assert extract_keywords(text, k=2, language="zh") == words[:2]


# ---------------------------------------------------------------- report


def test_report_summary_and_dict(tmp_path):
    content = "title,text\n" + f"a,{POEM}\n" * 6 + "b,\n"
    _, report = load_corpus(write(tmp_path, "r.csv", content))
    assert isinstance(report, DataReport)
    data = report.to_dict()
    assert json.loads(json.dumps(data, ensure_ascii=False)) == data
    assert data["dropped"] == {"no text": 1} and data["total_chars"] == 6 * len(POEM)
    summary = report.summary()
    assert "r.csv: CSV, encoding utf-8, delimiter ',', header row" in summary
    assert "6 kept of 7 (dropped: 1 no text)" in summary and "language zh" in summary


# -- word lists (TrainConfig.insert_words) ------------------------------------------------------------
def test_load_words_one_per_line_skipping_readings_comments_and_repeats(tmp_path):
    path = tmp_path / "words.txt"
    path.write_bytes("\ufeff# my vocabulary\n发展\tfa zhan\t120\n\n  经济  \n发展\nbicycle\n".encode("utf-8"))
    assert load_words(path) == ["发展", "经济", "bicycle"]


@pytest.mark.parametrize(("content", "message"), [
    ("发展\n" + "长" * 41 + "\n", "line 2 .* at most 40 characters"),
    ("发展,经济\n", "line 1 .* without separators"),
    ("# only a comment\n\n", "has no words"),
])
def test_load_words_errors_name_the_field_and_line(tmp_path, content, message):
    path = tmp_path / "words.txt"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(DataError, match="insert_words: .*" + message):
        load_words(path)


def test_load_words_refuses_missing_non_utf8_and_huge_files(tmp_path, monkeypatch):
    with pytest.raises(DataError, match="insert_words: cannot read 'nope.txt'"):
        load_words(tmp_path / "nope.txt")
    gbk = tmp_path / "gbk.txt"
    gbk.write_bytes("发展\n".encode("gbk"))
    with pytest.raises(DataError, match="insert_words: 'gbk.txt' is not UTF-8"):
        load_words(gbk)
    import finetune.data as data
    monkeypatch.setattr(data, "MAX_WORDS_BYTES", 4)
    with pytest.raises(DataError, match="insert_words: 'gbk.txt' is .* at most"):
        load_words(gbk)
