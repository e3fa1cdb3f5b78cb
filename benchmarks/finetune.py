"""Fine-tuning throughput: this pipeline against a seed-style recipe, on short and long texts.

    python -m benchmarks.finetune                       # about 8 minutes on 2 CPU cores
    python -m benchmarks.finetune --steps 40 --seed-steps 5 --json results.json

Both recipes train the same model on the same rows, batch size 8, one process each:

- pipeline: `finetune.training` as users run it: length-grouped batches padded to the longest
  example, long texts cut into 768-token windows, loss on the text only, bf16 autocast where
  the CPU has native bf16 (`--precision`), no evaluation or checkpoints during the timing.
- seed: what the project started from: every row (title, keywords, text joined by newlines)
  padded or truncated to max_length 768, fp32, labels = input_ids (the loss also covers the
  padding), a plain `Trainer`.

Model: GPT-2, 6 blocks x 512 wide, 8 heads, 1,024 positions, random init, with a byte-level
BPE of 8,000 tokens trained on the corpus (`finetune.scratch`); 22.5M parameters.
Corpora: "short" = the fortunes-zh poems (`finetune.builtin.debian.build("zh")`, ~45 characters
each); "long" = the same poems joined 40 to a row (~1,800 characters, over 1,024 tokens).

Measured: non-padding tokens trained per second (Trainer's `num_input_tokens_seen`, over
steps 2..N: the first step's allocations are left out) and peak RSS of each run, each in a
fresh subprocess. The seed recipe truncates long rows at 768 tokens; the pipeline trains all
of their text, in windows.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
MAX_LENGTH = 768
BATCH = 8
VOCAB = 8000
POEMS_PER_LONG_ROW = 40


# -- setup (parent process) -------------------------------------------------------------------------
def write_corpora(folder: Path) -> dict[str, Path]:
    from finetune.builtin.debian import build

    rows = build("zh")
    short = folder / "short.csv"
    _write(short, [(r.title, ", ".join(r.keywords), r.text) for r in rows])
    long_rows = []
    for i in range(0, len(rows) - POEMS_PER_LONG_ROW + 1, POEMS_PER_LONG_ROW):
        group = rows[i:i + POEMS_PER_LONG_ROW]
        long_rows.append((group[0].title, ", ".join(group[0].keywords), "\n\n".join(r.text for r in group)))
    long_ = folder / "long.csv"
    _write(long_, long_rows)
    return {"short": short, "long": long_}


def _write(path: Path, rows: list[tuple[str, str, str]]) -> None:
    with path.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["title", "keywords", "text"])
        writer.writerows(rows)


def make_base(folder: Path, corpus: Path) -> Path:
    """The benchmark's model: random init, tokenizer trained on the corpus, our prompt format."""
    from finetune.scratch import ScratchConfig, init_scratch_model, read_csv_texts, save_scratch, train_tokenizer

    config = ScratchConfig(n_layer=6, n_embd=512, n_head=8, n_positions=1024, vocab_size=VOCAB, dropout=0.1,
                           save_dtype="float32")
    tokenizer = train_tokenizer(read_csv_texts(corpus), config.vocab_size, folder, "zh")
    model = init_scratch_model(tokenizer, config)
    save_scratch(model, tokenizer, folder, dtype="float32")
    return folder


# -- one measured run (child process) -----------------------------------------------------------------
def run_pipeline(corpus: Path, base: Path, steps: int, precision: str, work: Path) -> list[tuple[float, int]]:
    from finetune import TrainConfig, train

    out = work / "pipeline-out"
    train(TrainConfig(data=str(corpus), out=str(out), base=str(base), method="full", max_steps=steps,
                      batch_size=BATCH, max_length=MAX_LENGTH, eval_ratio=0.0, samples=0, save_steps=10**6,
                      precision=precision, device="cpu"))
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return [(r["time"], r["num_input_tokens_seen"]) for r in records if "loss" in r]


def run_seed(corpus: Path, base: Path, steps: int, work: Path) -> list[tuple[float, int]]:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, Trainer, TrainerCallback, TrainingArguments

    with corpus.open(encoding="utf-8", newline="") as fh:
        texts = [f"{r['title']}\n{r['keywords']}\n{r['text']}" for r in csv.DictReader(fh)]
    tokenizer = AutoTokenizer.from_pretrained(base)
    tokenizer.pad_token = tokenizer.eos_token  # the usual GPT-2 fix
    enc = tokenizer(texts, padding="max_length", truncation=True, max_length=MAX_LENGTH)

    class Padded(torch.utils.data.Dataset):
        def __len__(self):
            return len(texts)

        def __getitem__(self, i):
            ids = torch.tensor(enc["input_ids"][i])
            return {"input_ids": ids, "attention_mask": torch.tensor(enc["attention_mask"][i]),
                    "labels": ids.clone()}  # the loss covers the padding too

    seen: list[tuple[float, int]] = []

    class Clock(TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs and "loss" in logs:
                seen.append((time.time(), state.num_input_tokens_seen))

    args = TrainingArguments(output_dir=str(work / "seed-out"), per_device_train_batch_size=BATCH,
                             max_steps=steps, logging_steps=1, include_num_input_tokens_seen="non_padding",
                             use_cpu=True, save_strategy="no", report_to="none", disable_tqdm=True, seed=0)
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    Trainer(model=model, args=args, train_dataset=Padded(), callbacks=[Clock()]).train()
    return seen


def child(args: argparse.Namespace) -> None:
    work = Path(tempfile.mkdtemp(prefix="ftbench-"))
    if args.child == "pipeline":
        seen = run_pipeline(args.corpus, args.base, args.steps, args.precision, work)
    else:
        seen = run_seed(args.corpus, args.base, args.steps, work)
    (t0, n0), (t1, n1) = seen[0], seen[-1]
    print(json.dumps({"tokens_per_s": (n1 - n0) / (t1 - t0), "tokens": n1 - n0, "seconds": t1 - t0,
                      "steps": len(seen) - 1, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


def measure(recipe: str, corpus: Path, base: Path, steps: int, precision: str) -> dict:
    cmd = [sys.executable, "-m", "benchmarks.finetune", "--child", recipe, "--corpus", str(corpus), "--base", str(base),
           "--steps", str(steps), "--precision", precision]
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO)
    if proc.returncode != 0:
        raise SystemExit(f"{recipe} on {corpus.name} failed:\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=20, help="pipeline steps on short texts")
    parser.add_argument("--long-steps", type=int, default=4, help="pipeline steps on long texts")
    parser.add_argument("--seed-steps", type=int, default=3, help="seed-recipe steps per corpus")
    parser.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"],
                        help="pipeline precision (auto: bf16 on CPUs with native bf16)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--child", choices=["pipeline", "seed"], help=argparse.SUPPRESS)
    parser.add_argument("--corpus", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--base", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args)
        return 0

    import transformers

    from textgen.device import cpu_has_fast_bf16

    transformers.utils.logging.disable_progress_bar()
    started = time.perf_counter()
    folder = Path(tempfile.mkdtemp(prefix="ftbench-"))
    corpora = write_corpora(folder)
    base = make_base(folder / "base", corpora["short"])
    results = {}
    for name, corpus in corpora.items():
        steps = args.steps if name == "short" else args.long_steps
        results[name] = {"pipeline": measure("pipeline", corpus, base, steps, args.precision),
                         "seed": measure("seed", corpus, base, args.seed_steps, "fp32")}
    print(f"CPU: {os.cpu_count()} cores, native bf16: {cpu_has_fast_bf16()}; model GPT-2 6x512, "
          f"vocab {VOCAB}, batch {BATCH}, max_length {MAX_LENGTH}; pipeline precision {args.precision}")
    print(f"{'corpus':<7} {'recipe':<9} {'steps':>5} {'tokens/s':>10} {'peak RSS MB':>12} {'speed-up':>9}")
    for name, pair in results.items():
        for recipe in ("seed", "pipeline"):
            r = pair[recipe]
            ratio = r["tokens_per_s"] / pair["seed"]["tokens_per_s"]
            print(f"{name:<7} {recipe:<9} {r['steps']:>5} {r['tokens_per_s']:>10.0f} {r['peak_rss_mb']:>12.0f} "
                  f"{ratio:>8.1f}x")
    print(f"total {time.perf_counter() - started:.0f}s")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
