"""The sampling loop (textgen.decoding) on a real tiny GPT-2 and tokenizer."""
from __future__ import annotations

import threading

import pytest
import torch

from textgen.decoding import SamplingSettings, sample, warpers
from textgen.loading import load
from textgen.prompt import encode_prompt, token_ids


@pytest.fixture(scope="module")
def loaded(bpe_model_dir):
    return load(str(bpe_model_dir), dtype="float32")


def _prompt(loaded):
    return encode_prompt(loaded.tokenizer, loaded.fmt, "Storm", ["sea", "night"])


def _ends(loaded):
    ids = token_ids(loaded.tokenizer, loaded.fmt)
    return sorted({ids["eos"], ids["pad"], ids["sep"], ids["bos"]})


def _run(loaded, settings, **kwargs):
    torch.manual_seed(kwargs.pop("seed", 0))
    with torch.inference_mode():
        return sample(loaded.model, _prompt(loaded), settings, end_ids=_ends(loaded), **kwargs)


def test_log_probs_equal_a_full_forward_over_the_result(loaded):
    """The cached step-by-step forward gives the same distribution as one pass over the
    finished sequence, and each recorded log-prob is the sampled token's."""
    settings = SamplingSettings(n=3, max_new_tokens=12, temperature=0.8, top_k=20, top_p=0.9)
    seqs, logp = _run(loaded, settings)
    prompt_len = len(_prompt(loaded))
    assert seqs.shape[0] == 3 and logp.shape == (3, seqs.shape[1] - prompt_len)
    assert seqs[:, :prompt_len].tolist() == [_prompt(loaded)] * 3
    with torch.inference_mode():
        full = torch.log_softmax(loaded.model(seqs).logits.float(), dim=-1)
    new = seqs[:, prompt_len:]
    expected = full[:, prompt_len - 1:-1].gather(2, new[:, :, None]).squeeze(2)
    ends = torch.tensor(_ends(loaded))
    for row in range(3):  # compare up to and including the row's first end token
        is_end = torch.isin(new[row], ends)
        stop = int(is_end.int().argmax()) + 1 if is_end.any() else new.shape[1]
        assert torch.allclose(logp[row, :stop], expected[row, :stop], atol=1e-4)


def test_same_seed_same_rows_and_rows_differ(loaded):
    settings = SamplingSettings(n=4, max_new_tokens=16)
    a, _ = _run(loaded, settings, seed=7)
    b, _ = _run(loaded, settings, seed=7)
    assert torch.equal(a, b)
    assert len({tuple(r) for r in a.tolist()}) > 1  # four samples, not one copied


def test_min_new_tokens_holds_back_the_end(loaded):
    ends = set(_ends(loaded))
    settings = SamplingSettings(n=4, max_new_tokens=20, min_new_tokens=20)
    seqs, _ = _run(loaded, settings, seed=3)
    new = seqs[:, len(_prompt(loaded)):]
    assert new.shape[1] == 20
    assert not ends & set(new.flatten().tolist())


def test_finished_rows_are_filled_and_generation_ends_when_all_are_done(loaded):
    ends = _ends(loaded)

    def row0_ends_row1_runs(input_ids, scores):
        scores = scores.clone()
        scores[0] = float("-inf")
        scores[0, ends[-1]] = 0.0
        scores[1, ends] = float("-inf")
        return scores

    seqs, logp = _run(loaded, SamplingSettings(n=2, max_new_tokens=5), processors=[row0_ends_row1_runs])
    new = seqs[:, len(_prompt(loaded)):].tolist()
    assert new[0] == [ends[-1]] + [ends[0]] * 4
    assert not set(ends) & set(new[1]) and logp.shape == (2, 5)

    def all_end(input_ids, scores):
        forced = torch.full_like(scores, float("-inf"))
        forced[:, ends[-1]] = 0.0
        return forced

    seqs, logp = _run(loaded, SamplingSettings(n=2, max_new_tokens=10), processors=[all_end])
    assert seqs[:, len(_prompt(loaded)):].tolist() == [[ends[-1]], [ends[-1]]] and logp.shape == (2, 1)


def test_on_step_sees_every_token_and_stop_ends_after_the_current_step(loaded):
    stop = threading.Event()
    steps = []

    def on_step(tokens):
        steps.append(tokens)
        if len(steps) == 3:
            stop.set()

    settings = SamplingSettings(n=2, max_new_tokens=30, min_new_tokens=30)
    seqs, _ = _run(loaded, settings, on_step=on_step, stop=stop)
    new = seqs[:, len(_prompt(loaded)):]
    assert len(steps) == 3 and new.shape[1] == 3
    assert [list(col) for col in zip(*steps)] == new.tolist()


def test_max_seconds_bounds_the_time(loaded):
    settings = SamplingSettings(n=1, max_new_tokens=400, min_new_tokens=400, max_seconds=1e-6)
    seqs, _ = _run(loaded, settings)
    assert seqs.shape[1] - len(_prompt(loaded)) == 1  # the first step runs, then time is up


def _hf_and_fast(model, prompt, tokens, n):
    from textgen.steppers import GPT2Stepper, HFStepper

    assert GPT2Stepper.supports(model)
    out = []
    for stepper in (HFStepper(model, n), GPT2Stepper(model, n, len(prompt[0]) + len(tokens) + 1)):
        with torch.inference_mode():
            logits = [stepper.prefill(prompt)]
            for t in tokens:
                logits.append(stepper.step(t))
        out.append(torch.stack(logits))
    return out


@pytest.mark.parametrize("overrides", [{}, {"scale_attn_by_inverse_layer_idx": True, "activation_function": "relu"}])
def test_fast_gpt2_steps_match_the_transformers_forward(bpe_model_dir, tmp_path, overrides):
    from transformers import AutoModelForCausalLM, GPT2Config

    folder = bpe_model_dir
    if overrides:
        config = GPT2Config.from_pretrained(bpe_model_dir)
        for key, value in overrides.items():
            setattr(config, key, value)
        model = AutoModelForCausalLM.from_config(config)
        torch.manual_seed(0)
        model.save_pretrained(tmp_path)
        folder = tmp_path
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32, use_safetensors=True).eval()
    prompt = torch.tensor([[5, 17, 9, 33, 2, 41]])
    tokens = [torch.tensor([7, 8, 9]), torch.tensor([1, 1, 50]), torch.tensor([3, 60, 2])]
    hf, fast = _hf_and_fast(model, prompt, tokens, n=3)
    assert hf.shape == fast.shape == (4, 3, model.config.vocab_size)
    assert torch.allclose(hf, fast, atol=1e-4), (hf - fast).abs().max()
    # bf16, as the CPU default: same answer within bf16 rounding
    hf, fast = _hf_and_fast(model.to(torch.bfloat16), prompt, tokens, n=3)
    assert (hf.argmax(-1) == fast.argmax(-1)).float().mean() > 0.9
    assert (hf - fast).abs().max() < 0.1 * hf.abs().max()


def test_fast_path_only_where_it_applies(bpe_model_dir):
    from transformers import AutoModelForCausalLM

    from textgen.steppers import GPT2Stepper, HFStepper, stepper_for

    model = AutoModelForCausalLM.from_pretrained(bpe_model_dir, use_safetensors=True)
    assert isinstance(stepper_for(model.eval(), 2, 32), GPT2Stepper)
    assert isinstance(stepper_for(model.train(), 2, 32), HFStepper)  # dropout must apply
    model.eval()
    model.config.reorder_and_upcast_attn = True
    assert isinstance(stepper_for(model, 2, 32), HFStepper)


@pytest.mark.parametrize("device", ["cpu", "meta"])
def test_min_new_tokens_rule_keeps_its_end_ids_on_the_models_device(device):
    """On CUDA the rule compared CPU end ids with CUDA scores and raised (seen on an H200 with
    min_new_tokens pinned): its ids must live where the model does. "meta" stands in for a
    device this machine lacks."""
    before, after = warpers(SamplingSettings(n=2, max_new_tokens=8, min_new_tokens=4), [5, 6], 3,
                            torch.device(device))
    assert len(before) == 1 and not after
    assert before[0].ends.device.type == device
    assert before[0].ends.shape == (2,)


@pytest.mark.parametrize("temperature,top_k,top_p", [(1.0, 30, 1.0), (0.9, 30, 0.9), (0.7, 5, 0.5),
                                                     (1.3, 1000, 0.95), (0.9, 3, 0.01)])
def test_nucleus_is_the_distribution_transformers_warpers_leave(temperature, top_k, top_p):
    """The loop draws from `nucleus` instead of running the warpers over the vocabulary: the
    probabilities must be theirs, token for token (ties aside: random logits have none)."""
    from textgen.decoding import nucleus

    torch.manual_seed(0)
    scores = torch.randn(4, 500) * 3
    scores[1, :490] = float("-inf")  # fewer allowed tokens than k, as a keyword rule leaves
    scores[2, :499] = float("-inf")  # one forced token
    settings = SamplingSettings(n=4, max_new_tokens=1, temperature=temperature, top_k=top_k, top_p=top_p)
    _, after = warpers(settings, [0], 1)
    expected = scores
    for warp in after:
        expected = warp(torch.zeros(4, 1, dtype=torch.long), expected)
    expected = torch.softmax(expected, dim=-1)
    probs, ids = nucleus(scores, settings)
    ours = torch.zeros_like(expected).scatter(1, ids, probs)
    assert torch.allclose(ours, expected, atol=1e-6), (ours - expected).abs().max()
    assert torch.equal(ours > 0, expected > 0)


def test_sampling_draws_from_the_nucleus(loaded):
    """What the loop samples follows `nucleus`: over many rows, every drawn first token is one
    the warpers allow, and the frequencies match the probabilities."""
    from textgen.decoding import nucleus

    settings = SamplingSettings(n=2000, max_new_tokens=1, temperature=0.9, top_k=8, top_p=0.8)
    seqs, logp = _run(loaded, settings)
    first = seqs[:, len(_prompt(loaded))]
    with torch.inference_mode():
        logits = loaded.model(torch.tensor([_prompt(loaded)])).logits[:, -1].float()
    probs, ids = nucleus(logits, settings)
    allowed = dict(zip(ids[0].tolist(), probs[0].tolist()))
    drawn = first.tolist()
    assert set(drawn) <= {t for t, p in allowed.items() if p > 0}
    for token, p in allowed.items():
        assert abs(drawn.count(token) / len(drawn) - p) < 0.04, (token, p)


def test_the_draw_is_torch_multinomial_with_the_same_generator(loaded):
    """`Rows.noise` + argmax picks what torch.multinomial picks from the same seeded generator,
    so the batched draw kept every seed's texts; the generator ends in the same state."""
    from textgen.decoding import Rows

    settings = SamplingSettings(n=4, max_new_tokens=8, temperature=0.9, top_k=0)
    for seed in range(20):
        probs = torch.softmax(torch.randn(4, loaded.model.config.vocab_size, generator=torch.Generator().manual_seed(seed)) * 3, -1)
        theirs, ours = torch.Generator().manual_seed(seed), torch.Generator().manual_seed(seed)
        expected = torch.multinomial(probs, 1, generator=theirs).squeeze(1)
        rows = Rows([1, 2, 3], settings, end_ids=[0], generator=ours)
        assert torch.equal((probs / rows.noise(probs.shape[1])).argmax(dim=1), expected)
        assert torch.rand(1, generator=theirs).item() == torch.rand(1, generator=ours).item()


def test_requests_chosen_together_get_what_each_gets_alone(loaded):
    """One `choose_together` call over requests with different settings (two share theirs, one
    samples the whole vocabulary, one has a rule that fails) gives each the tokens it gets alone;
    the failing one gets its exception and the others go on."""
    from textgen.decoding import Rows, choose_together

    vocab = loaded.model.config.vocab_size
    specs = [SamplingSettings(n=2, max_new_tokens=5, temperature=0.9, top_k=30, top_p=0.9),
             SamplingSettings(n=3, max_new_tokens=5, temperature=0.9, top_k=30, top_p=0.9),
             SamplingSettings(n=1, max_new_tokens=5, temperature=1.3, top_k=0, top_p=0.8),
             SamplingSettings(n=2, max_new_tokens=5, temperature=0.7, top_k=5)]

    def broken(ids, scores):
        raise RuntimeError("this request's own rule failed")

    def requests():
        return [Rows([4, 5, 6], s, end_ids=[0], generator=torch.Generator().manual_seed(i),
                     processors=[broken] if i == 3 else ())
                for i, s in enumerate(specs)]

    logits = [torch.randn(s.n, vocab, generator=torch.Generator().manual_seed(10 + i)) * 4 for i, s in enumerate(specs)]
    alone = []
    for rows, x in zip(requests(), logits):
        try:
            alone.append(rows.choose(x)[0])
        except RuntimeError as exc:
            alone.append(exc)
    together = choose_together(requests(), logits)
    for mine, theirs in zip(together[:3], alone[:3]):
        assert torch.equal(mine[0], theirs) and mine[1] is True
    assert isinstance(together[3], RuntimeError) and isinstance(alone[3], RuntimeError)


def test_min_new_tokens_blocks_the_ends_as_transformers_does():
    from transformers.generation.logits_process import MinNewTokensLengthLogitsProcessor

    from textgen.decoding import MinNewTokens

    torch.manual_seed(0)
    ours = MinNewTokens(prompt_len=4, least=3, end_ids=[2, 7])
    theirs = MinNewTokensLengthLogitsProcessor(4, 3, [2, 7])
    for length in range(4, 10):  # before, at and past the minimum
        ids, scores = torch.randint(0, 20, (3, length)), torch.randn(3, 20)
        expected = theirs(ids, scores.clone())
        got = ours(ids, scores)
        assert torch.equal(got, expected), length
        assert torch.isinf(got[:, [2, 7]]).all() == (length - 4 < 3)
