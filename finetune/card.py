"""The model card (README.md) written beside a fine-tuned model.

>>> text = model_card(result.to_dict(), config.to_dict())      # doctest: +SKIP

It says what the model was made from and how: base model, data statistics, method (and
what exactly trained), hyperparameters, final evaluation loss and perplexity, and samples.
"""
from __future__ import annotations

import json
from typing import Any

_HYPERPARAMETERS = ("method", "last_n", "lora_r", "lora_alpha", "epochs", "max_steps", "lr", "batch_size",
                    "max_length", "eval_ratio", "seed", "keywords", "train_on_prompt")


def model_card(result: dict[str, Any], config: dict[str, Any]) -> str:
    """Markdown with a small YAML header, as the Hugging Face Hub reads model cards."""
    lines = [
        "---",
        "library_name: transformers",
        "pipeline_tag: text-generation",
        f"language: {result.get('language') or 'en'}",
        "tags: [textgen, gpt2, fine-tuned]",
        "---",
        "",
        f"# {result.get('name') or 'textgen model'}",
        "",
        "A GPT-2 model fine-tuned with textgen to write a text from a title and keywords.",
        "",
        "```python",
        "from textgen import Generator",
        "g = Generator.from_pretrained(\"path/to/this/folder\")",
        "print(g.generate(\"title\", \"keyword, keyword\", n=1)[0].text)",
        "```",
        "",
        "It reads prompts as `[BOS] title [SEP] keywords [SEP]` and writes the text until `[EOS]` "
        "(see textgen_format.json).",
        "",
        "## Base model",
        "",
        f"`{result.get('base')}`" + (" (trained from scratch)" if result.get("scratch") else ""),
        "",
        "## Data",
        "",
        *_data_lines(result),
        "",
        "## Method",
        "",
        *_method_lines(result, config),
        "",
        "## Results",
        "",
        *_result_lines(result),
        "",
        "## Samples",
        "",
        *_sample_lines(result.get("samples") or []),
        "",
        "## Limitations",
        "",
        "A small model learns the style and vocabulary of its corpus, not facts; it repeats itself "
        "and can write nonsense. Review what it writes before you publish it.",
        "",
    ]
    return "\n".join(lines)


def _method_lines(result: dict[str, Any], config: dict[str, Any]) -> list[str]:
    return [
        f"- method: **{result.get('method')}**; trained: {result.get('trained')}",
        f"- trainable parameters: {result.get('trainable_params', 0):,} of {result.get('total_params', 0):,}"
        f" ({_percent(result)})",
        f"- precision: {result.get('precision')}, device: {result.get('device')}"
        + (f", {result['world_size']} processes" if result.get("world_size", 1) > 1 else ""),
        "",
        "| hyperparameter | value |",
        "|---|---|",
        *[f"| {k} | {_cell(config.get(k))} |" for k in _HYPERPARAMETERS if k in config],
        f"| learning rate used | {_cell(result.get('lr'))} |",
    ]


def _result_lines(result: dict[str, Any]) -> list[str]:
    return [
        f"- steps: {result.get('global_step')}, epochs: {result.get('epochs', 0):.2f}",
        f"- final training loss: {_num(result.get('train_loss'))}",
        f"- evaluation loss: {_num(result.get('eval_loss'))}, perplexity: {_num(result.get('perplexity'))}"
        + (f" (on {result.get('eval_rows')} held-out rows)" if result.get("eval_rows") else
           " (no rows were held out)"),
        f"- tokens trained: {result.get('tokens_trained', 0):,} (non-padding)",
        f"- training time: {result.get('elapsed_s', 0):.0f} s",
    ]


def _data_lines(result: dict[str, Any]) -> list[str]:
    dropped = result.get("rows_dropped") or {}
    lines = [
        f"- file: `{result.get('data')}` (language {result.get('language')})",
        f"- rows used: {result.get('rows_used')} of {result.get('rows_total')}"
        + (" (dropped: " + ", ".join(f"{n} {why}" for why, n in dropped.items()) + ")" if dropped else ""),
        f"- held out for evaluation: {result.get('eval_rows', 0)} rows",
        f"- training windows: {result.get('train_windows')}; {result.get('rows_split', 0)} long texts were "
        "split into several windows, each with its title and keywords",
        f"- keywords: {result.get('keywords_source')}; each use of a row draws a random subset "
        "(k uniform from 0 to all) in random order",
    ]
    return lines


def _sample_lines(samples: list[dict[str, Any]]) -> list[str]:
    if not samples:
        return ["(none)"]
    out = []
    for s in samples:
        out += [f"**{s.get('title')}** — {', '.join(s.get('keywords') or [])}", "", "> " +
                (s.get("text") or "").replace("\n", "\n> "), ""]
    return out


def _percent(result: dict[str, Any]) -> str:
    total = result.get("total_params") or 0
    return f"{100.0 * (result.get('trainable_params') or 0) / total:.2f}%" if total else "n/a"


def _num(x: Any) -> str:
    return "n/a" if x is None else f"{x:.4g}"


def _cell(x: Any) -> str:
    return json.dumps(x, ensure_ascii=False) if isinstance(x, (dict, list)) else str(x)
