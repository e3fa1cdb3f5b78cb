"""Build one built-in model: corpus rows from an upstream copy, a tokenizer and a small GPT-2
trained from scratch with the ordinary pipeline (`finetune.training`, `--base scratch`, keyword
insertion), its figures measured, its weights stored as fp16 safetensors in shards under 10 MB,
and the folder shipped atomically."""
from __future__ import annotations

import json
import os
import platform
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from .card import sample_texts, write_card
from .metrics import novelty, unigram_perplexity
from .recipes import HELD_OUT_WORDS, RECIPES, Recipe, planned_steps, recipe_config

MAX_BYTES = 10 * 1024 * 1024  # per file
SHARD_SIZE = "9MB"


def build(language: str, out: Path, work: Path, *, epochs: float | None = None, max_steps: int = 0,
          n_novelty: int = 100, stage1: Path | None = None, corpus: Path | None = None,
          words: Path | None = None, corpus_dir: Path | None = None, budget_minutes: float | None = None,
          max_chars: int | None = None) -> dict[str, Any]:
    """Train (both stages, or the second from `stage1`, a first-stage model), measure, publish.
    `corpus`, `words`: a corpus CSV and a word list that an earlier build wrote, for a machine
    without the upstream copy or the Debian packages."""
    recipe = RECIPES[language]
    work.mkdir(parents=True, exist_ok=True)
    started = time.time()
    csv_path, words_path = work / "corpus.csv", work / "words.txt"
    rows_written, chars = _write_corpus(recipe, csv_path, corpus, corpus_dir, max_chars)
    _write_words(recipe, words_path, words)
    budget = recipe.budget_minutes if budget_minutes is None else budget_minutes
    trained_budget, published = _published_stages(stage1)
    if published:  # the card describes the first stage as it was trained, not a new plan
        budget = trained_budget or budget
    planned = max_steps or (published[0]["steps"] if published else _plan(recipe, work, budget))
    config = recipe_config(recipe, csv_path, work / "model", max_steps=planned or recipe.max_steps,
                           words=words_path, epochs=epochs, resume=(work / "model").exists())
    results, stages, second = _train(recipe, config, work, words_path, max_steps, stage1, published)
    result = results[-1]
    model_dir = Path(result.output_dir)
    to_fp16(model_dir)
    stages += [{"steps": r.global_step, "tokens_trained": r.tokens_trained, "seconds": r.elapsed_s} for r in results]
    from textgen import Generator

    gen = Generator.from_pretrained(str(model_dir))  # measures the model and writes the card's samples
    metrics = {
        "language": language, "rows": rows_written, "characters": chars, **_measure(gen, config, n_novelty, language),
        "eval_loss": result.eval_loss, "perplexity": result.perplexity,
        "params": result.total_params, "tokens_trained": sum(x["tokens_trained"] for x in stages),
        "steps": sum(x["steps"] for x in stages), "stages": stages, "epochs": result.epochs,
        "train_seconds": sum(x["seconds"] for x in stages), "total_seconds": time.time() - started,
        "precision": result.precision, "hardware": _hardware(), "budget_minutes": budget,
    }
    write_card(model_dir, recipe, config, metrics, sample_texts(gen, recipe), second)
    (model_dir / "builtin_metrics.json").write_text(json.dumps(metrics, ensure_ascii=False, indent=2) + "\n")
    _check_file_sizes(model_dir)
    ship(model_dir, out)
    metrics["bytes"] = folder_bytes(model_dir)
    return metrics


def _write_corpus(recipe: Recipe, csv_path: Path, corpus: Path | None, corpus_dir: Path | None,
                  max_chars: int | None) -> tuple[int, int]:
    """The training rows as a CSV in the work folder: from the upstream copy, or a CSV an earlier
    build wrote. Returns (rows, characters of text)."""
    from ..data import load_corpus
    from .rows import write_csv

    if corpus is None:
        rows_written, chars = write_csv(_upstream_rows(recipe, corpus_dir, max_chars), csv_path)
    else:
        _copy_in(corpus, csv_path)
        prebuilt, _ = load_corpus(csv_path)
        rows_written, chars = len(prebuilt), sum(len(r.text) for r in prebuilt)
    print(f"corpus: {rows_written} rows, {chars:,} characters → {csv_path}", file=sys.stderr)
    return rows_written, chars


def _copy_in(src: Path, dst: Path) -> None:
    """Copy an earlier build's file into the work folder; it may already be that file (a
    rebuild in the same work folder)."""
    if not (dst.exists() and dst.samefile(src)):
        shutil.copyfile(src, dst)


def _write_words(recipe: Recipe, words_path: Path, words: Path | None) -> None:
    """The word list of keyword insertion, less the keywords benchmark's words where the recipe says."""
    from .words import build_words, jieba_top_words

    if words is not None:
        _copy_in(words, words_path)
    elif recipe.insert_words:
        listed = build_words(recipe.insert_words, recipe.insert_words_top)
        if recipe.hold_out_benchmark_words:
            held = set(jieba_top_words(HELD_OUT_WORDS))
            listed = [w for w in listed if w not in held]
        words_path.write_text("\n".join(listed) + "\n", encoding="utf-8")


def _plan(recipe: Recipe, work: Path, budget: float) -> int:
    """Steps that fit the budget; a resumed build keeps the plan its checkpoints were made with
    (written to `planned_steps.json`, which a person may also edit)."""
    if not (recipe.pack and budget):
        return 0
    plan = work / "planned_steps.json"
    if plan.is_file():
        return json.loads(plan.read_text())["max_steps"]
    steps = planned_steps(recipe, budget * 60)
    plan.write_text(json.dumps({"max_steps": steps, "minutes": budget}))
    return steps


def _published_stages(stage1: Path | None) -> tuple[float | None, list[dict]]:
    """(budget minutes, figures stage by stage) of a published model given as the first stage,
    from its builtin_metrics.json; (None, []) for none or a bare checkpoint."""
    if stage1 is None or not (stage1 / "builtin_metrics.json").is_file():
        return None, []
    prior = json.loads((stage1 / "builtin_metrics.json").read_text(encoding="utf-8"))
    stages = prior.get("stages") or [{"steps": prior["steps"], "tokens_trained": prior["tokens_trained"],
                                      "seconds": prior["train_seconds"]}]
    return prior.get("budget_minutes"), stages


def _train(recipe: Recipe, config, work: Path, words_path: Path, max_steps: int, stage1: Path | None,
           published: list[dict]):
    """Both stages (or the second alone, from `stage1`, whose `published` stages' figures are
    kept). Returns (results, figures of a published first stage that was not rerun, the second
    stage's TrainConfig or None). `max_steps` > 0 (a quick check) caps the second stage too; the
    first stage's plan does not."""
    from ..cli import TqdmProgress  # the CLI's progress bar
    from ..config import TrainConfig
    from ..training import train

    results, stages = [], list(published)
    if stage1 is None:
        results.append(train(config, callbacks=[TqdmProgress()]))
        stage1 = Path(results[-1].output_dir)
    second = None
    if recipe.continued:
        c = recipe.continued
        second = TrainConfig(data=config.data, out=str(work / "model-continued"), base=str(stage1), method="full",
                             epochs=1000.0, max_steps=max_steps or c.max_steps, batch_size=c.batch_size,
                             max_length=c.max_length, lr=c.lr, insert_keywords=c.insert_keywords,
                             insert_from=c.insert_from, insert_phrases=c.insert_phrases, pack=c.pack,
                             insert_words=str(words_path) if c.insert_from == "words" else "",
                             eval_ratio=recipe.eval_ratio, seed=recipe.seed, samples=2, eval_steps=10**6,
                             resume=(work / "model-continued").exists())
        results.append(train(second, callbacks=[TqdmProgress()]))
    return results, stages, second


def _measure(gen, config, n_novelty: int, language: str) -> dict[str, Any]:
    """Held-out rows, the unigram baseline on them, and novelty of texts generated from their prompts."""
    from ..data import load_corpus
    from ..training import split_rows

    rows, _ = load_corpus(config.data)
    train_rows, eval_rows = split_rows(rows, config.eval_ratio, config.seed)
    loaded = gen.backend_for(eval_rows[0].title, eval_rows[0].keywords)
    eos = loaded.tokenizer.convert_tokens_to_ids(loaded.fmt.eos)
    unigram = unigram_perplexity(loaded.tokenizer, [r.text for r in train_rows], [r.text for r in eval_rows], eos)
    generated = []
    for i, row in enumerate(eval_rows[:n_novelty]):
        res = gen.generate(row.title, row.keywords[:3], n=1, seed=i, max_new_tokens=96, keyword_mode="off")
        generated.append(res[0].text)
    share, grams = novelty(generated, [r.text for r in rows], language)
    return {"eval_rows": len(eval_rows), "unigram_perplexity": unigram, "novelty_8gram_verbatim_share": share,
            "novelty_8grams": grams, "novelty_prompts": len(generated)}


def _check_file_sizes(model_dir: Path) -> None:
    biggest = max((p for p in model_dir.rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)
    if biggest.stat().st_size > MAX_BYTES:
        raise SystemExit(f"{biggest} is {biggest.stat().st_size / 1e6:.1f} MB; a built-in model's files must "
                         "stay under 10 MB")


def _upstream_rows(recipe: Recipe, corpus_dir: Path | None, max_chars: int | None):
    from .rows import add_keywords
    from .upstream import CORPORA, read_corpus

    if corpus_dir is None:
        raise SystemExit(f"--corpus-dir: {recipe.name} is trained on {CORPORA[recipe.corpus].origin}; "
                         "give the folder of an upstream copy")
    rows, report = read_corpus(recipe.corpus, corpus_dir, max_chars=max_chars or recipe.max_chars or None)
    print(f"{recipe.corpus}: {report.summary()}", file=sys.stderr)
    return add_keywords(rows)


def to_fp16(folder: Path) -> None:
    """Rewrite the weights as fp16 safetensors: half the size, and the loader picks the compute
    dtype anyway (bf16 or fp32)."""
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(folder, use_safetensors=True, dtype=torch.float32)
    for old in folder.glob("model*.safetensors*"):
        old.unlink()
    # shards under 10 MB: a Hugging Face Space refuses bigger files without git-lfs
    model.to(torch.float16).save_pretrained(folder, max_shard_size=SHARD_SIZE)
    # The pipeline's completion marker hashes the fp32 weights, and training.json records this
    # machine's paths: neither describes the shipped folder, whose card says how it was made.
    for name in ("textgen_complete.json", "training.json"):
        (folder / name).unlink(missing_ok=True)
    for path in folder.iterdir():
        path.chmod(0o644)


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def ship(src: Path, out: Path) -> None:
    """Copy the model (without checkpoints) to a hidden sibling of `out`, then swap it in, so
    `out` is never half written (`checkpoints.move_into_place`)."""
    from ..checkpoints import move_into_place

    tmp = out.with_name(f".{out.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    shutil.copytree(src, tmp, ignore=shutil.ignore_patterns("checkpoint-*", "*.lock"))
    move_into_place(tmp, out)


def _hardware() -> str:
    from textgen.device import cpu_name

    cpu = cpu_name()
    gpu = ""
    try:
        import torch

        if torch.cuda.is_available():  # training ran there (device "auto")
            gpu = f"1 {torch.cuda.get_device_name(0)} GPU, "
    except ImportError:
        pass
    return f"{gpu}{os.cpu_count()} cores, {cpu}, {platform.system()}"
