"""Starting from scratch: tokenizer training, a tiny fresh GPT-2, and the saved folder."""
from __future__ import annotations

import csv
import json
import re
from dataclasses import asdict

import pytest

from finetune.scratch import (MAX_BYTES_ON_DISK, PRESETS, ScratchConfig, init_scratch_model, main,
                              save_scratch, train_tokenizer)
from textgen.prompt import PromptFormat, encode_example, token_ids

POEMS = ["床前明月光，疑是地上霜。举头望明月，低头思故乡。",
         "春眠不觉晓，处处闻啼鸟。夜来风雨声，花落知多少。",
         "白日依山尽，黄河入海流。欲穷千里目，更上一层楼。",
         "千山鸟飞绝，万径人踪灭。孤舟蓑笠翁，独钓寒江雪。",
         "红豆生南国，春来发几枝。愿君多采撷，此物最相思。"]
PROSE = ["The hacker wrote a small program that printed the moon.",
         "A kludge is a clever, ugly fix that works for now.",
         "Rain fell on the harbour while the old ship slept.",
         "She read the manual twice, then   ignored it.",
         "Bits fall into the bit bucket when nobody is looking."]
# A few hundred short lines: each sentence in several small variations.
ZH_LINES = [f"{p}{i}" if i % 3 else p[i % len(p):] + p[:i % len(p)] for i in range(60) for p in POEMS]
EN_LINES = [f"{p} ({i})" if i % 2 else p.lower() for i in range(60) for p in PROSE]

ROUND_TRIPS = [
    "床前明月光，疑是地上霜。",
    "龘靐齉𠀀",  # ideographs never seen in training
    "The hacker wrote a kludge.",
    "  leading spaces, double  spaces,\ttabs and\nnew lines\n\n",
    "emoji 😀🚀 and ünïcödé — “quotes”",
    "混合 text 与 English，no space between 汉字。",
    "[BOS]标题[SEP]关键词[SEP]正文[EOS]",
]


TRAIN_VOCAB = 1000  # room for every character of the sample plus its frequent words


@pytest.fixture(scope="module", params=["zh", "en"])
def trained(request, tmp_path_factory):
    language = request.param
    out = tmp_path_factory.mktemp(f"tok-{language}")
    lines = ZH_LINES if language == "zh" else EN_LINES
    tokenizer = train_tokenizer(lines, vocab_size=TRAIN_VOCAB, out_dir=out, language=language)
    return language, out, tokenizer


def test_autotokenizer_loads_with_format_special_tokens(trained):
    from transformers import AutoTokenizer

    _, out, _ = trained
    tok = AutoTokenizer.from_pretrained(out)
    fmt = PromptFormat()
    assert (tok.bos_token, tok.eos_token, tok.pad_token) == (fmt.bos, fmt.eos, fmt.pad)
    assert tok.unk_token is None  # byte-level: there is no unknown token to produce
    ids = token_ids(tok, fmt)
    assert sorted(ids.values()) == [0, 1, 2, 3]
    for special in fmt.special_tokens:
        assert tok.encode(special, add_special_tokens=False) == [tok.convert_tokens_to_ids(special)]
    assert tok.encode("[BOS]春[SEP]", add_special_tokens=False)[0] == ids["bos"]
    assert len(tok) <= TRAIN_VOCAB


@pytest.mark.parametrize("text", ROUND_TRIPS)
def test_round_trip_is_exact(trained, text):
    from transformers import AutoTokenizer

    _, out, _ = trained
    tok = AutoTokenizer.from_pretrained(out)
    ids = tok.encode(text, add_special_tokens=False)
    assert all(0 <= i < len(tok) for i in ids)
    assert tok.decode(ids) == text


def test_common_characters_and_words_are_single_tokens(trained):
    language, _, tok = trained
    if language == "zh":
        # Characters used in several poems (so in several contexts): 春 山 千 来 上 鸟 思 …
        shared = [ch for ch in set("".join(POEMS)) if sum(ch in p for p in POEMS) >= 2 and ch not in "，。"]
        assert len(shared) >= 8
        for ch in shared:
            assert len(tok.encode(ch, add_special_tokens=False)) == 1, ch
        pieces = [tok.decode([i]) for i in range(len(tok))]
        ideograph_runs = [p for p in pieces if re.fullmatch(r"[\u4e00-\u9fff]+", p)]
        assert max(map(len, ideograph_runs)) == 2  # words merge, phrases do not
    else:
        # GPT-2 style: a word after a space is one token that carries the space.
        assert tok.tokenize(" hacker") == ["Ġhacker"]
        assert len(tok.encode("The harbour", add_special_tokens=False)) == 2


def test_config_validation_names_the_field():
    with pytest.raises(ValueError, match="n_head: must divide n_embd=32"):
        ScratchConfig(n_embd=32, n_head=3)
    with pytest.raises(ValueError, match="vocab_size: "):
        ScratchConfig(vocab_size=100)
    with pytest.raises(ValueError, match="save_dtype: "):
        ScratchConfig(save_dtype="int8")
    with pytest.raises(ValueError, match="preset: must be one of"):
        ScratchConfig.preset("huge")


@pytest.mark.parametrize("name", ["tiny", "small"])
def test_param_count_formula_matches_gpt2(name):
    from transformers import GPT2Config, GPT2LMHeadModel

    cfg = ScratchConfig.preset(name)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=cfg.vocab_size, n_positions=cfg.n_positions,
                                       n_embd=cfg.n_embd, n_layer=cfg.n_layer, n_head=cfg.n_head))
    assert model.num_parameters() == cfg.n_params()


def test_small_preset_fits_the_disk_budget():
    small = ScratchConfig.preset("small")
    tokenizer_allowance = 500_000  # tokenizer.json of a 4096-token BPE is about 0.3 MB
    assert small.weights_bytes() + tokenizer_allowance <= MAX_BYTES_ON_DISK


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    out = tmp_path_factory.mktemp("scratch")
    tok = train_tokenizer(ZH_LINES + EN_LINES, vocab_size=500, out_dir=out, language="zh")
    model = init_scratch_model(tok, PRESETS["tiny"])
    save_scratch(model, tok, out)  # float16 by default, as the built-in models are stored
    return out, model, tok


def test_scratch_model_sized_to_tokenizer_with_format_ids(saved):
    _, model, tok = saved
    ids = token_ids(tok, PromptFormat())
    assert model.config.vocab_size == len(tok)
    assert (model.config.bos_token_id, model.config.eos_token_id, model.config.pad_token_id) == \
        (ids["bos"], ids["eos"], ids["pad"])
    assert model.generation_config.pad_token_id == ids["pad"]
    assert model.lm_head.weight.data_ptr() == model.transformer.wte.weight.data_ptr()  # tied


def test_saved_folder_is_a_base_model(saved):
    import torch
    from safetensors import safe_open
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out, model, _ = saved
    assert model.dtype == torch.float32  # saving a float16 copy leaves the caller's model alone
    assert {"model.safetensors", "config.json", "tokenizer.json", "tokenizer_config.json",
            "textgen_format.json"} <= {p.name for p in out.iterdir()}
    assert not list(out.glob("*.bin"))
    with safe_open(str(out / "model.safetensors"), "pt") as fh:
        assert {fh.get_tensor(k).dtype for k in fh.keys()} == {torch.float16}
        assert "lm_head.weight" not in fh.keys()  # tied weights stored once
    assert PromptFormat.load(out) == PromptFormat()

    tok = AutoTokenizer.from_pretrained(out)
    loaded = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32)
    assert tok.model_max_length == loaded.config.n_positions == PRESETS["tiny"].n_positions
    fmt = PromptFormat.load(out)
    ids, start = encode_example(tok, fmt, "春夜", ["月", "花"], "床前明月光。")
    special = token_ids(tok, fmt)
    assert ids[0] == special["bos"] and ids[-1] == special["eos"]
    assert ids[:start].count(special["sep"]) == 2
    assert tok.decode(ids[start:-1]) == "床前明月光。"
    batch = torch.tensor([ids])
    out_ = loaded(input_ids=batch, labels=batch)
    assert out_.logits.shape == (1, len(ids), len(tok))
    assert torch.isfinite(out_.loss)
    generated = loaded.generate(batch[:, :start], max_new_tokens=4, do_sample=False)
    assert generated.shape[1] <= start + 4


def test_cli_trains_and_saves(tmp_path, capsys):
    corpus = tmp_path / "corpus.csv"
    with corpus.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["title", "keywords", "text"])
        for i, line in enumerate(EN_LINES):
            writer.writerow([f"note {i}", "", line])
    out = tmp_path / "base"
    assert main([str(corpus), "--language", "en", "--preset", "tiny", "--out", str(out)]) == 0
    assert "tokenizer of" in capsys.readouterr().out
    config = json.loads((out / "config.json").read_text())
    assert config["n_layer"] == PRESETS["tiny"].n_layer
    assert config["dtype"] == PRESETS["tiny"].save_dtype
    assert main([str(tmp_path / "missing.csv"), "--language", "en", "--out", str(out)]) == 2


def test_presets_are_frozen_dataclasses():
    tiny = PRESETS["tiny"]
    with pytest.raises(AttributeError):
        tiny.n_layer = 2  # type: ignore[misc]
    assert ScratchConfig(**asdict(tiny)) == tiny
