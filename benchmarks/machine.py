"""Which kind of CPU a benchmark ran on: the figures differ a lot between the kinds."""
from __future__ import annotations

from textgen import device


def cpu_kind() -> str:
    """"AVX-512 with native bf16", or "AVX2 (no native bf16)" where bf16 is emulated and slow;
    each with whether int8 products sum into 32 bits in one instruction (VNNI), which decides
    how wide textgen's int8 weights are."""
    if not device.cpu_info():
        return "unknown"
    kind = "AVX-512 with native bf16" if device.cpu_has_fast_bf16() else "AVX2 (no native bf16)"
    return f"{kind}, {'with' if device.cpu_has_int8_dot() else 'no'} VNNI"
