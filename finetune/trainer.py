"""transformers' Trainer, with what textgen needs on top (imported by `train()` only).

- `TextgenTrainer`: length-grouped batches in a (seed, epoch)-fixed order, and a loss check
  after every step: a NaN or infinite loss raises `TrainingDiverged` at once
  (`logging_nan_inf_filter` would only hide it in the logs).
- `Bridge`: a TrainerCallback that turns Trainer's events into ours (`on_step`, `on_eval`
  with sample texts), writes metrics.jsonl, marks checkpoints complete after Trainer saved
  them, and ends the run when the stop flag is raised (saving a checkpoint first). An eval
  loss above `DIVERGED_RATIO` × the first one raises `TrainingDiverged` too.
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from transformers import Trainer, TrainerCallback

from .checkpoints import RunDir
from .dataset import LengthGroupedSampler
from .errors import TrainingDiverged
from .methods import unwrap
from .packing import PackedDataset, PackedSampler

SAMPLE_TOKENS = 48  # new tokens per sample text shown at each evaluation
SAMPLE_SECONDS = 30.0
# An eval loss this many times the run's first (the model before training) means the run
# diverged even though no loss was NaN: e.g. learning rate 1.0 took eval loss from 5 to 220.
DIVERGED_RATIO = 1.5


class TextgenTrainer(Trainer):
    def __init__(self, *args: Any, sampler_seed: int = 0, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.sampler_seed = sampler_seed
        self.step_loss: float | None = None
        self.step_lr: float | None = None  # the learning rate this step's update used

    def _get_train_sampler(self, train_dataset=None):
        dataset = train_dataset if train_dataset is not None else self.train_dataset
        if isinstance(dataset, PackedDataset):
            return PackedSampler(dataset, self.sampler_seed)
        batch = self._train_batch_size * self.args.gradient_accumulation_steps
        return LengthGroupedSampler(dataset, batch, self.sampler_seed)

    def training_step(self, model, inputs, num_items_in_batch=None):
        self.step_lr = self.optimizer.param_groups[0]["lr"]
        loss = super().training_step(model, inputs, num_items_in_batch)
        value = float(loss)  # one sync per step; Trainer's own NaN filter costs the same
        if not math.isfinite(value):
            raise TrainingDiverged(self.state.global_step + 1, value)
        self.step_loss = value
        return loss


class SampleWriter:
    """A few generations from the model being trained, with a fixed seed, via textgen.Generator."""

    def __init__(self, model, tokenizer, fmt, prompts: list[tuple[str, list[str]]], seed: int) -> None:
        self.model, self.tokenizer, self.fmt = model, tokenizer, fmt
        self.prompts, self.seed = prompts, seed

    def __call__(self, device) -> list[dict[str, Any]]:
        from textgen.generator import Generator
        from textgen.loading import LoadedModel

        if not self.prompts:
            return []
        model, was_training = self.model, self.model.training
        loaded = LoadedModel(model=model, tokenizer=self.tokenizer, fmt=self.fmt, name="training",
                             device=device, dtype=next(model.parameters()).dtype)
        context = int(getattr(unwrap(model).config, "n_positions", 1024))
        samples = []
        model.eval()
        # Generation seeds torch's RNG; fork it so that training's dropout stream is untouched.
        devices = [device.index or 0] if device.type == "cuda" else []
        try:
            with torch.random.fork_rng(devices=devices):
                generator = Generator(loaded)
                for title, keywords in self.prompts:
                    try:
                        result = generator.generate(title, keywords, n=1, seed=self.seed,
                                                    max_new_tokens=min(SAMPLE_TOKENS, context // 2),
                                                    max_seconds=SAMPLE_SECONDS)
                        text = result[0].text
                    except ValueError:  # prompt too long for the context
                        text = ""
                    samples.append({"title": title, "keywords": keywords, "text": text})
        finally:
            model.train(was_training)
        return samples


class Bridge(TrainerCallback):
    """Trainer events → textgen callbacks, metrics.jsonl, checkpoint markers, stop flag."""

    def __init__(self, *, emit: Callable[..., None], should_stop: Callable[[], bool] | None,
                 run: RunDir, samples: SampleWriter | None, is_main: bool) -> None:
        self.emit, self.should_stop, self.run = emit, should_stop, run
        self.samples, self.is_main = samples, is_main
        self.trainer: TextgenTrainer | None = None
        self.started = time.perf_counter()
        self.stopped = False
        self.last_eval: tuple[int, float, list[dict[str, Any]]] | None = None
        self.first_eval: float | None = None  # the run's first eval loss (before training: eval_on_start)

    def on_train_begin(self, args, state, control, **kwargs):
        self.started = time.perf_counter()
        if self.is_main:
            self.emit("start", step=state.global_step, max_steps=state.max_steps)

    def on_step_end(self, args, state, control, **kwargs):
        loss = self.trainer.step_loss
        if self._distributed(args):
            # Each rank's loss is its token sum over the global token count, times world size
            # (Trainer's average_tokens_across_devices): their mean is the batch's loss.
            loss = self._all_reduce(args, loss) / args.world_size
        if self.is_main:
            self.emit("step", step=state.global_step, max_steps=state.max_steps, loss=loss, lr=self.trainer.step_lr,
                      elapsed=time.perf_counter() - self.started)
        # After emitting: a callback may raise the flag on seeing this step.
        if self._stop_requested(args) and state.global_step < state.max_steps:
            self.stopped = True
            control.should_training_stop = True
            control.should_save = True  # a checkpoint at this step, so that --resume continues here

    def _stop_requested(self, args) -> bool:
        if self.should_stop is None:
            return False
        flag = float(bool(self.should_stop()))
        if self._distributed(args):
            # every rank must stop at the same step, or the others would wait forever in all-reduce
            flag = self._all_reduce(args, flag)
        return flag > 0

    @staticmethod
    def _distributed(args) -> bool:
        return args.world_size > 1 and torch.distributed.is_initialized()

    @staticmethod
    def _all_reduce(args, value: float) -> float:
        t = torch.tensor([value], device=args.device)
        torch.distributed.all_reduce(t)  # sum
        return t.item()

    def on_log(self, args, state, control, logs=None, **kwargs):
        if self.is_main and logs:
            record = {"step": state.global_step, "epoch": round(state.epoch or 0.0, 4),
                      "time": round(time.time(), 3), **logs}
            self.run.append_metrics(record)

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        loss = float((metrics or {}).get("eval_loss", float("nan")))
        if not math.isfinite(loss):
            raise TrainingDiverged(state.global_step, loss, during="evaluation")
        if self.first_eval is None:
            self.first_eval = loss
        elif loss > DIVERGED_RATIO * self.first_eval:
            raise TrainingDiverged(state.global_step, loss, during="evaluation", start=self.first_eval)
        samples = self.samples(args.device) if (self.is_main and self.samples) else []
        self.last_eval = (state.global_step, loss, samples)
        if self.is_main:
            self.emit("eval", step=state.global_step, eval_loss=loss, samples=[s["text"] for s in samples])

    def on_save(self, args, state, control, **kwargs):
        if args.world_size > 1 and torch.distributed.is_initialized():
            torch.distributed.barrier()  # every rank has written its part (rng_state_N.pth)
        if self.is_main:
            folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            self.run.mark_complete(folder, state.global_step)
            self.run.rotate()
