"""Start a model from scratch: a tokenizer trained on our corpus and a fresh, small GPT-2.

    python -m finetune.scratch data/zh.csv --language zh --preset small --out runs/zh-base

writes a folder that `AutoTokenizer` / `AutoModelForCausalLM.from_pretrained` load and that
fine-tuning takes as its base model:

>>> from .scratch import ScratchConfig, train_tokenizer, init_scratch_model, save_scratch
>>> tok = train_tokenizer(texts, vocab_size=4096, out_dir="runs/zh-base", language="zh")  # doctest: +SKIP
>>> model = init_scratch_model(tok, ScratchConfig.preset("small"))                       # doctest: +SKIP
>>> save_scratch(model, tok, "runs/zh-base")                                              # doctest: +SKIP

The tokenizer is byte-level BPE for both languages: every string, emoji and rare ideograph
included, is some sequence of the 256 byte tokens, so nothing is ever unknown, and decoding
gives back the input exactly (no spaces inserted between Chinese characters, English spacing
kept). Common characters and words become single tokens through merges.
"""
from __future__ import annotations

import argparse
import copy
import csv
import sys
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from textgen.prompt import PromptFormat, token_ids

LANGUAGES = ("zh", "en")
# Chinese merges stop at two-character words: longer ones are mostly memorised phrases of the
# poems, and every token they take is one fewer common character that is a single token.
# (tokenizers' bound is exclusive: 7 allows 6 bytes, two 3-byte ideographs.) Measured on the
# fortunes-zh corpus at 4096 tokens: 2.1k characters as single tokens covering 95% of the text,
# 0.86k two-character words; with a bound of 12, 2.1k, 94.9%, and 3-character phrases.
MAX_TOKEN_BYTES_ZH = 7
MAX_BYTES_ON_DISK = 10_000_000  # the built-in models' budget, tokenizer included


@dataclass(frozen=True)
class ScratchConfig:
    """Size of a GPT-2 trained from scratch (see `PRESETS`)."""

    n_layer: int = 4  # transformer blocks
    n_embd: int = 256  # width of the residual stream
    n_head: int = 4  # attention heads; n_embd must be a multiple
    n_positions: int = 512  # longest sequence, prompt and text together, in tokens
    vocab_size: int = 4096  # tokenizer size to train, special tokens included
    dropout: float = 0.1  # residual, embedding and attention dropout while training
    save_dtype: str = "float16"  # dtype of the saved weights: float16 halves the file
    max_token_bytes: int | None = None  # longest merge in UTF-8 bytes (None: per language, see train_tokenizer)

    def __post_init__(self) -> None:
        for name in ("n_layer", "n_embd", "n_head", "n_positions", "vocab_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}: must be at least 1, got {getattr(self, name)}")
        if self.n_embd % self.n_head:
            raise ValueError(f"n_head: must divide n_embd={self.n_embd}, got {self.n_head}")
        if self.vocab_size < 256 + len(PromptFormat().special_tokens):
            raise ValueError(f"vocab_size: a byte-level vocabulary needs at least 260 tokens, "
                             f"got {self.vocab_size}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout: must be in [0, 1), got {self.dropout}")
        if self.save_dtype not in ("float32", "float16", "bfloat16"):
            raise ValueError(f"save_dtype: must be float32, float16 or bfloat16, got {self.save_dtype!r}")

    @classmethod
    def preset(cls, name: str) -> "ScratchConfig":
        if name not in PRESETS:
            raise ValueError(f"preset: must be one of {', '.join(PRESETS)}, got {name!r}")
        return PRESETS[name]

    def n_params(self, vocab_size: int | None = None) -> int:
        """Parameters of the GPT-2 this config builds (input and output embeddings tied)."""
        v, d, n = vocab_size or self.vocab_size, self.n_embd, self.n_layer
        per_block = 12 * d * d + 13 * d  # attention 4d² + 4d, MLP 8d² + 5d, two layer norms 4d
        return v * d + self.n_positions * d + n * per_block + 2 * d  # + final layer norm

    def weights_bytes(self, vocab_size: int | None = None) -> int:
        """Size of model.safetensors, give or take its small JSON header."""
        return self.n_params(vocab_size) * (4 if self.save_dtype == "float32" else 2)


PRESETS: dict[str, ScratchConfig] = {
    # For tests: builds and saves in milliseconds.
    "tiny": ScratchConfig(n_layer=1, n_embd=32, n_head=2, n_positions=128, vocab_size=500,
                          dropout=0.0, save_dtype="float32"),
    # For the built-in models: 4.3M parameters, 8.7 MB as float16, plus a ~0.3 MB tokenizer.
    "small": ScratchConfig(n_layer=4, n_embd=256, n_head=4, n_positions=512, vocab_size=4096),
    # For built-ins pretrained on large corpora with packed blocks: 6.9M parameters (13.8 MB as
    # float16, saved in shards under 10 MB); blocks of 256 tokens hold a poem or a section
    "base": ScratchConfig(n_layer=6, n_embd=256, n_head=4, n_positions=256, vocab_size=8192, dropout=0.0),
    # The same for poems: one token per Chinese character (merges of at most 3 bytes), so a
    # line of 5 or 7 characters is always 5 or 7 tokens. With merges of two characters the
    # "base" model had learnt no line lengths after 2.7M tokens of regular poems (0 of 12
    # samples regular), as the fortunes-zh model never had.
    "poems": ScratchConfig(n_layer=6, n_embd=256, n_head=4, n_positions=256, vocab_size=8192, dropout=0.0,
                           max_token_bytes=3),
}


def _byte_level_tokenizer(language: str, vocab_size: int, specials: list[str], max_token_bytes: int | None = None):
    """An untrained byte-level BPE tokenizer and its trainer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.BPE())
    # GPT-2's split: runs of letters with their leading space (" world"), digits, punctuation.
    # Ideographs are letters, so a Chinese clause is one run and merges can join characters
    # into words. add_prefix_space=False keeps "title" and " title" distinct, as GPT-2 does,
    # and makes decoding exact.
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),  # all 256 bytes: nothing unknown
        show_progress=False,
        # tokenizers' bound is exclusive
        max_token_length=(max_token_bytes + 1 if max_token_bytes else MAX_TOKEN_BYTES_ZH if language == "zh" else None),
    )
    return tok, trainer


def train_tokenizer(texts: Iterable[str], vocab_size: int, out_dir: str | Path, language: str, *,
                    max_token_bytes: int | None = None):
    """Train a byte-level BPE tokenizer on `texts` and save it to `out_dir`.

    texts: everything the model will read (titles, keywords and texts of the corpus).
    language: "zh" caps merges at two ideographs, so the vocabulary goes to common characters
    and two-character words rather than to memorised phrases; "en" is GPT-2's setup.
    max_token_bytes: a longest merge of the caller's (3: one token per Chinese character).
    The format's special tokens ([BOS] [SEP] [EOS] [PAD]) take ids 0-3 and are never split.
    Returns the PreTrainedTokenizerFast that `AutoTokenizer.from_pretrained(out_dir)` loads.
    """
    from transformers import PreTrainedTokenizerFast

    if language not in LANGUAGES:
        raise ValueError(f"language: must be one of {', '.join(LANGUAGES)}, got {language!r}")
    fmt = PromptFormat()
    tok, trainer = _byte_level_tokenizer(language, vocab_size, fmt.special_tokens, max_token_bytes)
    tok.train_from_iterator(_non_empty(texts), trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=fmt.bos,
        eos_token=fmt.eos,
        pad_token=fmt.pad,
        additional_special_tokens=[fmt.sep],
        # The default cleanup turns "word ." into "word." on decode: it would break round trips.
        clean_up_tokenization_spaces=False,
    )
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    fast.save_pretrained(out)
    return fast


def _non_empty(texts: Iterable[str]) -> Iterator[str]:
    for text in texts:
        if text:
            yield text


def gpt2_config(config: ScratchConfig, vocab_size: int, ids: dict[str, int] | None = None):
    """The GPT2Config of a model of `config`'s size (dropout included), embeddings tied; ids:
    its [BOS]/[EOS]/[PAD] token ids (0 where not given)."""
    from transformers import GPT2Config

    ids = ids or {}
    return GPT2Config(vocab_size=vocab_size, n_positions=config.n_positions, n_embd=config.n_embd,
                      n_layer=config.n_layer, n_head=config.n_head, resid_pdrop=config.dropout,
                      embd_pdrop=config.dropout, attn_pdrop=config.dropout, bos_token_id=ids.get("bos", 0),
                      eos_token_id=ids.get("eos", 0), pad_token_id=ids.get("pad", 0), tie_word_embeddings=True)


def init_scratch_model(tokenizer, config: ScratchConfig, *, seed: int | None = 0):
    """A freshly initialised GPT2LMHeadModel sized to `tokenizer`, embeddings tied.

    bos/eos/pad ids are the format's [BOS]/[EOS]/[PAD], in the config and generation config.
    seed: makes the initial weights reproducible (None: leave torch's RNG alone).
    """
    import torch
    from transformers import GPT2LMHeadModel

    ids = token_ids(tokenizer, PromptFormat())
    gpt2 = gpt2_config(config, len(tokenizer), ids)
    if seed is not None:
        torch.manual_seed(seed)
    model = GPT2LMHeadModel(gpt2)
    for name in ("bos", "eos", "pad"):
        setattr(model.generation_config, f"{name}_token_id", ids[name])
    return model


def save_scratch(model, tokenizer, out_dir: str | Path, *, dtype: str = "float16") -> Path:
    """Write model.safetensors (as `dtype`), config, tokenizer and textgen_format.json.

    The caller's model is left in its own dtype; a float16 copy is what goes to disk, and
    loaders choose their compute dtype when they load it. The tokenizer's model_max_length
    becomes the model's n_positions, so truncation in pipelines matches the model.
    """
    import torch

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stored = copy.deepcopy(model).to(getattr(torch, dtype))
    stored.save_pretrained(out, safe_serialization=True)
    tokenizer.model_max_length = model.config.n_positions
    tokenizer.save_pretrained(out)
    PromptFormat().save(out)
    return out


def folder_bytes(folder: str | Path) -> int:
    """Bytes on disk of the files in a folder (not recursive)."""
    return sum(p.stat().st_size for p in Path(folder).iterdir() if p.is_file())


def read_csv_texts(path: str | Path) -> list[str]:
    """Titles, keywords and texts of a title,keywords,text CSV, for tokenizer training."""
    with Path(path).open(encoding="utf-8", newline="") as fh:
        return [row.get(col) or "" for row in csv.DictReader(fh) for col in ("title", "keywords", "text")]


def main(argv: Sequence[str] | None = None) -> int:
    """Train a tokenizer on a corpus CSV and save an untrained model of a preset's size."""
    parser = argparse.ArgumentParser(prog="python -m finetune.scratch", description=main.__doc__)
    parser.add_argument("csv", type=Path, help="corpus CSV with title,keywords,text")
    parser.add_argument("--language", required=True, choices=LANGUAGES)
    parser.add_argument("--preset", default="small", choices=sorted(PRESETS))
    parser.add_argument("--vocab-size", type=int, default=None, help="override the preset's vocab_size")
    parser.add_argument("--out", required=True, type=Path, help="folder to write")
    args = parser.parse_args(argv)
    try:
        config = ScratchConfig.preset(args.preset)
        if args.vocab_size:
            config = ScratchConfig(**{**asdict(config), "vocab_size": args.vocab_size})
        texts = read_csv_texts(args.csv)
    except (OSError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    start = time.perf_counter()
    tokenizer = train_tokenizer(texts, config.vocab_size, args.out, args.language)
    seconds = time.perf_counter() - start
    model = init_scratch_model(tokenizer, config)
    save_scratch(model, tokenizer, args.out, dtype=config.save_dtype)
    print(f"{args.out}: tokenizer of {len(tokenizer)} tokens trained in {seconds:.1f}s on "
          f"{sum(map(len, texts))} characters; model {model.num_parameters():,} parameters; "
          f"{folder_bytes(args.out) / 1e6:.2f} MB on disk")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
