"""The transformers `TrainingArguments` of a run: the device and precision this machine gets
(fp32 on CPUs that only emulate bf16), the schedule, evaluation and checkpoint cadence, and how
many optimizer steps an epoch takes."""
from __future__ import annotations

import math
import os
from pathlib import Path

from .config import EVALS_PER_RUN, LOGS_PER_RUN, WARMUP, TrainConfig


def device_and_precision(config: TrainConfig) -> tuple[bool, str]:
    """(use_cpu, precision) resolved for this machine; errors name the field."""
    import torch

    from textgen.device import cpu_has_fast_bf16

    cuda = torch.cuda.is_available()
    if config.device == "cuda" and not cuda:
        raise ValueError("device: cuda was asked for, but torch sees no CUDA GPU")
    use_cpu = config.device == "cpu" or not cuda
    precision = config.precision
    if precision == "auto":
        if use_cpu:
            precision = "bf16" if cpu_has_fast_bf16() else "fp32"
        else:  # fp16 needs loss scaling and can overflow: only when asked for (--precision fp16)
            precision = "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    if precision == "fp16" and use_cpu:
        raise ValueError("precision: fp16 needs a CUDA GPU; use bf16 or fp32 on a CPU")
    return use_cpu, precision


def training_args(config: TrainConfig, run_path: Path, *, has_eval: bool):
    from transformers import TrainingArguments

    use_cpu, precision = device_and_precision(config)
    eval_steps = config.eval_steps or EVALS_PER_RUN
    return TrainingArguments(
        output_dir=str(run_path),
        per_device_train_batch_size=config.batch_size,
        per_device_eval_batch_size=min(config.batch_size, 8),  # eval batches stay small (bounded memory)
        num_train_epochs=config.epochs,
        max_steps=config.max_steps or -1,
        learning_rate=config.learning_rate,
        warmup_steps=WARMUP,
        weight_decay=0.0,  # also keeps frozen embedding rows exactly frozen (see methods.py)
        logging_strategy="steps", logging_steps=LOGS_PER_RUN, logging_first_step=True,
        logging_nan_inf_filter=False,  # we check the loss ourselves, every step
        eval_strategy="steps" if has_eval else "no", eval_steps=eval_steps if has_eval else None,
        eval_on_start=has_eval,  # the model before training: the plot's first point, the divergence baseline
        prediction_loss_only=True,  # never collect (batch, length, vocab) logits during evaluation
        save_strategy="steps", save_steps=config.save_steps or eval_steps,
        save_total_limit=None,  # we rotate ourselves, counting complete checkpoints only
        bf16=precision == "bf16", fp16=precision == "fp16", use_cpu=use_cpu,
        optim="adamw_torch_fused" if config.pack else "adamw_torch",  # one kernel for all parameters
        ddp_backend="gloo" if use_cpu and int(os.environ.get("WORLD_SIZE", "1")) > 1 else None,
        ddp_find_unused_parameters=False,
        auto_find_batch_size=not use_cpu,  # on CUDA out-of-memory, retry at half the batch size
        include_num_input_tokens_seen="all" if config.pack else "non_padding",  # packed blocks have no padding
        label_names=["labels"],
        remove_unused_columns=False,
        dataloader_pin_memory=not use_cpu,
        seed=config.seed,
        report_to="none", disable_tqdm=True,
        log_level="passive", log_level_replica="error",  # the caller decides how chatty transformers is
    )


def precision_of(args) -> str:
    return "bf16" if args.bf16 else "fp16" if args.fp16 else "fp32"


def epoch_steps(config: TrainConfig, args, n_train: int) -> int:
    """Optimizer steps the epochs take, counted as Trainer counts them: batches per process
    (a distributed sampler gives each ceil(n / world) examples) times the epochs, rounded up."""
    per_process = math.ceil(n_train / max(args.world_size, 1))
    per_epoch = max(math.ceil(per_process / config.batch_size) // args.gradient_accumulation_steps, 1)
    return math.ceil(config.epochs * per_epoch)
