"""Keyword modes on tiny random models of three tokenizer families.

Random weights never write a keyword by themselves, so every covered keyword in guaranteed
mode is the constraint's doing: the guarantee is really tested.
"""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

from textgen import Generator
from textgen.constraints import KeywordProcessor, build_constraints, keyword_forms, tokens_needed
from textgen.coverage import Span, find_keyword, matched_as_substring
from textgen.prompt import encode_prompt
from textgen.sampling import GeneratedRepetitionPenalty

SEEDS = range(10)
# Per family: a title and keywords mixing single- and multi-token, Latin and Chinese words.
# They go in as one comma-separated string: a list item "machine learning" would be split
# on its space by parse_keywords.
CASES = {
    "bpe": ("Storm", ["sea", "lightning", "machine learning", "Harbour", "明月"]),
    "bert_zh": ("春夜", ["明月", "故乡", "storm", "花"]),
    "spm": ("Storm", ["sea", "lightning", "machine learning", "明月"]),
}


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def load() -> Callable[[Path], Generator]:
    """Loads each model folder once for the whole module (loading is the slow part)."""
    cache: dict[Path, Generator] = {}

    def get(folder: Path) -> Generator:
        if folder not in cache:
            cache[folder] = Generator.from_pretrained(str(folder), dtype="float32")
        return cache[folder]

    return get


@pytest.fixture(params=sorted(CASES))
def family(request, load) -> tuple[str, Generator]:
    return request.param, load(request.getfixturevalue(f"{request.param}_model_dir"))


def _forms(gen: Generator, keyword: str):
    backend = gen._fixed
    return keyword_forms(backend.loaded.tokenizer, keyword, end_ids=backend.end_ids,
                         decode=lambda ids: gen._decode(backend, ids))


def _processor(gen: Generator, mode: str, keywords: list[str], *, n: int = 1, prompt_len: int = 1,
               max_new_tokens: int) -> KeywordProcessor:
    """The keyword processor `Generator` would build for this request."""
    backend = gen._fixed
    proc = build_constraints(mode, tokenizer=backend.loaded.tokenizer, keywords=keywords, n=n,
                             prompt_len=prompt_len, max_new_tokens=max_new_tokens, end_ids=backend.end_ids,
                             decode=lambda ids: gen._decode(backend, ids)).processors[0]
    assert isinstance(proc, KeywordProcessor)
    return proc


def guaranteed(gen: Generator, title: str, keywords: list[str], stream: bool = False, **params):
    """Generate (or stream) in guaranteed mode; keywords joined so phrases stay whole."""
    call = gen.stream if stream else gen.generate
    return call(title, ", ".join(keywords), keyword_mode="guaranteed", **params)


def written_as_word(text: str, span: Span) -> None:
    """The span holds its keyword whole: a Chinese one exactly, a Latin one as a word (an
    inflection may follow), with no letter glued on either side."""
    piece = text[span.start:span.end]
    if matched_as_substring(span.keyword):
        assert piece == span.keyword, (text, span)
        return
    assert " ".join(piece.lower().split()).startswith(span.keyword.lower()), (text, span)
    assert find_keyword(piece, span.keyword) == Span(span.keyword, 0, len(piece)), (text, span)
    for ch in (text[span.start - 1:span.start], text[span.end:span.end + 1]):
        assert not (ch.isascii() and ch.isalnum()), (text, span)


def _assert_all_covered(result, keywords: list[str]) -> None:
    for cand in result:
        assert cand.missing == [], (cand.text, cand.missing)
        assert sorted(cand.covered) == sorted(keywords)
        for span in cand.spans:
            written_as_word(cand.text, span)


# -- guaranteed ------------------------------------------------------------------------------
def test_guaranteed_covers_every_keyword_in_every_candidate(family):
    name, gen = family
    title, keywords = CASES[name]
    assert any(_forms(gen, kw).min_len > 1 for kw in keywords), "the case needs a multi-token keyword"
    for seed in SEEDS:
        result = guaranteed(gen, title, keywords, n=4, seed=seed, max_new_tokens=30)
        assert len(result) == 4
        _assert_all_covered(result, keywords)


def test_guaranteed_is_reproducible(family):
    name, gen = family
    title, keywords = CASES[name]
    runs = [guaranteed(gen, title, keywords, n=3, seed=11, max_new_tokens=30)
            for _ in range(2)]
    assert [c.text for c in runs[0]] == [c.text for c in runs[1]]


def test_keyword_given_in_two_cases_is_one_keyword_written_in_any_case(bpe_model_dir, load):
    gen = load(bpe_model_dir)
    for seed in SEEDS:
        result = gen.generate("", "Sea, sea, Harbour", n=4, seed=seed, max_new_tokens=20,
                              keyword_mode="guaranteed")
        assert result.keywords == ["Sea", "Harbour"]
        _assert_all_covered(result, ["Sea", "Harbour"])
    # "Sea" may be written "sea": variants cover the lower-case and leading-space forms
    tokenizer = gen._fixed.loaded.tokenizer
    texts = {tokenizer.decode(v.ids) for v in _forms(gen, "Sea").variants}
    assert {"sea", " sea", "Sea", " Sea"} <= texts


def test_keyword_also_in_the_title_is_written_in_the_text(family):
    name, gen = family
    title, keywords = CASES[name]
    both = keywords[0]
    for seed in range(4):
        result = gen.generate(f"{title} {both}", both, n=4, seed=seed, max_new_tokens=12,
                              keyword_mode="guaranteed")
        _assert_all_covered(result, [both])  # text excludes the prompt, so this is the text's own


def test_chinese_keywords_on_the_chinese_vocabulary(bert_zh_model_dir, load):
    gen = load(bert_zh_model_dir)
    keywords = ["明月", "故乡", "春风", "江枫"]  # 春风 is not in the training text; 江枫 is
    for seed in SEEDS:
        result = guaranteed(gen, "", keywords, n=4, seed=seed, max_new_tokens=16)
        _assert_all_covered(result, keywords)


@pytest.mark.parametrize("slack", [0, 3])
def test_eight_keywords_in_a_budget_that_just_fits(family, slack):
    name, gen = family
    keywords = {"bert_zh": ["明月", "故乡", "花", "夜", "storm", "sea", "霜", "江枫"],
                "bpe": ["sea", "storm", "night", "moon", "river", "garden", "lightning", "明月"],
                "spm": ["sea", "storm", "night", "moon", "river", "garden", "lightning", "明月"]}[name]
    backend = gen._fixed
    need = tokens_needed(backend.loaded.tokenizer, keywords, end_ids=backend.end_ids,
                         decode=lambda ids: gen._decode(backend, ids))
    for seed in range(5):
        result = gen.generate("", ", ".join(keywords), n=4, seed=seed, max_new_tokens=need + slack,
                              keyword_mode="guaranteed")
        _assert_all_covered(result, keywords)


def test_too_small_budget_is_refused_with_the_tokens_needed(family):
    name, gen = family
    title, keywords = CASES[name]
    backend = gen._fixed
    need = tokens_needed(backend.loaded.tokenizer, keywords, end_ids=backend.end_ids,
                         decode=lambda ids: gen._decode(backend, ids))
    with pytest.raises(ValueError, match=rf"^max_new_tokens: .*at least {need} new tokens"):
        guaranteed(gen, title, keywords, max_new_tokens=need - 1)
    guaranteed(gen, title, keywords, n=1, seed=0, max_new_tokens=need)
    # other modes make no promise, so nothing is refused
    gen.generate(title, ", ".join(keywords), n=1, seed=0, max_new_tokens=need - 1, keyword_mode="soft")


def test_keyword_the_vocabulary_cannot_write_is_refused(bert_zh_model_dir, load):
    gen = load(bert_zh_model_dir)  # "xyzzy" is [UNK] in this vocabulary
    with pytest.raises(ValueError, match=r"^keywords: 'xyzzy' cannot be written"):
        gen.generate("", "xyzzy, 明月", max_new_tokens=20, keyword_mode="guaranteed")
    result = gen.generate("", "xyzzy, 明月", n=2, seed=0, max_new_tokens=20, keyword_mode="soft")
    assert all("xyzzy" in c.missing for c in result)


def test_forced_tokens_survive_the_sampling_warpers(bpe_model_dir, load):
    # transformers runs our processor before temperature/top-k/top-p: forcing must still win
    gen = load(bpe_model_dir)
    keywords = ["lightning", "machine learning"]
    for seed in range(4):
        result = guaranteed(gen, "", keywords, n=3, seed=seed, max_new_tokens=12,
                            temperature=0.05, top_k=1, top_p=0.01)
        _assert_all_covered(result, keywords)


def test_stream_final_equals_generate_in_guaranteed_mode(family):
    name, gen = family
    title, keywords = CASES[name]
    expected = guaranteed(gen, title, keywords, n=3, seed=5, max_new_tokens=30)
    events = list(guaranteed(gen, title, keywords, n=3, seed=5, max_new_tokens=30, stream=True))
    assert len(events) >= 2 and events[-1].done
    assert [c.text for c in events[-1].result] == [c.text for c in expected]
    assert [c.spans for c in events[-1].result] == [c.spans for c in expected]
    for cand in expected:  # the last streamed text of each row is its final text
        assert events[-2].texts[cand.index] == cand.text


# -- the processor itself ---------------------------------------------------------------------
def test_finished_rows_are_left_alone(bpe_model_dir, load):
    gen = load(bpe_model_dir)
    tokenizer, end = gen._fixed.loaded.tokenizer, gen._fixed.end_ids
    proc = _processor(gen, "guaranteed", ["lightning"], n=2, prompt_len=2, max_new_tokens=5)
    word = tokenizer.encode(" the", add_special_tokens=False)[0]
    vocab = len(tokenizer)
    # row 0 ended at its first token and now receives padding; row 1 is still writing
    ids = torch.tensor([[5, 6, end[0], end[0], end[0], end[0]], [5, 6, word, word, word, word]])
    scores = torch.zeros(2, vocab)
    out = proc(ids, scores.clone())
    assert torch.equal(out[0], scores[0])  # untouched: not forced, not boosted
    assert torch.isfinite(out[1]).sum() == 1  # 1 token left, the keyword's length: forced


def test_guaranteed_starts_a_keyword_at_the_moment_the_model_likes_it_best(bpe_model_dir, load):
    """Nothing is forced while the keyword's first token grows less likely step after step;
    it is forced at the step where it is clearly likelier than ever before, long before the
    budget runs out; and the keyword is then completed."""
    gen = load(bpe_model_dir)
    tokenizer = gen._fixed.loaded.tokenizer
    proc = _processor(gen, "guaranteed", ["machine learning"], max_new_tokens=60)
    variants = _forms(gen, "machine learning").variants
    firsts = sorted({v.ids[0] for v in variants})
    word = tokenizer.encode(" the", add_special_tokens=False)[0]
    ids, peak = [5], 24
    for step in range(peak + 1):
        scores = torch.zeros(1, len(tokenizer))
        scores[0, firsts] = 10.0 if step == peak else -2.0 - 0.1 * step
        out = proc(torch.tensor([ids]), scores)
        if step < peak:
            assert torch.isfinite(out[0, firsts]).all() and torch.isfinite(out).sum() > len(firsts), step
            ids.append(word)
    forced = torch.isfinite(out[0]).nonzero().flatten().tolist()
    assert len(forced) == 1 and forced[0] in firsts
    variant = min((v for v in variants if v.ids[0] == forced[0]), key=lambda v: len(v.ids))
    assert len(variant.ids) > 1, "the case needs a multi-token keyword"
    for done, tid in enumerate(variant.ids[1:], start=1):  # the rest follows, whatever the scores
        ids.append(variant.ids[done - 1])
        out = proc(torch.tensor([ids]), torch.zeros(1, len(tokenizer)))
        assert torch.isfinite(out[0]).nonzero().flatten().tolist() == [tid]


def test_soft_boost_lifts_first_tokens_and_discourages_ending(bpe_model_dir, load):
    gen = load(bpe_model_dir)
    backend = gen._fixed
    tokenizer = backend.loaded.tokenizer
    proc = _processor(gen, "soft", ["storm"], max_new_tokens=10)
    scores = torch.zeros(1, len(tokenizer))
    out = proc(torch.tensor([[5]]), scores)
    first = {v.ids[0] for v in _forms(gen, "storm").variants if not v.lead}
    assert all(out[0, t] > 0 for t in first)
    assert all(out[0, e] < 0 for e in backend.end_ids)
    assert torch.isfinite(out).all()  # soft mode forbids nothing


# -- off and soft ------------------------------------------------------------------------------
def test_off_adds_nothing_and_output_is_unchanged(bpe_model_dir, load):
    gen = load(bpe_model_dir)
    backend = gen._fixed
    loaded = backend.loaded
    assert build_constraints("off", tokenizer=loaded.tokenizer, keywords=["sea"], n=3, prompt_len=4,
                             max_new_tokens=20, end_ids=backend.end_ids).processors == []
    result = gen.generate("Storm", "sea, night", n=3, seed=5, max_new_tokens=20, keyword_mode="off")
    # the same sampling loop run straight, bypassing textgen.constraints
    from textgen.decoding import SamplingSettings, sample

    prompt = encode_prompt(loaded.tokenizer, loaded.fmt, "Storm", ["sea", "night"])
    torch.manual_seed(5)
    with torch.inference_mode():
        out, _ = sample(loaded.model, prompt, SamplingSettings(n=3, max_new_tokens=20, temperature=0.9, top_k=30,
                                                               top_p=0.9), end_ids=backend.end_ids,
                        processors=[GeneratedRepetitionPenalty(1.2, len(prompt))], path=loaded.decode_path)
    direct = [gen._decode(backend, row[len(prompt):].tolist()) for row in out]
    assert [direct[c.index] for c in result] == [c.text for c in result]


def test_soft_covers_more_than_off(any_model_dir, load):
    gen = load(any_model_dir)
    keywords = ["明月", "故乡", "storm", "sea"]
    covered = {}
    for mode in ("off", "soft"):
        covered[mode] = sum(len(c.covered) for seed in SEEDS for c in gen.generate(
            "", ", ".join(keywords), n=4, seed=seed, max_new_tokens=30, keyword_mode=mode))
    # 160 keyword slots: random weights almost never write one unaided, soft writes most
    assert covered["soft"] >= covered["off"] + 40, covered


def test_remembered_token_answers_stay_bounded(bpe_model_dir, load, monkeypatch):
    """A server sees endless new keywords: the per-tokenizer memory is emptied past its bound,
    and the guarantee holds either way."""
    import textgen.tracking as tracking
    import textgen.variants as variants

    monkeypatch.setattr(tracking, "MAX_CACHED_ANSWERS", 50)
    gen = load(bpe_model_dir)
    memory = variants.cache(gen.backend_for("Storm", ["sea"]).tokenizer)["ends_keyword"]
    memory.update({(-i, "old keyword"): False for i in range(60)})
    words = ["sea", "night"]
    result = guaranteed(gen, "Storm", words, seed=0, n=2, max_new_tokens=24)
    _assert_all_covered(result, words)
    assert not any(kw == "old keyword" for _, kw in memory)  # emptied before this request
    assert 0 < len(memory) <= 2 * 24 * len(words)  # at most one answer per (token seen, keyword)


# -- where the model's texts end ---------------------------------------------------------------
def _with_text_tokens(src: Path, dest: Path, tokens: int) -> Path:
    import dataclasses
    import shutil

    from textgen.prompt import PromptFormat

    shutil.copytree(src, dest)
    dataclasses.replace(PromptFormat.load(dest), text_tokens=tokens).save(dest)
    return dest


def _new_rows(gen: Generator, title: str, keywords: list[str], **params) -> tuple[Any, list[list[int]]]:
    import threading

    req = gen._prepare(title, keywords, None, params)
    sequences, _ = gen._sample(req, streamer=None, stop=threading.Event())
    return req, sequences[:, len(req.prompt_ids):].tolist()


def _latest_keyword_token(gen: Generator, req, row: list[int], keywords: list[str]) -> int:
    """Tokens of the shortest prefix of the row that holds every keyword."""
    for t in range(1, len(row) + 1):
        if all(find_keyword(gen._decode(req.backend, row[:t]), kw) for kw in keywords):
            return t
    raise AssertionError(f"a keyword is missing from {gen._decode(req.backend, row)!r}")


@pytest.mark.parametrize("name", sorted(CASES))
def test_keywords_are_placed_within_the_models_text_length(name, tmp_path, request):
    """A model folder that records the length its texts reach (`PromptFormat.text_tokens`) gets
    its guaranteed keywords within it, though the budget is five times longer, also when the
    budget comes from a `length`; a folder without it spreads them over the budget."""
    src = request.getfixturevalue(f"{name}_model_dir")
    keywords = {"bpe": ["sea", "storm"], "bert_zh": ["明月", "花"], "spm": ["sea", "storm"]}[name]
    with_length = Generator.from_pretrained(str(_with_text_tokens(src, tmp_path / "m", 12)), dtype="float32")
    without = Generator.from_pretrained(str(src), dtype="float32")
    assert with_length._fixed.loaded.fmt.text_tokens == 12
    latest = {"horizon": [], "budget": [], "length": []}
    for seed in range(6):
        for label, gen, extra in (("horizon", with_length, {}), ("budget", without, {}),
                                  ("length", with_length, {"length": 40})):
            req, rows = _new_rows(gen, "Storm", keywords, keyword_mode="guaranteed", n=2, seed=seed,
                                  max_new_tokens=60, **extra)
            latest[label] += [_latest_keyword_token(gen, req, row, keywords) for row in rows]
    assert max(latest["horizon"]) <= 12 and max(latest["length"]) <= 12, latest
    assert max(latest["budget"]) > 12, latest


def test_horizon_forces_the_keyword_when_only_it_fits_before_the_horizon(bpe_model_dir, load):
    """Scores that never favour the keyword: it is forced at the last step of the horizon that
    can still hold it, not at the end of the budget; with no horizon, it is not forced there."""
    gen = load(bpe_model_dir)
    tokenizer = gen._fixed.loaded.tokenizer
    backend = gen._fixed
    word = tokenizer.encode(" the", add_special_tokens=False)[0]
    need = _forms(gen, "storm").min_len
    firsts = sorted({v.ids[0] for v in _forms(gen, "storm").variants})
    for horizon, forced_at in ((10, 10 - need), (0, None)):
        proc = KeywordProcessor([_forms(gen, "storm")], tokenizer=tokenizer, decode=lambda ids: gen._decode(backend, ids),
                                guaranteed=True, n=1, prompt_len=1, max_new_tokens=50, end_ids=backend.end_ids,
                                horizon=horizon)
        ids, first_forced = [5], None
        for step in range(20):
            scores = torch.zeros(1, len(tokenizer))
            scores[0, firsts] = -2.0 - 0.1 * step  # each step a worse moment than all before
            out = proc(torch.tensor([ids]), scores)
            if torch.isfinite(out[0]).sum() == 1:
                first_forced = step
                break
            ids.append(word)
        assert first_forced == forced_at, (horizon, first_forced)
