"""Continuous batching (textgen.batching) on a real tiny GPT-2: the slot steps equal the plain
steps, and a request samples the same texts alone and among seven others."""
import threading

import pytest
import torch

from textgen import Generator
from textgen.batching import DecodeLoop, SlotStepper
from textgen.decoding import Rows, SamplingSettings
from textgen.steppers import DecodePath, GPT2Stepper

REQUESTS = [  # (title, keywords, n, max_new_tokens, mode, seed): different lengths and rules
    ("Storm", ["sea", "night"], 2, 24, "guaranteed", 1),
    ("Tea", ["China"], 1, 9, "off", 2),
    ("春夜", ["月", "花"], 3, 30, "guaranteed", 3),
    ("Volcano", ["lava"], 1, 40, "soft", 4),
    ("A long road home", [], 2, 5, "off", 5),
    ("Rain", ["umbrella", "street", "cold"], 1, 28, "guaranteed", 6),
    ("故乡", ["明月"], 2, 17, "off", 7),
    ("Trains", ["station"], 1, 33, "guaranteed", 8),
]


@pytest.fixture(scope="module")
def model(bpe_model_dir):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(bpe_model_dir, dtype=torch.float32, use_safetensors=True).eval()


@pytest.mark.parametrize("steps", ["torch", "onnx"])
def test_slot_steps_equal_the_plain_steps_at_any_position(model, steps):
    """Two requests in one slot cache, at different positions, each get the logits the plain
    stepper gives it alone; on PyTorch's slot steps and on ONNX Runtime's graph (fp32 weights,
    whose kernels sum in another order: 1e-4)."""
    from textgen.onnx_step import OnnxGPT2Step, onnx_available

    if steps == "onnx" and not onnx_available():
        pytest.skip("onnxruntime is not installed")
    fast = OnnxGPT2Step(model, int8=False) if steps == "onnx" else None
    atol = 1e-4 if fast is not None else 1e-5
    a_prompt, b_prompt = torch.tensor([[5, 17, 9, 33, 2, 41]]), torch.tensor([[8, 3]])
    a_tokens, b_tokens = [7, 60, 2, 9], [1, 50, 4, 4]
    expected = {}
    for name, prompt, tokens in (("a", a_prompt, a_tokens), ("b", b_prompt, b_tokens)):
        plain = GPT2Stepper(model, 2, 16)
        with torch.inference_mode():
            out = [plain.prefill(prompt)] + [plain.step(torch.tensor([t, t])) for t in tokens[:-1]]
        expected[name] = torch.stack(out)  # (steps, 2, V)
    slots = SlotStepper(model, 5, 16, DecodePath(graph=fast))
    slots.reserve(2, 4)
    slots.reserve(4, 10)  # grown while nothing is in it yet; then grown with a request inside
    with torch.inference_mode():
        got_a = [slots.prefill_into(0, 2, a_prompt)]
        slots.reserve(5, 16)
        got_b = [slots.prefill_into(2, 2, b_prompt)]
        for ta, tb in zip(a_tokens[:-1], b_tokens[:-1]):
            logits = slots.step_rows(torch.tensor([ta, ta, tb, tb]))
            got_a.append(logits[:2])
            got_b.append(logits[2:])
    assert torch.allclose(torch.stack(got_a), expected["a"], atol=atol)
    assert torch.allclose(torch.stack(got_b), expected["b"], atol=atol)
    with torch.inference_mode():
        slots.move(2, 0, 2)  # a leaves: b moves to the front and goes on where it was
        after = slots.step_rows(torch.tensor([b_tokens[-1]] * 2))
        plain = GPT2Stepper(model, 2, 16)
        plain.prefill(b_prompt)
        for t in b_tokens:
            last = plain.step(torch.tensor([t, t]))
    assert torch.allclose(after, last, atol=atol)
    with pytest.raises(ValueError, match="6 rows of 16 tokens exceed the cache of 5 × 16"):
        slots.reserve(6, 16)


@pytest.mark.parametrize("steps", ["torch", "onnx"])
def test_a_request_moved_onto_its_own_old_rows_goes_on_where_it_was(model, steps):
    """When the request in front leaves, one of two rows moves onto the other's old slot (the
    ranges overlap); only the positions the rows hold are copied, and the next logits are the
    ones the plain stepper gives."""
    from textgen.onnx_step import OnnxGPT2Step, onnx_available

    if steps == "onnx" and not onnx_available():
        pytest.skip("onnxruntime is not installed")
    fast = OnnxGPT2Step(model, int8=False) if steps == "onnx" else None
    atol = 1e-4 if fast is not None else 1e-5
    b_prompt, b_tokens = torch.tensor([[8, 3, 12]]), [1, 50, 4]
    slots = SlotStepper(model, 3, 32, DecodePath(graph=fast))
    slots.reserve(3, 32)
    with torch.inference_mode():
        slots.prefill_into(0, 1, torch.tensor([[5, 17]]))
        slots.prefill_into(1, 2, b_prompt)
        for t in b_tokens[:-1]:
            slots.step_rows(torch.tensor([9, t, t]))
        slots.move(1, 0, 2)
        after = slots.step_rows(torch.tensor([b_tokens[-1]] * 2))
        plain = GPT2Stepper(model, 2, 32)
        plain.prefill(b_prompt)
        for t in b_tokens:
            last = plain.step(torch.tensor([t, t]))
    assert slots.lengths[:2].tolist() == [3 + len(b_tokens)] * 2
    assert torch.allclose(after, last, atol=atol)


def _ask(gen, request):
    title, keywords, n, tokens, mode, seed = request
    return gen.generate(title, keywords, n=n, seed=seed, max_new_tokens=tokens, keyword_mode=mode)


@pytest.mark.parametrize("arithmetic", ["float64", "float32", "int8"])
def test_eight_requests_at_once_each_get_their_own_texts(bpe_model_dir, arithmetic, monkeypatch):
    """Each request keeps its own random numbers, settings and keyword state in the shared
    batch. Whether its text is also bit for bit the one it gets alone depends on the CPU's
    kernels, not on us: on AVX-512 machines a one-row fp32 product takes another kernel than a
    many-row one, and a masked attention over a longer cache sums in another order, so fp32
    logits move by ~1e-7 (relative) with the company and a draw can flip; int8 quantizes the
    batch's activations with one scale. At float64 that rounding is ~1e-16, far below any
    draw's margin, so there the texts must be exactly the ones each request gets alone."""
    from textgen import quantize as q

    monkeypatch.setattr(q, "INT8_MIN_WEIGHTS", 0)  # the tiny model's matrices, all int8
    quantize = "int8" if arithmetic == "int8" else "none"
    alone_gen = Generator.from_pretrained(str(bpe_model_dir), quantize=quantize)
    shared = Generator.from_pretrained(str(bpe_model_dir), quantize=quantize, batch_rows=16)
    if arithmetic == "float64":  # before the first request builds any stepper
        alone_gen._fixed.loaded.model.double()
        shared._fixed.loaded.model.double()
    alone = [_ask(alone_gen, r) for r in REQUESTS]
    loop = shared._fixed.loop
    assert loop is not None
    joined, results = [], [None] * len(REQUESTS)
    real_admit = loop._admit

    def admit(active):  # record how many requests ran together
        out = real_admit(active)
        joined.append(len(active))
        return out

    monkeypatch.setattr(loop, "_admit", admit)
    barrier = threading.Barrier(len(REQUESTS))

    def client(i):
        barrier.wait()
        results[i] = _ask(shared, REQUESTS[i])

    threads = [threading.Thread(target=client, args=(i,)) for i in range(len(REQUESTS))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert max(joined) >= 4  # they did share the batch
    for request, mine, theirs in zip(REQUESTS, results, alone):
        assert len(mine) == request[2]
        if request[4] == "guaranteed":  # keyword rules never leak between requests
            assert all(not c.missing for c in mine), (request, [c.text for c in mine])
        if arithmetic == "float64":  # the same texts as alone
            assert [c.text for c in mine] == [c.text for c in theirs], request


def test_a_stopped_request_frees_its_rows_for_a_waiting_one(model):
    """Capacity 3: a second request of 3 rows waits until the first is stopped, then runs."""
    loop = DecodeLoop(model, rows=3)
    stop = threading.Event()
    steps = []

    def first_step(tokens):
        steps.append(tokens)
        if len(steps) == 3:
            stop.set()

    settings = SamplingSettings(n=3, max_new_tokens=200, min_new_tokens=200, top_k=20)
    first = Rows([5, 17, 9], settings, end_ids=[0], on_step=first_step, stop=stop,
                 generator=torch.Generator().manual_seed(0))
    second = Rows([8, 3], SamplingSettings(n=3, max_new_tokens=6, min_new_tokens=6, top_k=20), end_ids=[0],
                  generator=torch.Generator().manual_seed(1))
    out = {}
    t1 = threading.Thread(target=lambda: out.setdefault("first", loop.run(first)))
    t1.start()
    while not steps:
        pass
    t2 = threading.Thread(target=lambda: out.setdefault("second", loop.run(second)))
    t2.start()
    t1.join(timeout=60)
    t2.join(timeout=60)
    assert out["first"][0].shape[1] == 3 + 3  # stopped after its third token
    assert out["second"][0].shape == (3, 2 + 6)
    with pytest.raises(ValueError, match="n: at most 3 rows run at once here, got 4"):
        loop.run(Rows([1], SamplingSettings(n=4, max_new_tokens=2), end_ids=[0]))


def test_a_failing_request_ends_alone(model):
    loop = DecodeLoop(model, rows=8)

    def broken(input_ids, scores):
        if input_ids.shape[1] > 6:
            raise RuntimeError("this rule broke")
        return scores

    bad = Rows([5, 17, 9], SamplingSettings(n=1, max_new_tokens=20, min_new_tokens=20, top_k=20), end_ids=[0],
               processors=[broken])
    good = Rows([8, 3], SamplingSettings(n=2, max_new_tokens=30, min_new_tokens=30, top_k=20), end_ids=[0])
    out, errors = {}, {}

    def run(name, rows):
        try:
            out[name] = loop.run(rows)
        except RuntimeError as exc:
            errors[name] = str(exc)

    threads = [threading.Thread(target=run, args=("bad", bad)), threading.Thread(target=run, args=("good", good))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert errors == {"bad": "this rule broke"}
    assert out["good"][0].shape == (2, 2 + 30)


def test_batching_only_where_the_lean_path_runs(bpe_model_dir, model):
    from transformers import AutoModelForCausalLM

    hf = AutoModelForCausalLM.from_pretrained(bpe_model_dir, use_safetensors=True).train()
    with pytest.raises(ValueError, match="continuous batching runs on the lean CPU path of a GPT-2 model only"):
        DecodeLoop(hf)


def test_a_request_longer_than_the_context_is_refused(model):
    loop = DecodeLoop(model, rows=4, context=16)
    too_long = Rows(list(range(1, 11)), SamplingSettings(n=1, max_new_tokens=7), end_ids=[0])
    with pytest.raises(ValueError, match="max_new_tokens: the prompt and the text must fit the model's 16 tokens"):
        loop.run(too_long)
