"""Where int8 weights pay on this CPU: one product per matrix shape, and a whole decode step.

    python -m benchmarks.int8_sizes [--threads 1,2]

For the matrix shapes of the built-ins (256 wide) and of 12 × 768 GPT-2s, it times x @ W in
fp32 (`torch.addmm`, what the lean decode path runs) and in int8 (`textgen.quantize.Int8Linear`,
fbgemm's dynamic kernel) at 1 and 8 rows, cycling through 24 copies of each matrix as a model's
layers would (so that no product finds its weights in the cache from the call before). Then a
whole batched decode step of textgen-en (`textgen.batching.SlotStepper`) with its matrices int8
from each floor in `--floors`, at 1 and 8 rows: what `textgen.quantize.INT8_MIN_WEIGHTS` picks.
Prints best-of-three times in µs and ms, side by side.
"""
from __future__ import annotations

import argparse
import copy
import itertools
import time
import warnings
from pathlib import Path

from benchmarks.machine import cpu_kind
from benchmarks.report import print_table

ROOT = Path(__file__).resolve().parent.parent
SHAPES = [(256, 256), (256, 768), (256, 1024), (1024, 256), (768, 768), (768, 2304), (768, 3072)]
COPIES = 24


def _best(f, calls: int, repeats: int = 3) -> float:
    for _ in range(20):
        f()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(calls):
            f()
        times.append((time.perf_counter() - start) / calls)
    return min(times)


def product_rows(threads: int) -> list[list[str]]:
    import torch

    from textgen.quantize import Int8Linear

    torch.set_num_threads(threads)
    rows = []
    for n_in, n_out in SHAPES:
        bias = torch.randn(n_out)
        dense = [torch.randn(n_in, n_out) for _ in range(COPIES)]  # Conv1D's (in, out) layout
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            packed = [Int8Linear.from_weight(w.t(), bias) for w in dense]
        for m in (1, 8):
            x = torch.randn(m, n_in)
            turn = itertools.count()
            fp32 = _best(lambda: torch.addmm(bias, x, dense[next(turn) % COPIES]), 500)
            int8 = _best(lambda: packed[next(turn) % COPIES](x), 500)
            rows.append([threads, f"{n_in} × {n_out}", f"{n_in * n_out:,}", m, f"{fp32 * 1e6:.0f}",
                         f"{int8 * 1e6:.0f}", f"**{fp32 / int8:.2f}**"])
    return rows


def step_rows(threads: int, floors: list[int]) -> list[list[str]]:
    import torch

    from textgen.device import cpu_has_fast_bf16
    from textgen.loading import load
    from textgen.quantize import Int8GPT2

    torch.set_num_threads(threads)
    # fp32 whatever the CPU: the int8 kernels read and return fp32, as `load` arranges for them
    loaded = load(ROOT / "assets" / "models" / "textgen-en", quantize="none", dtype="float32")
    out = []
    for floor in floors:
        int8 = Int8GPT2.from_model(loaded.model, min_weights=floor) if floor else None
        label = f"{floor:,}" if floor else "fp32 only"
        out += [[threads, label, 0 if int8 is None else int8.matrices, rows, _step_ms(loaded.model, int8, rows)]
                for rows in (1, 8)]
    if cpu_has_fast_bf16():  # also the bf16 model without int8 (what quantize="none" runs there)
        bf16 = copy.deepcopy(loaded.model).bfloat16()
        out += [[threads, "bf16, no int8", 0, rows, _step_ms(bf16, None, rows)] for rows in (1, 8)]
    return out


def _step_ms(model, int8, rows: int) -> str:
    """Best time of one batched decode step of `rows` rows, in ms."""
    import torch

    from textgen.batching import SlotStepper
    from textgen.steppers import DecodePath

    stepper = SlotStepper(model, rows, 256, DecodePath(int8=int8))
    stepper.reserve(rows, 256)
    with torch.inference_mode():
        for r in range(rows):
            stepper.prefill_into(r, 1, torch.arange(5, 25)[None])
        tokens = torch.full((rows,), 11)
        seconds = _best(lambda: stepper.step_rows(tokens), 60)  # the cache grows to 220 tokens
    return f"{seconds * 1e3:.2f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--floors", default=f"0,{1 << 20},{1 << 17}", help="int8 from this many weights (0: none)")
    args = ap.parse_args()
    threads = [int(t) for t in args.threads.split(",")]
    floors = [int(f) for f in args.floors.split(",")]
    print(f"CPU: {cpu_kind()}")
    print_table(["threads", "matrix (in × out)", "weights", "rows", "fp32 µs", "int8 µs", "fp32 ÷ int8"],
                [r for t in threads for r in product_rows(t)])
    print_table(["threads", "int8 from (weights)", "int8 matrices", "rows", "textgen-en step ms"],
                [r for t in threads for r in step_rows(t, floors)])


if __name__ == "__main__":
    main()
