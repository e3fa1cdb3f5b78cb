"""int8 weights for the lean CPU decode path: each matrix of a GPT-2 stored once as int8 with a
scale per output channel, multiplied by fbgemm's dynamic-int8 kernel (activations quantized
per call, accumulation in int32, result in fp32).

Why: at batch 1 a decode step reads every weight once and does two flops per weight, so on a
CPU it waits on memory, not arithmetic. int8 weights are a quarter of fp32's bytes (and a
model of a few million parameters then fits in the CPU's cache), which is what CTranslate2's
int8 mode does. PyTorch's own weight-only int8 kernel (`_weight_int8pack_mm`) is slower
than fp32 on AVX2 CPUs; fbgemm's dynamic kernel, the one behind PyTorch's dynamic
quantization, is the fast one on x86 and needs no new dependency. The quality cost is
measured by benchmarks/quantize.py (held-out perplexity, greedy agreement).
"""
from __future__ import annotations

import functools
import warnings
from dataclasses import dataclass

import torch

QUANTIZE = ("auto", "none", "int8")


@functools.cache
def int8_available() -> bool:
    """fbgemm is PyTorch's x86 engine for quantized kernels; ARM builds lack it, and PyTorch
    has announced it will drop the quantized tensors its packing takes: then "auto" is fp32."""
    if "fbgemm" not in torch.backends.quantized.supported_engines:
        return False
    try:
        Int8Linear.from_weight(torch.ones(2, 2, dtype=torch.float32), None)(torch.ones(1, 2, dtype=torch.float32))
    except (RuntimeError, AttributeError, NotImplementedError):
        return False
    return True


@dataclass
class Int8Linear:
    """y = x @ W.T + b with W (out, in) held as fbgemm-packed int8."""

    packed: torch.Tensor
    out_features: int

    @classmethod
    def from_weight(cls, weight: torch.Tensor, bias: torch.Tensor | None) -> "Int8Linear":
        w = weight.detach().float().contiguous()  # (out, in)
        scale = (w.abs().amax(dim=1) / 127.0).clamp_min(1e-12).double()  # symmetric, per output channel
        zero = torch.zeros(w.shape[0], dtype=torch.long)
        with warnings.catch_warnings():  # the deprecation of quantized tensors: see int8_available
            warnings.simplefilter("ignore", UserWarning)
            q = torch.quantize_per_channel(w, scale, zero, 0, torch.qint8)
        b = None if bias is None else bias.detach().float().contiguous()
        return cls(torch.ops.quantized.linear_prepack(q, b), w.shape[0])

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """x (rows, in) float32 → (rows, out) float32."""
        # reduce_range: fbgemm's x86 kernels sum pairs of u8×s8 products in 16 bits, which 7-bit
        # activations keep from saturating (what PyTorch's dynamic Linear passes too)
        return torch.ops.quantized.linear_dynamic(x, self.packed, True)


# Below this many weights (256 × 512) a matrix stays fp32: quantizing the activations costs each
# int8 call a fixed ~30-50 µs, more than a 256 × 256 fp32 product takes (11-18 µs at one row).
# From 256 × 768 up int8 wins: alone at one row it is about even with fp32 (50-65 µs against
# 41-53), but a whole step of the built-ins runs 20% faster at one row (the int8 weights stay
# in the CPU's caches) and 35% at eight, where fp32 packs each matrix at every call
# (benchmarks/README.md, "int8 per matrix size").
INT8_MIN_WEIGHTS = 1 << 17


@dataclass
class Int8GPT2:
    """The int8 matrices of one GPT2LMHeadModel (four per block, and the output layer); None
    where a matrix is too small to gain."""

    blocks: list[tuple[Int8Linear | None, ...]]
    lm_head: Int8Linear | None

    @classmethod
    def from_model(cls, model, min_weights: int | None = None) -> "Int8GPT2":
        least = INT8_MIN_WEIGHTS if min_weights is None else min_weights

        def pick(weight, bias):
            return Int8Linear.from_weight(weight, bias) if weight.numel() >= least else None

        blocks = []
        for block in model.transformer.h:
            a, m = block.attn, block.mlp
            # GPT-2's Conv1D keeps its weight as (in, out): the transpose is the Linear layout
            blocks.append(tuple(pick(c.weight.t(), c.bias) for c in (a.c_attn, a.c_proj, m.c_fc, m.c_proj)))
        return cls(blocks, pick(model.lm_head.weight, None))

    @property
    def matrices(self) -> int:
        """How many matrices are int8."""
        return sum(x is not None for b in self.blocks for x in b) + (self.lm_head is not None)


def resolve_quantize(quantize: str | None, *, lean: bool) -> str:
    """"none" or "int8". `lean`: the lean CPU GPT-2 path applies to the model (the only one
    with int8 kernels). "auto" takes int8 there when the CPU has the kernels; an explicit
    "int8" the model cannot use is refused with the reason."""
    choice = quantize or "auto"
    if choice not in QUANTIZE:
        raise ValueError(f"quantize: must be one of {', '.join(QUANTIZE)}, got {quantize!r}")
    if choice == "none":
        return "none"
    usable = lean and int8_available()
    if choice == "int8" and not usable:
        why = ("this PyTorch build has no fbgemm kernels" if not int8_available()
               else "int8 runs only on the CPU, for GPT-2 models in fp32 or bf16")
        raise ValueError(f"quantize: int8 is not available here ({why}); use 'none' or 'auto'")
    return "int8" if usable else "none"
