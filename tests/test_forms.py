"""Chinese poem forms: every candidate has the form's shape, its keywords inside the lines,
and its even lines in one rhyme group; with the built-in tokenizer and a BERT-style one."""
from __future__ import annotations

import re

import pytest

from textgen import Generator
from textgen.forms import FORMS, check_form_keywords, form_report, rhyme_group
from textgen.loading import builtin_models


@pytest.fixture(scope="module")
def zh_models(bert_zh_model_dir):
    models = {"bert": Generator.from_pretrained(bert_zh_model_dir)}
    if "textgen-zh" in builtin_models():
        models["builtin"] = Generator.from_pretrained("textgen-zh")
    return models


def test_rhyme_groups_of_known_characters():
    assert {rhyme_group(c) for c in "光霜乡望"} == {"ang"}
    assert rhyme_group("天") == rhyme_group("先") == rhyme_group("间") == "an"
    assert rhyme_group("花") == rhyme_group("家") == "a"
    assert rhyme_group("月") != rhyme_group("光")


@pytest.mark.parametrize("form", sorted(FORMS))
def test_every_form_has_its_shape_keywords_and_rhyme(zh_models, form):
    for kind, gen in zh_models.items():
        for seed in range(4):
            keywords = ["月", "春风"] if kind == "bert" else ["明月", "故乡", "雁"]
            result = gen.generate("春夜", keywords, n=3, seed=seed, keyword_mode="guaranteed", form=form)
            for cand in result:
                report = cand.form
                assert report["shape_ok"], (kind, seed, cand.text)
                assert cand.missing == [], (kind, seed, cand.text)
                assert report["rhymes"], (kind, seed, cand.text, report)
                flat = cand.text.replace("？", "，").replace("！", "，").replace("。", "，")
                lines = [ln.lstrip("\n") for ln in flat.split("，") if ln.strip("\n")]
                assert all(len(ln) == FORMS[form].chars for ln in lines)
                assert all(any(kw in ln for ln in lines) for kw in keywords)  # never across a break


def test_a_two_character_keyword_never_splits_at_a_line_end(zh_models):
    gen = zh_models.get("builtin", zh_models["bert"])
    for seed in range(12):
        for cand in gen.generate("秋", ["故乡", "明月", "归雁", "江南"], n=3, seed=seed, keyword_mode="guaranteed",
                                 form="wujue"):
            assert cand.form["shape_ok"] and cand.missing == [], cand.text


def test_without_rhyme_or_guarantee_the_shape_still_holds(zh_models):
    gen = zh_models["bert"]
    for cand in gen.generate("春夜", ["月"], n=3, seed=0, form="qijue", rhyme=False):
        assert cand.form["shape_ok"], cand.text


def test_keywords_that_do_not_fit_are_refused_up_front(zh_models):
    gen = zh_models["bert"]
    with pytest.raises(ValueError, match="keywords: '春江花月夜' has 5 characters; in a 五言绝句 a keyword may have at most 4"):
        gen.generate("春", ["春江花月夜"], keyword_mode="guaranteed", form="wujue")
    with pytest.raises(ValueError, match="do not fit a 五言绝句"):
        gen.generate("春", ["春风", "明月", "故乡", "秋雨", "江南", "夜雨", "山水", "花开", "归雁"],
                     keyword_mode="guaranteed", form="wujue")
    with pytest.raises(ValueError, match="is not all Chinese characters"):
        gen.generate("春", ["moon"], keyword_mode="guaranteed", form="wujue")
    with pytest.raises(ValueError, match="form: must be one of"):
        gen.generate("春", ["月"], form="sonnet")
    check_form_keywords(FORMS["qilv"], ["明月", "故乡"])


def test_streaming_equals_the_result(zh_models):
    gen = zh_models["bert"]
    *_, last = gen.stream("春夜", ["月"], n=2, seed=5, keyword_mode="guaranteed", form="wulv")
    again = gen.generate("春夜", ["月"], n=2, seed=5, keyword_mode="guaranteed", form="wulv")
    assert [c.text for c in last.result] == [c.text for c in again]


def test_form_report_of_real_poems():
    ok = form_report(FORMS["wujue"], "床前明月光，疑是地上霜。举头望明月，低头思故乡。")
    assert ok.shape_ok and ok.rhymes and ok.rhyme_group == "ang" and ok.rhyming_lines == (2, 4)
    bad = form_report(FORMS["wujue"], "床前明月光，疑是地上霜。举头望明月。")
    assert not bad.shape_ok


def test_the_api_writes_a_poem_form_and_reports_it(bert_zh_model_dir, tmp_path):
    from finetune.web import generate
    from finetune.web.registry import ModelRegistry

    reg = ModelRegistry(tmp_path, extra=[bert_zh_model_dir], builtins=False, hub=False)
    h = generate.GenerateHandlers(reg)
    out = h.generate(reg.default_id(), "春夜", ["月"], "guaranteed", n=2, seed=0, form="qijue")
    for cand in out["candidates"]:
        assert cand["form"]["shape_ok"] and cand["form"]["form"] == "qijue" and cand["missing"] == []
    free = h.generate(reg.default_id(), "春夜", ["月"], "guaranteed", n=1, seed=0, max_new_tokens=12)
    assert "form" not in free["candidates"][0]


def test_a_line_break_comes_only_after_a_couplet(zh_models):
    """A model trained on poems breaks the line after each couplet; the form lets it, and only there."""
    gen = zh_models.get("builtin")
    if gen is None:
        pytest.skip("no built-in Chinese model")
    breaks = 0
    for seed in range(6):
        for cand in gen.generate("秋思", ["雁"], n=3, seed=seed, keyword_mode="guaranteed", form="wulv"):
            assert cand.form["shape_ok"], cand.text
            for i, ch in enumerate(cand.text):
                if ch == "\n":
                    breaks += 1
                    marks = len(re.findall("[，。？！]", cand.text[:i]))
                    assert cand.text[i - 1] in "。？！" and marks % 2 == 0, cand.text  # after a couplet's second line
    assert breaks > 0
