"""The decode step in ONNX Runtime (textgen.onnx_step): its graph computes the fp32 forward,
its int8 weights stay close to it, and the Generator keeps its guarantees on top of it (rows
at different positions of the shared decode loop: tests/test_batching.py)."""
import pytest
import torch

from textgen.onnx_step import onnx_available

from helpers import trained_like

pytestmark = pytest.mark.skipif(not onnx_available(), reason="onnxruntime is not installed")

PROMPT = torch.tensor([[5, 17, 9, 33, 2, 41]])
TOKENS = [torch.tensor([7, 8, 9]), torch.tensor([1, 1, 50]), torch.tensor([3, 60, 2]), torch.tensor([4, 4, 4])]


@pytest.fixture(scope="module")
def model(bpe_model_dir):
    return trained_like(bpe_model_dir)


def _steps(model, fast, n=3):
    from textgen.steppers import DecodePath, GPT2Stepper

    stepper = GPT2Stepper(model, n, PROMPT.shape[1] + len(TOKENS) + 3, DecodePath(graph=fast))
    with torch.inference_mode():
        out = [stepper.prefill(PROMPT)]
        out += [stepper.step(t[:n]) for t in TOKENS]
    return torch.stack(out)  # (steps, n, V)


def _reference(model, n=3):
    """The model's own forward over each row's whole sequence, no cache."""
    rows = []
    for r in range(n):
        seq = torch.cat([PROMPT[0], torch.stack([t[r] for t in TOKENS])])
        with torch.inference_mode():
            logits = model(seq[None]).logits[0, PROMPT.shape[1] - 1:]
        rows.append(logits)
    return torch.stack(rows, 1)  # (steps, n, V)


def test_the_fp32_graph_computes_the_model_forward(model):
    from textgen.onnx_step import OnnxGPT2Step

    fast = OnnxGPT2Step(model, int8=False)
    got, ref = _steps(model, fast), _reference(model)
    assert got.shape == ref.shape and got.dtype == torch.float32
    assert torch.allclose(got, ref, atol=1e-4, rtol=1e-4), float((got - ref).abs().max())


def test_the_graph_writes_fp32_whatever_the_default_dtype(model):
    """ONNX Runtime writes fp32 logits at a buffer's address: a buffer made in the default dtype
    while it is bf16 would be half as long (a heap overflow, which crashed the app)."""
    from textgen.onnx_step import OnnxGPT2Step

    fast = OnnxGPT2Step(model, int8=False)
    want = _steps(model, fast)
    torch.set_default_dtype(torch.bfloat16)
    try:
        got = _steps(model, OnnxGPT2Step(model, int8=False))  # new bindings, made under bf16
    finally:
        torch.set_default_dtype(torch.float32)
    assert got.dtype == torch.float32 and torch.equal(got, want)


def test_sampling_ignores_the_default_dtype(bpe_model_dir):
    """A request's draws are fp32 and the same while another thread's model load has switched
    torch's default dtype."""
    from textgen import Generator

    for runtime in ("onnx", "torch"):
        gen = Generator.from_pretrained(str(bpe_model_dir), runtime=runtime, dtype="float32")
        kwargs = dict(n=3, seed=11, max_new_tokens=20, keyword_mode="guaranteed")
        want = [c.text for c in gen.generate("Storm", ["sea"], **kwargs)]
        torch.set_default_dtype(torch.bfloat16)
        try:
            got = [c.text for c in gen.generate("Storm", ["sea"], **kwargs)]
        finally:
            torch.set_default_dtype(torch.float32)
        assert got == want, runtime


@pytest.mark.parametrize("activation, inverse_layer_scale", [("gelu", True), ("relu", False)])
def test_the_graph_follows_other_gpt2_configs(activation, inverse_layer_scale):
    """The exact-GELU and ReLU blocks and per-layer attention scales take other nodes of the
    graph than the built-ins' tanh-GELU: each must still compute the model's forward."""
    from transformers import GPT2Config, GPT2LMHeadModel

    from textgen.onnx_step import OnnxGPT2Step

    torch.manual_seed(0)
    config = GPT2Config(vocab_size=64, n_positions=32, n_embd=32, n_layer=2, n_head=2,
                        activation_function=activation, scale_attn_by_inverse_layer_idx=inverse_layer_scale,
                        attn_pdrop=0.0, resid_pdrop=0.0, embd_pdrop=0.0)
    model = GPT2LMHeadModel(config).eval()
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 2:
                p.mul_(8.0)  # far from uniform logits, as in `trained_like`
    got, ref = _steps(model, OnnxGPT2Step(model, int8=False)), _reference(model)
    assert torch.allclose(got, ref, atol=1e-4, rtol=1e-4), float((got - ref).abs().max())


def test_int8_steps_follow_the_fp32_steps(model):
    from textgen.onnx_step import OnnxGPT2Step

    ref, quant = _reference(model), _steps(model, OnnxGPT2Step(model))
    p, q = torch.log_softmax(ref, -1), torch.log_softmax(quant, -1)
    kl = (p.exp() * (p - q)).sum(-1)  # per step and row
    assert float(kl.max()) < 0.02, kl
    assert float((ref.argmax(-1) == quant.argmax(-1)).float().mean()) >= 0.9
    assert not torch.allclose(ref, quant, atol=1e-5)  # int8 really ran


@pytest.mark.parametrize("vnni", [True, False])
def test_int8_weights_are_7_bit_where_the_cpu_has_no_vnni(model, monkeypatch, vnni):
    """Without VNNI, x86 int8 kernels sum pairs of products into 16 bits, which full-range
    weights saturate: the graph's weights then keep to 7 bits."""
    import numpy as np
    import onnx
    from onnx import numpy_helper

    from textgen import device, onnx_graph

    monkeypatch.setattr(device, "cpu_has_int8_dot", lambda: vnni)
    graph = onnx.load_from_string(onnx_graph.build(model, int8=True))
    weights = [numpy_helper.to_array(t) for t in graph.graph.initializer if t.data_type == onnx.TensorProto.INT8]
    assert weights  # the products are quantized
    widest = max(int(np.abs(w.astype(np.int32)).max()) for w in weights)
    assert widest == 127 if vnni else 60 <= widest <= 64


def test_the_graph_takes_one_thread_where_torchs_own_ops_run_in_parallel(model):
    """Where a step's logits (rows × vocabulary) are big enough for torch to split its ops
    across its threads, the graph runs on one, for the prompt and every step of that decoder
    (two pools spinning on the same cores wait for each other); below, on torch's count."""
    from textgen.onnx_step import TORCH_PARALLEL_ELEMENTS, OnnxGPT2Step
    from textgen.batching import SlotStepper
    from textgen.steppers import DecodePath, GPT2Stepper

    fast = OnnxGPT2Step(model)
    many = -(-TORCH_PARALLEL_ELEMENTS // model.config.vocab_size)  # the fewest rows torch splits
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        assert fast.threads_for(1) == 2 and fast.threads_for(many - 1) == 2
        assert fast.threads_for(many) == 1 and fast.threads_for(4 * many) == 1
        torch.set_num_threads(1)
        assert fast.threads_for(many) == 1
        torch.set_num_threads(2)
        big = GPT2Stepper(model, many, PROMPT.shape[1] + 3, DecodePath(graph=fast))
        small = GPT2Stepper(model, 2, PROMPT.shape[1] + 3, DecodePath(graph=fast))
        assert big.graph_threads == 1 and small.graph_threads == 2
        # the batched loop's stepper decides once, by the rows it may hold
        assert SlotStepper(model, many, 32, DecodePath(graph=fast)).graph_threads == 1
        assert SlotStepper(model, 2, 32, DecodePath(graph=fast)).graph_threads == 2
        with torch.inference_mode():
            got = [big.prefill(PROMPT)] + [big.step(torch.full((many,), t)) for t in (7, 8)]
            want = [small.prefill(PROMPT)] + [small.step(torch.full((2,), t)) for t in (7, 8)]
        for g, w in zip(got, want):  # the same arithmetic on either session
            assert torch.allclose(g[:2], w, atol=1e-4, rtol=1e-4) and torch.allclose(g[0], g[-1])
        assert sorted(fast._sessions) == [1, 2]
    finally:
        torch.set_num_threads(before)


def test_the_session_follows_torchs_thread_count(model):
    from textgen.onnx_step import OnnxGPT2Step

    fast = OnnxGPT2Step(model)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = fast.session()
        torch.set_num_threads(2)
        two = fast.session()
        assert one is not two and fast.session() is two
        assert two.get_session_options().intra_op_num_threads == 2
        assert one.get_session_options().intra_op_num_threads == 1
    finally:
        torch.set_num_threads(before)


def test_runtime_choices_and_refusals(bpe_model_dir, monkeypatch):
    from textgen import Generator, onnx_step
    from textgen.loading import load

    auto = load(bpe_model_dir)
    assert auto.quantize == "int8" and auto.runtime == "onnx" and auto.decode_path.graph is not None
    torch_run = load(bpe_model_dir, runtime="torch")
    assert torch_run.runtime == "torch" and torch_run.decode_path.graph is None
    plain = load(bpe_model_dir, quantize="none")  # the graph in fp32
    assert plain.runtime == "onnx" and plain.quantize == "none" and plain.dtype == torch.float32
    kept = load(bpe_model_dir, quantize="none", dtype="bfloat16")  # a dtype asked for stays PyTorch's
    assert kept.runtime == "torch" and kept.dtype == torch.bfloat16
    with pytest.raises(ValueError, match=r"runtime: must be one of auto, onnx, torch, got 'tvm'"):
        load(bpe_model_dir, runtime="tvm")
    with pytest.raises(ValueError, match=r"runtime: must be one of auto, onnx, torch, got 'fast'"):
        Generator.from_pretrained("auto", runtime="fast")
    with pytest.raises(ValueError, match=r"runtime: onnx is not available here .it runs GPT-2 models on the CPU"):
        load(bpe_model_dir, quantize="none", dtype="bfloat16", runtime="onnx")
    monkeypatch.setattr(onnx_step, "onnx_available", lambda: False)  # a platform without its wheels
    assert load(bpe_model_dir).runtime == "torch"  # auto falls back quietly
    with pytest.raises(ValueError, match=r"runtime: onnx is not available here .onnxruntime is not installed"):
        load(bpe_model_dir, runtime="onnx")


def test_heads_the_graph_cannot_run_keep_pytorchs_path(tmp_path):
    """GroupQueryAttention on the CPU takes heads a multiple of 8 wide: a GPT-2 with 12-wide
    heads loads on PyTorch's path under "auto", is refused with the reason under "onnx", and
    generates."""
    from conftest import _save_model, make_bpe_tokenizer
    from textgen import Generator
    from textgen.loading import load
    from textgen.onnx_step import OnnxGPT2Step
    from textgen.prompt import PromptFormat

    folder = _save_model(make_bpe_tokenizer(), tmp_path, PromptFormat(), n_embd=24, n_head=2)
    loaded = load(folder)
    assert loaded.runtime == "torch" and loaded.decode_path.graph is None
    with pytest.raises(ValueError, match=r"runtime: onnx is not available here .*multiple of 8 wide"):
        load(folder, runtime="onnx")
    with pytest.raises(ValueError, match="attention heads a multiple of 8 wide, not 12"):
        OnnxGPT2Step(loaded.model.float())
    out = Generator.from_pretrained(str(folder)).generate("Storm", ["sea"], n=2, max_new_tokens=8, seed=0)
    assert len(out) == 2


def test_the_graph_is_built_from_fp32(model):
    from textgen.onnx_step import OnnxGPT2Step

    with pytest.raises(ValueError, match="built from an fp32 model"):
        OnnxGPT2Step(model.to(torch.bfloat16))
    model.float()


@pytest.mark.parametrize("mode", ["off", "guaranteed"])
def test_generation_on_onnx_streams_what_it_returns_and_keeps_the_keywords(any_model_dir, mode):
    from textgen import Generator

    gen = Generator.from_pretrained(str(any_model_dir), runtime="onnx")
    assert gen.backend_for("Storm", ["sea"]).runtime == "onnx"
    kwargs = dict(n=3, seed=4, max_new_tokens=24, keyword_mode=mode)
    results = gen.generate("Storm", ["sea", "night"], **kwargs)
    again = gen.generate("Storm", ["sea", "night"], **kwargs)
    streamed = list(gen.stream("Storm", ["sea", "night"], **kwargs))[-1].result
    assert [c.text for c in results] == [c.text for c in streamed] == [c.text for c in again]
    assert len(results) == 3 and all(c.text for c in results)
    if mode == "guaranteed":
        assert all(not c.missing for c in results)


def test_batched_requests_on_onnx_keep_their_keywords(bpe_model_dir):
    """Eight requests at once through the shared decode loop on the ONNX step."""
    import threading

    from textgen import Generator

    shared = Generator.from_pretrained(str(bpe_model_dir), runtime="onnx", batch_rows=16)
    requests = [("Storm", ["sea", "night"], 2, 24), ("Tea", ["China"], 1, 9), ("Rain", ["umbrella", "cold"], 1, 28),
                ("Trains", ["station"], 1, 33)] * 2
    out = [None] * len(requests)

    def run(i):
        title, keywords, n, tokens = requests[i]
        out[i] = shared.generate(title, keywords, n=n, seed=i, max_new_tokens=tokens, keyword_mode="guaranteed")

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(requests))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert all(r is not None for r in out)
    for (title, keywords, n, _), result in zip(requests, out):
        assert len(result) == n and all(not c.missing for c in result), (title, [c.text for c in result])


def test_a_step_past_the_cache_is_refused(model):
    from textgen.onnx_step import OnnxGPT2Step
    from textgen.steppers import DecodePath, GPT2Stepper

    stepper = GPT2Stepper(model, 1, 3, DecodePath(graph=OnnxGPT2Step(model, int8=False)))
    with torch.inference_mode():
        stepper.prefill(torch.tensor([[5, 17]]))
        stepper.step(torch.tensor([7]))  # the third token: the cache is full
        with pytest.raises(ValueError, match="sequence of 4 tokens exceeds the cache of 3"):
            stepper.step(torch.tensor([8]))
