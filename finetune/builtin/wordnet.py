"""WordNet glosses: one row per word, its senses (gloss and example sentences) as text."""
from __future__ import annotations

import re

from .rows import Row

_WN_EXAMPLE = re.compile(r'"([^"]+)"')
_WN_MARKER = re.compile(r"\((?:a|p|ip)\)$")  # adjective position markers: "galore(ip)"


def _sentence(text: str) -> str:
    text = " ".join(text.split()).strip(" ;")
    if not text:
        return ""
    text = text[0].upper() + text[1:]
    return text if text[-1] in ".!?" else text + "."


def rows_from_wordnet(*texts: str) -> list[Row]:
    """Rows from WordNet 3.0 data files (data.noun, data.verb, …): one row per word, its senses
    that come with an example sentence, one sense per line ("Definition. Example.").

    Senses without an example are skipped: a bare gloss is a fragment, not prose, and there are
    enough of them to drown the Jargon File's paragraphs.
    """
    senses: dict[str, list[str]] = {}
    for text in texts:
        for line in text.split("\n"):
            if not line or line.startswith(" ") or " | " not in line:
                continue  # licence header lines start with two spaces
            fields, gloss = line.split(" | ", 1)
            parts = fields.split()
            try:
                count = int(parts[3], 16)
            except (IndexError, ValueError):
                continue
            if count < 1:
                continue
            word = _WN_MARKER.sub("", parts[4]).replace("_", " ")
            examples = _WN_EXAMPLE.findall(gloss)
            definition = gloss.split('"')[0]
            if not examples or not definition.strip(" ;"):
                continue
            sense = " ".join([_sentence(definition)] + [_sentence(e) for e in examples])
            sense = sense.replace("`", "'")  # WordNet quotes as `this'; make it 'this'
            senses.setdefault(word, []).append(sense)
    return [Row(word, [], "\n".join(lines)) for word, lines in senses.items()]
