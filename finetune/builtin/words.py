"""Word lists to insert while training (`TrainConfig.insert_words`), not corpora: Rime's modern
Chinese words, and jieba's most frequent words (the keywords benchmark's pool, held out)."""
from __future__ import annotations

import re
from pathlib import Path

from textgen.lang import CJK

from .debian import Source, read_files


WORD_LISTS: dict[str, Source] = {
    "pinyin-simp": Source(
        language="zh",
        package="rime-data-pinyin-simp",
        files=("/usr/share/rime-data/pinyin_simp.dict.yaml",),
        licence="Apache-2.0 (Rime's pinyin_simp dictionary, derived from the Android Pinyin IME's)",
        description="Modern Simplified Chinese words ranked by frequency: the dictionary of the Rime "
                    "input method's pinyin_simp schema.",
    ),
}
_RIME_ENTRY = re.compile(r"^(?P<word>[^\t#][^\t]*)\t[^\t]*\t(?P<weight>\d+)\s*$")  # word, reading, weight


def words_from_rime_dict(text: str, *, min_chars: int = 2, max_chars: int = 4) -> list[str]:
    """The all-CJK words of `min_chars`-`max_chars` characters of a Rime dictionary (a YAML
    header ended by "...", then one word, reading and weight per line), most frequent first."""
    body = text.split("\n...\n", 1)[-1]
    weight: dict[str, int] = {}
    for line in body.splitlines():
        m = _RIME_ENTRY.match(line)
        word = m["word"].strip() if m else ""
        if min_chars <= len(word) <= max_chars and all(CJK.match(c) for c in word):
            weight[word] = max(weight.get(word, 0), int(m["weight"]))  # a word with several readings
    return sorted(weight, key=lambda w: (-weight[w], w))


def build_words(name: str, top: int, root: str | Path = "/") -> list[str]:
    """The `top` most frequent words of an installed word list (`WORD_LISTS`)."""
    if name not in WORD_LISTS:
        raise ValueError(f"word list: unknown {name!r}; known: {', '.join(WORD_LISTS)}")
    return words_from_rime_dict(*read_files(WORD_LISTS[name], root))[:top]


def jieba_top_words(count: int, length: int = 2) -> list[str]:
    """The `count` most frequent all-CJK words of `length` characters in jieba's dictionary:
    the keywords benchmark's Chinese pool (`benchmarks/keywords.py`), which the built-in
    model's insertion list leaves out (`finetune.builtin.recipes.Recipe.hold_out_benchmark_words`)."""
    import jieba

    ranked = []
    with (Path(jieba.__file__).parent / "dict.txt").open(encoding="utf-8") as fh:
        for line in fh:
            word, freq, *_ = line.split()
            if len(word) == length and all("\u4e00" <= ch <= "\u9fff" for ch in word):
                ranked.append((-int(freq), word))
    return [w for _, w in sorted(ranked)[:count]]
