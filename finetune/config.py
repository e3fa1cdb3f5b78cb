"""Settings of a fine-tuning run: `TrainConfig`, its field rules, and the defaults they refer to.

The CLI builds its flags from `config_specs()` and the UI its limits, so a field is described
once, here. Importing this module is cheap (no torch).
"""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Any

from textgen.fields import check_fields, field_specs, spec

METHODS = ("full", "last-n", "head", "lora")
SCRATCH = "scratch"
SCRATCH_PRESETS = ("tiny", "small", "base", "poems")  # finetune.scratch.PRESETS
DEFAULT_LR = {"full": 5e-5, "last-n": 1e-4, "head": 5e-4, "lora": 3e-4, SCRATCH: 1e-3}
MAX_EVAL_ROWS = 1000  # evaluation costs time at every eval step; a thousand rows measure enough
EVALS_PER_RUN = 0.1  # with eval_steps=0: evaluate (and checkpoint) every 10% of the run
LOGS_PER_RUN = 0.01  # a loss point every 1% of the run (every step in short runs)
PACKED_ROW_TOKENS = 4096  # with --pack, rows are cut into windows only beyond this (blocks cut them anyway)
WARMUP = 0.05  # share of steps with a linear learning-rate warmup
_REVISION = re.compile(r"[\w.\-/]{1,128}")
# Settings a resumed run must share with the run it continues (the rest may change).
RESUME_FIELDS = ("base", "revision", "config", "method", "last_n", "lora_r", "lora_alpha", "max_length",
                 "batch_size", "eval_ratio", "seed", "keywords", "train_on_prompt", "insert_keywords",
                 "insert_from", "insert_words", "insert_phrases", "insert_count")


@dataclass
class TrainConfig:
    """Everything a fine-tuning run needs; the CLI's flags and the UI's limits come from here."""

    data: str = spec(help="corpus file: CSV, TSV or JSONL with title, keywords and text")
    out: str = spec(help="folder to write the fine-tuned model to (created; replaced only if it "
                         "holds a previous textgen model)")
    base: str = spec("auto", "model to start from: auto (built-in model for the corpus language), "
                             "a built-in name, a local folder, a hub id, or scratch")
    name: str = spec("", "the model's name, the title of its card (any script; empty: the --out folder's name)")
    revision: str = spec("", "hub revision of --base: a commit hash (pins the weights), tag or branch; "
                             "empty: the repo's default branch")
    config: str = spec("small", "size of the model with --base scratch", choices=SCRATCH_PRESETS)
    method: str = spec("full", "what trains: full (all weights), last-n (last N blocks), "
                               "head (output layer only), lora (adapters, merged on save)", choices=METHODS)
    last_n: int = spec(6, "blocks to train with --method last-n", low=1, high=96)
    lora_r: int = spec(8, "LoRA rank with --method lora", low=1, high=256)
    lora_alpha: float = spec(16.0, "LoRA scale (alpha) with --method lora", low=0.0, high=1024.0, low_open=True)
    epochs: float = spec(3.0, "passes over the training data", low=0.0, high=1000.0, low_open=True)
    max_steps: int = spec(0, "stop after this many optimizer steps (0: run all epochs)", low=0, high=10**7)
    steps_cap: bool = spec(False, "with --max-steps: stop after the epochs or at max_steps, whichever "
                                  "comes first (without it, max_steps replaces the epochs)")
    lr: float | None = spec(None, "peak learning rate (empty: per method, "
                                  + ", ".join(f"{k} {v:g}" for k, v in DEFAULT_LR.items()) + ")",
                            low=0.0, high=1.0, low_open=True)
    batch_size: int = spec(8, "examples per step and process", low=1, high=1024)
    max_length: int = spec(512, "tokens per example, prompt included; longer texts become "
                                "several windows", low=32, high=8192)
    eval_ratio: float = spec(0.1, "share of rows held out to measure eval loss and perplexity "
                                  f"(at most {MAX_EVAL_ROWS} rows)", low=0.0, high=0.5)
    seed: int = spec(0, "random seed: same seed and data give the same run", low=0, high=2**32 - 1)
    keywords: str = spec("column", "column: use the keywords column (extract where empty); "
                                   "auto: always extract keywords from the text", choices=("column", "auto"))
    resume: bool = spec(False, "continue from the last complete checkpoint of an interrupted run")
    train_on_prompt: bool = spec(False, "also train on the title and keywords, not only on the text")
    insert_keywords: float = spec(0.0, "share of training examples that also get 1-3 (--insert-count) keywords "
                                       "of other rows, put into the text and the keywords: teaches the model "
                                       "to write the keywords it is given", low=0.0, high=1.0)
    insert_from: str = spec("keywords", "what --insert-keywords borrows: keywords (other rows' keywords), "
                                        "random (random words of the texts; for Chinese, made-up words of "
                                        "2-3 of its characters) or words (words of --insert-words)",
                            choices=("keywords", "random", "words"))
    insert_words: str = spec("", "with --insert-from words: a UTF-8 text file of words to borrow, one per "
                                 "line (text after a tab is ignored), e.g. the vocabulary your users will type")
    insert_count: int = spec(3, "most words --insert-keywords borrows into one example (1 to this many)",
                             low=1, high=16)
    insert_phrases: float = spec(0.0, "with --insert-from random or words: share of the borrowed English "
                                      "words that become two-word phrases (the word and another random "
                                      "one): teaches the model to copy phrase keywords", low=0.0, high=1.0)
    pack: bool = spec(False, "lay the training examples end to end in blocks of --max-length tokens (no "
                             "padding, one shape): much faster pretraining from scratch on many short rows")
    eval_steps: int = spec(0, "evaluate every N steps (0: every 10% of the run)", low=0, high=10**7)
    save_steps: int = spec(0, "checkpoint every N steps (0: at every evaluation)", low=0, high=10**7)
    samples: int = spec(2, "sample texts generated at each evaluation", low=0, high=8)
    device: str = spec("auto", "auto (CUDA when present), cpu or cuda", choices=("auto", "cpu", "cuda"))
    precision: str = spec("auto", "auto: bf16 autocast on GPUs and CPUs with native bf16, else fp32",
                          choices=("auto", "fp32", "bf16", "fp16"))

    def __post_init__(self) -> None:
        check_fields(self)
        for name in ("data", "out", "base"):
            if not str(getattr(self, name)).strip():
                raise ValueError(f"{name}: must not be empty")
        self.data, self.out = str(self.data), str(self.out)
        if self.revision and (not _REVISION.fullmatch(self.revision) or ".." in self.revision):
            raise ValueError(f"revision: must be a commit hash, tag or branch name (letters, digits, "
                             f"'.', '-', '_', '/'), got {self.revision!r}")
        if self.insert_from == "words" and self.insert_keywords > 0 and not str(self.insert_words).strip():
            raise ValueError("insert_words: --insert-from words needs a word list file (one word per line)")
        self.insert_words = str(self.insert_words)
        if self.insert_phrases > 0 and self.insert_from == "keywords":
            raise ValueError("insert_phrases: makes phrases of random or listed words; use it with "
                             "--insert-from random or words (other rows' keywords stay as they are)")
        if self.base == SCRATCH and self.method != "full":
            raise ValueError(f"method: a model trained from scratch has no trained weights to keep; "
                             f"use --method full, not {self.method!r}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def learning_rate(self) -> float:
        if self.lr is not None:
            return self.lr
        return DEFAULT_LR[SCRATCH if self.base == SCRATCH else self.method]


def config_specs() -> dict[str, dict[str, Any]]:
    """Default, type, help and bounds of every TrainConfig field, for CLIs and UIs."""
    return field_specs(TrainConfig)
