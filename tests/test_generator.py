import re

import pytest

from textgen import Generator
from textgen.prompt import PromptFormat


@pytest.fixture(scope="module")
def bpe_gen(bpe_model_dir):
    return Generator.from_pretrained(str(bpe_model_dir), dtype="float32")


@pytest.fixture(scope="module")
def bert_gen(bert_zh_model_dir):
    return Generator.from_pretrained(str(bert_zh_model_dir), dtype="float32")


def test_same_seed_same_output_and_different_seeds_differ(bpe_gen):
    a = bpe_gen.generate("Storm", "sea, night", n=3, seed=7, max_new_tokens=24)
    b = bpe_gen.generate("Storm", "sea, night", n=3, seed=7, max_new_tokens=24)
    c = bpe_gen.generate("Storm", "sea, night", n=3, seed=8, max_new_tokens=24)
    assert [x.text for x in a] == [x.text for x in b]
    assert [x.text for x in a] != [x.text for x in c]
    assert a.seed == 7 and len(a) == 3


def test_random_seed_is_reported_and_reproducible(bpe_gen):
    first = bpe_gen.generate("Storm", "sea", n=2, max_new_tokens=16)
    again = bpe_gen.generate("Storm", "sea", n=2, max_new_tokens=16, seed=first.seed)
    assert [x.text for x in first] == [x.text for x in again]


def test_n_candidates_sampled_in_one_batched_call(bpe_gen, monkeypatch):
    import textgen.decoding as decoding

    made, steps = [], []
    real = decoding.stepper_for

    def spy(model, n, max_len, path=None):
        stepper = real(model, n, max_len, path)
        made.append(n)
        step = stepper.step
        stepper.step = lambda tokens: (steps.append(tuple(tokens.shape)), step(tokens))[1]
        return stepper

    monkeypatch.setattr(decoding, "stepper_for", spy)
    result = bpe_gen.generate("Storm", "sea", n=4, seed=1, max_new_tokens=8)
    # one stepper for all four rows, one forward per step for all of them
    assert len(result) == 4 and made == [4]
    assert len(steps) <= 7 and set(steps) == {(4,)}


def test_stream_final_equals_generate(any_model_dir):
    gen = Generator.from_pretrained(str(any_model_dir), dtype="float32")
    expected = gen.generate("春夜 storm", "月, sea", n=3, seed=3, max_new_tokens=20)
    events = list(gen.stream("春夜 storm", "月, sea", n=3, seed=3, max_new_tokens=20))
    assert events[-1].done and not any(e.done for e in events[:-1])
    final = events[-1].result
    assert [c.text for c in final] == [c.text for c in expected]
    assert len(events) >= 2  # text grew over several events
    assert all(len(e.texts) == 3 for e in events)


def test_a_reader_that_falls_behind_gets_one_event_for_the_steps_it_missed(bpe_gen):
    import time

    expected = bpe_gen.generate("Storm", "sea", n=2, seed=5, max_new_tokens=40)
    events = []
    for event in bpe_gen.stream("Storm", "sea", n=2, seed=5, max_new_tokens=40):
        events.append(event)
        if len(events) == 1:
            time.sleep(1.0)  # the sampling thread writes on meanwhile
    streamed, final = events[:-1], events[-1]
    steps = [e.steps for e in streamed]
    assert steps == sorted(set(steps)) and steps[0] >= 1  # every event says how far it is, none twice
    assert steps[-1] == max(c.tokens for c in expected)  # the last streamed event holds every step
    assert len(streamed) < steps[-1]  # the missed steps came as one event, not one each
    assert final.done and [c.text for c in final.result] == [c.text for c in expected]
    assert [streamed[-1].texts[c.index] for c in final.result] == [c.text for c in final.result]


def test_stream_events_are_decoded_when_read_and_need_texts_or_a_decoder():
    from textgen.results import StreamEvent

    calls = []
    event = StreamEvent(steps=3, decode=lambda: calls.append(1) or ["a", "b"])
    assert calls == [] and event.steps == 3
    assert event.texts == ["a", "b"] and event.texts == ["a", "b"] and calls == [1]  # once
    with pytest.raises(TypeError, match="texts or decode"):
        StreamEvent()
    with pytest.raises(TypeError, match="texts or decode"):
        StreamEvent(["a"], decode=lambda: ["a"])


def test_closing_a_stream_stops_generation(bpe_gen):
    import threading

    stream = bpe_gen.stream("Storm", "sea", n=2, seed=1, max_new_tokens=200)
    next(stream)
    stream.close()
    assert not [t for t in threading.enumerate() if t.name == "textgen-generate"]


def test_output_has_no_prompt_and_no_special_tokens(any_model_dir):
    gen = Generator.from_pretrained(str(any_model_dir), dtype="float32")
    fmt = PromptFormat.load(any_model_dir)
    for seed in range(3):
        for cand in gen.generate("Unique title", "sea", n=4, seed=seed, max_new_tokens=30):
            for token in fmt.special_tokens:
                assert token not in cand.text
            assert "\ufffd" not in cand.text  # no half characters from byte-level tokens
            assert not cand.text.startswith("Unique title")


def test_control_characters_are_removed_but_lines_and_tabs_kept(bpe_model_dir):
    from transformers import AutoTokenizer

    from textgen.cleanup import decode_text

    tok = AutoTokenizer.from_pretrained(bpe_model_dir)
    ids = tok.encode("a\x00b\x1bc\x7fd\x85e\nf\tg", add_special_tokens=False)
    assert tok.decode(ids) == "a\x00b\x1bc\x7fd\x85e\nf\tg"  # the tokenizer can write them
    assert decode_text(tok, ids, end_ids=[], strip_cjk_spaces=False) == "abcde\nf\tg"


def test_bert_chinese_output_has_no_spaces_between_cjk(bert_gen):
    texts = [c.text for s in range(4) for c in bert_gen.generate("春夜", "月, 花", n=4, seed=s, max_new_tokens=40)]
    joined = "\n".join(texts)
    assert re.search(r"[\u4e00-\u9fff]", joined)
    assert not re.search(r"[\u4e00-\u9fff] +[\u4e00-\u9fff]", joined)


def test_coverage_and_spans_are_consistent(bpe_gen):
    result = bpe_gen.generate("Storm", "sea, the, a", n=4, seed=2, max_new_tokens=40)
    for cand in result:
        assert sorted(cand.covered + cand.missing) == sorted(["sea", "the", "a"])
        for span in cand.spans:
            assert cand.text[span.start:span.end].lower() == span.keyword.lower()
    # full coverage first, then by score
    keys = [(len(c.missing), -c.score) for c in result]
    assert keys == sorted(keys)


@pytest.mark.parametrize("title, keywords, kwargs, field", [
    ("", "", {}, "title"),
    ("   ", [], {}, "title"),
    ("x" * 201, "", {}, "title"),
    ("Storm", "", {"max_new_tokens": 256}, "max_new_tokens"),   # prompt + 256 > context 256
    ("Storm", "", {"temperature": 0}, "temperature"),
    ("Storm", "", {"top_p": 1.5}, "top_p"),
    ("Storm", "", {"n": 9}, "n"),
    ("Storm", ",".join(f"k{i}" for i in range(40)), {}, "keywords"),
    ("Storm", "", {"beams": 3}, "unknown parameter"),
])
def test_bad_requests_name_the_field(bpe_gen, title, keywords, kwargs, field):
    with pytest.raises(ValueError) as info:
        bpe_gen.generate(title, keywords, **kwargs)
    assert str(info.value).startswith(field)


def test_prompt_at_context_limit(bpe_gen):
    """Prompt plus new tokens may fill the context exactly; one token more is refused."""
    from textgen.prompt import encode_prompt

    loaded = bpe_gen.backend_for("x", [])
    context = loaded.model.config.n_positions
    prompt_len = len(encode_prompt(loaded.tokenizer, loaded.fmt, "Storm", ["sea"]))
    room = context - prompt_len
    ok = bpe_gen.generate("Storm", "sea", n=1, max_new_tokens=room, seed=0)
    assert len(ok) == 1
    with pytest.raises(ValueError, match=rf"max_new_tokens: at most {room} for this prompt"):
        bpe_gen.generate("Storm", "sea", n=1, max_new_tokens=room + 1)
    # a title of rare characters (several byte tokens each) overflows the context by itself
    with pytest.raises(ValueError, match=r"title/keywords: the prompt is \d+ tokens"):
        bpe_gen.generate("𠀀" * 200, "sea", max_new_tokens=1)


def test_plain_fallback_for_models_without_format(plain_bpe_model_dir):
    gen = Generator.from_pretrained(str(plain_bpe_model_dir), dtype="float32")
    result = gen.generate("Storm", "sea", n=2, seed=0, max_new_tokens=10)
    assert result.prompt_style == "plain"
    assert "<|endoftext|>" not in "".join(c.text for c in result)


def test_scores_are_the_models_mean_log_probability(bpe_gen):
    """Scores recorded while sampling equal a separate forward pass over the finished text."""
    import torch

    from textgen.prompt import encode_prompt

    loaded = bpe_gen.backend_for("x", [])
    result = bpe_gen.generate("Storm", "sea", n=3, seed=5, max_new_tokens=16, temperature=1.5)
    prompt = encode_prompt(loaded.tokenizer, loaded.fmt, "Storm", ["sea"])
    torch.manual_seed(5)  # same seed: re-sample the same rows to get their ids
    sequences, _ = bpe_gen._sample(bpe_gen._prepare("Storm", "sea", None, dict(
        n=3, seed=5, max_new_tokens=16, temperature=1.5)), streamer=None, stop=__import__("threading").Event())
    with torch.inference_mode():
        logits = loaded.model(sequences).logits[:, len(prompt) - 1:-1].float()
    logp = torch.log_softmax(logits, -1).gather(2, sequences[:, len(prompt):, None]).squeeze(-1)
    ends = set(loaded.tokenizer.convert_tokens_to_ids(t) for t in loaded.fmt.special_tokens)
    by_index = {c.index: c.score for c in result}
    for row in range(3):
        ids = sequences[row, len(prompt):].tolist()
        n = next((i + 1 for i, t in enumerate(ids) if t in ends), len(ids))
        # the decode path runs int8 weights (ONNX Runtime), this reference the fp32 model
        assert by_index[row] == pytest.approx(logp[row, :n].mean().item(), abs=1e-2)


def test_a_paced_stream_wakes_its_reader_less_and_ends_the_same(bpe_gen):
    """With interval=, events come at most that often, each holding every step since the one
    before; the first comes with the first token, and the result is the same."""
    import time

    from helpers import seed_writing

    seed = seed_writing(bpe_gen, 80, title="Storm", keywords="sea", n=2, max_new_tokens=120)  # a long one
    expected = bpe_gen.generate("Storm", "sea", n=2, seed=seed, max_new_tokens=120)
    unpaced = [e.steps for e in bpe_gen.stream("Storm", "sea", n=2, seed=seed, max_new_tokens=120) if not e.done]
    started = time.monotonic()
    events, times = [], []
    for event in bpe_gen.stream("Storm", "sea", n=2, seed=seed, max_new_tokens=120, interval=0.05):
        events.append(event)
        times.append(time.monotonic() - started)
    streamed, final = events[:-1], events[-1]
    assert streamed[0].steps >= 1 and streamed[-1].steps == max(c.tokens for c in expected)
    assert len(streamed) < len(unpaced) and len(streamed) <= times[-1] / 0.05 + 2
    # between streamed events the reader slept; the last one and the result follow the end at once
    assert all(later - earlier >= 0.045 for earlier, later in zip(times[:-3], times[1:-2]))
    assert final.done and [c.text for c in final.result] == [c.text for c in expected]


@pytest.mark.parametrize("interval", [-1, 11, "fast", None])
def test_a_bad_stream_interval_names_the_field(bpe_gen, interval):
    with pytest.raises(ValueError, match="interval"):
        next(bpe_gen.stream("Storm", "sea", interval=interval))


def test_a_path_given_to_the_constructor_is_refused_with_the_call_to_use(bpe_model_dir):
    for source in (str(bpe_model_dir), bpe_model_dir):
        with pytest.raises(TypeError, match=r"Generator\.from_pretrained\("):
            Generator(source)
    assert Generator.from_pretrained(bpe_model_dir).generate("Storm", ["sea"], max_new_tokens=4, seed=0)
