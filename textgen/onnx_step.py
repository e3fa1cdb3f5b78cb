"""The decode step of a GPT-2 as one ONNX Runtime graph with int8 weights, for the CPU.

Why: on the small GPT-2s this project ships, a step is ~100 small products and reshapes; in
PyTorch's eager mode each costs 5-30 µs of dispatch, so a step waits on Python, not on the
CPU (benchmarks/README.md, "Beside CTranslate2"). ONNX Runtime runs the same step as one graph
in C++ (about a microsecond a node), with MLAS int8 kernels that use AVX-512 VNNI where the
CPU has it. The graph is written node by node over the model's own weights (`textgen.onnx_graph`), with
ONNX Runtime's fused transformer operators, its weight matrices quantized by ONNX Runtime's own
dynamic quantization (int8 weights with a scale per output channel, 7-bit where the CPU has
no VNNI; activations quantized per call). The sampling loop and the keyword rules stay ours, and the key/value cache is the
caller's (`textgen.steppers`): the graph takes each row's token and position and the cache,
returns the logits, and writes this step's keys and values into the cache in place.

The prompt runs through the same graph, once, at batch size 1 (`prefill`); the steppers copy
its keys and values to the other rows.
"""
from __future__ import annotations

import functools
import hashlib
import importlib
import threading
from typing import Any

import torch

from .onnx_graph import build, graph_fits


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
# torch splits an op across its threads from this many elements up (its GRAIN_SIZE): the
# sampling loop's ops over a step's logits (rows × vocabulary) then run on torch's OpenMP pool,
# whose workers spin-wait after each op on the cores ONNX Runtime's own pool needs next.
TORCH_PARALLEL_ELEMENTS = 32768


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
               else "it runs GPT-2 models on the CPU whose attention heads are a multiple of 8 wide, "
                    "in fp32 or with int8 weights")
        raise ValueError(f"runtime: onnx is not available here ({why}); use 'torch' or 'auto'")
    return "onnx" if usable else "torch"


# Graphs already built in this process, by the weights they were built from: the same model
# loaded again (a second Generator, the app's model switch) is not built and quantized again.
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


class OnnxGPT2Step:
    """A GPT2LMHeadModel's decode step in ONNX Runtime, int8 weights (see the module docstring)."""

    def __init__(self, model, int8: bool = True) -> None:
        """int8=False keeps the weights fp32 (what the tests check the graph's arithmetic by)."""
        config = model.config
        self.layers, self.vocab = config.n_layer, config.vocab_size
        self.heads, self.head_dim = config.n_head, config.n_embd // config.n_head
        if model.transformer.wte.weight.dtype != torch.float32:
            raise ValueError("the ONNX step is built from an fp32 model")
        if not graph_fits(config):
            raise ValueError(f"the ONNX step needs attention heads a multiple of 8 wide, not {self.head_dim}")
        # a big model's graph is not kept, so its weights are not digested either
        kept = sum(p.numel() for p in model.parameters()) <= _GRAPH_KEPT_WEIGHTS
        key = (_fingerprint(model), int8) if kept else None
        with _GRAPHS_LOCK:
            graph = _GRAPHS.get(key)
        if graph is None:
            graph = build(model, int8)
            if kept:
                with _GRAPHS_LOCK:
                    while len(_GRAPHS) >= _GRAPHS_KEPT:
                        _GRAPHS.pop(next(iter(_GRAPHS)))
                    _GRAPHS[key] = graph
        self._graph = graph
        self._sessions: dict[int, Any] = {}
        self._lock = threading.Lock()
        self._bound: dict[tuple, tuple] = {}

    def threads_for(self, rows: int) -> int:
        """ONNX Runtime's threads for a decoder of `rows` (its prompt and every step, one
        session: two pools of ONNX Runtime's within one request slowed its steps too): torch's
        count, the threads the caller gave it (`torch.set_num_threads`), except where torch's
        own ops on a step's logits run in parallel between the steps (TORCH_PARALLEL_ELEMENTS):
        there one. Two pools spinning on the same cores wait for each other; on 2 AVX2 cores with
        torch at 2 threads (benchmarks/README.md, "Two thread pools"), textgen-en at n=8 made
        1,457 tok/s with the graph on two threads and 2,961 on one, a 124M GPT-2 (50k
        vocabulary) at n=1 62-90 against 116-117."""
        threads = torch.get_num_threads()
        return 1 if threads > 1 and rows * self.vocab >= TORCH_PARALLEL_ELEMENTS else threads

    def session(self, threads: int | None = None):
        """The session for `threads` (torch's current thread count when None)."""
        threads = threads or torch.get_num_threads()
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
             values: torch.Tensor, threads: int | None = None) -> torch.Tensor:
        """tokens, positions (R,) → logits (R, V) in fp32. keys, values: (L, R, H, T, D) fp32
        caches whose per-layer slices are contiguous, read at positions < each row's; the graph
        writes this step's key and value at each row's position, in place. threads: ONNX
        Runtime's (`threads_for`; torch's count when None)."""
        session = self.session(threads)
        binding, tok, pos, logits = self._binding(session, keys, values, tokens.shape[0])
        tok.copy_(tokens[:, None])  # bound in place: the graph reads these buffers
        pos.copy_(positions[:, None])
        session.run_with_iobinding(binding)
        return logits.clone()  # the buffer is the next step's output

    def prefill(self, prompt: torch.Tensor, keys: torch.Tensor, values: torch.Tensor,
                threads: int | None = None) -> torch.Tensor:
        """prompt (1, P) from position 0 → logits (1, V) after it; its keys and values are
        written at positions 0 … P - 1 of the caches (L, 1, H, T, D)."""
        tokens = prompt.to(torch.long).contiguous()
        positions = torch.arange(tokens.shape[1])[None, :]
        session = self.session(threads)
        binding, logits = self._bind_caches(session, keys, values, 1)  # once per prompt: not kept
        binding.bind_cpu_input("tokens", tokens.numpy())
        binding.bind_cpu_input("positions", positions.numpy())
        session.run_with_iobinding(binding)
        return logits

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
        binding, logits = self._bind_caches(session, keys, values, rows)
        tok, pos = torch.zeros((rows, 1), dtype=torch.long), torch.zeros((rows, 1), dtype=torch.long)
        binding.bind_cpu_input("tokens", tok.numpy())
        binding.bind_cpu_input("positions", pos.numpy())
        # a few bindings are kept, for requests that run side by side on their own caches; the
        # caches themselves are not kept alive by them
        with self._lock:
            while len(self._bound) >= _BINDINGS:
                self._bound.pop(next(iter(self._bound)))
            self._bound[key] = (binding, tok, pos, logits)
        return binding, tok, pos, logits

    def _bind_caches(self, session, keys: torch.Tensor, values: torch.Tensor, rows: int):
        """A binding of the caches, as the inputs and as the outputs the graph writes in place,
        and of a fresh (rows, V) logits buffer: (binding, logits)."""
        import numpy as np

        binding = session.io_binding()
        for i in range(self.layers):  # keys[i] is (R, H, T, D) and contiguous: bound in place, ...
            for kind, cache in (("k", keys[i]), ("v", values[i])):
                if not cache.is_contiguous() or cache.dtype != torch.float32:
                    raise ValueError("the ONNX step needs contiguous fp32 caches per layer")
                binding.bind_cpu_input(f"{kind}{i}", cache.detach().numpy())
                # ... and as the output, which GroupQueryAttention then writes in place
                binding.bind_output(f"present_{kind}{i}", "cpu", element_type=np.float32,
                                    shape=tuple(cache.shape), buffer_ptr=cache.data_ptr())
        # the dtype named: ONNX Runtime writes fp32 at this address, and torch's default dtype is
        # process-wide (transformers switches it while it builds a model in another thread)
        logits = torch.empty((rows, self.vocab), dtype=torch.float32)
        binding.bind_output("logits", "cpu", element_type=np.float32, shape=tuple(logits.shape),
                            buffer_ptr=logits.data_ptr())
        return binding, logits
