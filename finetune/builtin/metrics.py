"""Figures of a built model beyond its perplexity: novelty of its texts against the corpus, and
the unigram baseline it must beat."""
from __future__ import annotations

import math
from collections import Counter
from typing import Sequence


NGRAM = 8


def ngrams(units: Sequence[str], n: int = NGRAM) -> list[tuple[str, ...]]:
    return [tuple(units[i:i + n]) for i in range(len(units) - n + 1)]


def units_of(text: str, language: str) -> list[str]:
    """Characters for Chinese (no spaces), words for English."""
    return [c for c in text if not c.isspace()] if language == "zh" else text.lower().split()


def novelty(generated: Sequence[str], corpus: Sequence[str], language: str) -> tuple[float, int]:
    """(share of generated 8-grams found verbatim in the corpus, number of 8-grams looked at)."""
    seen = {g for text in corpus for g in ngrams(units_of(text, language))}
    grams = [g for text in generated for g in ngrams(units_of(text, language))]
    if not grams:
        return 0.0, 0
    return sum(g in seen for g in grams) / len(grams), len(grams)


def unigram_perplexity(tokenizer, train_texts: Sequence[str], eval_texts: Sequence[str], eos_id: int) -> float:
    """Perplexity of an add-one unigram model of the training texts' tokens (plus EOS) on the
    eval texts: the baseline a language model must beat by a wide margin."""
    def tokens(texts):
        for t in texts:
            yield from tokenizer.encode(t, add_special_tokens=False)
            yield eos_id

    counts = Counter(tokens(train_texts))
    total, vocab = sum(counts.values()), len(tokenizer)
    nll = n = 0
    for tid in tokens(eval_texts):
        nll -= math.log((counts[tid] + 1) / (total + vocab))
        n += 1
    return math.exp(nll / max(n, 1))
