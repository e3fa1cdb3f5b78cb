"""The prompt format, built in exactly one place for training and generation alike.

A model trained by this project sees ``[BOS] title [SEP] keywords [SEP] text [EOS]``.
Each segment is encoded on its own, so the ids of a generation prompt are, token for
token, the prefix of the ids the model was trained on.

Format version 2 encodes each keyword on its own too, as a text writes it (a Latin word with
its leading space, Chinese without), joined by the joiner's ids. Version 1 encoded the joined
string, where byte-level BPE glued the joiner's space to the next keyword: in Chinese "发展"
became " \xe5" "\x8f" "展" in the prompt but "发" "展" in the text, so the model could not
learn to copy a keyword from the prompt, the skill that makes guaranteed keywords fluent
(benchmarks/README.md). Models keep the version they were trained with (textgen_format.json).

A hub model that never saw this format gets a plain-text prompt instead
("Title: …\\nKeywords: …\\n\\n", or its Chinese equivalent); `PromptFormat.style` says which.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

from .keywords import strip_invisible
from .lang import detect_language, has_cjk

FORMAT_FILE = "textgen_format.json"
FORMAT_VERSION = 2
KEYWORD_JOINER = ", "  # version 1 encodes it whole; version 2 without its spaces
MAX_TITLE_CHARS = 200

_PLAIN_TEMPLATES = {
    "en": ("Title: {title}\nKeywords: {keywords}\n\n", ", "),
    "zh": ("标题：{title}\n关键词：{keywords}\n正文：", "、"),
}


@dataclass(frozen=True)
class PromptFormat:
    """How prompts are laid out for one model; saved beside its weights as textgen_format.json."""

    style: str = "textgen"  # "textgen" (the trained format) or "plain" (fallback for hub models)
    bos: str = "[BOS]"
    sep: str = "[SEP]"
    eos: str = "[EOS]"
    pad: str = "[PAD]"
    keyword_joiner: str = KEYWORD_JOINER
    version: int = FORMAT_VERSION
    # Tokens that three in four of the model's training texts reach (0: not recorded). Soft and
    # guaranteed keywords are placed within it (or within the budget, where shorter), where the
    # text is most likely still going (`textgen.constraints.KeywordProcessor`).
    text_tokens: int = 0

    def save(self, folder: str | Path) -> Path:
        path = Path(folder) / FORMAT_FILE
        path.write_text(json.dumps(asdict(self), ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
        return path

    @classmethod
    def load(cls, folder: str | Path) -> "PromptFormat | None":
        """The recorded format of a folder, or None when it has none (a plain hub model)."""
        path = Path(folder) / FORMAT_FILE
        if not path.is_file():
            return None
        data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        tokens = known.get("text_tokens", 0)
        if not isinstance(tokens, int) or isinstance(tokens, bool) or tokens < 0:
            raise ValueError(f"{FORMAT_FILE}: text_tokens must be a whole number ≥ 0, got {tokens!r}")
        version = known.get("version", 1)
        if not isinstance(version, int) or not 1 <= version <= FORMAT_VERSION:
            newer = "; a newer textgen saved this model" if isinstance(version, int) and version > 1 else ""
            raise ValueError(f"{FORMAT_FILE}: version {version!r} is not one this textgen reads "
                             f"(1 to {FORMAT_VERSION}){newer}")
        return cls(**known)

    @classmethod
    def plain(cls) -> "PromptFormat":
        return cls(style="plain")

    @property
    def special_tokens(self) -> list[str]:
        return [self.bos, self.sep, self.eos, self.pad]


def add_special_tokens(tokenizer, fmt: PromptFormat, model=None) -> int:
    """Add the format's special tokens where the tokenizer lacks them; resize embeddings.

    Returns the number of tokens added. The pad token becomes ``fmt.pad`` so batches pad
    with a token the model never has to predict.
    """
    if fmt.style != "textgen":
        if tokenizer.pad_token is None and tokenizer.eos_token is not None:
            tokenizer.pad_token = tokenizer.eos_token  # GPT-2 has no pad token
        return 0
    vocab = tokenizer.get_vocab()
    missing = [t for t in fmt.special_tokens if t not in vocab]
    added = tokenizer.add_special_tokens({"additional_special_tokens": missing}) if missing else 0
    # Existing tokens with these names (BERT's [SEP]/[PAD]) must also never be split.
    tokenizer.add_special_tokens({"pad_token": fmt.pad})
    if model is not None:
        emb = model.get_input_embeddings().weight.shape[0]
        if len(tokenizer) > emb:
            model.resize_token_embeddings(len(tokenizer))
        ids = token_ids(tokenizer, fmt)
        model.config.pad_token_id = ids["pad"]
        model.config.eos_token_id = ids["eos"]
        model.config.bos_token_id = ids["bos"]
        if getattr(model, "generation_config", None) is not None:
            model.generation_config.pad_token_id = ids["pad"]
            model.generation_config.eos_token_id = ids["eos"]
            model.generation_config.bos_token_id = ids["bos"]
    return added


def token_ids(tokenizer, fmt: PromptFormat) -> dict[str, int]:
    """Ids of bos/sep/eos/pad for a textgen-format tokenizer."""
    out = {}
    for name in ("bos", "sep", "eos", "pad"):
        tid = tokenizer.convert_tokens_to_ids(getattr(fmt, name))
        if tid is None or tid == tokenizer.unk_token_id:
            raise ValueError(f"tokenizer lacks the special token {getattr(fmt, name)!r}; "
                             "call textgen.prompt.add_special_tokens first")
        out[name] = tid
    return out


def check_title(title: str | None) -> str:
    """Validate and normalise a title; errors name the field."""
    if title is None:
        return ""
    if not isinstance(title, str):
        raise ValueError(f"title: must be text, got {type(title).__name__}")
    title = " ".join(strip_invisible(title).split())
    if len(title) > MAX_TITLE_CHARS:
        raise ValueError(f"title: {len(title)} characters; at most {MAX_TITLE_CHARS} are allowed")
    return title


def _encode(tokenizer, text: str) -> list[int]:
    return tokenizer.encode(text, add_special_tokens=False) if text else []


def encode_prompt(tokenizer, fmt: PromptFormat, title: str, keywords: Sequence[str]) -> list[int]:
    """Ids of the generation prompt: everything the model sees before the text."""
    if fmt.style == "plain":
        lang = detect_language(title, *keywords)
        template, joiner = _PLAIN_TEMPLATES[lang]
        return _encode(tokenizer, template.format(title=title, keywords=joiner.join(keywords)))
    ids = token_ids(tokenizer, fmt)
    return ([ids["bos"]] + _encode(tokenizer, title) + [ids["sep"]]
            + encode_keywords(tokenizer, fmt, keywords) + [ids["sep"]])


def encode_keywords(tokenizer, fmt: PromptFormat, keywords: Sequence[str]) -> list[int]:
    """Ids of the keywords segment (see the module's note on format versions)."""
    if fmt.version < 2:
        return _encode(tokenizer, fmt.keyword_joiner.join(keywords))
    joiner = _encode(tokenizer, fmt.keyword_joiner.strip())
    out: list[int] = []
    for i, keyword in enumerate(keywords):
        if i:
            out += joiner
        out += _encode(tokenizer, keyword if has_cjk(keyword) else " " + keyword)
    return out


def encode_example(tokenizer, fmt: PromptFormat, title: str, keywords: Sequence[str],
                   text: str, *, add_eos: bool = True) -> tuple[list[int], int]:
    """Ids of a whole training example and the index where the text starts.

    The prompt part is exactly `encode_prompt(...)`, so training and generation agree.
    """
    prompt = encode_prompt(tokenizer, fmt, title, keywords)
    body = _encode(tokenizer, text)
    if add_eos:
        eos = token_ids(tokenizer, fmt)["eos"] if fmt.style == "textgen" else tokenizer.eos_token_id
        body = body + [eos]
    return prompt + body, len(prompt)
