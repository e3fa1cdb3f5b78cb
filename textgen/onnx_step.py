"""The decode step of a GPT-2 as one ONNX Runtime graph with int8 weights, for the CPU.

Why: on the small GPT-2s this project ships, a step is ~100 small products and reshapes; in
PyTorch's eager mode each costs 5-30 µs of dispatch, so a step waits on Python, not on the
CPU (benchmarks/README.md, "Beside CTranslate2"). ONNX Runtime runs the same step as one graph
in C++ (about a microsecond a node), with MLAS int8 kernels that use AVX-512 VNNI where the
CPU has it. The graph is traced from a plain torch function over the model's own weights
(`torch.onnx.export`), its weight matrices quantized by ONNX Runtime's own dynamic
quantization (int8 weights with a scale per output channel; activations quantized per call).
The sampling loop, the keyword rules and the key/value cache stay ours: the graph takes each
row's token, position and past keys and values and returns the logits and this step's keys
and values, which the caller writes into its cache (`textgen.steppers`).

The prompt is not run here: the steppers run it once through PyTorch.
"""
from __future__ import annotations

import functools
import hashlib
import importlib
import io
import logging
import tempfile
import threading
import warnings
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F


@functools.cache
def onnx_available() -> bool:
    """onnxruntime, onnx and the exporter import (they are optional on platforms without wheels)."""
    try:
        for name in ("onnx", "onnxruntime", "onnxruntime.quantization"):
            importlib.import_module(name)
    except ImportError:
        return False
    return True


RUNTIMES = ("auto", "onnx", "torch")
_BINDINGS = 8  # caches bound at once (oldest dropped first)


def check_runtime(runtime: str | None) -> str:
    """A known choice ("auto" for None), or a ValueError naming the choices."""
    choice = runtime or "auto"
    if choice not in RUNTIMES:
        raise ValueError(f"runtime: must be one of {', '.join(RUNTIMES)}, got {runtime!r}")
    return choice


def resolve_runtime(runtime: str | None, *, lean: bool) -> str:
    """"onnx" or "torch": what runs the decode steps. `lean`: the model is a GPT-2 on the CPU
    that the graph can run. "auto" takes ONNX Runtime where it is installed and applies; an
    explicit "onnx" it cannot honour is refused with the reason."""
    choice = check_runtime(runtime)
    if choice == "torch":
        return "torch"
    usable = lean and onnx_available()
    if choice == "onnx" and not usable:
        why = ("onnxruntime is not installed" if not onnx_available()
               else "it runs GPT-2 models on the CPU, in fp32 or with int8 weights")
        raise ValueError(f"runtime: onnx is not available here ({why}); use 'torch' or 'auto'")
    return "onnx" if usable else "torch"


class _Step(torch.nn.Module):
    """One token per row: (tokens, positions, past keys/values per layer) → logits, new k, new v.

    Attention scores the past (masked past each row's position) and the new token apart, so
    the cache is read in place and never concatenated. Written for few graph nodes (each
    costs ONNX Runtime a few microseconds): the attention scale is folded into the query
    weights, products take their bias (Gemm), and 4-d shapes avoid squeezes."""

    def __init__(self, model) -> None:
        super().__init__()
        config, t = model.config, model.transformer
        self.heads, self.width, self.eps = config.n_head, config.n_embd, config.layer_norm_epsilon
        self.head_dim = self.width // self.heads
        from .steppers import _ACTIVATIONS, attention_scale

        self.act = _ACTIVATIONS[config.activation_function]
        self.t, self.head = t, model.lm_head.weight
        for i, block in enumerate(t.h):
            scale = attention_scale(config, i)
            w, b = block.attn.c_attn.weight.detach().clone(), block.attn.c_attn.bias.detach().clone()
            w[:, :self.width] *= scale  # Conv1D's (in, out) layout: the first E outputs are the query
            b[:self.width] *= scale
            # buffers, so the export makes them initializers, which the quantizer takes
            self.register_buffer(f"qkv_w{i}", w)
            self.register_buffer(f"qkv_b{i}", b)

    def forward(self, tokens, positions, *past):
        t, E, H, D = self.t, self.width, self.heads, self.head_dim
        rows = tokens.shape[0]
        x = t.wte.weight[tokens] + t.wpe.weight[positions]  # (R, E)
        length = past[0].shape[2]
        hidden = torch.arange(length)[None, :] >= positions[:, None]  # (R, T): not this row's past
        mask = torch.zeros(hidden.shape).masked_fill(hidden, float("-inf")).view(rows, 1, 1, length)
        new_k, new_v = [], []
        for i, block in enumerate(t.h):
            a, m = block.attn, block.mlp
            h = F.layer_norm(x, (E,), block.ln_1.weight, block.ln_1.bias, self.eps)
            qkv = torch.addmm(getattr(self, f"qkv_b{i}"), h, getattr(self, f"qkv_w{i}"))
            q, k, v = qkv.split(E, dim=1)  # (R, E) each
            q, k, v = q.view(rows, H, 1, D), k.view(rows, H, 1, D), v.view(rows, H, 1, D)
            keys, values = past[2 * i], past[2 * i + 1]  # (R, H, T, D)
            old = torch.matmul(q, keys.transpose(2, 3)) + mask  # (R, H, 1, T)
            own = (q * k).sum(-1, keepdim=True)  # (R, H, 1, 1)
            p = torch.softmax(torch.cat([old, own], -1), -1)
            att = torch.matmul(p[..., :-1], values) + p[..., -1:] * v  # (R, H, 1, D)
            x = x + torch.addmm(a.c_proj.bias, att.reshape(rows, E), a.c_proj.weight)
            h = F.layer_norm(x, (E,), block.ln_2.weight, block.ln_2.bias, self.eps)
            h = self.act(torch.addmm(m.c_fc.bias, h, m.c_fc.weight))
            x = x + torch.addmm(m.c_proj.bias, h, m.c_proj.weight)
            new_k.append(k)
            new_v.append(v)
        x = F.layer_norm(x, (E,), t.ln_f.weight, t.ln_f.bias, self.eps)
        # (L, R, H, D) each
        return torch.matmul(x, self.head.t()), torch.cat(new_k, 2).permute(2, 0, 1, 3), \
            torch.cat(new_v, 2).permute(2, 0, 1, 3)


# Graphs already built in this process, by the weights they were traced from: the same model
# loaded again (a second Generator, the app's model switch) is not traced and quantized again.
_GRAPHS: dict[tuple, bytes] = {}
_GRAPHS_KEPT = 4
_GRAPH_KEPT_WEIGHTS = 16_000_000  # small models only: a 124M GPT-2's graph is ~300 MB
_GRAPHS_LOCK = threading.Lock()


def _fingerprint(model) -> str:
    """A digest of the config and every weight (a few ms for the built-ins)."""
    digest = hashlib.blake2b(digest_size=16)
    digest.update(model.config.to_json_string().encode())
    for name, tensor in model.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().contiguous().view(-1).view(torch.uint8).numpy())
    return digest.hexdigest()


def _build(model, names: list[str], int8: bool) -> bytes:
    """The step graph of `model`, traced by torch.onnx and, with int8, quantized by ONNX Runtime."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    config = model.config
    heads, head_dim = config.n_head, config.n_embd // config.n_head
    step = _Step(model).eval()
    example = (torch.zeros(2, dtype=torch.long), torch.zeros(2, dtype=torch.long),
               *(torch.zeros(2, heads, 3, head_dim) for _ in names))
    graph = io.BytesIO()
    rows_and_length = {0: "rows", 2: "length"}
    with torch.no_grad(), warnings.catch_warnings():  # the TorchScript exporter's deprecation notice
        warnings.simplefilter("ignore")
        torch.onnx.export(step, example, graph, dynamo=False, opset_version=20,
                          input_names=["tokens", "positions", *names],
                          output_names=["logits", "new_k", "new_v"],
                          dynamic_axes={"tokens": {0: "rows"}, "positions": {0: "rows"},
                                        "logits": {0: "rows"}, "new_k": {1: "rows"}, "new_v": {1: "rows"}}
                          | {name: rows_and_length for name in names})
    if not int8:
        return graph.getvalue()
    with tempfile.TemporaryDirectory(prefix="textgen-onnx-") as tmp:
        plain, quantized = Path(tmp) / "step.onnx", Path(tmp) / "step-int8.onnx"
        plain.write_bytes(graph.getvalue())
        root = logging.getLogger()
        level = root.level
        root.setLevel(logging.ERROR)  # its advice to pre-process is for image models
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                quantize_dynamic(plain, quantized, weight_type=QuantType.QInt8, per_channel=True)
        finally:
            root.setLevel(level)
        return quantized.read_bytes()


class OnnxGPT2Step:
    """A GPT2LMHeadModel's decode step in ONNX Runtime, int8 weights (see the module docstring)."""

    def __init__(self, model, int8: bool = True) -> None:
        """int8=False keeps the weights fp32 (what the tests check the graph's arithmetic by)."""
        config = model.config
        self.layers, self.vocab = config.n_layer, config.vocab_size
        self.heads, self.head_dim = config.n_head, config.n_embd // config.n_head
        self.names = [f"{kind}{i}" for i in range(self.layers) for kind in ("k", "v")]
        if model.transformer.wte.weight.dtype != torch.float32:
            raise ValueError("the ONNX step is traced from an fp32 model")
        # a big model's graph is not kept, so its weights are not digested either
        kept = sum(p.numel() for p in model.parameters()) <= _GRAPH_KEPT_WEIGHTS
        key = (_fingerprint(model), int8) if kept else None
        with _GRAPHS_LOCK:
            graph = _GRAPHS.get(key)
        if graph is None:
            graph = _build(model, self.names, int8)
            if kept:
                with _GRAPHS_LOCK:
                    while len(_GRAPHS) >= _GRAPHS_KEPT:
                        _GRAPHS.pop(next(iter(_GRAPHS)))
                    _GRAPHS[key] = graph
        self._graph = graph
        self._sessions: dict[int, Any] = {}
        self._lock = threading.Lock()
        self._bound: dict[tuple, tuple] = {}

    def session(self):
        """The session for torch's current thread count, so that ONNX Runtime uses the threads
        the caller gave torch (`torch.set_num_threads`)."""
        threads = torch.get_num_threads()
        session = self._sessions.get(threads)
        if session is None:
            import onnxruntime as ort

            with self._lock:
                options = ort.SessionOptions()
                options.intra_op_num_threads = threads
                options.inter_op_num_threads = 1
                options.log_severity_level = 3  # its optimizer's notes are not the user's business
                session = self._sessions.setdefault(threads, ort.InferenceSession(
                    self._graph, options, providers=["CPUExecutionProvider"]))
        return session

    def step(self, tokens: torch.Tensor, positions: torch.Tensor, keys: torch.Tensor,
             values: torch.Tensor) -> torch.Tensor:
        """tokens, positions (R,) → logits (R, V) in fp32. keys, values: (L, R, H, T, D) fp32
        caches whose per-layer slices are contiguous, read at positions < each row's; this
        step's key and value are written at each row's position."""
        rows = tokens.shape[0]
        session = self.session()
        binding, tok, pos, logits, new_k, new_v = self._binding(session, keys, values, rows)
        tok.copy_(tokens)  # bound in place: the graph reads these buffers
        pos.copy_(positions)
        session.run_with_iobinding(binding)
        first = int(positions[0])
        if bool((positions == first).all()):  # one request's rows: all at one position
            keys[:, :, :, first] = new_k
            values[:, :, :, first] = new_v
        else:
            index = torch.arange(rows)
            keys[:, index, :, positions] = new_k.transpose(0, 1)
            values[:, index, :, positions] = new_v.transpose(0, 1)
        return logits.clone()  # the buffer is the next step's output

    def _binding(self, session, keys: torch.Tensor, values: torch.Tensor, rows: int):
        """The caches, the token and position buffers and the outputs, bound once per cache
        and row count (ONNX Runtime reads bound CPU arrays in place): binding twelve inputs
        anew at every step costs more than a small model's attention."""
        # address, shape and strides fix every address the binding holds: a cache freed and
        # another made at the same place and shape is bound correctly by the same binding
        key = (id(session), keys.data_ptr(), values.data_ptr(), tuple(keys.shape), keys.stride(),
               values.stride(), rows)
        bound = self._bound.get(key)
        if bound is not None:
            return bound
        import numpy as np

        binding = session.io_binding()
        tok, pos = torch.zeros(rows, dtype=torch.long), torch.zeros(rows, dtype=torch.long)
        binding.bind_cpu_input("tokens", tok.numpy())
        binding.bind_cpu_input("positions", pos.numpy())
        for i in range(self.layers):  # keys[i] is (R, H, T, D) and contiguous: bound in place
            for name, cache in ((self.names[2 * i], keys[i]), (self.names[2 * i + 1], values[i])):
                if not cache.is_contiguous() or cache.dtype != torch.float32:
                    raise ValueError("the ONNX step needs contiguous fp32 caches per layer")
                binding.bind_cpu_input(name, cache.detach().numpy())
        logits = torch.empty((rows, self.vocab))
        new_k = torch.empty((self.layers, rows, self.heads, self.head_dim))
        new_v = torch.empty_like(new_k)
        for name, out in (("logits", logits), ("new_k", new_k), ("new_v", new_v)):
            binding.bind_output(name, "cpu", element_type=np.float32, shape=tuple(out.shape),
                                buffer_ptr=out.data_ptr())
        # a few bindings are kept, for requests that run side by side on their own caches; the
        # caches themselves are not kept alive by them
        with self._lock:
            while len(self._bound) >= _BINDINGS:
                self._bound.pop(next(iter(self._bound)))
            self._bound[key] = (binding, tok, pos, logits, new_k, new_v)
        return binding, tok, pos, logits, new_k, new_v
