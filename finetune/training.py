"""Fine-tune a GPT-2 on a corpus: ``train(TrainConfig(...), callbacks=[...]) -> TrainResult``.

>>> from . import TrainConfig, train
>>> config = TrainConfig(data="poems.csv", out="runs/poems", method="lora", epochs=2)  # doctest: +SKIP
>>> result = train(config, callbacks=[my_progress], should_stop=stop_event)           # doctest: +SKIP
>>> result.output_dir, result.eval_loss, result.perplexity                             # doctest: +SKIP

The pipeline: read the corpus (`finetune.data`), load the base model safely
(`textgen.loading`) or build one from scratch (`finetune.scratch`), give it our prompt
format, choose what trains (`methods`), tokenise rows into windows (`dataset`), run
transformers' Trainer with our callbacks bridged to it (`trainer`), and publish the model
atomically with its card (`checkpoints`, `card`).

Callbacks are plain objects with any of `on_start(info)`, `on_step(step, max_steps, loss, lr,
elapsed)`, `on_eval(step, eval_loss, samples)`, `on_end(result)` (see `Progress`), or plain
functions, which receive a `TrainEvent`. They run in the training thread, on the main process.

Settings are `finetune.config`'s, events and errors `finetune.events`'. Importing this module is
cheap (no torch).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import random
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from .arguments import epoch_steps, precision_of, training_args
from .config import MAX_EVAL_ROWS, PACKED_ROW_TOKENS, RESUME_FIELDS, SCRATCH, TrainConfig
from .events import Listeners, RunInfo, TrainResult


def _stop_function(should_stop: Callable[[], bool] | threading.Event | None) -> Callable[[], bool] | None:
    if should_stop is None:
        return None
    if isinstance(should_stop, threading.Event):
        return should_stop.is_set
    if not callable(should_stop):
        raise TypeError("should_stop: give a callable returning bool or a threading.Event")
    return should_stop


# -- the run -----------------------------------------------------------------------------------
def train(config: TrainConfig, callbacks: Sequence[Any] = (),
          should_stop: Callable[[], bool] | threading.Event | None = None) -> TrainResult:
    """Fine-tune as `config` says; return what happened. Raises DataError (bad corpus),
    ModelLoadError (base model), OutputError (--out), TrainingDiverged (NaN loss) or SaveError.

    should_stop: polled after every step; when it turns true the run saves a checkpoint and
    returns a result with `stopped=True` (nothing published); `resume=True` continues it.
    """
    from .checkpoints import RunDir, check_out, remove_stale_temporaries, run_dir_for
    from .data import load_corpus

    listeners = Listeners(callbacks)
    stop = _stop_function(should_stop)
    started = time.perf_counter()
    rows, report = load_corpus(config.data, keywords=config.keywords)
    out = Path(config.out).expanduser().resolve()
    check_out(out)
    run = RunDir(run_dir_for(out))
    train_rows, eval_rows = split_rows(rows, config.eval_ratio, config.seed)
    args = training_args(config, run.path, has_eval=bool(eval_rows))
    is_main = args.process_index == 0
    notes: list[str] = []
    try:
        with args.main_process_first(local=False, desc="preparing the run folder"):
            if is_main:
                remove_stale_temporaries(out)
            resume_from = _prepare_run(run, config, out, is_main, notes)
            base = _load_base(config, report, rows, run, is_main, resume_from is not None)
        parts = _prepare(config, base, report, train_rows, eval_rows, notes)
        if config.steps_cap and config.max_steps and epoch_steps(config, args, len(parts.train_ds)) <= config.max_steps:
            args.max_steps = -1  # the epochs end first (Trainer reads max_steps when training starts)
        trainer, bridge = _make_trainer(config, args, run, parts, listeners, stop)
    except BaseException:
        if is_main and run.is_ours() and not run.complete_checkpoints():
            run.remove()  # nothing was trained: leave no run folder behind
        raise
    output = trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
    result = _finish(config, trainer, bridge, output, parts, run, out, started)
    if is_main:
        listeners("end", result=result)
    return result


def split_rows(rows: Sequence[Any], eval_ratio: float, seed: int) -> tuple[list[Any], list[Any]]:
    """Hold out a seeded random share of rows for evaluation (at least one when asked for)."""
    if eval_ratio <= 0 or len(rows) < 2:
        return list(rows), []
    n_eval = min(max(1, round(len(rows) * eval_ratio)), MAX_EVAL_ROWS, len(rows) - 1)
    order = list(range(len(rows)))
    random.Random(seed).shuffle(order)
    held = set(order[:n_eval])
    return ([r for i, r in enumerate(rows) if i not in held], [r for i, r in enumerate(rows) if i in held])


def _fingerprint(config: TrainConfig) -> dict[str, Any]:
    digest = hashlib.sha256()
    with open(config.data, "rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return {**{k: getattr(config, k) for k in RESUME_FIELDS}, "data_sha256": digest.hexdigest()}


def _prepare_run(run, config: TrainConfig, out: Path, is_main: bool, notes: list[str]) -> Path | None:
    """Create or check the run folder; return the checkpoint to resume from, if any.

    Runs on the main process first, then on the others (which only read).
    """
    from .errors import OutputError

    settings = _fingerprint(config)
    if not run.path.exists():
        if config.resume:
            notes.append("nothing to resume: started from the beginning")
    elif not run.is_ours():
        raise OutputError(f"out: {run.path} exists but textgen did not create it; move it away "
                          "or choose another --out")
    elif config.resume:
        before = run.settings()
        defaults = {f.name: f.default for f in fields(TrainConfig)}  # runs from before a field existed
        changed = [k for k, v in settings.items() if before.get(k, defaults.get(k)) != v]
        if changed:
            raise OutputError(f"resume: the interrupted run in {run.path} used other settings "
                              f"({', '.join(changed)}); use the same ones, or delete that folder to start over")
        if is_main:
            notes += [f"ignored incomplete checkpoint {p.name}" for p in run.remove_incomplete()]
        checkpoint = run.last_complete()
        if checkpoint is not None:
            if is_main:
                run.truncate_metrics(int(checkpoint.name.rsplit("-", 1)[1]))
            notes.append(f"resumed from {checkpoint.name}")
            return checkpoint
        notes.append("no complete checkpoint to resume from: started from the beginning")
    elif is_main and run.complete_checkpoints():
        step = run.complete_checkpoints()[-1][0]
        raise OutputError(f"resume: an interrupted run of {out.name} has a checkpoint at step {step} in "
                          f"{run.path}; pass --resume to continue it, or delete that folder to start over")
    if is_main:
        run.create(settings)
    return None


def _load_base(config: TrainConfig, report, rows, run, is_main: bool, resuming: bool):
    """(LoadedModel, base name, ids of special tokens we added) — our format, in fp32 on CPU."""
    import torch

    from textgen.loading import builtin_for_language, load
    from textgen.prompt import PromptFormat, add_special_tokens, token_ids

    if config.base == SCRATCH:
        folder = run.path / "base"
        if is_main and not (resuming and (folder / "config.json").is_file()):
            _build_scratch(config, report, rows, folder)
        source, name = folder, f"scratch ({config.config})"
    elif config.base == "auto":
        source = builtin_for_language(report.language)
        name = str(source)
    else:
        source, name = config.base, config.base + (f"@{config.revision}" if config.revision else "")
    loaded = load(source, device="cpu", dtype="float32", revision=config.revision or None)
    # A textgen model keeps the prompt format it was trained with (its version included);
    # any other base learns the current one.
    fmt = loaded.fmt if loaded.fmt is not None and loaded.fmt.style == "textgen" else PromptFormat()
    before = set(loaded.tokenizer.get_vocab().values())
    torch.manual_seed(config.seed)  # new embedding rows are drawn around the mean: reproducibly
    add_special_tokens(loaded.tokenizer, fmt, loaded.model)
    ids = token_ids(loaded.tokenizer, fmt)
    added = sorted(i for i in ids.values() if i not in before)
    loaded.fmt = fmt
    return loaded, name, added


def _build_scratch(config: TrainConfig, report, rows, folder: Path) -> None:
    from .scratch import ScratchConfig, init_scratch_model, save_scratch, train_tokenizer

    preset = ScratchConfig.preset(config.config)
    texts = [t for r in rows for t in (r.title, " ".join(r.keywords), r.text)]
    tokenizer = train_tokenizer(texts, preset.vocab_size, folder, report.language,
                                max_token_bytes=preset.max_token_bytes)
    model = init_scratch_model(tokenizer, preset, seed=config.seed)
    save_scratch(model, tokenizer, folder, dtype="float32")


@dataclass
class _Parts:
    """The model and data of a run, ready for Trainer."""

    model: Any
    tokenizer: Any
    fmt: Any
    method: Any  # methods.MethodReport
    base_name: str
    train_ds: Any  # dataset.ExampleDataset
    eval_ds: Any
    dropped: dict[str, int]  # reason -> rows, from the corpus and from tokenising
    prompts: list[tuple[str, list[str]]]  # for sample texts at each evaluation
    report: Any  # data.DataReport
    notes: list[str]

    def stats(self) -> dict[str, int]:
        return dict(rows_used=self.train_ds.rows_used + self.eval_ds.rows_used, eval_rows=self.eval_ds.rows_used,
                    train_windows=len(self.train_ds), rows_split=self.train_ds.rows_split + self.eval_ds.rows_split)


def _prepare(config: TrainConfig, base, report, train_rows, eval_rows, notes: list[str]) -> _Parts:
    """Choose what trains, tokenise the rows into windows."""
    import torch

    from .data import load_words
    from .errors import DataError
    from .dataset import ExampleDataset
    from .methods import apply_method
    from .packing import PackedDataset

    loaded, base_name, added = base
    tokenizer, fmt = loaded.tokenizer, loaded.fmt
    max_length = _max_length(config, loaded.model, notes)
    torch.manual_seed(config.seed)  # LoRA's initial weights
    model, method = apply_method(loaded.model, config.method, last_n=config.last_n, new_token_ids=added,
                                 lora_r=config.lora_r, lora_alpha=config.lora_alpha)
    common = dict(train_on_prompt=config.train_on_prompt, seed=config.seed)
    words = load_words(config.insert_words) if config.insert_from == "words" and config.insert_keywords else ()
    train_ds = ExampleDataset(train_rows, tokenizer, fmt, PACKED_ROW_TOKENS if config.pack else max_length,
                              augment=True, insert_keywords=config.insert_keywords, insert_from=config.insert_from,
                              insert_words=words, insert_phrases=config.insert_phrases,
                              insert_count=config.insert_count,
                              # packed blocks cut examples: borrowed words go where the prompt is still in view
                              insert_within=config.max_length // 2 if config.pack else 0, **common)
    # the model folder records it: generation places keywords within it (`PromptFormat.text_tokens`)
    fmt = dataclasses.replace(fmt, text_tokens=train_ds.quartile_text_tokens())
    if config.pack:
        train_ds = PackedDataset(train_ds, max_length, seed=config.seed)
        notes.append(f"packed: the examples laid end to end in {len(train_ds):,} blocks of {max_length} tokens "
                     "per epoch (the windows counted above are these blocks)")
    eval_ds = ExampleDataset(eval_rows, tokenizer, fmt, max_length, augment=False, **common)
    if len(train_ds) == 0:
        raise DataError(f"not enough text to train on: every row's title and keywords fill "
                        f"max_length ({max_length} tokens); raise --max-length or shorten them")
    dropped = dict(report.dropped)
    for why, n in (train_ds.dropped + eval_ds.dropped).items():
        dropped[why] = dropped.get(why, 0) + n
    prompts = [(r.title, list(r.keywords)[:5]) for r in (eval_rows or train_rows)[:config.samples]]
    return _Parts(model, tokenizer, fmt, method, base_name, train_ds, eval_ds, dropped, prompts, report, notes)


def _make_trainer(config: TrainConfig, args, run, parts: _Parts, listeners: Listeners, stop):
    from transformers import PrinterCallback
    from transformers.trainer_utils import IntervalStrategy

    from textgen.prompt import token_ids

    from .dataset import Collator
    from .trainer import Bridge, SampleWriter, TextgenTrainer

    has_eval = len(parts.eval_ds) > 0
    if not has_eval:
        args.eval_strategy = IntervalStrategy.NO  # every held-out row was dropped (prompt too long)
    samples = SampleWriter(parts.model, parts.tokenizer, parts.fmt, parts.prompts, config.seed) \
        if parts.prompts else None
    info = RunInfo(max_steps=0, start_step=0, trainable_params=parts.method.trainable,
                   total_params=parts.method.total, method=config.method, base=parts.base_name,
                   device=str(args.device), precision=precision_of(args), world_size=args.world_size,
                   notes=parts.notes, sample_prompts=parts.prompts, **parts.stats())
    bridge = Bridge(emit=_with_info(listeners, info), should_stop=stop, run=run, samples=samples,
                    is_main=args.process_index == 0)
    pad = token_ids(parts.tokenizer, parts.fmt)["pad"]
    trainer = TextgenTrainer(
        model=parts.model, args=args, train_dataset=parts.train_ds,
        eval_dataset=parts.eval_ds if has_eval else None,
        data_collator=Collator(pad, pad_to_multiple_of=None if args.use_cpu else 8),
        callbacks=[bridge], sampler_seed=config.seed)
    trainer.remove_callback(PrinterCallback)  # our callbacks report; Trainer's would print dicts
    bridge.trainer = trainer
    return trainer, bridge


def _finish(config: TrainConfig, trainer, bridge, output, parts: _Parts, run, out: Path,
            started: float) -> TrainResult:
    """Final evaluation, the result, and (unless stopped) the published model."""
    state, args = trainer.state, trainer.args
    stopped = bridge.stopped and state.global_step < state.max_steps
    if not stopped and len(parts.eval_ds) and (bridge.last_eval is None or bridge.last_eval[0] != state.global_step):
        trainer.evaluate()
    eval_loss = bridge.last_eval[1] if bridge.last_eval and not stopped else None
    result = TrainResult(
        output_dir=None if stopped else str(out), stopped=stopped,
        checkpoint=str(run.last_complete()) if stopped else None,
        global_step=state.global_step, max_steps=state.max_steps, epochs=float(state.epoch or 0.0),
        train_loss=_finite(output.training_loss), eval_loss=eval_loss, perplexity=_perplexity(eval_loss),
        data=str(config.data), language=parts.report.language, keywords_source=parts.report.keywords_source,
        rows_total=parts.report.rows_total, rows_dropped=parts.dropped,
        tokens_trained=int(state.num_input_tokens_seen), elapsed_s=0.0, base=parts.base_name,
        scratch=config.base == SCRATCH, method=config.method, trained=parts.method.description,
        trainable_params=parts.method.trainable, total_params=parts.method.total, lr=config.learning_rate,
        precision=precision_of(args), device=str(args.device), world_size=args.world_size,
        samples=bridge.last_eval[2] if bridge.last_eval else [], notes=parts.notes, name=config.name.strip()[:60] or out.name,
        **parts.stats())
    if not stopped:
        result.elapsed_s = time.perf_counter() - started
        if args.process_index == 0:
            _publish(out, run, trainer.model, parts.tokenizer, parts.fmt, config, result)
        trainer.accelerator.wait_for_everyone()
        if args.process_index == 0:
            run.remove()
    result.elapsed_s = time.perf_counter() - started
    return result


def _with_info(listeners: Listeners, info: RunInfo) -> Callable[..., None]:
    """The Bridge knows steps, not the run's statistics: complete its start event here."""

    def emit(kind: str, **data: Any) -> None:
        if kind == "start":
            info.max_steps, info.start_step = data["max_steps"], data["step"]
            listeners("start", info=info)
        else:
            listeners(kind, **data)

    return emit


def _max_length(config: TrainConfig, model, notes: list[str]) -> int:
    context = int(getattr(model.config, "n_positions", config.max_length))
    if config.max_length > context:
        notes.append(f"max_length lowered from {config.max_length} to {context}, the model's context")
        return context
    return config.max_length


def _finite(x: float | None) -> float | None:
    return float(x) if x is not None and math.isfinite(x) else None


def _perplexity(loss: float | None) -> float | None:
    if loss is None:
        return None
    return math.exp(loss) if loss < 700 else float("inf")


def _publish(out: Path, run, model, tokenizer, fmt, config: TrainConfig, result: TrainResult) -> None:
    """Write the model folder atomically: weights, tokenizer, format, metrics, card, marker."""
    import shutil

    from .card import model_card
    from .checkpoints import publish
    from .methods import for_saving

    def write(folder: Path) -> None:
        plain = for_saving(model)  # LoRA merged: the folder loads like any GPT-2
        plain.save_pretrained(folder)
        tokenizer.save_pretrained(folder)
        fmt.save(folder)
        if run.metrics.is_file():
            shutil.copyfile(run.metrics, folder / run.metrics.name)
        cfg, res = _shareable(config.to_dict()), _shareable(result.to_dict())
        summary = {"config": cfg, "result": res}
        (folder / "training.json").write_text(json.dumps(summary, ensure_ascii=False, indent=2) + "\n",
                                              encoding="utf-8")
        (folder / "README.md").write_text(model_card(res, cfg), encoding="utf-8")

    publish(out, write, info={"base": result.base, "method": result.method, "step": result.global_step})


def _shareable(record: dict[str, Any]) -> dict[str, Any]:
    """The record with file paths cut to their names: a model is downloaded and pushed to the
    Hub, and this machine's folders (in the app: random session and job ids) mean nothing there."""
    out = dict(record)
    for key in ("data", "out", "output_dir", "checkpoint", "base"):
        value = out.get(key)
        if isinstance(value, str) and (key != "base" or Path(value).is_absolute()):
            out[key] = Path(value).name
    return out
