"""Rebuild a built-in model from scratch, evaluate it, and write its model card.

    python -m finetune.builtin zh      # → assets/models/textgen-zh
    python -m finetune.builtin en      # → assets/models/textgen-en

Each run: build the corpus from Debian packages (`finetune.corpora`), train a tokenizer and a
small GPT-2 from scratch with the ordinary pipeline (`finetune.training`, `--base scratch`),
train it further with keyword insertion (`TrainConfig.insert_keywords`: other rows' keywords
put into the text, so the model learns to write the keywords it is given), measure it (eval perplexity, a unigram baseline on the same split, novelty of generated
8-grams), store the weights as fp16 safetensors (≤ 10 MB), and publish atomically.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from . import REPO_ROOT

MAX_BYTES = 10 * 1024 * 1024  # per file
SHARD_SIZE = "9MB"
NGRAM = 8
HELD_OUT_WORDS = 3000  # benchmarks/keywords.py's TOP_ZH_WORDS


@dataclass
class Continued:
    """Second stage: more training from the first stage's model, with keyword insertion."""

    max_steps: int
    batch_size: int = 32
    max_length: int = 128  # shorter windows, more of them: the texts are short anyway
    lr: float = 2e-3
    insert_keywords: float = 1.0
    insert_from: str = "keywords"  # or "random" (`finetune.dataset`)


@dataclass
class Recipe:
    """Training settings of one built-in model; the card records them."""

    language: str
    name: str
    sources: tuple[str, ...]
    epochs: float
    preset: str = "small"  # `finetune.scratch.PRESETS`
    batch_size: int = 16
    max_length: int = 256
    lr: float = 1e-3
    eval_ratio: float = 0.05
    seed: int = 0
    max_steps: int = 0  # a cap that keeps a rebuild within a developer session on 2 CPU cores
    insert_keywords: float = 0.0  # keyword insertion in the first stage too (`TrainConfig`)
    insert_from: str = "keywords"
    insert_words: str = ""  # with insert_from="words": a `finetune.corpora.WORD_LISTS` name ...
    insert_words_top: int = 20000  # ... and how many of its most frequent words to borrow, ...
    hold_out_benchmark_words: bool = False  # ... less the keywords benchmark's pool (zh), so that
    # benchmarks/keywords.py measures words the model never saw inserted
    sample_prompts: list[tuple[str, list[str]]] = field(default_factory=list)
    continued: Continued | None = None
    corpus: str = ""  # an upstream corpus (`finetune.upstream.CORPORA`), read from --corpus-dir, ...
    max_chars: int = 0  # ... up to this much text
    pack: bool = False  # packed blocks of max_length tokens (`finetune.packing`)
    budget_minutes: float = 0.0  # with pack: steps are planned to fit this wall time on this machine
    eval_steps: int = 0


RECIPES = {
    # zh: 绝句 and 律诗 of the Tang and Song (chinese-poetry), keywords the poems' common nouns;
    # a fifth of the examples borrow 1-3 modern words (Rime's pinyin_simp, less the keywords
    # benchmark's words) into poem and keywords: users type modern words, which the poems lack,
    # and more than a fifth would teach lines that break the forms
    "zh": Recipe("zh", "textgen-zh", (), epochs=1, preset="poems", batch_size=16, max_length=256, lr=2e-3,
                 eval_ratio=0.005, insert_keywords=0.2, insert_from="words", insert_words="pinyin-simp",
                 hold_out_benchmark_words=True, corpus="chinese-poetry", max_chars=6_000_000, pack=True,
                 budget_minutes=100, sample_prompts=[
        ("春夜", ["月", "花"]), ("送别", ["江", "柳", "酒"]), ("秋思", ["雁", "霜"]), ("", ["山", "水", "云"])]),
    # en: English Wikipedia, one row per section ("Article: Section"); half the examples borrow
    # 1-3 keywords of other rows, which teaches the model to write the keywords it is given
    "en": Recipe("en", "textgen-en", (), epochs=1, preset="base", batch_size=16, max_length=256, lr=2e-3,
                 eval_ratio=0.01, insert_keywords=0.5, corpus="wikiextractor", max_chars=40_000_000, pack=True,
                 budget_minutes=100, sample_prompts=[
        ("Volcano", ["lava", "island"]), ("The history of tea", ["China", "trade"]),
        ("Morning run", ["park", "dog"]), ("", ["river", "bridge", "city"])]),
}


def ngrams(units: Sequence[str], n: int = NGRAM) -> list[tuple[str, ...]]:
    return [tuple(units[i:i + n]) for i in range(len(units) - n + 1)]


def units_of(text: str, language: str) -> list[str]:
    """Characters for Chinese (no spaces), words for English."""
    return [c for c in text if not c.isspace()] if language == "zh" else text.lower().split()


def novelty(generated: Sequence[str], corpus: Sequence[str], language: str) -> tuple[float, int]:
    """(share of generated 8-grams found verbatim in the corpus, number of 8-grams looked at)."""
    seen = {g for text in corpus for g in ngrams(units_of(text, language))}
    grams = [g for text in generated for g in ngrams(units_of(text, language))]
    if not grams:
        return 0.0, 0
    return sum(g in seen for g in grams) / len(grams), len(grams)


def unigram_perplexity(tokenizer, train_texts: Sequence[str], eval_texts: Sequence[str], eos_id: int) -> float:
    """Perplexity of an add-one unigram model of the training texts' tokens (plus EOS) on the
    eval texts: the baseline a language model must beat by a wide margin."""
    def tokens(texts):
        for t in texts:
            yield from tokenizer.encode(t, add_special_tokens=False)
            yield eos_id

    counts = Counter(tokens(train_texts))
    total, vocab = sum(counts.values()), len(tokenizer)
    nll = n = 0
    for tid in tokens(eval_texts):
        nll -= math.log((counts[tid] + 1) / (total + vocab))
        n += 1
    return math.exp(nll / max(n, 1))


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


def build(language: str, out: Path, work: Path, *, epochs: float | None = None, max_steps: int = 0,
          n_novelty: int = 100, stage1: Path | None = None, corpus: Path | None = None,
          words: Path | None = None, corpus_dir: Path | None = None, budget_minutes: float | None = None,
          max_chars: int | None = None) -> dict[str, Any]:
    """Train (both stages, or the second from `stage1`, a first-stage model), measure, publish.
    `corpus`, `words`: a corpus CSV and a word list that an earlier build wrote, for a machine
    without the Debian packages."""
    from textgen import Generator

    from . import corpora
    from .data import load_corpus
    from .config import TrainConfig
    from .training import split_rows, train

    recipe = RECIPES[language]
    work.mkdir(parents=True, exist_ok=True)
    started = time.time()
    csv_path = work / "corpus.csv"
    if corpus is None and recipe.corpus:
        rows_written, chars = corpora.write_csv(_upstream_rows(recipe, corpus_dir, max_chars), csv_path)
    elif corpus is None:
        rows_written, chars = corpora.write_csv(corpora.build(language, sources=recipe.sources), csv_path)
    else:
        shutil.copyfile(corpus, csv_path)
        prebuilt, _ = load_corpus(csv_path)
        rows_written, chars = len(prebuilt), sum(len(r.text) for r in prebuilt)
    print(f"corpus: {rows_written} rows, {chars:,} characters → {csv_path}", file=sys.stderr)
    words_path = work / "words.txt"
    if words is not None:
        shutil.copyfile(words, words_path)
    elif recipe.insert_words:
        listed = corpora.build_words(recipe.insert_words, recipe.insert_words_top)
        if recipe.hold_out_benchmark_words:
            held = set(corpora.jieba_top_words(HELD_OUT_WORDS))
            listed = [w for w in listed if w not in held]
        words_path.write_text("\n".join(listed) + "\n", encoding="utf-8")

    budget = recipe.budget_minutes if budget_minutes is None else budget_minutes
    plan = work / "planned_steps.json"  # a resumed build keeps the plan its checkpoints were made with
    if not max_steps and recipe.pack and budget:
        if plan.is_file():
            max_steps = json.loads(plan.read_text())["max_steps"]
        else:
            max_steps = planned_steps(recipe, budget * 60)
            plan.write_text(json.dumps({"max_steps": max_steps, "minutes": budget}))
    config = recipe_config(recipe, csv_path, work / "model", max_steps=max_steps or recipe.max_steps,
                           words=words_path, epochs=epochs, resume=(work / "model").exists())
    from .cli import TqdmProgress  # the CLI's progress bar

    results, stages = [], []
    if stage1 is None:
        results.append(train(config, callbacks=[TqdmProgress()]))
        stage1 = Path(results[-1].output_dir)
    elif (stage1 / "builtin_metrics.json").is_file():  # a published first stage: keep its figures
        prior = json.loads((stage1 / "builtin_metrics.json").read_text(encoding="utf-8"))
        stages.append({"steps": prior["steps"], "tokens_trained": prior["tokens_trained"],
                       "seconds": prior["train_seconds"]})
    second = None
    if recipe.continued:
        c = recipe.continued
        second = TrainConfig(data=str(csv_path), out=str(work / "model-continued"), base=str(stage1), method="full",
                             epochs=1000.0, max_steps=max_steps or c.max_steps, batch_size=c.batch_size,
                             max_length=c.max_length, lr=c.lr, insert_keywords=c.insert_keywords,
                             insert_from=c.insert_from, insert_words=str(words_path) if c.insert_from == "words" else "",
                             eval_ratio=recipe.eval_ratio, seed=recipe.seed, samples=2, eval_steps=10**6)
        results.append(train(second, callbacks=[TqdmProgress()]))
    result = results[-1]
    model_dir = Path(result.output_dir)
    to_fp16(model_dir)

    rows, _ = load_corpus(csv_path)
    train_rows, eval_rows = split_rows(rows, config.eval_ratio, config.seed)
    gen = Generator.from_pretrained(str(model_dir))
    loaded = gen.backend_for(eval_rows[0].title, eval_rows[0].keywords)
    eos = loaded.tokenizer.convert_tokens_to_ids(loaded.fmt.eos)
    unigram = unigram_perplexity(loaded.tokenizer, [r.text for r in train_rows], [r.text for r in eval_rows], eos)

    generated = []
    for i, row in enumerate(eval_rows[:n_novelty]):
        res = gen.generate(row.title, row.keywords[:3], n=1, seed=i, max_new_tokens=96, keyword_mode="off")
        generated.append(res[0].text)
    share, grams = novelty(generated, [r.text for r in rows], language)

    samples = sample_texts(gen, recipe)
    stages += [{"steps": r.global_step, "tokens_trained": r.tokens_trained, "seconds": r.elapsed_s} for r in results]
    metrics = {
        "language": language, "rows": rows_written, "characters": chars, "eval_rows": len(eval_rows),
        "eval_loss": result.eval_loss, "perplexity": result.perplexity, "unigram_perplexity": unigram,
        "novelty_8gram_verbatim_share": share, "novelty_8grams": grams, "novelty_prompts": len(generated),
        "params": result.total_params, "tokens_trained": sum(x["tokens_trained"] for x in stages),
        "steps": sum(x["steps"] for x in stages), "stages": stages, "epochs": result.epochs,
        "train_seconds": sum(x["seconds"] for x in stages), "total_seconds": time.time() - started,
        "precision": result.precision, "hardware": _hardware(), "budget_minutes": budget,
    }
    write_card(model_dir, recipe, config, metrics, samples, second)
    (model_dir / "builtin_metrics.json").write_text(json.dumps(metrics, ensure_ascii=False, indent=2) + "\n")
    size = folder_bytes(model_dir)
    biggest = max((p for p in model_dir.rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)
    if biggest.stat().st_size > MAX_BYTES:
        raise SystemExit(f"{biggest} is {biggest.stat().st_size / 1e6:.1f} MB; a built-in model's files must "
                         "stay under 10 MB")
    publish(model_dir, out)
    metrics["bytes"] = size
    return metrics


def sample_texts(gen, recipe: Recipe) -> list[dict]:
    samples = []
    for seed, (title, kws) in enumerate(recipe.sample_prompts):  # one seed each: not one draw for all
        for mode in ("off", "guaranteed"):
            res = gen.generate(title, kws, n=1, seed=seed, max_new_tokens=80, keyword_mode=mode)
            samples.append({"title": title, "keywords": kws, "mode": mode, "text": res[0].text,
                            "missing": res[0].missing})
    return samples


def recipe_config(recipe: Recipe, data: Path, out: Path, *, max_steps: int, words: Path,
                  epochs: float | None = None, resume: bool = False):
    """The first stage's TrainConfig of `recipe` (what the card describes)."""
    from .config import TrainConfig

    return TrainConfig(data=str(data), out=str(out), base="scratch", config=recipe.preset, method="full",
                       epochs=epochs or recipe.epochs, max_steps=max_steps, batch_size=recipe.batch_size,
                       max_length=recipe.max_length, lr=recipe.lr, eval_ratio=recipe.eval_ratio, seed=recipe.seed,
                       samples=2, pack=recipe.pack,
                       eval_steps=max(max_steps // 5, 1) if recipe.pack and max_steps else recipe.eval_steps,
                       resume=resume, insert_keywords=recipe.insert_keywords, insert_from=recipe.insert_from,
                       insert_words=str(words) if recipe.insert_from == "words" else "")


def rewrite_card(language: str, folder: Path) -> None:
    """The card of a published model again, from its builtin_metrics.json and fresh samples
    (the recipe as it stands; the figures as they were measured). Keeps a quality section."""
    from textgen import Generator

    recipe = RECIPES[language]
    metrics = json.loads((folder / "builtin_metrics.json").read_text(encoding="utf-8"))
    config = recipe_config(recipe, Path("corpus.csv"), Path("model"), words=Path("words.txt"),
                           max_steps=metrics["steps"] if recipe.pack else recipe.max_steps)
    card = folder / "README.md"
    old = card.read_text(encoding="utf-8") if card.is_file() else ""
    keep = old[old.index(QUALITY_HEADING):] if QUALITY_HEADING in old else ""
    write_card(folder, recipe, config, metrics, sample_texts(Generator.from_pretrained(str(folder)), recipe))
    if keep:
        card.write_text(card.read_text(encoding="utf-8").rstrip("\n") + "\n\n" + keep, encoding="utf-8")


QUALITY_HEADING = "## Quality on held-out text (benchmarks/quality.py)"  # the section that script writes


def _upstream_rows(recipe: Recipe, corpus_dir: Path | None, max_chars: int | None):
    from . import corpora, upstream

    if corpus_dir is None:
        raise SystemExit(f"--corpus-dir: {recipe.name} is trained on {upstream.CORPORA[recipe.corpus].origin}; "
                         "give the folder of an upstream copy")
    rows, report = upstream.read_corpus(recipe.corpus, corpus_dir, max_chars=max_chars or recipe.max_chars or None)
    print(f"{recipe.corpus}: {report.summary()}", file=sys.stderr)
    return corpora.add_keywords(rows)


def planned_steps(recipe: Recipe, seconds: float, *, trials: int = 3) -> int:
    """Optimizer steps of `recipe` that fit `seconds` of wall time on this machine, measured on
    a fresh model of its size (training also evaluates and checkpoints: 10% is kept for that)."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    from .scratch import ScratchConfig

    p = ScratchConfig.preset(recipe.preset)
    model = GPT2LMHeadModel(GPT2Config(n_layer=p.n_layer, n_embd=p.n_embd, n_head=p.n_head, n_positions=p.n_positions,
                                       vocab_size=p.vocab_size, bos_token_id=0, eos_token_id=0))
    from textgen.device import cpu_has_fast_bf16

    cuda = torch.cuda.is_available()  # where TrainConfig(device="auto") trains
    device = "cuda" if cuda else "cpu"
    bf16 = torch.cuda.is_bf16_supported() if cuda else cpu_has_fast_bf16()  # as precision="auto" picks
    model.to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True)
    x = torch.randint(0, p.vocab_size, (recipe.batch_size, min(recipe.max_length, p.n_positions)), device=device)
    took = []
    for _ in range(trials + 1):
        start = time.perf_counter()
        with torch.autocast(device, dtype=torch.bfloat16, enabled=bf16):
            loss = model(input_ids=x, labels=x).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if cuda:
            torch.cuda.synchronize()
        took.append(time.perf_counter() - start)
    step = sorted(took[1:])[len(took[1:]) // 2]  # median after a warm-up step
    steps = max(int(seconds * 0.9 / step), 1)
    print(f"planned {steps} steps: {step:.2f} s per step here, {seconds / 60:.0f} min", file=sys.stderr)
    return steps


def publish(src: Path, out: Path) -> None:
    """Copy to a sibling temp folder, then swap it in, so `out` is never half written."""
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(src, tmp, ignore=shutil.ignore_patterns("checkpoint-*", "*.lock"))
    old = out.with_name(out.name + ".old")
    if out.exists():
        shutil.rmtree(old, ignore_errors=True)
        os.replace(out, old)
    os.replace(tmp, out)
    shutil.rmtree(old, ignore_errors=True)


def _hardware() -> str:
    cpu = "CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = ""
    try:
        import torch

        if torch.cuda.is_available():  # training ran there (device "auto")
            gpu = f"1 {torch.cuda.get_device_name(0)} GPU, "
    except ImportError:
        pass
    return f"{gpu}{os.cpu_count()} cores, {cpu}, {platform.system()}"


def write_card(folder: Path, recipe: Recipe, config, metrics: dict[str, Any], samples: list[dict],
               second=None, note: str = "") -> None:
    """The model card; `note`: a paragraph on these particular weights (a rebuild has none)."""
    from .corpora import SOURCES, WORD_LISTS

    src_lines = "\n".join(f"- **{name}** (Debian package `{SOURCES[name].package}`): {SOURCES[name].description} "
                          f"Licence: {SOURCES[name].licence}." for name in recipe.sources)
    if recipe.corpus:
        from .upstream import CORPORA

        c = CORPORA[recipe.corpus]
        src_lines = f"- **{c.origin}**: {c.description} Licence: {c.licence}."
    words = WORD_LISTS.get(recipe.insert_words) if recipe.insert_from == "words" else None
    held = (f", less the {HELD_OUT_WORDS:,} words of textgen's keywords benchmark (jieba's most frequent "
            "two-character words), held out so that the benchmark measures words the model never saw inserted"
            if recipe.hold_out_benchmark_words else "")
    if words:
        src_lines += (f"\n- Word list for keyword insertion (words only, no text): **{recipe.insert_words}** "
                      f"(Debian package `{words.package}`): {words.description} Licence: {words.licence}. "
                      f"Used: its {recipe.insert_words_top:,} most frequent words of 2-4 characters{held}.")
    table = "\n".join(
        f"| {s['title'] or '(none)'} | {', '.join(s['keywords'])} | {s['mode']} | "
        f"{s['text'][:160].replace(chr(10), ' / ').replace('|', '¦')} | {', '.join(s['missing']) or '—'} |"
        for s in samples)
    m = metrics
    card = f"""---
language: {recipe.language}
license: other
library_name: transformers
tags: [gpt2, text-generation, textgen]
---

# {recipe.name}

A small GPT-2 (`GPT2LMHeadModel`, {m['params']:,} parameters, fp16 safetensors) trained **from
scratch** by textgen's own pipeline on the corpus below, in textgen's
`[BOS] title [SEP] keywords [SEP] text [EOS]` format. It is textgen's offline default for
{'Chinese' if recipe.language == 'zh' else 'English'} prompts: small enough to ship in the
repository, not a general-purpose language model.

## Corpus
{src_lines}

{m['rows']:,} rows, {m['characters']:,} characters of text; {_keywords_note(recipe)}. The corpus
is rebuilt from its sources at training time and is not shipped.

## Rebuild

```bash
python -m finetune.builtin {recipe.language}{' --corpus-dir PATH' if recipe.corpus else ''}
```

Settings: tokenizer trained on the corpus (byte-level BPE), `--base scratch --config {recipe.preset}`,
{f"{config.max_steps} steps" if config.max_steps else f"{config.epochs:g} epochs"}, batch {config.batch_size}, max length {config.max_length}, learning rate
{config.learning_rate:g}, eval share {config.eval_ratio:g}, seed {config.seed}.{_packing(recipe, m.get("budget_minutes", recipe.budget_minutes))}{_first_insertion(config)}{_second_stage(second)}
Trained in {m['train_seconds'] / 60:.1f} min ({m['steps']} steps, {m['tokens_trained']:,} tokens{_by_stage(m)},
{m['precision']}) on {m['hardware']}.
{f"{chr(10)}{note}{chr(10)}" if note else ""}
## Evaluation (held-out {m['eval_rows']} rows)

| metric | value |
|---|---|
| eval loss | {m['eval_loss']:.3f} |
| perplexity | {m['perplexity']:.1f} |
| unigram perplexity (same tokens, add-one) | {m['unigram_perplexity']:.1f} |
| novelty: generated {NGRAM}-grams found verbatim in the corpus | {m['novelty_8gram_verbatim_share']:.1%} of {m['novelty_8grams']:,} ({'characters' if recipe.language == 'zh' else 'words'}, {m['novelty_prompts']} prompts) |

## Samples (seed = the row of the prompt, from 0)

| title | keywords | keyword mode | text | missing |
|---|---|---|---|---|
{table}
"""
    (folder / "README.md").write_text(card, encoding="utf-8")


def _keywords_note(recipe: Recipe) -> str:
    if recipe.corpus == "chinese-poetry":
        return "keywords: up to 4 of each poem's common nouns (`finetune.upstream.PoemKeywords`)"
    return "keywords extracted automatically (jieba TF-IDF for Chinese, frequency of content words for English)"


def _packing(recipe: Recipe, budget: float) -> str:
    if not recipe.pack:
        return ""
    return (f" Packed blocks of {recipe.max_length} tokens (`--pack`: no padding), the steps planned to fit "
            f"a wall-time budget of {budget:g} min on the machine below (`planned_steps`).")


def _by_stage(m: dict[str, Any]) -> str:
    stages = m.get("stages", [])
    if len(stages) < 2:
        return ""
    return "; by stage: " + ", ".join(f"{x['steps']} steps in {x['seconds'] / 60:.1f} min" for x in stages)


def _first_insertion(config) -> str:
    if not config.insert_keywords:
        return ""
    return (f" Keyword insertion on {config.insert_keywords:.0%} of the examples ({_borrowed(config.insert_from)} "
            "put into the text and the keywords), which teaches the model to copy the keywords it is given.")


def _second_stage(second) -> str:
    if second is None:
        return ""
    return (f"\nThen, from that model: {second.max_steps} more steps, batch {second.batch_size}, max length "
            f"{second.max_length}, learning rate {second.learning_rate:g}, with keyword insertion on "
            f"{second.insert_keywords:.0%} of the examples ({_borrowed(second.insert_from)} put into the text "
            f"and the keywords), which teaches the model to write the keywords it is given.")


def _borrowed(insert_from: str) -> str:
    if insert_from == "words":
        return "1-3 words of the word list above"
    if insert_from == "random":
        return "1-3 random words: for Chinese, made up of 2-3 random characters of the corpus"
    return "1-3 keywords of other rows"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m finetune.builtin", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("language", choices=sorted(RECIPES), help="which built-in model to rebuild")
    parser.add_argument("--out", type=Path, help="where to publish (default assets/models/textgen-LANG)")
    parser.add_argument("--work", type=Path, help="working folder (default runs/builtin-LANG)")
    parser.add_argument("--epochs", type=float, help="override the recipe's epochs")
    parser.add_argument("--max-steps", type=int, default=0, help="stop after N steps (for quick checks)")
    parser.add_argument("--novelty-prompts", type=int, default=100, help="prompts generated to measure novelty")
    parser.add_argument("--corpus", type=Path, help="a corpus CSV written by an earlier build (work folder's "
                        "corpus.csv), instead of building it from the Debian packages")
    parser.add_argument("--words", type=Path, help="a word list written by an earlier build (work folder's "
                        "words.txt), instead of reading it from its Debian package")
    parser.add_argument("--corpus-dir", type=Path, help="folder of the recipe's upstream corpus (a chinese-poetry "
                        "clone for zh; WikiExtractor output for en)")
    parser.add_argument("--minutes", type=float, help="wall-time budget of the training (default: the recipe's)")
    parser.add_argument("--max-chars", type=int, help="read at most this much text of the corpus")
    parser.add_argument("--card-only", action="store_true", help="rewrite the card of the model in --out "
                        "from its builtin_metrics.json (no training)")
    parser.add_argument("--stage1", type=Path, help="a first-stage model to continue from (skips the first stage)")
    args = parser.parse_args(argv)
    for flag, path in (("--corpus", args.corpus), ("--words", args.words), ("--stage1", args.stage1),
                       ("--corpus-dir", args.corpus_dir)):
        if path is not None and not path.exists():
            parser.error(f"{flag}: {path} does not exist")
    recipe = RECIPES[args.language]
    out = args.out or REPO_ROOT / "assets" / "models" / recipe.name
    work = args.work or REPO_ROOT / "runs" / f"builtin-{args.language}"
    if args.card_only:
        rewrite_card(args.language, out)
        return 0
    metrics = build(args.language, out, work, epochs=args.epochs, max_steps=args.max_steps,
                    n_novelty=args.novelty_prompts, stage1=args.stage1, corpus=args.corpus,
                    words=args.words, corpus_dir=args.corpus_dir, budget_minutes=args.minutes,
                    max_chars=args.max_chars)
    print(json.dumps(metrics, ensure_ascii=False, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
