"""The built-in models' recipes: what each is trained on and with which settings, and how many
steps fit a wall-time budget on this machine."""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

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
    insert_phrases: float = 0.0
    pack: bool = False


@dataclass
class Recipe:
    """Training settings of one built-in model; the card records them."""

    language: str
    name: str
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
    insert_words: str = ""  # with insert_from="words": a `finetune.builtin.words.WORD_LISTS` name ...
    insert_words_top: int = 20000  # ... and how many of its most frequent words to borrow, ...
    hold_out_benchmark_words: bool = False  # ... less the keywords benchmark's pool (zh), so that
    # benchmarks/keywords.py measures words the model never saw inserted
    sample_prompts: list[tuple[str, list[str]]] = field(default_factory=list)
    continued: Continued | None = None
    corpus: str = ""  # an upstream corpus (`finetune.builtin.upstream.CORPORA`), read from --corpus-dir, ...
    max_chars: int = 0  # ... up to this much text
    pack: bool = False  # packed blocks of max_length tokens (`finetune.packing`)
    budget_minutes: float = 0.0  # with pack: steps are planned to fit this wall time on this machine
    eval_steps: int = 0


RECIPES = {
    # zh: 绝句 and 律诗 of the Tang and Song (chinese-poetry), keywords the poems' common nouns;
    # a fifth of the examples borrow 1-3 modern words (Rime's pinyin_simp, less the keywords
    # benchmark's words) into poem and keywords: users type modern words, which the poems lack,
    # and more than a fifth would teach lines that break the forms. 8.5M characters end in the
    # Song files below poet.song.200000, where benchmarks/quality.py takes its held-out poems
    "zh": Recipe("zh", "textgen-zh", epochs=1, preset="poems", batch_size=16, max_length=256, lr=2e-3,
                 eval_ratio=0.005, insert_keywords=0.2, insert_from="words", insert_words="pinyin-simp",
                 hold_out_benchmark_words=True, corpus="chinese-poetry", max_chars=8_500_000, pack=True,
                 budget_minutes=70, sample_prompts=[
        ("春夜", ["月", "花"]), ("送别", ["江", "柳", "酒"]), ("秋思", ["雁", "霜"]), ("", ["山", "水", "云"])]),
    # en: English Wikipedia, one row per section ("Article: Section"); half the examples borrow
    # 1-3 keywords of other rows, which teaches the model to write the keywords it is given.
    # 100M characters hold all of enwiki's AA extract (99M): where the CPU has native bf16 the
    # budget reaches 0.7 of an epoch of it, so no text is seen twice. Then every example borrows
    # random words, half of them as two-word phrases: a second stage that teaches copying the
    # keywords of the prompt, which the first stage's borrowed keywords (single words, a few in
    # a long section) taught too weakly for phrases
    "en": Recipe("en", "textgen-en", epochs=1, preset="base", batch_size=16, max_length=256, lr=2e-3,
                 eval_ratio=0.01, insert_keywords=0.5, corpus="wikiextractor", max_chars=100_000_000, pack=True,
                 budget_minutes=70, continued=Continued(max_steps=900, batch_size=16, max_length=256, lr=1e-3,
                                                        insert_from="random", insert_phrases=0.5, pack=True),
                 sample_prompts=[
        ("Volcano", ["lava", "island"]), ("The history of tea", ["China", "trade"]),
        ("Morning run", ["park", "dog"]), ("", ["river", "bridge", "city"])]),
}


def recipe_config(recipe: Recipe, data: Path, out: Path, *, max_steps: int, words: Path,
                  epochs: float | None = None, resume: bool = False):
    """The first stage's TrainConfig of `recipe` (what the card describes)."""
    from ..config import TrainConfig

    return TrainConfig(data=str(data), out=str(out), base="scratch", config=recipe.preset, method="full",
                       epochs=epochs or recipe.epochs, max_steps=max_steps, batch_size=recipe.batch_size,
                       max_length=recipe.max_length, lr=recipe.lr, eval_ratio=recipe.eval_ratio, seed=recipe.seed,
                       samples=2, pack=recipe.pack,
                       eval_steps=max(max_steps // 5, 1) if recipe.pack and max_steps else recipe.eval_steps,
                       resume=resume, insert_keywords=recipe.insert_keywords, insert_from=recipe.insert_from,
                       insert_words=str(words) if recipe.insert_from == "words" else "")


def planned_steps(recipe: Recipe, seconds: float, *, trials: int = 3) -> int:
    """Optimizer steps of `recipe` that fit `seconds` of wall time on this machine, measured on
    a fresh model of its size (training also evaluates and checkpoints: 10% is kept for that)."""
    import torch
    from transformers import GPT2LMHeadModel

    from ..scratch import ScratchConfig, gpt2_config

    p = ScratchConfig.preset(recipe.preset)
    # built as training builds it: with attention dropout, for one, scaled_dot_product_attention
    # leaves its fused kernel for a slower one (a plan made with GPT2Config's default dropout
    # timed steps 24% slower than the preset's dropout-free ones)
    model = GPT2LMHeadModel(gpt2_config(p, p.vocab_size))
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
