"""Device and dtype, resolved when a model is loaded (never at import)."""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

DTYPES = ("auto", "float32", "bfloat16", "float16")


@lru_cache(maxsize=1)
def cpu_info() -> str:
    """/proc/cpuinfo's text ("" where there is none), read once: the CPU's name and flags."""
    try:
        return Path("/proc/cpuinfo").read_text()
    except OSError:
        return ""


def cpu_name() -> str:
    """The CPU's model name as the kernel reports it ("CPU" where it does not)."""
    for line in cpu_info().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "CPU"


def cpu_has_fast_bf16() -> bool:
    """True when the CPU has native bf16 matmul instructions (AVX512-BF16 or AMX).

    Without them PyTorch emulates bf16 and it is slower than fp32, so we keep fp32.
    """
    flags = cpu_info()
    return "avx512_bf16" in flags or "amx_bf16" in flags


def cpu_has_int8_dot() -> bool:
    """True when the CPU multiplies 8-bit integers into 32-bit sums in one instruction (x86's
    VNNI: AVX512-VNNI, AVX-VNNI or AMX; ARM's dot product). Without it, x86 kernels sum pairs
    into 16 bits first, which saturates for full-range int8 weights."""
    return any(flag in cpu_info() for flag in ("avx512_vnni", "avx_vnni", "amx_int8", "asimddp"))


def resolve_device(device: str | None = None):
    """"auto"/None → CUDA when present, else CPU; anything else is passed to torch.device."""
    import torch

    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        return torch.device(device)
    except RuntimeError as exc:
        raise ValueError(f"device: {device!r} is not a device torch knows ({exc})") from None


def resolve_dtype(device, dtype: str | None = None):
    """Choose the compute dtype: bf16 on CUDA (fp16 where bf16 is unsupported) and on CPUs
    with native bf16; fp32 elsewhere. An explicit dtype always wins."""
    import torch

    if dtype not in (None, "auto"):
        if dtype not in DTYPES:
            raise ValueError(f"dtype: must be one of {', '.join(DTYPES)}, got {dtype!r}")
        return getattr(torch, dtype)
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device.type == "cpu" and cpu_has_fast_bf16():
        return torch.bfloat16
    return torch.float32
