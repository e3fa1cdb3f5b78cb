"""int8 weights on PyTorch's lean CPU decode path (runtime "torch"; ONNX Runtime's int8 graph
is tests/test_onnx_step.py): close to the fp32 forward, chosen and refused as documented, and
the Generator's guarantees unchanged on top of them."""
import pytest
import torch

from textgen.quantize import int8_available

from helpers import trained_like

pytestmark = pytest.mark.skipif(not int8_available(), reason="this PyTorch build has no fbgemm kernels")


@pytest.fixture(autouse=True)
def every_matrix_int8(monkeypatch):
    """The tiny test models' matrices are all below the size where int8 starts to pay."""
    from textgen import quantize

    monkeypatch.setattr(quantize, "INT8_MIN_WEIGHTS", 0)


def _steps(model, int8, prompt, tokens, n):
    from textgen.steppers import DecodePath, GPT2Stepper

    stepper = GPT2Stepper(model, n, prompt.shape[1] + len(tokens) + 1, DecodePath(int8=int8))
    with torch.inference_mode():
        out = [stepper.prefill(prompt)]
        out += [stepper.step(t) for t in tokens]
    return torch.stack(out)  # (steps, n, V)


def test_int8_steps_follow_the_fp32_steps(bpe_model_dir):
    from textgen.quantize import Int8GPT2

    model = trained_like(bpe_model_dir)
    int8 = Int8GPT2.from_model(model)
    prompt = torch.tensor([[5, 17, 9, 33, 2, 41]])
    tokens = [torch.tensor([7, 8, 9]), torch.tensor([1, 1, 50]), torch.tensor([3, 60, 2]), torch.tensor([4, 4, 4])]
    ref, quant = _steps(model, None, prompt, tokens, 3), _steps(model, int8, prompt, tokens, 3)
    assert ref.shape == quant.shape and quant.dtype == torch.float32
    p, q = torch.log_softmax(ref, -1), torch.log_softmax(quant, -1)
    kl = (p.exp() * (p - q)).sum(-1)  # per step and row
    assert float(kl.max()) < 0.02, kl
    assert float((ref.argmax(-1) == quant.argmax(-1)).float().mean()) >= 0.9
    assert float((ref - quant).abs().max()) < 0.05 * float(ref.abs().max())
    assert not torch.equal(ref, quant)  # int8 really ran


def test_small_matrices_stay_fp32(bpe_model_dir, monkeypatch):
    from transformers import AutoModelForCausalLM

    from textgen import quantize
    from textgen.loading import load

    model = AutoModelForCausalLM.from_pretrained(bpe_model_dir, use_safetensors=True)
    assert quantize.Int8GPT2.from_model(model).matrices == 4 * model.config.n_layer + 1
    head = model.lm_head.weight.numel()  # the biggest matrix of this model
    only_head = quantize.Int8GPT2.from_model(model, min_weights=head)
    assert only_head.matrices == 1 and only_head.lm_head is not None
    monkeypatch.setattr(quantize, "INT8_MIN_WEIGHTS", 10**12)
    assert load(bpe_model_dir, runtime="torch").quantize == "none"  # nothing would gain: the model stays as it was


def test_quantize_choices_and_refusals(bpe_model_dir):
    from textgen import Generator
    from textgen.loading import load

    assert load(bpe_model_dir, runtime="torch").quantize == "int8"  # the default on this CPU: the lean path applies
    plain = load(bpe_model_dir, quantize="none", runtime="torch")
    assert plain.quantize == "none" and plain.decode_path.int8 is None
    with pytest.raises(ValueError, match=r"quantize: must be one of auto, none, int8, got 'int4'"):
        load(bpe_model_dir, quantize="int4")
    with pytest.raises(ValueError, match=r"quantize: must be one of auto, none, int8, got 'fast'"):
        Generator.from_pretrained("auto", quantize="fast")


def test_int8_is_refused_where_no_int8_kernel_runs(bpe_model_dir, monkeypatch):
    from textgen import quantize
    from textgen.loading import load

    monkeypatch.setattr(quantize, "int8_available", lambda: False)  # as on ARM, or a later PyTorch
    assert load(bpe_model_dir, runtime="torch").quantize == "none"  # auto falls back quietly
    with pytest.raises(ValueError, match="int8 is not available here .this PyTorch build has no fbgemm"):
        load(bpe_model_dir, quantize="int8", runtime="torch")


def test_int8_needs_the_lean_path(bpe_model_dir):
    from textgen.quantize import resolve_quantize

    assert resolve_quantize("auto", lean=False) == "none"
    with pytest.raises(ValueError, match="int8 runs only on the CPU, for GPT-2 models"):
        resolve_quantize("int8", lean=False)


@pytest.mark.parametrize("mode", ["off", "guaranteed"])
def test_generation_with_int8_streams_what_it_returns_and_keeps_the_keywords(bpe_model_dir, mode):
    from textgen import Generator

    gen = Generator.from_pretrained(str(bpe_model_dir), quantize="int8", runtime="torch")
    assert gen.backend_for("Storm", ["sea"]).quantize == "int8"
    kwargs = dict(n=3, seed=4, max_new_tokens=24, keyword_mode=mode)
    results = gen.generate("Storm", ["sea", "night"], **kwargs)
    streamed = list(gen.stream("Storm", ["sea", "night"], **kwargs))[-1].result
    assert [c.text for c in results] == [c.text for c in streamed]
    assert len(results) == 3 and all(c.text for c in results)
    if mode == "guaranteed":
        assert all(not c.missing for c in results)


def test_int8_weights_need_an_fp32_model(bpe_model_dir):
    from textgen.quantize import Int8GPT2
    from textgen.steppers import DecodePath, GPT2Stepper

    model = trained_like(bpe_model_dir)
    int8 = Int8GPT2.from_model(model)
    with pytest.raises(ValueError, match="int8 weights go with an fp32 model"):
        GPT2Stepper(model.to(torch.bfloat16), 1, 8, DecodePath(int8=int8))
