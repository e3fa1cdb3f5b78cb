"""Length in the reader's units: characters for Chinese, words for English, turned into a
token budget with the tokenizer's measured ratio and bounded by the model's context."""
from __future__ import annotations

import pytest
from transformers import AutoTokenizer

from textgen import Generator
from textgen.length import LengthPlanner, count_units, model_language


def test_units_are_characters_or_words():
    assert count_units("春眠不觉晓，处处闻啼鸟。", "zh") == 10  # punctuation is not a character 字
    assert count_units("A long road, and the sea's edge.", "en") == 7


def test_each_tokenizer_gets_its_language_and_ratio(bpe_model_dir, bert_zh_model_dir):
    bert = AutoTokenizer.from_pretrained(bert_zh_model_dir)
    bpe = AutoTokenizer.from_pretrained(bpe_model_dir)
    assert model_language(bert) == "zh" and model_language(bpe) == "en"
    plan = LengthPlanner(bert).plan(prompt_tokens=10, context=256)
    assert plan.language == "zh" and plan.label == "characters 字"
    assert plan.tokens_for(plan.max_units) <= 256 - 10 < plan.tokens_for(plan.max_units + 2)
    # a Chinese prompt asks for characters whatever the model
    assert LengthPlanner(bpe).plan(prompt_tokens=10, context=256, texts=("春夜",)).language == "zh"


def test_generator_spends_the_length_budget_and_refuses_more_than_fits(bpe_model_dir):
    gen = Generator.from_pretrained(bpe_model_dir)
    plan = gen.length_plan("Storm", ["sea"])
    assert plan.unit == "words" and 0 < plan.max_units < 256
    result = gen.generate("Storm", ["sea"], n=3, seed=0, length=10)
    assert all(0 < c.tokens <= plan.tokens_for(10) for c in result)
    assert result.tokens == sum(c.tokens for c in result)
    with pytest.raises(ValueError, match=rf"length: at most {plan.max_units} words for this prompt"):
        gen.generate("Storm", ["sea"], length=plan.max_units + 1)
    with pytest.raises(ValueError, match="length: must be between 1 and 4000"):
        gen.generate("Storm", ["sea"], length=0)


def test_api_takes_length_and_keeps_max_new_tokens(bpe_model_dir, tmp_path):
    from finetune.web import generate
    from finetune.web.registry import ModelRegistry

    reg = ModelRegistry(tmp_path, extra=[bpe_model_dir], builtins=False, hub=False)
    h = generate.GenerateHandlers(reg, modes=["off"])
    by_length = h.generate(reg.default_id(), "Storm", ["sea"], "off", n=2, length=5, seed=1)
    by_tokens = h.generate(reg.default_id(), "Storm", ["sea"], "off", n=2, max_new_tokens=4, seed=1)
    budget = reg.get(reg.default_id()).length_plan("Storm", ["sea"]).tokens_for(5)
    assert all(c["tokens"] <= budget for c in by_length["candidates"])
    assert all(c["tokens"] <= 4 for c in by_tokens["candidates"])
