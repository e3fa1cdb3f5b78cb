"""File names for models people name in any script: "模型B" → "moxing-b".

The label is what the UI, the card and the results show; a file or folder gets an ASCII name
made from it, Chinese through its pinyin (pypinyin, the library Chinese input tools use), so a
download keeps a name the user recognises and that every file system and zip tool accepts.

>>> file_stem("模型B")
'moxing-b'
>>> file_stem("Storm poems · 我的诗")
'storm-poems-wodeshi'
>>> file_stem("storms · fine-tuned 微调")
'storms-fine-tuned-weitiao'
>>> file_stem("🙂")
'textgen-model'
"""
from __future__ import annotations

import re
import unicodedata

_HAN = re.compile(r"([\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]+)")
MAX_STEM = 48


# Words of this app that pypinyin's phrase table reads otherwise (调 as diao, "to transfer").
_PHRASES = {"微调": [["wēi"], ["tiáo"]]}
_loaded = False


def file_stem(label: str, default: str = "textgen-model") -> str:
    """Lower-case ASCII letters, digits and single hyphens, at most 48 characters."""
    global _loaded
    from pypinyin import lazy_pinyin, load_phrases_dict

    if not _loaded:
        load_phrases_dict(_PHRASES)
        _loaded = True

    parts = []
    for i, run in enumerate(_HAN.split(label)):
        if i % 2:  # a run of Chinese characters: its syllables as one word ("moxing")
            parts.append("".join(lazy_pinyin(run)))
        else:  # accents dropped ("Café" → "cafe"), anything else becomes a separator
            parts.append(unicodedata.normalize("NFKD", run).encode("ascii", "ignore").decode())
    stem = re.sub(r"[^a-z0-9]+", "-", " ".join(parts).lower()).strip("-")
    return stem[:MAX_STEM].rstrip("-") or default
