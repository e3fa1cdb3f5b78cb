"""Which kind of CPU a benchmark ran on: the figures differ a lot between the two kinds."""
from __future__ import annotations

from pathlib import Path


def cpu_kind() -> str:
    """"AVX-512 with native bf16" or "AVX2 (no native bf16)" (where bf16 is emulated and slow)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return "unknown"
    return "AVX-512 with native bf16" if ("avx512_bf16" in flags or "amx_bf16" in flags) else "AVX2 (no native bf16)"
