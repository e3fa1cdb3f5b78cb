"""Command line: ``python -m finetune --data corpus.csv --out runs/my-model``.

Flags come from `TrainConfig` (its fields' help and bounds), so the CLI, the Python API and
the UI share one definition. torch and transformers load only after the flags are parsed:
``--help`` is instant. The same command runs under ``torchrun --nproc_per_node 2 -m finetune``
or ``accelerate launch -m finetune``; then only the first process prints.

Ctrl-C stops at the end of the current step and keeps a checkpoint (resume with
``--resume``); a second Ctrl-C aborts at once.
"""
from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from collections.abc import Sequence
from typing import Any

from textgen.fields import plain_number

from .config import TrainConfig, config_specs

EXIT_STOPPED = 130


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m finetune",
        description="Fine-tune a GPT-2 on a corpus of title, keywords and text; the result loads with "
                    "textgen.Generator.from_pretrained(OUT).",
        epilog="Example: python -m finetune --data poems.csv --out runs/poems --method lora --epochs 2",
    )
    for name, spec in config_specs().items():
        flag = "--" + name.replace("_", "-")
        help_text = spec["help"].replace("%", "%%")
        if spec["type"] == "bool":
            parser.add_argument(flag, dest=name, action="store_true", help=help_text)
            continue
        kind = int if spec["type"].startswith("int") else float if spec["type"].startswith("float") else str
        if spec["choices"]:
            help_text += " (default: %(default)s)"
        elif spec["min"] is not None:
            help_text += f" [{plain_number(spec['min'])}–{plain_number(spec['max'])}, default: %(default)s]"
        elif not spec["required"]:
            help_text += " (default: %(default)s)"
        parser.add_argument(flag, dest=name, type=kind, default=spec["default"], choices=spec["choices"],
                            required=spec["required"], help=help_text,
                            metavar=None if spec["choices"] else name.upper())
    return parser


class TqdmProgress:
    """Progress bar (steps, loss, learning rate, ETA) and evaluation lines on stderr."""

    def __init__(self, stream=sys.stderr) -> None:
        self.stream, self.bar, self.prompts = stream, None, []

    def on_start(self, info) -> None:
        from tqdm.auto import tqdm

        print(f"base: {info.base}; method: {info.method}, {info.trainable_params:,} of "
              f"{info.total_params:,} parameters trainable; {info.precision} on {info.device}"
              + (f" x{info.world_size}" if info.world_size > 1 else ""), file=self.stream)
        print(f"examples: {info.train_windows} windows from {info.rows_used - info.eval_rows} rows "
              f"({info.rows_split} long texts split), {info.eval_rows} rows held out", file=self.stream)
        self.prompts = info.sample_prompts
        for note in info.notes:
            print(f"note: {note}", file=self.stream)
        self.bar = tqdm(total=info.max_steps, initial=info.start_step, unit="step", file=self.stream,
                        dynamic_ncols=True)

    def on_step(self, step: int, max_steps: int, loss: float, lr: float, elapsed: float) -> None:
        if self.bar is None:
            return
        self.bar.total = max_steps
        self.bar.update(step - self.bar.n)
        self.bar.set_postfix(loss=f"{loss:.4f}", lr=f"{lr:.2e}", refresh=False)

    def on_eval(self, step: int, eval_loss: float, samples: list[str]) -> None:
        import math

        ppl = math.exp(eval_loss) if eval_loss < 700 else float("inf")
        lines = [f"step {step}: eval loss {eval_loss:.4f}, perplexity {ppl:.2f}"]
        lines += [f"  sample: {title} | {', '.join(keywords)} → {_one_line(text)}"
                  for (title, keywords), text in zip(self.prompts, samples)]
        self._write("\n".join(lines))

    def on_end(self, result) -> None:
        if self.bar is not None:
            self.bar.close()

    def _write(self, text: str) -> None:
        if self.bar is not None:
            self.bar.write(text, file=self.stream)
        else:
            print(text, file=self.stream)


def _one_line(text: str, limit: int = 80) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _stop_on_sigint() -> threading.Event:
    """First Ctrl-C: stop after this step with a checkpoint. Second: the usual KeyboardInterrupt."""
    stop = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        return stop

    def handler(signum, frame):
        if stop.is_set():
            signal.signal(signal.SIGINT, signal.default_int_handler)
            raise KeyboardInterrupt
        stop.set()
        print("\nstopping after this step (Ctrl-C again to abort now)…", file=sys.stderr)

    signal.signal(signal.SIGINT, handler)
    return stop


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        config = TrainConfig(**vars(args))
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    is_main = os.environ.get("RANK", "0") == "0"
    _quiet_libraries()
    from textgen.loading import ModelLoadError

    from .errors import DataError, OutputError, SaveError, TrainingDiverged
    from .training import train

    callbacks: list[Any] = [TqdmProgress()] if is_main else []
    try:
        result = train(config, callbacks=callbacks, should_stop=_stop_on_sigint())
    except (DataError, OutputError, ModelLoadError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except (TrainingDiverged, SaveError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if is_main:
        print(result.summary())
    return EXIT_STOPPED if result.stopped else 0


def _quiet_libraries() -> None:
    """transformers' own progress bars and advice would interleave with ours."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import transformers

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
