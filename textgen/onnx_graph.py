"""The decode graph of a GPT-2 for ONNX Runtime, written node by node over the model's own
weights, and its int8 version (`textgen.onnx_step` runs it).

Why by hand rather than traced from torch (`torch.onnx.export`): the traced step was 183 nodes
after ONNX Runtime's fusions, each a few microseconds, and returned the new keys and values for
the caller to copy in. ONNX Runtime's contrib operators do a block in 8 nodes, and the exporter
emits none of them: 61 nodes in all (benchmarks/README.md, "Decode steps in ONNX Runtime").
"""
from __future__ import annotations

import logging
import tempfile
import warnings
from pathlib import Path
from typing import Any


def graph_fits(config) -> bool:
    """Whether the graph can run this GPT-2: ONNX Runtime's GroupQueryAttention on the CPU takes
    attention heads a multiple of 8 wide (GPT-2's own are 64)."""
    return (config.n_embd // config.n_head) % 8 == 0


# what each GPT-2 activation is among ONNX Runtime's bias-fused activations (com.microsoft)
_ACTIVATION_OPS = {"gelu_new": "FastGelu", "gelu_pytorch_tanh": "FastGelu", "gelu_fast": "FastGelu",
                   "gelu": "BiasGelu", "relu": None}


def step_graph(model) -> bytes:
    """The fp32 graph of `model`: (tokens (R, S), their positions (R, S), past keys/values per
    layer) → the logits (R, V) after each row's last token, with the S tokens' keys and values
    written into the past buffers, which the caller binds as the outputs too (ONNX Runtime's
    GroupQueryAttention shares them: `textgen.onnx_step`). S is 1 for a decode step, the prompt's
    length for the prompt (one row, causal within it).

    A block is 8 nodes: GroupQueryAttention (masked by each row's length, the cache written in
    place), SkipLayerNormalization (the residual sum and the norm), FastGelu (bias and
    activation) and the products, which `build` quantizes.
    """
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    from .steppers import attention_scale

    config, t = model.config, model.transformer
    E, H = config.n_embd, config.n_head
    D, eps = E // H, config.layer_norm_epsilon
    inits, nodes = [], []

    def weight(name: str, tensor) -> str:
        array = tensor if isinstance(tensor, np.ndarray) else tensor.detach().float().contiguous().numpy()
        inits.append(numpy_helper.from_array(array, name))
        return name

    def node(op: str, inputs: list[str], outputs: list[str], microsoft: bool = False, **attrs) -> None:
        nodes.append(helper.make_node(op, inputs, outputs, name=f"{op}_{len(nodes)}",
                                      domain="com.microsoft" if microsoft else "", **attrs))

    weight("one", np.array([1], dtype=np.int32))
    weight("last", np.array(-1, dtype=np.int64))
    weight("scalar", np.array([], dtype=np.int64))
    node("Gather", [weight("wte", t.wte.weight), "tokens"], ["token_emb"])
    node("Gather", [weight("wpe", t.wpe.weight), "positions"], ["position_emb"])
    node("Add", ["token_emb", "position_emb"], ["x"])  # (R, S, E): GroupQueryAttention's (B, S, E)
    # each row's last position (its length less one) and the longest row: what
    # GroupQueryAttention masks by
    node("Gather", ["positions", "last"], ["last_positions"], axis=1)
    node("Cast", ["last_positions"], ["past_lengths"], to=TensorProto.INT32)
    node("ReduceMax", ["past_lengths"], ["longest_past"], keepdims=1)
    node("Add", ["longest_past", "one"], ["total_1"])
    node("Reshape", ["total_1", "scalar"], ["total"])
    residual, delta = "x", None
    act = _ACTIVATION_OPS[config.activation_function]
    for i, block in enumerate(t.h):
        a, m = block.attn, block.mlp
        ln1 = [weight(f"ln1_w{i}", block.ln_1.weight), weight(f"ln1_b{i}", block.ln_1.bias)]
        if delta is None:
            node("LayerNormalization", [residual, *ln1], [f"h{i}"], axis=-1, epsilon=eps)
        else:  # the last block's output added to the residual, then normed, in one node
            node("SkipLayerNormalization", [delta, residual, *ln1], [f"h{i}", "", "", f"res{i}"],
                 microsoft=True, epsilon=eps)
            residual = f"res{i}"
        node("MatMul", [f"h{i}", weight(f"qkv_w{i}", a.c_attn.weight)], [f"qkv_{i}"])
        node("Add", [f"qkv_{i}", weight(f"qkv_b{i}", a.c_attn.bias)], [f"qkv{i}"])
        node("GroupQueryAttention", [f"qkv{i}", "", "", f"k{i}", f"v{i}", "past_lengths", "total"],
             [f"att{i}", f"present_k{i}", f"present_v{i}"], microsoft=True, num_heads=H, kv_num_heads=H,
             scale=float(attention_scale(config, i)))
        node("MatMul", [f"att{i}", weight(f"proj_w{i}", a.c_proj.weight)], [f"proj_{i}"])
        node("Add", [f"proj_{i}", weight(f"proj_b{i}", a.c_proj.bias)], [f"proj{i}"])
        node("SkipLayerNormalization", [f"proj{i}", residual, weight(f"ln2_w{i}", block.ln_2.weight),
                                        weight(f"ln2_b{i}", block.ln_2.bias)],
             [f"h2_{i}", "", "", f"mid{i}"], microsoft=True, epsilon=eps)
        residual = f"mid{i}"
        node("MatMul", [f"h2_{i}", weight(f"fc_w{i}", m.c_fc.weight)], [f"fc_{i}"])
        if act is None:
            node("Add", [f"fc_{i}", weight(f"fc_b{i}", m.c_fc.bias)], [f"fcb{i}"])
            node("Relu", [f"fcb{i}"], [f"act{i}"])
        else:
            node(act, [f"fc_{i}", weight(f"fc_b{i}", m.c_fc.bias)], [f"act{i}"], microsoft=True)
        node("MatMul", [f"act{i}", weight(f"out_w{i}", m.c_proj.weight)], [f"out_{i}"])
        node("Add", [f"out_{i}", weight(f"out_b{i}", m.c_proj.bias)], [f"out{i}"])
        delta = f"out{i}"
    node("SkipLayerNormalization", [delta, residual, weight("lnf_w", t.ln_f.weight), weight("lnf_b", t.ln_f.bias)],
         ["final"], microsoft=True, epsilon=eps)
    node("Gather", ["final", "last"], ["final_last"], axis=1)  # (R, E): each row's last token
    node("MatMul", ["final_last", weight("head", model.lm_head.weight.detach().float().t().contiguous().numpy())],
         ["logits"])

    def value(name: str, kind, shape) -> Any:
        return helper.make_tensor_value_info(name, kind, shape)

    cache = ["rows", H, "length", D]
    inputs = [value("tokens", TensorProto.INT64, ["rows", "new"]),
              value("positions", TensorProto.INT64, ["rows", "new"])]
    outputs = [value("logits", TensorProto.FLOAT, ["rows", config.vocab_size])]
    for i in range(len(t.h)):
        inputs += [value(f"k{i}", TensorProto.FLOAT, cache), value(f"v{i}", TensorProto.FLOAT, cache)]
        outputs += [value(f"present_k{i}", TensorProto.FLOAT, cache), value(f"present_v{i}", TensorProto.FLOAT, cache)]
    graph = helper.make_model(helper.make_graph(nodes, "gpt2_step", inputs, outputs, inits),
                              opset_imports=[helper.make_opsetid("", 20), helper.make_opsetid("com.microsoft", 1)])
    graph.ir_version = 9  # what onnxruntime 1.2x reads
    return graph.SerializeToString()


def build(model, int8: bool) -> bytes:
    """The step graph of `model` (`step_graph`) and, with int8, its products quantized by ONNX Runtime."""
    from onnx import TensorProto
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from .device import cpu_has_int8_dot

    graph = step_graph(model)
    if not int8:
        return graph
    with tempfile.TemporaryDirectory(prefix="textgen-onnx-") as tmp:
        plain, quantized = Path(tmp) / "step.onnx", Path(tmp) / "step-int8.onnx"
        plain.write_bytes(graph)
        root = logging.getLogger()
        level = root.level
        root.setLevel(logging.ERROR)  # its advice to pre-process is for image models
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                # reduce_range: 7-bit weights where the CPU has no VNNI, whose uint8 × int8
                # kernel sums pairs into 16 bits that full-range weights saturate (textgen-en,
                # greedy agreement with fp32: 94.5% with 8 bits, 98.8% with 7; benchmarks/README.md).
                # DefaultTensorType: the contrib operators' outputs have no inferred type; they are float
                quantize_dynamic(plain, quantized, weight_type=QuantType.QInt8, per_channel=True,
                                 reduce_range=not cpu_has_int8_dot(),
                                 extra_options={"DefaultTensorType": TensorProto.FLOAT})
        finally:
            root.setLevel(level)
        return quantized.read_bytes()
