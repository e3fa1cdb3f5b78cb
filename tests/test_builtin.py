"""The built-in models the repo ships: offline, small, in their language, on our format."""
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from textgen import Generator
from textgen.loading import BUILTIN_DIR, builtin_models, has_weights

ROOT = Path(__file__).resolve().parent.parent
NAMES = ["textgen-zh", "textgen-en"]
CJK = re.compile(r"[\u4e00-\u9fff]")
LATIN_WORD = re.compile(r"[A-Za-z]{2,}")


@pytest.fixture(scope="module")
def auto():
    return Generator.from_pretrained("auto")


def test_both_models_ship_complete_and_small():
    models = builtin_models()
    assert set(NAMES) <= set(models)
    for name in NAMES:
        folder = BUILTIN_DIR / name
        for path in folder.rglob("*"):  # a Hugging Face Space takes files under 10 MB without git-lfs
            assert path.stat().st_size <= 10 * 1024 * 1024, f"{path} is {path.stat().st_size} bytes"
        assert has_weights(folder) and not list(folder.glob("*.bin"))
        assert json.loads((folder / "textgen_format.json").read_text())["style"] == "textgen"
        card = (folder / "README.md").read_text(encoding="utf-8")
        for needle in ("python -m finetune.builtin", "Licence", "perplexity", "unigram", "novelty", "Samples"):
            assert needle in card, f"{name} card lacks {needle!r}"
    zh_card = (BUILTIN_DIR / "textgen-zh" / "README.md").read_text(encoding="utf-8")
    assert "rime-data-pinyin-simp" in zh_card and "Apache-2.0" in zh_card  # the word list it borrowed from
    assert "less the 3,000 words of textgen's keywords benchmark" in zh_card  # held out of it


@pytest.mark.parametrize("name", NAMES)
def test_loads_offline_with_plain_transformers(name):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = BUILTIN_DIR / name
    model = AutoModelForCausalLM.from_pretrained(folder, local_files_only=True, use_safetensors=True)
    tok = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    assert model.config.model_type == "gpt2" and model.config.vocab_size >= len(tok)
    for text in ("春眠不觉晓，处处闻啼鸟。", "A kludge is an ugly fix. 😀"):
        ids = tok.encode(text, add_special_tokens=False)
        assert tok.unk_token_id is None or tok.unk_token_id not in ids
        assert tok.decode(ids) == text  # byte-level: nothing is unknown, nothing is lost


def test_auto_writes_chinese_for_chinese_prompts(auto):
    result = auto.generate("春夜", "月, 花", n=3, seed=0, max_new_tokens=60)
    assert result.model == "textgen-zh" and result.prompt_style == "textgen"
    text = "".join(c.text for c in result)
    assert len(CJK.findall(text)) >= 10 and not LATIN_WORD.search(text)


def test_auto_writes_english_for_english_prompts(auto):
    result = auto.generate("kludge", "fix, ugly", n=3, seed=0, max_new_tokens=60)
    assert result.model == "textgen-en"
    text = " ".join(c.text for c in result)
    assert len(LATIN_WORD.findall(text)) >= 10 and not CJK.search(text)


def test_stays_on_the_format(auto):
    for title, kws in (("送别", "江, 柳"), ("hacker", "computer")):
        for cand in auto.generate(title, kws, n=4, seed=1, max_new_tokens=80):
            assert not re.search(r"\[(BOS|SEP|EOS|PAD)\]", cand.text)
            assert not cand.text.startswith(title)  # no title echo


def test_cli_quickstart_on_builtin_model():
    out = subprocess.run([sys.executable, "-m", "textgen", "--title", "春夜", "--keywords", "月, 花",
                          "--n", "1", "--seed", "0", "--max-new-tokens", "30", "--json"],
                         capture_output=True, text=True, cwd=ROOT, timeout=300, check=True)
    obj = json.loads(out.stdout)
    assert obj["model"] == "textgen-zh" and CJK.search(obj["candidates"][0]["text"])


@pytest.mark.parametrize("flag", ["--corpus", "--words", "--stage1", "--corpus-dir"])
def test_rebuild_refuses_a_missing_input_naming_the_flag(tmp_path, flag, capsys):
    from finetune.builtin.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["zh", "--work", str(tmp_path / "work"), flag, str(tmp_path / "gone.csv")])
    assert exc.value.code == 2
    assert f"{flag}: {tmp_path / 'gone.csv'} does not exist" in capsys.readouterr().err
    assert not (tmp_path / "work").exists()  # refused before any work
