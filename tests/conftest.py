"""Shared fixtures: tiny but real GPT-2 models with real tokenizers of three families,
saved to temporary folders (no network, no GPU)."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

pytest_plugins = ["browser_support"]  # browser, app_registry

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

SAMPLE_EN = [
    "The storm rolled over the sea at night and the sailors watched the lightning.",
    "Machine learning turns data into models that predict what comes next.",
    "A quiet garden in spring, with flowers opening under a pale moon.",
    "The old library kept its books in rooms that smelled of dust and rain.",
    "Storm clouds gathered; the harbour lights flickered in the wind.",
    "She wrote a letter about the mountains, the river and the long road home.",
] * 5
SAMPLE_ZH = [
    "春夜喜雨，好雨知时节，当春乃发生。随风潜入夜，润物细无声。",
    "床前明月光，疑是地上霜。举头望明月，低头思故乡。",
    "月落乌啼霜满天，江枫渔火对愁眠。姑苏城外寒山寺，夜半钟声到客船。",
    "春眠不觉晓，处处闻啼鸟。夜来风雨声，花落知多少。",
    "海上生明月，天涯共此时。情人怨遥夜，竟夕起相思。",
] * 5

TINY = dict(n_layer=1, n_embd=32, n_head=2, n_positions=256, bos_token_id=0, eos_token_id=0)


def _save_model(tokenizer, folder: Path, fmt, **config_overrides) -> Path:
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    from textgen.prompt import add_special_tokens

    torch.manual_seed(0)
    if fmt is not None:
        add_special_tokens(tokenizer, fmt)
    config = GPT2Config(vocab_size=len(tokenizer), **{**TINY, **config_overrides})
    model = GPT2LMHeadModel(config)
    if fmt is not None:
        add_special_tokens(tokenizer, fmt, model)
        fmt.save(folder)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def make_bpe_tokenizer():
    """Byte-level BPE as GPT-2 uses, trained on a few sentences."""
    from tokenizers import ByteLevelBPETokenizer
    from transformers import PreTrainedTokenizerFast

    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(SAMPLE_EN + SAMPLE_ZH, vocab_size=600, min_frequency=1)
    return PreTrainedTokenizerFast(tokenizer_object=bpe._tokenizer, eos_token="<|endoftext|>")


def make_bert_zh_tokenizer(folder: Path):
    """BERT-style Chinese vocabulary: one token per character, as uer/gpt2-chinese uses."""
    from transformers import BertTokenizerFast

    chars = sorted({ch for line in SAMPLE_ZH for ch in line})
    ascii_ = [chr(c) for c in range(33, 127)]
    words = [w.lower() for line in SAMPLE_EN for w in line.replace(".", " ").replace(",", " ").split()]
    words += ["text", "title", "only", "storm", "sea", "night", "moon"]
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + chars + ascii_ + sorted(set(words) - set(ascii_))
    folder.mkdir(parents=True, exist_ok=True)
    vocab = list(dict.fromkeys(vocab))
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    return BertTokenizerFast(vocab={tok: i for i, tok in enumerate(vocab)}, tokenize_chinese_chars=True)


def make_spm_tokenizer():
    """SentencePiece-style BPE (▁ word-start marker) with byte fallback."""
    from tokenizers import SentencePieceBPETokenizer
    from transformers import PreTrainedTokenizerFast

    spm = SentencePieceBPETokenizer()
    spm.train_from_iterator(SAMPLE_EN + SAMPLE_ZH, vocab_size=500, min_frequency=1,
                            special_tokens=["<unk>"])
    return PreTrainedTokenizerFast(tokenizer_object=spm._tokenizer, unk_token="<unk>", eos_token="<unk>")


@pytest.fixture(scope="session")
def bpe_model_dir(tmp_path_factory) -> Path:
    from textgen.prompt import PromptFormat

    return _save_model(make_bpe_tokenizer(), tmp_path_factory.mktemp("bpe"), PromptFormat())


@pytest.fixture(scope="session")
def bert_zh_model_dir(tmp_path_factory) -> Path:
    from textgen.prompt import PromptFormat

    folder = tmp_path_factory.mktemp("bertzh")
    return _save_model(make_bert_zh_tokenizer(folder), folder, PromptFormat())


@pytest.fixture(scope="session")
def spm_model_dir(tmp_path_factory) -> Path:
    from textgen.prompt import PromptFormat

    return _save_model(make_spm_tokenizer(), tmp_path_factory.mktemp("spm"), PromptFormat())


@pytest.fixture(scope="session")
def plain_bpe_model_dir(tmp_path_factory) -> Path:
    """A model that never saw our format, like the hub's `gpt2`."""
    return _save_model(make_bpe_tokenizer(), tmp_path_factory.mktemp("plainbpe"), None)


@pytest.fixture(scope="session")
def uer_like_model_dir(tmp_path_factory) -> Path:
    """Like uer/gpt2-chinese-cluecorpussmall: BERT vocab, bos/eos 50256 outside the vocab."""
    folder = tmp_path_factory.mktemp("uerlike")
    _save_model(make_bert_zh_tokenizer(folder), folder, None, bos_token_id=50256, eos_token_id=50256)
    cfg = json.loads((folder / "config.json").read_text())
    assert cfg["eos_token_id"] == 50256
    return folder


@pytest.fixture(scope="session", params=["bpe", "bert_zh", "spm"])
def any_model_dir(request) -> Path:
    return request.getfixturevalue(f"{request.param}_model_dir")


@pytest.fixture()
def registry(tmp_path, bpe_model_dir):
    """A registry offering the tiny BPE model only (no built-ins, no hub), in a fresh data folder;
    test modules that need another define their own."""
    from finetune.web.registry import ModelRegistry

    return ModelRegistry(tmp_path / "home", extra=[bpe_model_dir], builtins=False, hub=False)


@pytest.fixture(scope="module")
def one_thread():
    """Tiny models gain nothing from a second thread, and on the shared 2-core machines
    OpenMP's spinning threads make every op wait on a busy core: one thread is much faster.
    Modules ask for it with ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
