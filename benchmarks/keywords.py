"""Keyword modes measured (issue 3): coverage, fluency cost and speed of off / soft / guaranteed.

    python -m benchmarks.keywords [--sets 200] [--languages en,zh] [--model auto|PATH]

Keyword sets come from word lists the project does not write: English words sampled from
Debian's `wamerican` list (lower-case, alphabetic, 4-10 letters, seen at least 5 times in
WordNet's SemCor counts, i.e. common-ish), Chinese words from jieba's dictionary (the 3,000
most frequent two-character words). Each set has 3-5 keywords; the title is empty for even
sets and one other word of the list for odd ones. Every set is generated in the three modes
with the same seed, the modes' order alternating so that background load hits them alike.

Reported per language and mode:
- candidates containing every keyword (guaranteed must be 100%), and keywords covered;
- perplexity of the generated texts under the same model, given the same prompt (the texts
  re-encoded, token-weighted over all candidates), and its ratio to off (target <= 1.3);
  also the share of text tokens inside keyword spans and the perplexity of the tokens
  outside them, which separates the cost of the keywords themselves from harm to the rest;
- tokens/s and its ratio to off (target >= 0.9), twice: at fixed length (min_new_tokens
  pinned to max_new_tokens, so every mode decodes the same steps and only the keyword
  processor's own cost differs), and as generated (tokens of the candidates' texts per second
  of `Generator.generate`, scoring pass included; guaranteed texts run longer, which fills
  the batch better, so this ratio flatters it).

Models: the built-in ones ("auto") when assets/models/textgen-{en,zh} exist; else a
stand-in is trained here once (a 2-layer, 128-wide GPT-2 on the built-in corpora from
`finetune.corpora`, tokenizer from `finetune.scratch`, --train-seconds per language) and kept
in --standin-dir. Generator picks the dtype as it does by default (bf16 on CPUs with native
bf16, else fp32).
"""
from __future__ import annotations

import argparse
import math
import random
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

MODES = ("off", "soft", "guaranteed")
WORDS_EN = Path("/usr/share/dict/american-english")  # Debian package wamerican
SEMCOR_COUNTS = Path("/usr/share/wordnet/cntlist.rev")  # Debian package wordnet-base
MIN_SEMCOR_COUNT = 5
TOP_ZH_WORDS = 3000


# -- keyword sets -----------------------------------------------------------------------------
def english_pool() -> list[str]:
    """Common-ish English words: wamerican entries that SemCor saw MIN_SEMCOR_COUNT times."""
    if not WORDS_EN.is_file():
        raise SystemExit(f"{WORDS_EN} is missing: apt-get install wamerican")
    words = [w for w in WORDS_EN.read_text(encoding="utf-8").split()
             if w.isascii() and w.isalpha() and w.islower() and 4 <= len(w) <= 10]
    if not SEMCOR_COUNTS.is_file():
        print(f"note: {SEMCOR_COUNTS} missing (wordnet-base): using all {len(words)} words", file=sys.stderr)
        return words
    counts: Counter[str] = Counter()
    for line in SEMCOR_COUNTS.read_text(encoding="utf-8").splitlines():
        key, _, count = line.split()
        counts[key.split("%")[0]] += int(count)
    return [w for w in words if counts[w] >= MIN_SEMCOR_COUNT]


def chinese_pool() -> list[str]:
    """The most frequent two-character words of jieba's dictionary."""
    from finetune.corpora import jieba_top_words

    return jieba_top_words(TOP_ZH_WORDS)


def keyword_sets(pool: list[str], count: int, seed: int) -> list[tuple[str, list[str]]]:
    """`count` (title, keywords) pairs: 3-5 keywords; title empty or one other word."""
    rng = random.Random(seed)
    sets = []
    for i in range(count):
        words = rng.sample(pool, rng.randint(3, 5) + 1)
        sets.append(("" if i % 2 == 0 else words[0], words[1:]))
    return sets


# -- stand-in models ----------------------------------------------------------------------------
def train_standin(folder: Path, language: str, seconds: float) -> Path:
    """A small GPT-2 trained for `seconds` on the built-in corpus of `language`."""
    import torch

    from finetune.corpora import build
    from finetune.scratch import ScratchConfig, init_scratch_model, save_scratch, train_tokenizer
    from textgen.keywords import parse_keywords
    from textgen.prompt import PromptFormat, encode_example, token_ids

    rows = build(language)
    config = ScratchConfig(n_layer=2, n_embd=128, n_head=4, n_positions=256, vocab_size=4096,
                           dropout=0.0, save_dtype="float32")
    tok = train_tokenizer([t for r in rows for t in (r.title, r.keywords, r.text)], config.vocab_size,
                          folder, language)
    model = init_scratch_model(tok, config)
    fmt, pad = PromptFormat(), token_ids(tok, PromptFormat())["pad"]
    examples = []
    for r in rows:
        ids, start = encode_example(tok, fmt, r.title, parse_keywords(r.keywords), r.text)
        if start < config.n_positions - 8:
            examples.append((ids[:config.n_positions], start))
    rng = random.Random(0)
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=0.01)
    model.train()
    begin, step, loss_avg = time.perf_counter(), 0, 0.0
    while (elapsed := time.perf_counter() - begin) < seconds:
        for group in opt.param_groups:  # linear decay over the time budget
            group["lr"] = 2e-3 * max(0.05, 1 - elapsed / seconds)
        batch = rng.sample(examples, 16)
        width = max(len(ids) for ids, _ in batch)
        x = torch.full((len(batch), width), pad)
        y = torch.full((len(batch), width), -100)  # loss on the text (and its end) only
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for i, (ids, start) in enumerate(batch):
            x[i, :len(ids)] = torch.tensor(ids)
            y[i, start:len(ids)] = torch.tensor(ids[start:])
            mask[i, :len(ids)] = 1
        loss = model(input_ids=x, attention_mask=mask, labels=y).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        step += 1
        loss_avg = 0.98 * loss_avg + 0.02 * loss.item() if step > 1 else loss.item()
        if step % 200 == 0:
            print(f"  {language} stand-in: step {step}, loss {loss_avg:.2f}, {elapsed:.0f}s", file=sys.stderr)
    model.eval()
    save_scratch(model, tok, folder, dtype="float32")
    (folder / "STANDIN.txt").write_text(
        f"stand-in for textgen-{language}: GPT-2 {config.n_layer} layers x {config.n_embd}, "
        f"{model.num_parameters():,} parameters, {step} steps of 16 in {seconds:.0f}s, "
        f"final training loss {loss_avg:.2f}\n", encoding="utf-8")
    return folder


def models_for(args) -> dict[str, str]:
    """Model per language: --model, else the built-in models, else trained stand-ins."""
    from textgen.loading import BUILTIN_BY_LANGUAGE, builtin_models

    if args.model:
        return {lang: args.model for lang in args.languages}
    builtins = builtin_models()
    if all(BUILTIN_BY_LANGUAGE[lang] in builtins for lang in args.languages):
        return {lang: "auto" for lang in args.languages}
    out = {}
    for lang in args.languages:
        folder = args.standin_dir / f"standin-{lang}"
        if not (folder / "STANDIN.txt").is_file():
            print(f"training a {lang} stand-in in {folder} ({args.train_seconds:.0f}s)…", file=sys.stderr)
            train_standin(folder, lang, args.train_seconds)
        out[lang] = str(folder)
    return out


# -- measuring ----------------------------------------------------------------------------------
@dataclass
class Tally:
    candidates: int = 0
    complete: int = 0  # candidates containing every keyword
    keywords: int = 0
    covered: int = 0
    nll: float = 0.0  # summed negative log-likelihood of the texts' tokens
    tokens: int = 0
    nll_kw: float = 0.0  # the same for the tokens inside the keywords' spans
    tokens_kw: int = 0
    seconds: float = 0.0

    @property
    def perplexity(self) -> float:
        return math.exp(self.nll / max(self.tokens, 1))

    @property
    def perplexity_outside(self) -> float:
        """Perplexity of the tokens outside the keywords: the fluency of the rest of the text."""
        return math.exp((self.nll - self.nll_kw) / max(self.tokens - self.tokens_kw, 1))

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / max(self.seconds, 1e-9)


def text_nll(loaded, title: str, keywords: list[str], candidates) -> tuple[float, int, float, int]:
    """Summed NLL and count of the candidates' text tokens given the prompt, all and those
    overlapping a keyword span, in one padded batch."""
    import torch

    from textgen.prompt import encode_prompt

    tok = loaded.tokenizer
    prompt = encode_prompt(tok, loaded.fmt, title, keywords)
    encoded = [tok(c.text, add_special_tokens=False, return_offsets_mapping=True) for c in candidates]
    bodies = [e["input_ids"] for e in encoded]
    if not any(bodies):
        return 0.0, 0, 0.0, 0
    width = len(prompt) + max(map(len, bodies))
    ids = torch.zeros((len(bodies), width), dtype=torch.long)
    mask = torch.zeros_like(ids)
    in_kw = torch.zeros_like(ids)
    for i, (body, e, c) in enumerate(zip(bodies, encoded, candidates)):
        ids[i, :len(prompt) + len(body)] = torch.tensor(prompt + body)
        mask[i, :len(prompt) + len(body)] = 1
        for j, (start, end) in enumerate(e["offset_mapping"]):
            in_kw[i, len(prompt) + j] = any(s.start < end and start < s.end for s in c.spans)
    ids, mask = ids.to(loaded.device), mask.to(loaded.device)
    with torch.inference_mode():
        logits = loaded.model(ids, attention_mask=mask).logits[:, :-1].float()  # (n, T-1, V)
        nll = -torch.log_softmax(logits, -1).gather(2, ids[:, 1:, None]).squeeze(-1).cpu()
    target = mask[:, 1:].cpu()
    target[:, :len(prompt) - 1] = 0  # score the text only, not the prompt
    kw = target * in_kw[:, 1:]
    return float((nll * target).sum()), int(target.sum()), float((nll * kw).sum()), int(kw.sum())


def measure(gen, sets: list[tuple[str, list[str]]], n: int, max_new_tokens: int) -> dict[str, Tally]:
    tallies = {mode: Tally() for mode in MODES}
    gen.generate(*sets[0], n=n, seed=0, max_new_tokens=max_new_tokens, keyword_mode="guaranteed")  # warm-up
    for i, (title, keywords) in enumerate(sets):
        loaded = gen.backend_for(title, keywords)
        for mode in (MODES if i % 2 == 0 else MODES[::-1]):
            start = time.perf_counter()
            result = gen.generate(title, keywords, n=n, seed=i, max_new_tokens=max_new_tokens, keyword_mode=mode)
            seconds = time.perf_counter() - start
            nll, tokens, nll_kw, tokens_kw = text_nll(loaded, title, keywords, result)
            t = tallies[mode]
            t.candidates += len(result)
            t.complete += sum(not c.missing for c in result)
            t.keywords += len(result) * len(keywords)
            t.covered += sum(len(c.covered) for c in result)
            t.nll, t.tokens, t.seconds = t.nll + nll, t.tokens + tokens, t.seconds + seconds
            t.nll_kw, t.tokens_kw = t.nll_kw + nll_kw, t.tokens_kw + tokens_kw
    return tallies


def pinned_speed(gen, sets: list[tuple[str, list[str]]], n: int, max_new_tokens: int) -> dict[str, float]:
    """Tokens/s per mode with every row decoding exactly max_new_tokens (min_new_tokens
    pinned), so that the modes differ only in the processor's own cost."""
    config = gen.backend_for(*sets[0]).model.generation_config
    before, config.min_new_tokens = config.min_new_tokens, max_new_tokens
    seconds = dict.fromkeys(MODES, 0.0)
    try:
        for i, (title, keywords) in enumerate(sets):
            for mode in (MODES if i % 2 == 0 else MODES[::-1]):
                start = time.perf_counter()
                gen.generate(title, keywords, n=n, seed=i, max_new_tokens=max_new_tokens, keyword_mode=mode)
                seconds[mode] += time.perf_counter() - start
    finally:
        config.min_new_tokens = before
    return {mode: len(sets) * n * max_new_tokens / s for mode, s in seconds.items()}


def table(results: dict[str, dict[str, Tally]], pinned: dict[str, dict[str, float]]) -> str:
    lines = ["| language | mode | candidates with every keyword | keywords covered | perplexity "
             "| ÷ off | keyword tokens | perplexity outside keywords | ÷ off "
             "| tokens/s, fixed length | ÷ off | tokens/s as generated ÷ off |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for lang, tallies in results.items():
        off, speed = tallies["off"], pinned[lang]
        for mode, t in tallies.items():
            lines.append(f"| {lang} | {mode} | {100 * t.complete / t.candidates:.1f}% "
                         f"| {100 * t.covered / t.keywords:.1f}% | {t.perplexity:.1f} "
                         f"| {t.perplexity / off.perplexity:.2f} | {100 * t.tokens_kw / max(t.tokens, 1):.1f}% "
                         f"| {t.perplexity_outside:.1f} | {t.perplexity_outside / off.perplexity_outside:.2f} "
                         f"| {speed[mode]:.0f} | {speed[mode] / speed['off']:.2f} "
                         f"| {t.tokens_per_s / off.tokens_per_s:.2f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.keywords", description=__doc__.split("\n")[0])
    parser.add_argument("--sets", type=int, default=200, help="keyword sets per language")
    parser.add_argument("--speed-sets", type=int, default=60,
                        help="of those, how many are run again at fixed length for the speed ratio")
    parser.add_argument("--languages", default="en,zh", help="comma-separated: en, zh")
    parser.add_argument("--n", type=int, default=3, help="candidates per request")
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--model", default=None, help="'auto' or a model folder for every language "
                        "(default: built-in models, else trained stand-ins)")
    parser.add_argument("--standin-dir", type=Path, default=Path(tempfile.gettempdir()) / "textgen-keywords-bench",
                        help="where stand-in models are trained once and kept")
    parser.add_argument("--train-seconds", type=float, default=180.0, help="training time per stand-in")
    parser.add_argument("--seed", type=int, default=0, help="seed of the keyword sampling")
    # One thread: on the shared 2-core machines a second OpenMP thread makes every small op
    # wait for a busy core (measured 5-10x slower under load), which would swamp the ratios.
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    args = parser.parse_args(argv)
    args.languages = [s.strip() for s in args.languages.split(",") if s.strip()]

    import torch

    from textgen import Generator

    torch.set_num_threads(args.threads)
    pools = {"en": english_pool, "zh": chinese_pool}
    results, pinned, models = {}, {}, models_for(args)
    for lang in args.languages:
        gen = Generator.from_pretrained(models[lang])
        pool = pools[lang]()
        sets = keyword_sets(pool, args.sets, args.seed)
        loaded = gen.backend_for(*sets[0])
        note = (Path(models[lang]) / "STANDIN.txt")
        about = note.read_text(encoding="utf-8").strip() if note.is_file() else loaded.name
        print(f"{lang}: {about}; dtype {loaded.dtype}; {len(pool)} words in the pool", file=sys.stderr)
        start = time.perf_counter()
        results[lang] = measure(gen, sets, args.n, args.max_new_tokens)
        pinned[lang] = pinned_speed(gen, sets[:args.speed_sets], args.n, args.max_new_tokens)
        print(f"{lang}: measured in {time.perf_counter() - start:.0f}s", file=sys.stderr)
    print(f"\n{args.sets} sets per language ({min(args.sets, args.speed_sets)} for fixed-length speed), "
          f"n={args.n}, max_new_tokens={args.max_new_tokens}, {args.threads} torch thread(s)\n")
    print(table(results, pinned))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
