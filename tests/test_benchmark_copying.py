"""benchmarks/copying.py puts keywords into a text: each must stay whole and its span exact."""
import random

import pytest

from benchmarks.copying import insert_words


@pytest.mark.parametrize("cjk, text, words", [
    (True, "春风又绿江南岸", ["经济", "发展", "电脑"]),
    (False, "the sea at night", ["storm", "lighthouse", "boat"]),
])
def test_inserted_words_stay_whole_and_their_spans_point_at_them(cjk, text, words):
    for seed in range(100):
        out, spans = insert_words(text, words, random.Random(seed), cjk)
        assert [out[a:b] for a, b in spans] == words
        assert len(out) == len(text) + sum(len(w) + (not cjk) for w in words)
        rest = list(out)
        for a, b in sorted(spans, reverse=True):  # taking the words out gives the text back
            del rest[a - (not cjk):b]
        assert "".join(rest) == text
