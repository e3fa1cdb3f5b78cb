"""Fine-tuning end to end on tiny models: methods, labels, augmentation, windows, resume,
incomplete checkpoints, divergence, atomic saves, the CLI and the config's validation.

Every run is a few steps of a one-block, 32-wide GPT-2 from conftest, on CPU in fp32.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from finetune import TrainConfig, train
from finetune.checkpoints import CHECKPOINT_MARKER, COMPLETE_MARKER, RUN_MARKER, publish
from finetune.dataset import IGNORE_INDEX, Collator, ExampleDataset, plan_windows
from finetune.errors import DataError, SaveError, TrainingDiverged
from textgen.prompt import PromptFormat, encode_example, token_ids

from helpers import STORY, write_corpus

REPO = Path(__file__).resolve().parent.parent


class Row:
    def __init__(self, title, keywords, text):
        self.title, self.keywords, self.text, self.keywords_auto = title, keywords, text, False


# every fourth text long enough to need several windows
CORPUS = dict(keywords="storm, sea, night, moon", long_times=12)

pytestmark = pytest.mark.usefixtures("one_thread")


def config(tmp_path: Path, base: Path, **overrides) -> TrainConfig:
    tmp_path.mkdir(parents=True, exist_ok=True)
    data = tmp_path / "corpus.csv"
    if not data.exists():
        write_corpus(data, **CORPUS)
    settings = dict(data=str(data), out=str(tmp_path / "out"), base=str(base), max_steps=4, batch_size=4,
                    max_length=96, eval_steps=2, samples=1, precision="fp32", device="cpu")
    return TrainConfig(**{**settings, **overrides})


class Recorder:
    """A Progress callback that remembers everything; optionally raises a stop flag at a step."""

    def __init__(self, stop_at: int | None = None) -> None:
        self.starts, self.steps, self.evals, self.ends = [], [], [], []
        self.stop = threading.Event()
        self.stop_at = stop_at

    def on_start(self, info):
        self.starts.append(info)

    def on_step(self, step, max_steps, loss, lr, elapsed):
        self.steps.append((step, max_steps, loss, lr, elapsed))
        if self.stop_at is not None and step >= self.stop_at:
            self.stop.set()

    def on_eval(self, step, eval_loss, samples):
        self.evals.append((step, eval_loss, samples))

    def on_end(self, result):
        self.ends.append(result)


def weights(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(str(folder / "model.safetensors"))


def assert_loads(out: Path) -> None:
    from transformers import AutoModelForCausalLM

    from textgen import Generator

    assert (out / COMPLETE_MARKER).is_file() and (out / "textgen_format.json").is_file()
    model = AutoModelForCausalLM.from_pretrained(out)
    assert model.config.model_type == "gpt2"
    result = Generator.from_pretrained(out, device="cpu").generate("Storm", "sea, night", n=1, seed=0,
                                                                   max_new_tokens=8)
    assert isinstance(result[0].text, str)


# -- methods -----------------------------------------------------------------------------------
@pytest.mark.parametrize("method", ["full", "last-n", "head", "lora"])
def test_each_method_trains_saves_and_reloads(tmp_path, bpe_model_dir, method):
    rec = Recorder()
    result = train(config(tmp_path, bpe_model_dir, method=method, last_n=1), callbacks=[rec])
    out = Path(result.output_dir)
    assert_loads(out)
    assert result.global_step == 4 and [s[0] for s in rec.steps] == [1, 2, 3, 4]
    assert all(math.isfinite(s[2]) and s[3] >= 0 for s in rec.steps)
    assert [e[0] for e in rec.evals] == [0, 2, 4] and len(rec.evals[0][2]) == 1  # before, then every 2
    assert result.eval_loss is not None and result.perplexity == pytest.approx(math.exp(result.eval_loss))
    assert 0 < result.trainable_params <= result.total_params
    assert rec.ends == [result]
    before, after = weights(bpe_model_dir), weights(out)
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    if method == "head":
        assert not json.loads((out / "config.json").read_text()).get("tie_word_embeddings", True)
        assert changed == set()  # the input embedding and every block are untouched ...
        assert not torch.equal(after["lm_head.weight"], before["transformer.wte.weight"])  # ... the head moved
    elif method == "last-n":
        assert changed and all(k.startswith(("transformer.h.0.", "transformer.ln_f")) for k in changed)
    else:  # full, and lora merged into the weights
        assert any(".attn.c_attn.weight" in k for k in changed)
    card = (out / "README.md").read_text()
    assert method in card and "perplexity" in card and "Samples" in card
    # no server paths in what gets downloaded or pushed: file names only
    shared = card + (out / "training.json").read_text()
    assert str(tmp_path) not in shared and str(bpe_model_dir) not in shared
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert any("loss" in x for x in lines) and any("eval_loss" in x for x in lines)
    assert not Path(str(out) + ".checkpoints").exists()  # the run folder goes once the model is out


@pytest.mark.parametrize("method", ["head", "last-n", "lora"])
def test_base_without_our_format_gets_it_and_trains_the_new_token_rows(tmp_path, plain_bpe_model_dir, method):
    result = train(config(tmp_path, plain_bpe_model_dir, method=method, samples=0, lr=1e-2))
    out = Path(result.output_dir)
    assert_loads(out)
    assert dataclasses.replace(PromptFormat.load(out), text_tokens=0) == PromptFormat()
    before, after = weights(plain_bpe_model_dir), weights(out)
    wte_before, wte_after = before["transformer.wte.weight"], after["transformer.wte.weight"]
    old = wte_before.shape[0]
    assert wte_after.shape[0] == old + 4  # [BOS] [SEP] [EOS] [PAD] added
    assert torch.equal(wte_after[:old], wte_before)  # the base's own rows did not move ...
    fresh = add_rows_reference(plain_bpe_model_dir)
    assert not torch.allclose(wte_after[old:], fresh)  # ... the added tokens' rows learned
    assert "added special tokens" in result.trained


def test_a_textgen_base_keeps_its_prompt_format_version(tmp_path, bpe_model_dir):
    """A model trained with format 1 goes on with format 1: its keywords' ids stay the ones it learned."""
    base = tmp_path / "v1"
    base.mkdir()
    for f in bpe_model_dir.iterdir():
        (base / f.name).write_bytes(f.read_bytes())
    PromptFormat(version=1).save(base)
    out = Path(train(config(tmp_path, base, samples=0)).output_dir)
    saved = PromptFormat.load(out)
    assert dataclasses.replace(saved, text_tokens=0) == PromptFormat(version=1) != PromptFormat()
    assert_loads(out)


def test_the_model_records_the_length_its_training_texts_reach(tmp_path, bpe_model_dir):
    """Three texts in four are one story long, one in four twelve: the lower quartile is one
    story and its end token, which generation reads to place keywords (`PromptFormat.text_tokens`)."""
    from transformers import AutoTokenizer

    out = Path(train(config(tmp_path, bpe_model_dir, samples=0)).output_dir)
    story = AutoTokenizer.from_pretrained(out)(STORY.strip(), add_special_tokens=False)["input_ids"]
    assert PromptFormat.load(out).text_tokens == len(story) + 1
    assert PromptFormat.load(bpe_model_dir).text_tokens == 0  # the base recorded none


def add_rows_reference(model_dir: Path) -> torch.Tensor:
    """The rows `add_special_tokens` gives the new tokens before any training."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from textgen.prompt import add_special_tokens

    tok, model = AutoTokenizer.from_pretrained(model_dir), AutoModelForCausalLM.from_pretrained(model_dir)
    n = model.get_input_embeddings().weight.shape[0]
    torch.manual_seed(0)  # as train() does with its seed
    add_special_tokens(tok, PromptFormat(), model)
    return model.get_input_embeddings().weight[n:].detach()


def test_scratch_base_builds_tokenizer_and_model(tmp_path):
    result = train(config(tmp_path, "scratch", config="tiny", samples=0, lr=1e-3))
    assert result.scratch and result.base == "scratch (tiny)"
    assert_loads(Path(result.output_dir))


def test_training_borrows_from_a_word_list_file(tmp_path, bpe_model_dir):
    words = tmp_path / "words.txt"
    words.write_text("harbour\tnoun\nlighthouse\n# a comment\nsailor\n", encoding="utf-8")
    result = train(config(tmp_path, bpe_model_dir, samples=0, insert_keywords=1.0, insert_from="words",
                          insert_words=str(words)))
    assert_loads(Path(result.output_dir))
    saved = json.loads((Path(result.output_dir) / "training.json").read_text())["config"]
    assert saved["insert_from"] == "words" and saved["insert_words"] == str(words)
    with pytest.raises(DataError, match="insert_words: cannot read 'gone.txt'"):
        train(config(tmp_path / "gone", bpe_model_dir, insert_keywords=1.0, insert_from="words",
                     insert_words=str(tmp_path / "gone.txt")))


def test_package_exports_the_function_whatever_was_imported_first():
    import finetune
    import finetune.training as module

    assert finetune.train is module.train and finetune.TrainConfig is module.TrainConfig is TrainConfig


# -- examples: labels, augmentation, windows -----------------------------------------------------
@pytest.mark.parametrize("epochs, max_steps, expected", [(1.0, 50, "epochs"), (20.0, 3, 3)])
def test_steps_cap_ends_at_the_epochs_or_max_steps_whichever_comes_first(tmp_path, bpe_model_dir,
                                                                         epochs, max_steps, expected):
    capped = train(config(tmp_path / "capped", bpe_model_dir, epochs=epochs, max_steps=max_steps,
                          steps_cap=True, eval_steps=0, samples=0))
    if expected == "epochs":
        # the same run without a step limit takes exactly as many steps
        plain = train(config(tmp_path / "plain", bpe_model_dir, epochs=epochs, max_steps=0, eval_steps=0, samples=0))
        assert 0 < capped.global_step == plain.global_step < max_steps
        assert capped.max_steps == plain.max_steps
    else:
        assert capped.global_step == capped.max_steps == expected
    # without steps_cap, max_steps replaces the epochs, as in transformers' Trainer
    replaced = train(config(tmp_path / "replaced", bpe_model_dir, epochs=epochs, max_steps=max_steps,
                            eval_steps=0, samples=0))
    assert replaced.global_step == max_steps


def _tokenizer(model_dir: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(model_dir)


def test_labels_mask_prompt_and_padding(bpe_model_dir):
    tok, fmt = _tokenizer(bpe_model_dir), PromptFormat()
    rows = [Row("Storm", ["sea", "night"], "The storm rolled over the sea."), Row("Moon", ["moon"], "A pale moon.")]
    ds = ExampleDataset(rows, tok, fmt, 128, augment=False)
    ids, start = encode_example(tok, fmt, "Storm", ["sea", "night"], "The storm rolled over the sea.")
    item = ds[0]
    assert item["input_ids"] == ids
    assert item["labels"] == [IGNORE_INDEX] * start + ids[start:]  # prompt masked, text and [EOS] trained
    pad = token_ids(tok, fmt)["pad"]
    batch = Collator(pad)([ds[1], ds[0]])
    n = len(ds[1]["input_ids"])
    assert batch["input_ids"].shape == (2, len(ids))  # padded to the longest, not to max_length
    assert (batch["input_ids"][0, n:] == pad).all() and (batch["labels"][0, n:] == IGNORE_INDEX).all()
    assert batch["attention_mask"][0].tolist() == [1] * n + [0] * (len(ids) - n)
    everything = ExampleDataset(rows, tok, fmt, 128, augment=False, train_on_prompt=True)
    assert everything[0]["labels"] == ids


def test_keyword_augmentation_varies_by_epoch_and_keeps_the_rows_keywords(bpe_model_dir):
    tok, fmt = _tokenizer(bpe_model_dir), PromptFormat()
    keywords = ["storm", "sea", "night", "moon", "rain"]
    ds = ExampleDataset([Row("Storm", keywords, "The storm rolled over the sea.")], tok, fmt, 128,
                        augment=True, seed=3)
    draws = []
    for epoch in range(40):
        ds.set_epoch(epoch)
        drawn = ds.draw_keywords(keywords, 0)
        draws.append(tuple(drawn))
        assert set(drawn) <= set(keywords) and len(set(drawn)) == len(drawn)
        ids, start = encode_example(tok, fmt, "Storm", drawn, "The storm rolled over the sea.")
        assert ds[0]["input_ids"] == ids  # the prompt is exactly encode_example's
    assert len(set(draws)) > 20  # fresh subsets and orders, epoch after epoch
    assert () in draws and any(len(d) == len(keywords) for d in draws)  # from none to all
    assert any(list(d) != [k for k in keywords if k in d] for d in draws)  # shuffled
    ds.set_epoch(7)
    again = ds.draw_keywords(keywords, 0)
    ds.set_epoch(7)
    assert ds.draw_keywords(keywords, 0) == again  # reproducible


def test_training_draws_keywords_afresh_each_epoch(tmp_path, bpe_model_dir, monkeypatch):
    epochs = []
    original = ExampleDataset.__getitem__

    def spy(self, index):
        if self.augment:
            epochs.append(self.epoch)
        return original(self, index)

    monkeypatch.setattr(ExampleDataset, "__getitem__", spy)
    result = train(config(tmp_path, bpe_model_dir, max_steps=20, eval_steps=100, samples=0))
    assert result.epochs > 1 and set(epochs) == {0, 1}  # Trainer's set_epoch reaches the dataset


def test_plan_windows_covers_every_token_once():
    spans = plan_windows(1000, 100, 25)
    trained = [i for _, start, end in spans for i in range(start, end)]
    assert trained == list(range(1000))
    assert all(end - context <= 100 for context, _, end in spans)


def test_long_texts_become_windows_with_their_prompt(bpe_model_dir):
    tok, fmt = _tokenizer(bpe_model_dir), PromptFormat()
    text = STORY * 60  # well over 1,024 tokens
    ds = ExampleDataset([Row("Storm", ["sea"], text)], tok, fmt, 96, augment=False)
    ids, start = encode_example(tok, fmt, "Storm", ["sea"], text)
    assert len(ids) > 1024 and len(ds) > 10 and ds.rows_split == 1
    prompt, body = ids[:start], ids[start:]
    trained = []
    for i in range(len(ds)):
        item = ds[i]
        assert len(item["input_ids"]) <= 96 and item["input_ids"][:start] == prompt
        trained += [t for t in item["labels"] if t != IGNORE_INDEX]
    assert trained == body  # every text token (and the final [EOS]) trained exactly once


def test_rows_whose_prompt_fills_max_length_are_dropped_and_counted(bpe_model_dir):
    tok, fmt = _tokenizer(bpe_model_dir), PromptFormat()
    ds = ExampleDataset([Row("Storm " * 40, ["sea"], "text"), Row("Moon", [], "A moon.")], tok, fmt, 40,
                        augment=False)
    assert len(ds) == 1 and sum(ds.dropped.values()) == 1 and ds.rows_used == 1


# -- stop, resume, incomplete checkpoints, divergence ----------------------------------------------
def test_stop_then_resume_continues_and_matches_an_uninterrupted_run(tmp_path, bpe_model_dir):
    straight = train(config(tmp_path / "a", bpe_model_dir, max_steps=6, eval_steps=3, samples=0))
    rec = Recorder(stop_at=2)
    cfg = config(tmp_path / "b", bpe_model_dir, max_steps=6, eval_steps=3, samples=0)
    stopped = train(cfg, callbacks=[rec], should_stop=rec.stop)
    run = tmp_path / "b" / "out.checkpoints"
    assert stopped.stopped and stopped.output_dir is None and stopped.global_step == 2
    assert not (tmp_path / "b" / "out").exists()
    assert Path(stopped.checkpoint) == run / "checkpoint-2"
    assert (run / "checkpoint-2" / CHECKPOINT_MARKER).is_file()

    with pytest.raises(ValueError, match="--resume"):  # a fresh start would throw the checkpoint away
        train(cfg)
    rec2 = Recorder()
    resumed = train(TrainConfig(**{**cfg.to_dict(), "resume": True}), callbacks=[rec2])
    assert rec2.starts[0].start_step == 2 and "resumed from checkpoint-2" in rec2.starts[0].notes
    assert [s[0] for s in rec2.steps] == [3, 4, 5, 6] and resumed.global_step == 6
    a, b = weights(Path(straight.output_dir)), weights(Path(resumed.output_dir))
    assert all(torch.allclose(a[k], b[k], atol=1e-5) for k in a)
    steps = [json.loads(x)["step"] for x in (Path(resumed.output_dir) / "metrics.jsonl").read_text().splitlines()
             if "loss" in json.loads(x)]
    assert steps == sorted(set(steps))  # no step logged twice


def test_incomplete_and_planted_checkpoints_are_never_used(tmp_path, bpe_model_dir):
    import shutil

    rec = Recorder(stop_at=2)
    cfg = config(tmp_path, bpe_model_dir, max_steps=4, eval_steps=10, samples=0)
    train(cfg, callbacks=[rec], should_stop=rec.stop)
    run = tmp_path / "out.checkpoints"
    good = run / "checkpoint-2"
    shutil.copytree(good, run / "checkpoint-3")
    (run / "checkpoint-3" / CHECKPOINT_MARKER).unlink()  # a save cut short: no marker
    shutil.copytree(good, run / "checkpoint-4")
    (run / "checkpoint-4" / "optimizer.pt").write_bytes(b"planted pickle")  # marker no longer matches
    (run / "checkpoint-99").mkdir()  # bogus, higher-numbered
    (run / "checkpoint-99" / "rng_state.pth").write_bytes(b"planted pickle")
    rec2 = Recorder()
    result = train(TrainConfig(**{**cfg.to_dict(), "resume": True}), callbacks=[rec2])
    assert rec2.starts[0].start_step == 2 and "resumed from checkpoint-2" in rec2.starts[0].notes
    assert result.global_step == 4 and result.output_dir


def test_resume_only_inside_a_run_folder_textgen_made(tmp_path, bpe_model_dir):
    run = tmp_path / "out.checkpoints"
    (run / "checkpoint-5").mkdir(parents=True)
    with pytest.raises(ValueError, match="did not create it"):
        train(config(tmp_path, bpe_model_dir, resume=True))
    assert not (run / RUN_MARKER).exists()


def test_nan_loss_aborts_and_publishes_nothing(tmp_path, bpe_model_dir, monkeypatch):
    from finetune.trainer import TextgenTrainer

    original = TextgenTrainer.compute_loss

    def poisoned(self, model, inputs, *args, **kwargs):
        loss = original(self, model, inputs, *args, **kwargs)
        training = model.training and not kwargs.get("return_outputs")
        return loss * float("nan") if training and self.state.global_step >= 2 else loss

    monkeypatch.setattr(TextgenTrainer, "compute_loss", poisoned)
    with pytest.raises(TrainingDiverged, match="step 3"):
        train(config(tmp_path, bpe_model_dir, max_steps=6))
    assert not (tmp_path / "out").exists()
    assert not list(tmp_path.glob(".out.tmp-*"))


def test_an_eval_loss_far_above_the_start_is_divergence_and_publishes_nothing(tmp_path, bpe_model_dir):
    recorder = Recorder()
    with pytest.raises(TrainingDiverged, match="the eval loss rose from") as info:
        train(config(tmp_path, bpe_model_dir, method="full", lr=1.0, max_steps=8, eval_steps=2), [recorder])
    first, worst = recorder.evals[0][1], info.value.loss
    assert recorder.evals[0][0] == 0  # the baseline is the model before training
    assert math.isfinite(worst) and worst > 1.5 * first
    assert not (tmp_path / "out").exists()


def test_the_first_evaluation_is_the_model_before_training(tmp_path, bpe_model_dir):
    recorder = Recorder()
    train(config(tmp_path, bpe_model_dir, method="lora", max_steps=4, eval_steps=2), [recorder])
    assert [step for step, _, _ in recorder.evals][:1] == [0]


# -- outputs ---------------------------------------------------------------------------------------
def test_out_must_be_new_empty_or_a_previous_model(tmp_path, bpe_model_dir):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="out: .* did not write"):
        train(config(tmp_path, bpe_model_dir))
    assert (tmp_path / "out" / "notes.txt").read_text() == "mine"


def test_publish_replaces_a_model_atomically_and_a_failed_save_changes_nothing(tmp_path):
    out = tmp_path / "model"

    def files(content: str):
        def write(folder: Path) -> None:
            (folder / "model.safetensors").write_text(content)
        return write

    publish(out, files("one"))
    publish(out, files("two"))
    assert (out / "model.safetensors").read_text() == "two" and (out / COMPLETE_MARKER).is_file()

    def disk_full(folder: Path) -> None:
        (folder / "model.safetensors").write_text("half")
        raise OSError(28, "No space left on device")

    with pytest.raises(SaveError, match="disk is full"):
        publish(out, disk_full)
    assert (out / "model.safetensors").read_text() == "two"
    assert [p.name for p in tmp_path.iterdir()] == ["model"]  # the partial folder is gone


# -- configuration and CLI ----------------------------------------------------------------------------
@pytest.mark.parametrize(("field", "value", "message"), [
    ("method", "adapter", "method: must be one of"),
    ("lr", 0.0, "lr: must be >"),
    ("epochs", -1, "epochs: must be >"),
    ("batch_size", 2.5, "batch_size: must be a whole number"),
    ("eval_ratio", 0.9, "eval_ratio: must be"),
    ("resume", "yes", "resume: must be true or false"),
    ("data", " ", "data: must not be empty"),
    ("insert_keywords", 1.5, "insert_keywords: must be"),
    ("steps_cap", "yes", "steps_cap: must be true or false"),
    ("insert_from", "dictionary", "insert_from: must be one of keywords, random"),
    ("insert_count", 0, "insert_count: must be between 1 and 16"),
    ("insert_phrases", 1.5, "insert_phrases: must be between 0 and 1"),
    ("insert_phrases", 0.5, "insert_phrases: .* --insert-from random or words"),  # the default insert_from
])
def test_config_errors_name_the_field(field, value, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig(**{"data": "c.csv", "out": "runs/x", field: value})


def test_scratch_needs_the_full_method():
    with pytest.raises(ValueError, match="method: a model trained from scratch"):
        TrainConfig(data="c.csv", out="runs/x", base="scratch", method="lora")


def _cli(*args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "finetune", *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=timeout)


def test_help_is_instant_and_imports_no_torch():
    code = "import sys, finetune.cli; finetune.cli.build_parser(); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "False", out.stderr
    assert "--last-n" in _cli("--help").stdout


def test_cli_end_to_end(tmp_path, bpe_model_dir):
    data = write_corpus(tmp_path / "corpus.csv", **CORPUS)
    out = tmp_path / "runs" / "my-model"
    proc = _cli("--data", str(data), "--out", str(out), "--base", str(bpe_model_dir), "--max-steps", "3",
                "--batch-size", "4", "--max-length", "96", "--eval-steps", "3", "--samples", "1",
                "--method", "lora", "--precision", "fp32", "--device", "cpu")
    assert proc.returncode == 0, proc.stderr
    for fragment in ("rows: 24 used of 24", "long texts were split", "tokens trained", "eval loss",
                     "perplexity", f"model: {out}"):
        assert fragment in proc.stdout, proc.stdout
    assert "step" in proc.stderr  # the progress bar
    assert_loads(out)


def test_cli_hub_id_offline_says_no_network(tmp_path):
    data = write_corpus(tmp_path / "corpus.csv", **CORPUS)
    proc = _cli("--data", str(data), "--out", str(tmp_path / "out"), "--base", "someone/some-gpt2",
                "--max-steps", "1", "--device", "cpu")
    assert proc.returncode == 2
    assert "no network" in proc.stderr and "Traceback" not in proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["corpus.csv"]  # no model, no run folder


def test_two_process_ddp_run(tmp_path, bpe_model_dir):
    data = write_corpus(tmp_path / "corpus.csv", **CORPUS)
    out = tmp_path / "ddp"
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "finetune", "--data", str(data), "--out", str(out), "--base", str(bpe_model_dir),
           "--max-steps", "4", "--batch-size", "2", "--max-length", "96", "--eval-steps", "2",
           "--samples", "1", "--precision", "fp32", "--device", "cpu"]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("model: ") == 1 and "x2" in proc.stdout  # one summary, from rank 0
    assert_loads(out)
    training = json.loads((out / "training.json").read_text())["result"]
    assert training["world_size"] == 2 and training["global_step"] == 4


def test_keyword_insertion_borrows_other_rows_keywords_into_text_and_prompt(bpe_model_dir):
    tok, fmt = _tokenizer(bpe_model_dir), PromptFormat()
    rows = [Row("Storm", ["storm", "sea"], STORY.strip()), Row("Night", ["moon", "lightning"], STORY.strip()),
            Row("Harbour", ["harbour", "boat"], STORY.strip())]
    ds = ExampleDataset(rows, tok, fmt, 128, augment=True, seed=1, insert_keywords=1.0)
    for epoch in range(3):
        ds.set_epoch(epoch)
        for i in range(len(ds)):
            own = rows[ds.windows[i].row].keywords
            item = ds[i]
            assert len(item["input_ids"]) <= 128
            borrowed = ds.borrow_keywords(own, i)
            assert 1 <= len(borrowed) <= 3 and not set(borrowed) & set(own)
            first_trained = next(j for j, label in enumerate(item["labels"]) if label != IGNORE_INDEX)
            prompt, text = tok.decode(item["input_ids"][:first_trained]), tok.decode(item["labels"][first_trained:])
            for word in borrowed:  # a word of its own in the trained text, and a keyword of the prompt
                assert f" {word} " in " " + text.replace(".", " ") + " ", (word, text)
                assert word in prompt
            assert ds[i] == item  # reproducible for (seed, epoch, index)
            assert item["input_ids"][-1] == ds.bodies[ds.windows[i].row][-1]  # [EOS] stays last
    plain = ExampleDataset(rows, tok, fmt, 128, augment=True, seed=1)
    assert plain.borrow_keywords(["storm"], 0) == []
    assert "harbour" not in tok.decode(plain[0]["input_ids"])  # off by default


def test_random_insertion_borrows_words_of_the_texts_not_keywords(bpe_model_dir):
    tok, fmt = _tokenizer(bpe_model_dir), PromptFormat()
    rows = [Row("Storm", ["storm", "sea"], STORY.strip()), Row("Night", ["moon", "lightning"], STORY.strip())]
    ds = ExampleDataset(rows, tok, fmt, 128, augment=True, seed=3, insert_keywords=1.0, insert_from="random")
    vocabulary = set(re.findall(r"[a-z]{3,}", STORY.lower()))
    seen = set()
    for epoch in range(4):
        ds.set_epoch(epoch)
        for i in range(len(ds)):
            own = rows[ds.windows[i].row].keywords
            borrowed = ds.borrow_keywords(own, i)
            assert 1 <= len(borrowed) <= 3 and not set(borrowed) & set(own)
            assert set(borrowed) <= vocabulary, borrowed  # words the texts use (twice or more)
            item = ds[i]
            first_trained = next(j for j, label in enumerate(item["labels"]) if label != IGNORE_INDEX)
            prompt = tok.decode(item["input_ids"][:first_trained])
            assert all(word in prompt.split("[SEP]")[1] for word in borrowed)  # among the keywords
            assert ds[i] == item
            seen.update(borrowed)
    assert len(seen) > 4  # not a fixed few
    with pytest.raises(ValueError, match="insert_from: must be one of"):
        ExampleDataset(rows, tok, fmt, 128, augment=True, insert_keywords=1.0, insert_from="dictionary")


def _find(seq: list[int], part: list[int]) -> int:
    return next((j for j in range(len(seq) - len(part) + 1) if seq[j:j + len(part)] == part), -1)


@pytest.mark.parametrize("within", [0, 6])
def test_random_phrases_are_copied_whole_and_go_where_asked(bpe_model_dir, within):
    """insert_phrases: borrowed words become two-word phrases, written whole in the text and
    given whole as one keyword; insert_within keeps them among the text's first tokens."""
    tok, fmt = _tokenizer(bpe_model_dir), PromptFormat()
    rows = [Row("Storm", ["storm", "sea"], STORY.strip()), Row("Night", ["moon", "lightning"], STORY.strip())]
    ds = ExampleDataset(rows, tok, fmt, 512, augment=True, seed=5, insert_keywords=1.0, insert_from="random",
                        insert_phrases=1.0, insert_within=within)
    vocabulary = set(re.findall(r"[a-z]{3,}", STORY.lower()))
    starts = []
    for epoch in range(4):
        ds.set_epoch(epoch)
        for i in range(len(ds)):
            borrowed = ds.borrow_keywords(rows[ds.windows[i].row].keywords, i)
            assert borrowed and all(len(p.split()) == 2 and set(p.split()) <= vocabulary for p in borrowed), borrowed
            item = ds[i]
            first_trained = next(j for j, label in enumerate(item["labels"]) if label != IGNORE_INDEX)
            keywords = tok.decode(item["input_ids"][:first_trained]).split("[SEP]")[1].split(",")
            assert set(borrowed) <= {k.strip() for k in keywords}  # each phrase one keyword
            text = item["labels"][first_trained:]
            pieces = [tok.encode(" " + p, add_special_tokens=False) for p in borrowed]
            for piece in pieces:
                at = _find(text, piece)
                assert at >= 0, (borrowed, tok.decode(text))
                starts.append(at - sum(map(len, pieces)) + len(piece))  # less what later inserts pushed it by
    if within:
        assert max(starts) <= within
    else:
        assert max(starts) > 6  # anywhere in the text: the bound above can fail
    plain = ExampleDataset(rows, tok, fmt, 512, augment=True, seed=5, insert_keywords=1.0, insert_from="random")
    assert all(" " not in w for i in range(len(plain)) for w in plain.borrow_keywords([], i))


def test_insert_count_sets_how_many_words_an_example_borrows(bpe_model_dir):
    tok, fmt = _tokenizer(bpe_model_dir), PromptFormat()
    rows = [Row("Storm", ["storm", "sea"], STORY.strip()), Row("Night", ["moon", "lightning"], STORY.strip())]
    ds = ExampleDataset(rows, tok, fmt, 512, augment=True, seed=2, insert_keywords=1.0, insert_from="random",
                        insert_count=6)
    counts = set()
    for epoch in range(8):
        ds.set_epoch(epoch)
        for i in range(len(ds)):
            borrowed = ds.borrow_keywords(rows[ds.windows[i].row].keywords, i)
            counts.add(len(borrowed))
            text = tok.decode(ds[i]["input_ids"]).split("[SEP]")[-1]
            assert all(f" {w}" in text for w in borrowed)
    assert max(counts) > 3 and counts <= set(range(1, 7)), counts


def _trained_examples(ds, rows, tok, epochs: int = 4):
    """(row, index, item, prompt, text) of every example over `epochs` epochs: the prompt and
    the trained text decoded (spaces dropped from the text, as byte-level BPE adds them)."""
    for epoch in range(epochs):
        ds.set_epoch(epoch)
        for i in range(len(ds)):
            item = ds[i]
            first_trained = next(j for j, label in enumerate(item["labels"]) if label != IGNORE_INDEX)
            prompt = tok.decode(item["input_ids"][:first_trained])
            text = tok.decode(item["labels"][first_trained:], skip_special_tokens=True).replace(" ", "")
            yield rows[ds.windows[i].row], i, item, prompt, text


def test_random_insertion_makes_up_chinese_words_from_the_corpus_characters():
    """Chinese rows borrow made-up words of 2-3 characters the corpus uses: no pool of words
    to learn by heart, only the prompt to copy from."""
    from transformers import AutoTokenizer

    from textgen.loading import BUILTIN_DIR

    folder = BUILTIN_DIR / "textgen-zh"
    if not (folder / "tokenizer.json").is_file():
        pytest.skip("built-in Chinese model not shipped in this checkout")
    tok = AutoTokenizer.from_pretrained(folder)
    poem = "床前明月光，疑是地上霜。举头望明月，低头思故乡。床前明月光，疑是地上霜。"
    rows = [Row("静夜思", ["明月"], poem), Row("思乡", ["故乡"], poem + "鹤"), Row("", [], "Rain falls on the old town. Rain again.")]
    ds = ExampleDataset(rows, tok, PromptFormat(), 96, augment=True, seed=0, insert_keywords=1.0, insert_from="random")
    chars = {c for c in poem if "\u4e00" <= c <= "\u9fff"}  # each used twice; 鹤 once: never borrowed
    made_up = set()
    for row, i, _, _, text in _trained_examples(ds, rows, tok):
        for word in ds.borrow_keywords(row.keywords, i):
            if row.title:
                assert 2 <= len(word) <= 3 and set(word) <= chars, word
                assert word in text
                made_up.add(word)
            else:  # the English row borrows English words of the texts
                assert word in {"rain", "again"} or word.isascii(), word
    assert len(made_up) > 10 and made_up - {poem[j:j + 2] for j in range(len(poem))}  # not the poem's own words


def test_word_list_insertion_borrows_listed_words_in_the_rows_script():
    """insert_from="words": Chinese rows borrow the list's Chinese words, English rows its
    English ones; each is written whole into the trained text and listed among the keywords."""
    from transformers import AutoTokenizer

    from textgen.loading import BUILTIN_DIR

    folder = BUILTIN_DIR / "textgen-zh"
    if not (folder / "tokenizer.json").is_file():
        pytest.skip("built-in Chinese model not shipped in this checkout")
    tok = AutoTokenizer.from_pretrained(folder)
    poem = "床前明月光，疑是地上霜。举头望明月，低头思故乡。"
    rows = [Row("静夜思", ["明月"], poem), Row("思乡", ["故乡"], poem),
            Row("Rain", [], "Rain falls on the old town. Rain again.")]
    words = ["度假", "温和", "卖出", "计算机", "发展经济", "bicycle", "harbour"]
    ds = ExampleDataset(rows, tok, PromptFormat(), 96, augment=True, seed=0, insert_keywords=1.0,
                        insert_from="words", insert_words=words)
    seen = set()
    for row, i, item, prompt, text in _trained_examples(ds, rows, tok):
        borrowed = ds.borrow_keywords(row.keywords, i)
        assert 1 <= len(borrowed) <= 3
        for word in borrowed:
            assert word in words and word.isascii() == (row.title == "Rain"), (row.title, word)
            assert word in prompt.split("[SEP]")[1]
            assert word.lower() in text.lower(), (word, text)
            seen.add(word)
        assert ds[i] == item
    assert {"度假", "温和", "卖出", "计算机", "发展经济", "bicycle", "harbour"} == seen
    with pytest.raises(ValueError, match="insert_words: give the words"):
        ExampleDataset(rows, tok, PromptFormat(), 96, augment=True, insert_keywords=1.0, insert_from="words")


def test_insert_from_words_needs_a_word_list_file(tmp_path):
    with pytest.raises(ValueError, match="insert_words: --insert-from words needs a word list"):
        TrainConfig(data="c.csv", out="runs/x", insert_keywords=0.5, insert_from="words")
    TrainConfig(data="c.csv", out="runs/x", insert_from="words")  # no insertion: no list needed
    config = TrainConfig(data="c.csv", out="runs/x", insert_keywords=0.5, insert_from="words",
                         insert_words=tmp_path / "words.txt")
    assert config.insert_words == str(tmp_path / "words.txt")


def test_keyword_insertion_keeps_chinese_characters_whole():
    """Byte-level BPE splits rare characters into byte tokens: a borrowed keyword goes only
    between whole characters, so the text decodes without replacement characters."""
    from transformers import AutoTokenizer

    from textgen.loading import BUILTIN_DIR

    folder = BUILTIN_DIR / "textgen-zh"
    if not (folder / "tokenizer.json").is_file():
        pytest.skip("built-in Chinese model not shipped in this checkout")
    tok = AutoTokenizer.from_pretrained(folder)
    poem = "床前明月光，疑是地上霜。举头望明月，低头思故乡。鼯鼱䴔䴖在林间。"  # the last ones are rare
    rows = [Row("静夜思", ["明月", "故乡"], poem), Row("春晓", ["春眠", "啼鸟"], poem),
            Row("登高", ["鼯鼱", "落木"], poem)]
    ds = ExampleDataset(rows, tok, PromptFormat(), 96, augment=True, seed=0, insert_keywords=1.0)
    for epoch in range(4):
        ds.set_epoch(epoch)
        for i in range(len(ds)):
            item = ds[i]
            first_trained = next(j for j, label in enumerate(item["labels"]) if label != IGNORE_INDEX)
            text = tok.decode(item["labels"][first_trained:], skip_special_tokens=True)
            assert "\ufffd" not in text
            for word in ds.borrow_keywords(rows[ds.windows[i].row].keywords, i):
                assert word in text and word in tok.decode(item["input_ids"][:first_trained])
