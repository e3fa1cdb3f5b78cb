"""The model card of a built-in model: corpus with origin and licence, recipe, hardware, figures,
samples."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .metrics import NGRAM
from .recipes import HELD_OUT_WORDS, RECIPES, Recipe, recipe_config


QUALITY_HEADING = "## Quality on held-out text (benchmarks/quality.py)"  # the section that script writes


def sample_texts(gen, recipe: Recipe) -> list[dict]:
    samples = []
    for seed, (title, kws) in enumerate(recipe.sample_prompts):  # one seed each: not one draw for all
        for mode in ("off", "guaranteed"):
            res = gen.generate(title, kws, n=1, seed=seed, max_new_tokens=80, keyword_mode=mode)
            samples.append({"title": title, "keywords": kws, "mode": mode, "text": res[0].text,
                            "missing": res[0].missing})
    return samples


def write_card(folder: Path, recipe: Recipe, config, metrics: dict[str, Any], samples: list[dict],
               second=None, note: str = "") -> None:
    """The model card; `note`: a paragraph on these particular weights (a rebuild has none)."""
    src_lines, table, m = _corpus_lines(recipe), _samples_table(samples), metrics
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


def _corpus_lines(recipe: Recipe) -> str:
    """The corpus and the word list, each with its origin and licence."""
    from .words import WORD_LISTS
    from .upstream import CORPORA

    c = CORPORA[recipe.corpus]
    lines = f"- **{c.origin}**: {c.description} Licence: {c.licence}."
    words = WORD_LISTS.get(recipe.insert_words) if recipe.insert_from == "words" else None
    held = (f", less the {HELD_OUT_WORDS:,} words of textgen's keywords benchmark (jieba's most frequent "
            "two-character words), held out so that the benchmark measures words the model never saw inserted"
            if recipe.hold_out_benchmark_words else "")
    if words:
        lines += (f"\n- Word list for keyword insertion (words only, no text): **{recipe.insert_words}** "
                  f"(Debian package `{words.package}`): {words.description} Licence: {words.licence}. "
                  f"Used: its {recipe.insert_words_top:,} most frequent words of 2-4 characters{held}.")
    return lines


def _samples_table(samples: list[dict]) -> str:
    return "\n".join(
        f"| {s['title'] or '(none)'} | {', '.join(s['keywords'])} | {s['mode']} | "
        f"{s['text'][:160].replace(chr(10), ' / ').replace('|', '¦')} | {', '.join(s['missing']) or '—'} |"
        for s in samples)


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


def _keywords_note(recipe: Recipe) -> str:
    if recipe.corpus == "chinese-poetry":
        return "keywords: up to 4 of each poem's common nouns (`finetune.builtin.poetry.PoemKeywords`)"
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
    borrowed = _borrowed(config.insert_from, config.insert_count)
    return (f" Keyword insertion on {config.insert_keywords:.0%} of the examples ({borrowed} "
            "put into the text and the keywords), which teaches the model to copy the keywords it is given.")


def _second_stage(second) -> str:
    if second is None:
        return ""
    packed = ", packed" if second.pack else ""
    borrowed = _borrowed(second.insert_from, second.insert_count)
    phrases = (f", {second.insert_phrases:.0%} of the English ones made two-word phrases with another random word"
               if second.insert_phrases else "")
    return (f"\nThen, from that model: {second.max_steps} more steps, batch {second.batch_size}, max length "
            f"{second.max_length}{packed}, learning rate {second.learning_rate:g}, with keyword insertion on "
            f"{second.insert_keywords:.0%} of the examples ({borrowed}{phrases}, put into "
            f"the text and the keywords), which teaches the model to write the keywords it is given.")


def _borrowed(insert_from: str, count: int) -> str:
    if insert_from == "words":
        return f"1-{count} words of the word list above"
    if insert_from == "random":
        return f"1-{count} random words: for Chinese, made up of 2-3 random characters of the corpus"
    return f"1-{count} keywords of other rows"
