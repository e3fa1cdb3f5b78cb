"""A Latin keyword is written only as a word ("hat" is not in "that"); Chinese as a substring.

The rule lives in `textgen.coverage`; the guarantee, the soft push, the ranking, the report
and the highlighting all go through it. Generation is checked against an independent rule
(a plain regex here), under a hostile model that glues letters onto every word it can.
"""
from __future__ import annotations

import doctest
import re

import pytest
import torch


from finetune.web import cards
from benchmarks.keywords import LETTER, as_word
import textgen.coverage as coverage_module
import textgen.generator as generator_module
from textgen import Generator
from textgen.constraints import Constraints, keyword_forms
from textgen.coverage import Written, coverage, find_keyword, written

from test_constraints import _processor


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def gens(bpe_model_dir, bert_zh_model_dir, spm_model_dir) -> dict[str, Generator]:
    return {name: Generator.from_pretrained(str(folder), dtype="float32")
            for name, folder in (("bpe", bpe_model_dir), ("bert_zh", bert_zh_model_dir), ("spm", spm_model_dir))}


# -- the rule ------------------------------------------------------------------------------------
@pytest.mark.parametrize("text, keyword", [
    ("make that one", "hat"), ("nhegomily. Feat A sp", "eat"), ("tissit or a", "sit"),
    ("Female and male", "females"), ("Female and", "male"), ("un phone", "unphone"), ("unphone. The", "phone"),
    ("the unperformes.", "perform"), ("hatch", "hat"), ("sites", "sit"), ("hates", "hat"), ("seaside", "sea"),
    ("sit2", "sit"), ("long roads ahead", "long road ahead"),
])
def test_a_keyword_inside_another_word_is_not_written(text, keyword):
    assert find_keyword(text, keyword) is None
    assert coverage(text, [keyword]) == ([], [keyword], [])


@pytest.mark.parametrize("text, keyword, found", [
    ("Hat.", "hat", "Hat"), ("two hats", "hat", "hats"), ("sitting down", "sit", "sitting"),
    ("(sit)", "sit", "sit"), ("sit, then", "sit", "sit"), ("she sits", "sit", "sits"), ("the hat's rim", "hat", "hat"),
    ("they dances", "dance", "dances"), ("dancing", "dance", "dancing"), ("danced", "dance", "danced"),
    ("boxes", "box", "boxes"), ("two cities", "city", "cities"), ("runners", "run", "runners"),
    ("a long\n  road", "long road", "long\n  road"), ("in New Orleans.", "new orleans", "New Orleans"),
    ("well-known", "known", "known"), ("a hat-trick", "hat", "hat"), ("用AI写诗", "AI", "AI"), ("C++ and", "C++", "C++"),
    ("明月光", "明月", "明月"), ("低头思故乡。", "故乡", "故乡"), ("Москва!", "москва", "Москва"),
])
def test_a_keyword_standing_as_a_word_is_written(text, keyword, found):
    span = find_keyword(text, keyword)
    assert span is not None and text[span.start:span.end] == found
    assert coverage(text, [keyword]) == ([keyword], [], [span])


def test_a_word_at_the_end_of_a_growing_text_is_only_written_at_the_end():
    assert written("a hat", "hat") == Written.AT_END  # "a hatch" would unwrite it
    assert written("a hat.", "hat") == Written.YES
    assert written("a hats", "hat") == Written.AT_END
    assert written("a hatch", "hat") == Written.NO
    assert written("the hat and a hat", "hat") == Written.YES  # the first one is closed
    assert written("明月", "明月") == Written.YES  # nothing can glue onto Chinese
    assert written("C++", "C++") == Written.YES


def test_the_rules_examples_hold():
    assert doctest.testmod(coverage_module).failed == 0


# -- the processor's view ---------------------------------------------------------------------------
def _ids(gen: Generator, text: str) -> list[int]:
    return gen._fixed.loaded.tokenizer.encode(text, add_special_tokens=False)


def _feed(proc, ids: list[int]):
    vocab = len(proc.tokenizer)
    out = None
    for i in range(1, len(ids) + 1):
        out = proc(torch.tensor([[5] + ids[:i]]), torch.zeros(1, vocab))
    return out


def test_that_leaves_hat_pending_and_hatch_unwrites_it(gens):
    gen = gens["bpe"]
    proc = _processor(gen, "guaranteed", ["hat"], max_new_tokens=40)
    _feed(proc, _ids(gen, "make that"))
    assert proc.rows[0].pending == [0] and proc.rows[0].open == []
    proc = _processor(gen, "guaranteed", ["hat"], max_new_tokens=40)
    _feed(proc, _ids(gen, "a hat"))
    assert proc.rows[0].pending == [] and proc.rows[0].open == [0]
    _feed(proc, _ids(gen, "a hatch"))
    assert proc.rows[0].pending == [0] and proc.rows[0].open == []
    proc = _processor(gen, "guaranteed", ["hat"], max_new_tokens=40)
    _feed(proc, _ids(gen, "a hat."))
    assert proc.rows[0].pending == [] and proc.rows[0].open == []


def test_a_space_after_a_keyword_ends_it_though_decoding_strips_it(gens):
    gen = gens["bpe"]
    proc = _processor(gen, "guaranteed", ["hat", "sea"], max_new_tokens=40)
    _feed(proc, _ids(gen, "a hat\n"))
    assert proc.rows[0].pending == [1] and proc.rows[0].open == []
    # a carriage return is dropped by decoding, so it ends nothing: "hat\rode" reads "hatode"
    proc = _processor(gen, "guaranteed", ["hat", "sea"], max_new_tokens=40)
    _feed(proc, _ids(gen, "a hat\r"))
    assert proc.rows[0].open == [0]
    _feed(proc, _ids(gen, "a hat\rode"))
    assert proc.rows[0].pending == [0, 1] and proc.rows[0].open == []


def test_a_forced_token_stays_the_only_choice_at_any_temperature(gens):
    """Forcing a token the model (or a rule before us) had ruled out, at the budget's end, must
    leave one finite logit that survives a low temperature, never a row of -inf."""
    from transformers.generation.logits_process import TemperatureLogitsWarper

    gen = gens["bpe"]
    proc = _processor(gen, "guaranteed", ["hat"], max_new_tokens=3)
    firsts = [v.ids[0] for v in proc.forms[0].variants]
    ids = _ids(gen, "the sea")[:2]
    scores = torch.zeros(1, len(proc.tokenizer))
    scores[0, firsts] = float("-inf")
    out = proc(torch.tensor([[5] + ids]), scores)
    out = TemperatureLogitsWarper(0.05)(None, out)
    assert torch.isfinite(out).sum() == 1 and int(torch.isfinite(out[0]).nonzero()) in firsts


def test_no_letter_may_join_a_keyword_the_budget_could_not_write_again(gens):
    gen = gens["bpe"]
    tokenizer = gen._fixed.loaded.tokenizer
    ids = _ids(gen, "the sea hat")
    proc = _processor(gen, "guaranteed", ["hat"], max_new_tokens=len(ids) + 1)
    out = _feed(proc, ids)  # "hat" open, one token left: a glued letter would lose it
    allowed = torch.isfinite(out[0]).nonzero().flatten().tolist()
    assert allowed
    for tid in allowed:
        text = tokenizer.decode(ids + [tid], skip_special_tokens=True)
        assert find_keyword(text, "hat") is not None, repr(text)
    assert len(allowed) > 10 and _ids(gen, ".")[0] in allowed
    # an inflected keyword a token later, with room to write it again: the model may glue on
    # (and the keyword would go back to pending); the budget is long enough that nothing is forced
    ids = _ids(gen, "the sea hats")
    proc = _processor(gen, "guaranteed", ["hat"], max_new_tokens=len(ids) + 60)
    out = _feed(proc, ids)
    assert proc.rows[0].open == [0] and proc.rows[0].sealed == [] and torch.isfinite(out[0]).all()


def test_a_keyword_we_wrote_is_closed_by_the_next_token(gens):
    gen = gens["bpe"]
    tokenizer = gen._fixed.loaded.tokenizer
    proc = _processor(gen, "guaranteed", ["lightning", "sea"], max_new_tokens=60)
    ids, vocab = [], len(tokenizer)
    for _ in range(60):  # the model is indifferent; the processor starts "lightning" when it likes
        out = proc(torch.tensor([[5] + ids]), torch.zeros(1, vocab))
        finite = torch.isfinite(out[0]).nonzero().flatten().tolist()
        ids.append(finite[0] if len(finite) == 1 else _ids(gen, " the")[0])
        if proc.rows[0].open:
            break
    assert proc.rows[0].open == [0] and proc.rows[0].sealed == [0], tokenizer.decode(ids)
    out = proc(torch.tensor([[5] + ids]), torch.zeros(1, vocab))
    allowed = torch.isfinite(out[0]).nonzero().flatten().tolist()
    assert len(allowed) > 10
    for tid in allowed:
        assert find_keyword(tokenizer.decode(ids + [tid], skip_special_tokens=True), "lightning"), tid


def test_forced_keywords_are_written_as_words_after_a_letter(gens):
    """Every variant the processor may force after a letter brings its own space."""
    for name, kw in (("bpe", "hat"), ("spm", "sea"), ("bpe", "long road")):
        gen = gens[name]
        backend = gen._fixed
        forms = keyword_forms(backend.loaded.tokenizer, kw, end_ids=backend.end_ids,
                              decode=lambda ids: gen._decode(backend, ids))
        assert forms.safe and all(v.spaced for v in forms.safe)
        assert forms.min_len == len(forms.safe[0].ids)
        letter = _ids(gen, "xq")
        for v in forms.safe:
            text = gen._decode(backend, letter + list(v.ids))
            assert find_keyword(text, kw) is not None, (name, text)


# -- generation under a model that glues --------------------------------------------------------------
# The independent rule, shared with the benchmark: a plain regex, not textgen.coverage.


class GlueLover:
    """A hostile model: every token that would join the word before it, and every token that
    holds a keyword inside a longer word ("that" for "hat"), gets a big boost."""

    def __init__(self, tokenizer, keywords: list[str], boost: float = 8.0) -> None:
        anchor = tokenizer.encode("a", add_special_tokens=False)
        self.boosted = []
        for t in range(len(tokenizer)):
            text = tokenizer.decode(anchor + [t], skip_special_tokens=True)
            own = tokenizer.decode([t], skip_special_tokens=True).lower()
            glue = text.startswith("a") and len(text) > 1 and text[1].isalpha()
            hidden = any(kw in own and not as_word(own, kw) for kw in keywords if kw.isascii())
            if glue or hidden:
                self.boosted.append(t)
        self.boost = boost

    def __call__(self, input_ids, scores):
        scores = scores.clone()
        scores[:, self.boosted] += self.boost
        return scores


SHORT_SETS = {
    "bpe": [["eat", "hat", "sit"], ["phone", "male", "ball", "dance"], ["sea", "run", "the", "sun", "perform"],
            ["long road", "hat", "明月"]],
    "spm": [["eat", "hat", "sit"], ["male", "ball", "dance"], ["sea", "run", "the", "sun"], ["long road", "at"]],
    "bert_zh": [["at", "in", "sea"], ["the", "rain", "moon"], ["明月", "at", "long road"]],
}


@pytest.fixture
def hostile(monkeypatch):
    """Generator's own path, with the glue-loving model's boost applied before the keyword processor."""
    real = generator_module.build_constraints

    def build(mode, *, tokenizer, keywords, **kwargs):
        constraints = real(mode, tokenizer=tokenizer, keywords=keywords, **kwargs)
        return Constraints([GlueLover(tokenizer, [k.lower() for k in keywords]), *constraints.processors])

    monkeypatch.setattr(generator_module, "build_constraints", build)


@pytest.mark.parametrize("family", sorted(SHORT_SETS))
def test_guaranteed_short_keywords_are_words_even_when_the_model_glues(family, gens, hostile):
    gen = gens[family]
    glued = 0
    for seed in range(12):
        for keywords in SHORT_SETS[family]:
            for slack in (0, 2, 12):
                need = _tokens_needed(gen, keywords)
                result = gen.generate("", ", ".join(keywords), n=3, seed=seed, max_new_tokens=need + slack,
                                      keyword_mode="guaranteed")
                for cand in result:
                    assert cand.missing == [], (cand.text, cand.missing)
                    for kw in keywords:
                        assert as_word(cand.text, kw), (family, kw, cand.text)
                    glued += any(kw.isascii() and re.search(rf"{LETTER}{re.escape(kw)}", cand.text.lower())
                                 for kw in keywords)
    assert glued, "the hostile model never glued a keyword: the case tests nothing"


def _tokens_needed(gen: Generator, keywords: list[str]) -> int:
    from textgen.constraints import tokens_needed

    backend = gen._fixed
    return tokens_needed(backend.loaded.tokenizer, keywords, end_ids=backend.end_ids,
                         decode=lambda ids: gen._decode(backend, ids))


def test_stream_equals_generate_under_the_word_rule(gens, hostile):
    gen = gens["bpe"]
    keywords = "eat, hat, sit, long road"
    expected = gen.generate("", keywords, n=3, seed=4, max_new_tokens=24, keyword_mode="guaranteed")
    events = list(gen.stream("", keywords, n=3, seed=4, max_new_tokens=24, keyword_mode="guaranteed"))
    assert [c.text for c in events[-1].result] == [c.text for c in expected]


def test_soft_mode_counts_only_words(gens, hostile):
    gen = gens["bpe"]
    for seed in range(4):
        for cand in gen.generate("", "eat, hat, sit", n=3, seed=seed, max_new_tokens=24, keyword_mode="soft"):
            for kw in cand.covered:
                assert as_word(cand.text, kw), (kw, cand.text)
            for kw in cand.missing:
                assert not as_word(cand.text, kw), (kw, cand.text)


# -- what the user sees ----------------------------------------------------------------------------
def test_the_card_highlights_and_counts_only_words():
    out = cards.render_card("#1", "make that, then two hats", ["hat", "that", "eat"])
    assert '<mark class="tg-kw" title="hat">hats</mark>' in out
    assert '<mark class="tg-kw" title="that">that</mark>' in out
    assert "2/3 keywords" in out
    assert re.search(r'tg-missing">eat<', out)


def test_ranking_and_spans_follow_the_word_rule(gens, hostile):
    gen = gens["bpe"]
    keywords = ["hat", "eat", "sea"]
    for seed in range(4):
        result = gen.generate("", ", ".join(keywords), n=4, seed=seed, max_new_tokens=20, keyword_mode="off")
        assert [len(c.missing) for c in result] == sorted(len(c.missing) for c in result)
        for cand in result:
            assert cand.covered == [kw for kw in keywords if as_word(cand.text, kw)], cand.text
            for span in cand.spans:  # the first occurrence, whole
                assert as_word(cand.text[span.start:span.end], span.keyword)
                assert not as_word(cand.text[:span.start], span.keyword)
