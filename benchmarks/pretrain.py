"""Pretraining speed from scratch: packed blocks vs padded examples, side by side, with MFU.

    python -m benchmarks.pretrain                    # both languages, about 6 minutes on 2 cores
    python -m benchmarks.pretrain --languages zh --steps 20

Both paths are the real pipeline (`finetune.training.train`, `--base scratch --config base`,
the built-ins' shape: 6 layers, 256 wide, 8k vocabulary) on the same rows and batch size:

- padded: one example per row (windows of long rows), batches of similar length padded to
  the longest (`LengthGroupedSampler`, `Collator`), AdamW (`adamw_torch`);
- packed: examples end to end in blocks of max_length (`--pack`, `finetune.packing`), no
  attention mask, fused AdamW.

Reported: text tokens trained per second (padding excluded) after the first steps, and MFU:
6 · parameters · tokens/s over this machine's matmul peak in the dtype the pipeline picks,
measured here on large square matmuls with the same threads. Rows: poems of chinese-poetry
(zh) and Wikipedia sections (en) from ../shared/corpora/ (see its README).
"""
from __future__ import annotations

import argparse
import re
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.machine import cpu_kind
from benchmarks.quality import unpack


def matmul_peak(dtype, size: int = 2048, trials: int = 5) -> float:
    """Best FLOP/s of a size³ matmul in `dtype` with torch's current threads."""
    import torch

    a, b = torch.randn(size, size, dtype=dtype), torch.randn(size, size, dtype=dtype)
    best = 0.0
    for _ in range(trials + 1):
        start = time.perf_counter()
        a @ b
        best = max(best, 2 * size ** 3 / (time.perf_counter() - start))
    return best


class StepClock:
    """Times steps after a warm-up, through the pipeline's progress callbacks."""

    def __init__(self, skip: int) -> None:
        self.skip, self.times = skip, {}

    def on_start(self, info) -> None:
        self.params = info.total_params

    def on_step(self, step, max_steps, loss, lr, elapsed) -> None:
        self.times[step] = time.perf_counter()

    def on_eval(self, *args) -> None:
        pass

    def on_end(self, result) -> None:
        self.result = result

    def seconds_per_step(self) -> float:
        steps = sorted(s for s in self.times if s > self.skip)
        return (self.times[steps[-1]] - self.times[steps[0]]) / (len(steps) - 1)


def rows_for(language: str, tmp: Path, count: int):
    from finetune.builtin.poetry import read_chinese_poetry
    from finetune.builtin.wikipedia import read_wikiextractor

    if language == "zh":
        root = unpack("chinese-poetry.tar.xz", tmp / "cp", re.compile(r"poet\.tang\.[0-9]000\.simplified\.json$"))
        rows, _ = read_chinese_poetry(root / "chinese-poetry", ("tang",))
    else:
        root = unpack("enwiki-AA.tar.xz", tmp / "en", re.compile(r"wiki_0[0-2]$"))
        rows, _ = read_wikiextractor(root)
    return rows[:count]


def run_path(language: str, csv: Path, out: Path, pack: bool, steps: int, batch: int, length: int) -> dict:
    from finetune.config import TrainConfig
    from finetune.training import train

    clock = StepClock(skip=3)
    config = TrainConfig(data=str(csv), out=str(out), base="scratch", config="base", method="full", epochs=100,
                         max_steps=steps, batch_size=batch, max_length=length, lr=1e-3, eval_ratio=0.0,
                         samples=0, pack=pack, save_steps=10 ** 6, eval_steps=10 ** 6, keywords="column")
    train(config, callbacks=[clock])
    result = clock.result
    tokens_per_step = result.tokens_trained / result.global_step  # text and prompt tokens, padding excluded
    per_step = clock.seconds_per_step()
    return {"path": "packed" if pack else "padded", "seconds_per_step": per_step,
            "tokens_per_step": tokens_per_step, "tokens_per_s": tokens_per_step / per_step,
            "params": clock.params, "precision": result.precision}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--languages", default="zh,en")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--length", type=int, default=256)
    args = parser.parse_args(argv)
    import torch

    from finetune.builtin.rows import write_csv
    from textgen.device import cpu_has_fast_bf16

    dtype = torch.bfloat16 if cpu_has_fast_bf16() else torch.float32
    peak = matmul_peak(dtype)
    print(f"CPU: {cpu_kind()}, {torch.get_num_threads()} threads; matmul peak {peak / 1e9:.1f} GFLOP/s "
          f"({str(dtype).removeprefix('torch.')})", file=sys.stderr)
    table = []
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        for language in [x.strip() for x in args.languages.split(",") if x.strip()]:
            csv = tmp / f"{language}.csv"
            write_csv(rows_for(language, tmp, 4000), csv)
            for pack in (False, True):
                row = run_path(language, csv, tmp / f"{language}-{pack}", pack, args.steps, args.batch, args.length)
                row["language"] = language
                row["mfu"] = 6 * row["params"] * row["tokens_per_s"] / peak
                table.append(row)
                print(row, file=sys.stderr)
    print(f"CPU: {cpu_kind()}, {torch.get_num_threads()} threads, matmul peak {peak / 1e9:.1f} GFLOP/s; "
          f"batch {args.batch}, max length {args.length}, {args.steps} steps\n")
    print("| language | path | s/step | tokens/step | tokens/s | ÷ padded | MFU |\n|---|---|---:|---:|---:|---:|---:|")
    for row in table:
        base = next(r for r in table if r["language"] == row["language"] and r["path"] == "padded")
        print(f"| {row['language']} | {row['path']} | {row['seconds_per_step']:.2f} | {row['tokens_per_step']:.0f} | "
              f"{row['tokens_per_s']:.0f} | {row['tokens_per_s'] / base['tokens_per_s']:.2f} | {row['mfu']:.0%} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
