import unicodedata

from textgen.prompt import PromptFormat, encode_example, encode_prompt, token_ids


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
