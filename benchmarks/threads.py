"""The ONNX graph's thread count beside torch's own: which policy makes more tokens/s.

    python -m benchmarks.threads [--models builtin,gpt2-small] [--n 1,4,8] [--rounds 5]

With torch at all the machine's cores (its default), `Generator.generate` in off mode (48 new
tokens, fixed seeds) under three policies for ONNX Runtime's threads, timed in turns within
one process (one call of each policy per round, after a call that settles its pools; medians):
- `torch's count`: the graph on as many threads as torch;
- `shipped` (`OnnxGPT2Step.threads_for`): one thread where a step's logits are big enough for
  torch to run its own sampling ops in parallel, else torch's count;
- `one`: always one thread.
and shipped ÷ torch's count. Models: each built-in, and with `gpt2-small` a GPT-2-small-sized
model with random weights and a 50k vocabulary (`benchmarks.generate.build_random_gpt2`,
which needs Debian's `wamerican`).
"""
from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

from benchmarks.machine import cpu_kind

POLICIES = ("torch's count", "shipped", "one")


def rates(folder: Path, ns: list[int], rounds: int, tokens: int) -> dict[tuple[str, int], float]:
    import torch

    from textgen import Generator, onnx_step

    shipped = onnx_step.OnnxGPT2Step.threads_for
    choose = {"torch's count": lambda self, rows: torch.get_num_threads(), "shipped": shipped,
              "one": lambda self, rows: 1}
    gen = Generator.from_pretrained(str(folder))
    took: dict[tuple[str, int], list[float]] = {(p, n): [] for p in POLICIES for n in ns}
    try:
        for r in range(rounds):
            for n in ns:
                args = dict(n=n, max_new_tokens=tokens, seed=r, keyword_mode="off")
                for policy in POLICIES:
                    # steppers ask at creation, so each call runs wholly under its policy
                    onnx_step.OnnxGPT2Step.threads_for = choose[policy]
                    gen.generate("Storm", ["sea"], **args)  # the policy's pools up and settled
                    start = time.perf_counter()
                    result = gen.generate("Storm", ["sea"], **args)
                    made = result.tokens
                    took[(policy, n)].append(made / (time.perf_counter() - start))
    finally:
        onnx_step.OnnxGPT2Step.threads_for = shipped
    return {key: statistics.median(values) for key, values in took.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", default="builtin,gpt2-small", help="comma-separated: builtin, gpt2-small")
    parser.add_argument("--n", default="1,4,8", help="candidates per call, comma-separated")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--tokens", type=int, default=48)
    args = parser.parse_args()
    import torch

    from textgen.loading import builtin_models
    from textgen.onnx_step import onnx_available

    if not onnx_available():
        raise SystemExit("onnxruntime is not installed (pip install -r requirements.txt): nothing to compare")
    cores = os.cpu_count() or 1
    torch.set_num_threads(cores)
    ns = [int(x) for x in args.n.split(",")]
    chosen = args.models.split(",")
    print(f"\nCPU: {cpu_kind()}, {cores} cores, torch at {torch.get_num_threads()} threads; off mode, up to "
          f"{args.tokens} new tokens per candidate, median of {args.rounds} rounds; tokens/s\n")
    print("| model | n | graph on torch's count | shipped | always one | shipped ÷ torch's count |")
    print("|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        folders = []
        if "builtin" in chosen:
            folders += [(folder, name) for name, folder in builtin_models().items()]
        if "gpt2-small" in chosen:
            from benchmarks.generate import build_random_gpt2

            folders.append((build_random_gpt2(Path(tmp) / "gpt2-small", 50257), "GPT-2 12×768, random, 50k vocab"))
        for folder, label in folders:
            got = rates(folder, ns, args.rounds, args.tokens)
            for n in ns:
                old, new, one = (got[(p, n)] for p in POLICIES)
                print(f"| {label} | {n} | {old:.0f} | {new:.0f} | {one:.0f} | **{new / old:.2f}** |", flush=True)


if __name__ == "__main__":
    main()
