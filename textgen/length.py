"""Length in the user's units: characters (字) for Chinese, words for English.

People ask for "a 40-character poem" or "about 100 words", not for tokens. A length is turned
into a token budget with the tokenizer's own ratio, measured once per model on a sample text
of the language; the model may end earlier (its end token) or a little later, so the text's
length is close to the request, not exact.

>>> count_units("春眠不觉晓，处处闻啼鸟。", "zh")
10
>>> count_units("The storm's eye passed over the sea.", "en")
7
"""
from __future__ import annotations

import math
import re
import threading
from dataclasses import dataclass
from typing import Any

from .lang import has_cjk

UNIT_NAMES = {"zh": ("characters", "字"), "en": ("words", "词")}
# Plain texts of our own in each language: what the ratio is measured on. Mixed lengths of
# words and everyday punctuation, so the ratio is that of ordinary prose and verse.
_SAMPLES = {
    "zh": ("秋天的傍晚，我沿着河岸慢慢地走，风从对面的山上吹下来，带着一点桂花的香气。"
           "远处的村子里亮起了灯，孩子们的笑声一阵一阵地传过来。我想起小时候住过的老房子，"
           "院子里有一棵很高的枣树，每年这个时候，母亲总会站在树下等我回家吃饭。"
           "明月照高楼，清风入我怀。故乡千里外，归雁几时来。春雨落花深，江水向东流。"),
    "en": ("In the late afternoon the fishing boats came back to the harbour, one after another, "
           "their engines loud against the quiet water. People gathered on the stone pier to watch. "
           "An old woman counted the boats under her breath, as she had done every evening for "
           "forty years, and only when the last one was tied up did she turn and walk home. "
           "The wind had changed; by morning there would be rain over the hills, and nobody "
           "would go out to sea until it cleared."),
}
_WORD = re.compile(r"[^\W_]+(?:['’][^\W_]+)*")
_PUNCT_OR_SPACE = re.compile(r"[\s\W_]", re.UNICODE)


def count_units(text: str, language: str) -> int:
    """Characters (letters, digits and CJK ideographs, no punctuation or spaces) for "zh",
    words for any other language."""
    if language == "zh":
        return sum(1 for ch in text if not _PUNCT_OR_SPACE.match(ch))
    return len(_WORD.findall(text))


@dataclass(frozen=True)
class LengthPlan:
    """What a length means for one model and prompt."""

    language: str  # "zh" | "en": which unit
    tokens_per_unit: float
    max_units: int  # the most this prompt leaves room for in the model's context

    @property
    def unit(self) -> str:
        return UNIT_NAMES[self.language][0]

    @property
    def label(self) -> str:
        """e.g. "characters 字"."""
        return " ".join(UNIT_NAMES[self.language])

    def tokens_for(self, units: int) -> int:
        """A token budget for about `units` units, plus one for the end token."""
        return max(1, math.ceil(units * self.tokens_per_unit) + 1)

    def units_for(self, tokens: int) -> int:
        return max(0, math.floor((tokens - 1) / self.tokens_per_unit))


def tokens_per_unit(tokenizer: Any, language: str) -> float:
    """Tokens per character (Chinese) or per word (English) of this tokenizer on our sample
    text (a few hundred characters: callers keep the answer, see `LengthPlanner`)."""
    sample = _SAMPLES[language]
    tokens = len(tokenizer(sample, add_special_tokens=False)["input_ids"])
    return max(tokens / max(1, count_units(sample, language)), 0.05)


def model_language(tokenizer: Any) -> str:
    """"zh" when a fifth of the vocabulary is Chinese, or when the tokenizer writes Chinese
    compactly (about a token per character or less, few unknown tokens), else "en"; for a prompt that says nothing itself (no Chinese in
    the title or keywords). An English byte-level vocabulary spends 2-4 tokens per character."""
    vocab = tokenizer.get_vocab()
    if sum(1 for token in vocab if has_cjk(token)) >= 0.2 * len(vocab):  # a per-character Chinese vocabulary
        return "zh"
    ids = tokenizer(_SAMPLES["zh"], add_special_tokens=False)["input_ids"]
    unk = getattr(tokenizer, "unk_token_id", None)
    unknown = sum(1 for i in ids if unk is not None and i == unk)
    return "zh" if tokens_per_unit(tokenizer, "zh") <= 1.5 and unknown < len(ids) / 10 else "en"


class LengthPlanner:
    """One model's ratios, measured at first use and kept (thread-safe)."""

    def __init__(self, tokenizer: Any) -> None:
        self._tokenizer = tokenizer
        self._ratios: dict[str, float] = {}
        self._language: str | None = None
        self._lock = threading.Lock()

    def plan(self, *, prompt_tokens: int, context: int, texts: tuple[str, ...] = ()) -> LengthPlan:
        """The unit (from the prompt's own language, else the model's) and how many units fit
        after a prompt of `prompt_tokens` in a context of `context` tokens."""
        with self._lock:
            if any(has_cjk(t or "") for t in texts):
                language = "zh"
            else:
                if self._language is None:
                    self._language = model_language(self._tokenizer)
                language = self._language
            if language not in self._ratios:
                self._ratios[language] = tokens_per_unit(self._tokenizer, language)
            ratio = self._ratios[language]
        room = max(0, context - prompt_tokens)
        return LengthPlan(language, ratio, max(0, math.floor((room - 1) / ratio)))
