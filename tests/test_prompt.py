import unicodedata

import json

import pytest

from textgen.prompt import FORMAT_VERSION, PromptFormat, encode_example, encode_keywords, encode_prompt, token_ids


def _load(folder):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(folder), PromptFormat.load(folder)


def test_prompt_is_prefix_of_training_example(any_model_dir):
    tok, fmt = _load(any_model_dir)
    for title, keywords, text in [("春夜", ["月", "花"], "床前明月光，疑是地上霜。"),
                                  ("Storm", ["sea", "night"], "The storm rolled over the sea."),
                                  ("", ["sea"], "The sea."), ("Only title", [], "Text.")]:
        prompt = encode_prompt(tok, fmt, title, keywords)
        example, start = encode_example(tok, fmt, title, keywords, text)
        assert example[:start] == prompt
        ids = token_ids(tok, fmt)
        assert prompt[0] == ids["bos"] and prompt[-1] == ids["sep"]
        assert prompt.count(ids["sep"]) == 2
        assert example[-1] == ids["eos"]
        # the text round-trips through the tokenizer
        decoded = tok.decode(example[start:-1], skip_special_tokens=True)
        # BERT lower-cases, sentencepiece applies NFKC (full-width comma → ",")
        norm = lambda s: unicodedata.normalize("NFKC", s).replace(" ", "").lower()  # noqa: E731
        assert norm(decoded) == norm(text)


def test_special_tokens_are_single_ids(any_model_dir):
    tok, fmt = _load(any_model_dir)
    for name in fmt.special_tokens:
        assert len(tok.encode(name, add_special_tokens=False)) == 1


def test_format_record_round_trip(tmp_path):
    fmt = PromptFormat(keyword_joiner="; ")
    fmt.save(tmp_path)
    assert PromptFormat.load(tmp_path) == fmt
    assert PromptFormat.load(tmp_path / "missing") is None


def test_plain_prompt_matches_language(plain_bpe_model_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(plain_bpe_model_dir)
    fmt = PromptFormat.plain()
    assert tok.decode(encode_prompt(tok, fmt, "Storm", ["sea"])) == "Title: Storm\nKeywords: sea\n\n"
    assert tok.decode(encode_prompt(tok, fmt, "春夜", ["月", "花"])) == "标题：春夜\n关键词：月、花\n正文："


def test_keywords_are_encoded_as_a_text_writes_them(bpe_model_dir):
    """Format 2: each keyword's ids in the prompt are its ids in a text (Chinese alone, Latin
    with its leading space), so a model can learn to copy them; byte-level BPE would glue the
    joiner's space to the next keyword if the joined string were encoded (format 1)."""
    tok, fmt = _load(bpe_model_dir)
    assert fmt.version == FORMAT_VERSION == 2
    keywords = ["明月", "春风", "storm", "sea"]
    ids = encode_keywords(tok, fmt, keywords)
    joiner = tok.encode(",", add_special_tokens=False)
    expected = []
    for i, kw in enumerate(keywords):
        expected += (joiner if i else []) + tok.encode(kw if kw in ("明月", "春风") else " " + kw,
                                                       add_special_tokens=False)
    assert ids == expected
    for kw in keywords[1:]:  # the whole text's ids contain each keyword's own ids
        own = tok.encode(kw if kw in ("明月", "春风") else " " + kw, add_special_tokens=False)
        assert any(ids[j:j + len(own)] == own for j in range(len(ids)))
    assert tok.decode(ids) == "明月,春风, storm, sea"
    # format 1 (models saved before) still encodes the joined string, as they were trained
    old = PromptFormat(version=1)
    assert encode_keywords(tok, old, keywords) == tok.encode("明月, 春风, storm, sea", add_special_tokens=False)
    assert encode_keywords(tok, old, keywords) != ids


def test_a_newer_format_version_is_refused(tmp_path, bpe_model_dir):
    from textgen.loading import ModelLoadError, load

    data = json.loads((bpe_model_dir / "textgen_format.json").read_text(encoding="utf-8"))
    folder = tmp_path / "newer"
    folder.mkdir()
    for f in bpe_model_dir.iterdir():
        (folder / f.name).write_bytes(f.read_bytes())
    (folder / "textgen_format.json").write_text(json.dumps({**data, "version": FORMAT_VERSION + 1}), encoding="utf-8")
    with pytest.raises(ModelLoadError, match=r"textgen_format.json: version 3 .*newer textgen"):
        load(folder)


def test_a_malformed_format_version_is_refused_without_blaming_a_newer_textgen(tmp_path):
    for bad in (0, "2"):
        (tmp_path / "textgen_format.json").write_text(json.dumps({"style": "textgen", "version": bad}), encoding="utf-8")
        with pytest.raises(ValueError, match=r"textgen_format.json: version .* is not one this textgen reads") as err:
            PromptFormat.load(tmp_path)
        assert "newer" not in str(err.value)


def test_a_malformed_text_length_is_refused_naming_the_field(tmp_path):
    for bad in (-1, "40", 2.5, True):
        (tmp_path / "textgen_format.json").write_text(json.dumps({"style": "textgen", "version": 2,
                                                                  "text_tokens": bad}), encoding="utf-8")
        with pytest.raises(ValueError, match=r"textgen_format.json: text_tokens must be a whole number"):
            PromptFormat.load(tmp_path)
    (tmp_path / "textgen_format.json").write_text(json.dumps({"style": "textgen", "text_tokens": 51}),
                                                  encoding="utf-8")
    assert PromptFormat.load(tmp_path).text_tokens == 51
