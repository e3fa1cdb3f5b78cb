"""Turning generated token ids into clean text.

The prompt is removed by token position (the caller passes only the new ids), never by
character count; the text ends at the first end token; special tokens are dropped;
BERT-style Chinese tokenizers' spaces between CJK characters are removed, and so are
control characters other than tab and newline.
"""
from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

_CJK_CHAR = r"[\u2e80-\u9fff\uf900-\ufaff\uff00-\uffef\u3000-\u303f]"
_CJK_ONE = re.compile(_CJK_CHAR)
_SPACE_BETWEEN_CJK = re.compile(rf"(?<={_CJK_CHAR}) +(?={_CJK_CHAR})")
# A space between a CJK character and Latin letters/digits is also an artefact of
# WordPiece decoding, not something the model wrote.
_SPACE_CJK_LATIN = re.compile(rf"(?<={_CJK_CHAR}) +(?=\w)|(?<=\w) +(?={_CJK_CHAR})")
# Control characters other than tab and newline (NUL, escape, DEL, C1): byte-level models can
# sample them, browsers drop or mangle them, and no reader wants them.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def visible(text: str) -> str:
    """The text without what `decode_text` drops anywhere in it: unfinished bytes (U+FFFD) and
    control characters other than tab and newline."""
    return _CONTROL.sub("", text.replace("\ufffd", ""))


def spaces_between_cjk(tokenizer) -> bool:
    """True for tokenizers (BERT WordPiece) that decode two CJK characters with a space between."""
    vocab = tokenizer.get_vocab()
    chars = [t for t in vocab if len(t) == 1 and _CJK_ONE.match(t)][:2]
    if len(chars) < 2:
        return False
    return tokenizer.decode([vocab[c] for c in chars]) == " ".join(chars)


def cut_at_end(ids: Sequence[int], end_ids: Iterable[int]) -> list[int]:
    """Ids up to (not including) the first end token."""
    ends = set(end_ids)
    out: list[int] = []
    for tid in ids:
        if tid in ends:
            break
        out.append(int(tid))
    return out


def decode_text(tokenizer, ids: Sequence[int], *, end_ids: Iterable[int], strip_cjk_spaces: bool) -> str:
    """Decode new ids into the text a reader sees."""
    text = tokenizer.decode(cut_at_end(ids, end_ids), skip_special_tokens=True,
                            clean_up_tokenization_spaces=False)
    # Byte-level BPE can emit half of a multi-byte character (mid-stream, or from a weak model);
    # it decodes to U+FFFD, which a reader should never see.
    text = visible(text)
    if strip_cjk_spaces:
        text = _SPACE_BETWEEN_CJK.sub("", text)
        text = _SPACE_CJK_LATIN.sub("", text)
    return text.strip()
