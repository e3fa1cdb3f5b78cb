"""Keyword modes measured: coverage, fluency cost and speed of off / soft / guaranteed.

    python -m benchmarks.keywords [--sets 200] [--languages en,zh] [--pools common,short,phrases,poems]
                                  [--model auto|PATH]

Keyword sets come from word lists the project does not write (Debian's `wamerican` and
`wordnet-base`; jieba's dictionary), one pool at a time:
- common (en): wamerican words (lower-case, alphabetic, 4-10 letters) seen at least 5 times
  in WordNet's SemCor counts, i.e. common-ish; 3-5 per set.
- short (en): what people type: 2-3 of the 2-3-letter nouns and verbs of wamerican seen at
  least 10 times in SemCor (eat, hat, sit, sun, sea…), plus 1-2 of its 4-6-letter nouns and
  verbs seen at least 40 times (phone, ball, dance…).
- phrases (en): 1-2 of SemCor's two-word nouns seen at least 3 times (civil war, apple
  tree…), plus 1-3 words of the short pool.
- common (zh): the 3,000 most frequent two-character words of jieba's dictionary; 3-5 per set.
- poems (zh): what people type for a poem: 2-3 per set of the 1-2-character words that the
  keyword extractor of the poem rows (`finetune.builtin.poetry`) picks from held-out Song
  poems (`poet.song.200000`-`249000`, files the built-in's build never reached; the same
  held-out files as benchmarks/quality.py): the 1,000 picked most often (月, 春风, 故乡…).
  Needs ../shared/corpora/chinese-poetry.tar.xz.
The title is empty for even sets and one other word of the pool for odd ones. Every set is
generated in the three modes with the same seed, the modes' order alternating so that
background load hits them alike.

Reported per language, pool and mode:
- candidates containing every keyword *as a word*, judged here by a plain regex of this
  file (`as_word`), independent of textgen's own rule (guaranteed must be 100%); beside it,
  candidates containing every keyword as a bare substring, the rule that counted "hat" in
  "that"; and keywords covered as textgen reports them;
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
`finetune.builtin.debian`, tokenizer from `finetune.scratch`, --train-seconds per language) and kept
in --standin-dir. Generator picks the dtype as it does by default (bf16 on CPUs with native
bf16, else fp32).
"""
from __future__ import annotations

import argparse
import json
import math
import random
import re
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from benchmarks.machine import cpu_kind

MODES = ("off", "soft", "guaranteed")
WORDS_EN = Path("/usr/share/dict/american-english")  # Debian package wamerican
SEMCOR_COUNTS = Path("/usr/share/wordnet/cntlist.rev")  # Debian package wordnet-base
MIN_SEMCOR_COUNT = 5
TOP_ZH_WORDS = 3000
POOLS = {"en": ("common", "short", "phrases"), "zh": ("common", "poems")}
MIN_POEMS = 3  # a poem word of the pool was picked for at least this many held-out poems
TOP_POEM_WORDS = 1000


# -- keyword sets -----------------------------------------------------------------------------
def _wamerican() -> list[str]:
    if not WORDS_EN.is_file():
        raise SystemExit(f"{WORDS_EN} is missing: apt-get install wamerican")
    return [w for w in WORDS_EN.read_text(encoding="utf-8").split() if w.isascii() and w.isalpha() and w.islower()]


def _semcor_counts(*, required: bool) -> Counter[tuple[str, str]] | None:
    """(lemma, part of speech: 1 noun, 2 verb, 3/5 adjective, 4 adverb) → SemCor tag count."""
    if not SEMCOR_COUNTS.is_file():
        if required:
            raise SystemExit(f"{SEMCOR_COUNTS} is missing: apt-get install wordnet-base")
        return None
    counts: Counter[tuple[str, str]] = Counter()
    for line in SEMCOR_COUNTS.read_text(encoding="utf-8").splitlines():
        key, _, count = line.split()
        lemma, _, sense = key.partition("%")
        counts[lemma, sense[:1]] += int(count)
    return counts


def english_pool() -> list[str]:
    """Common-ish English words: wamerican entries that SemCor saw MIN_SEMCOR_COUNT times."""
    words = [w for w in _wamerican() if 4 <= len(w) <= 10]
    counts = _semcor_counts(required=False)
    if counts is None:
        print(f"note: {SEMCOR_COUNTS} missing (wordnet-base): using all {len(words)} words", file=sys.stderr)
        return words
    by_lemma: Counter[str] = Counter()
    for (lemma, _), count in counts.items():
        by_lemma[lemma] += count
    return [w for w in words if by_lemma[w] >= MIN_SEMCOR_COUNT]


def english_short_pools() -> tuple[list[str], list[str], list[str]]:
    """(2-3-letter nouns and verbs, 4-6-letter ones, two-word nouns), each common in SemCor."""
    words, counts = set(_wamerican()), _semcor_counts(required=True)
    by_word: Counter[str] = Counter()
    for (lemma, pos), count in counts.items():
        if pos in ("1", "2"):
            by_word[lemma] += count
    short = sorted(w for w in words if 2 <= len(w) <= 3 and by_word[w] >= 10 and any(c in "aeiouy" for c in w))
    middle = sorted(w for w in words if 4 <= len(w) <= 6 and by_word[w] >= 40)
    phrases = sorted({lemma.replace("_", " ") for (lemma, pos), count in counts.items()
                      if pos == "1" and lemma.count("_") == 1 and count >= 3
                      and all(part in words for part in lemma.split("_"))})
    return short, middle, phrases


def chinese_pool() -> list[str]:
    """The most frequent two-character words of jieba's dictionary."""
    from finetune.builtin.words import jieba_top_words

    return jieba_top_words(TOP_ZH_WORDS)


def chinese_poem_pool() -> list[str]:
    """The poem rows' keywords of held-out Song poems (see the module docstring), most often
    picked first."""
    from benchmarks.quality import held_out_song_poems

    with tempfile.TemporaryDirectory() as tmp:
        rows = held_out_song_poems(Path(tmp))
    counts = Counter(k for r in rows for k in dict.fromkeys(r.keywords))
    return [w for w, c in counts.most_common() if c >= MIN_POEMS and 1 <= len(w) <= 2][:TOP_POEM_WORDS]


def keyword_sets(pool: list[str], count: int, seed: int) -> list[tuple[str, list[str]]]:
    """`count` (title, keywords) pairs: 3-5 keywords; title empty or one other word."""
    rng = random.Random(seed)
    sets = []
    for i in range(count):
        words = rng.sample(pool, rng.randint(3, 5) + 1)
        sets.append(("" if i % 2 == 0 else words[0], words[1:]))
    return sets


def mixed_sets(parts: list[tuple[list[str], int, int]], count: int, seed: int) -> list[tuple[str, list[str]]]:
    """Like `keyword_sets`, drawing lo-hi words of each (pool, lo, hi) part, in a shuffled order."""
    rng = random.Random(seed)
    sets = []
    for i in range(count):
        words: list[str] = []
        for pool, lo, hi in parts:
            words += rng.sample([w for w in pool if w not in words], rng.randint(lo, hi))
        rng.shuffle(words)
        title = "" if i % 2 == 0 else rng.choice([w for w in parts[0][0] if w not in words])
        sets.append((title, words))
    return sets


def pool_sets(language: str, pool: str, count: int, seed: int) -> tuple[list[tuple[str, list[str]]], str]:
    """(keyword sets, a line describing the pool)."""
    if language == "zh" and pool == "poems":
        words = chinese_poem_pool()
        return mixed_sets([(words, 2, 3)], count, seed), f"{len(words)} poem words"
    if language == "zh" and pool == "common":
        words = chinese_pool()
        return keyword_sets(words, count, seed), f"{len(words)} words"
    if language == "zh":
        raise SystemExit(f"--pools: {pool!r} is not one of {', '.join(POOLS[language])}")
    if pool == "common":
        words = english_pool()
        return keyword_sets(words, count, seed), f"{len(words)} words"
    short, middle, phrases = english_short_pools()
    if pool == "short":
        return (mixed_sets([(short, 2, 3), (middle, 1, 2)], count, seed),
                f"{len(short)} 2-3-letter and {len(middle)} 4-6-letter words")
    if pool == "phrases":
        return (mixed_sets([(short + middle, 1, 3), (phrases, 1, 2)], count, seed),
                f"{len(phrases)} two-word nouns and {len(short) + len(middle)} short words")
    raise SystemExit(f"--pools: {pool!r} is not one of {', '.join(POOLS[language])}")


# -- the word rule, written here independently of textgen.coverage ------------------------------
LETTER = r"[^\W_\u3040-\u30ff\u3400-\u9fff\uac00-\ud7af]"


def as_word(text: str, keyword: str) -> bool:
    """Whether `text` has `keyword` as a word: Chinese as a substring; otherwise no letter or
    digit right before it, and after its last word nothing but an -s, -es, -ed, -ing, -er
    or -ers ending (-d, -r, -rs after a final e; with the last letter doubled, or a final e
    or y dropped); the words of a phrase apart by any whitespace. Case is ignored."""
    if re.search(r"[\u3400-\u9fff]", keyword):
        return keyword in text
    *head, last = keyword.lower().split()
    endings = ("", "s", "es", "ed", "ing", "er", "ers") + (("d", "r", "rs") if last.endswith("e") else ())
    allowed = ({last + e for e in endings} | {last + last[-1] + e for e in ("ing", "ed", "er", "ers")}
               | {last[:-1] + e for e in ("ing", "ies", "ied", "ier", "iers")})
    lead = "".join(re.escape(w) + r"\s+" for w in head)
    return any(m.group(1) in allowed for m in re.finditer(rf"(?<!{LETTER}){lead}({LETTER}*)", text.lower()))


def as_substring(text: str, keyword: str) -> bool:
    return keyword.lower() in text.lower()


# -- stand-in models ----------------------------------------------------------------------------
def train_standin(folder: Path, language: str, seconds: float) -> Path:
    """A small GPT-2 trained for `seconds` on the built-in corpus of `language`."""
    import torch

    from finetune.builtin.debian import build
    from finetune.scratch import ScratchConfig, init_scratch_model, save_scratch, train_tokenizer
    from textgen.prompt import PromptFormat, encode_example, token_ids

    rows = build(language)
    config = ScratchConfig(n_layer=2, n_embd=128, n_head=4, n_positions=256, vocab_size=4096,
                           dropout=0.0, save_dtype="float32")
    tok = train_tokenizer([t for r in rows for t in (r.title, *r.keywords, r.text)], config.vocab_size,
                          folder, language)
    model = init_scratch_model(tok, config)
    fmt, pad = PromptFormat(), token_ids(tok, PromptFormat())["pad"]
    examples = []
    for r in rows:
        ids, start = encode_example(tok, fmt, r.title, r.keywords, r.text)
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
    complete: int = 0  # candidates containing every keyword, as textgen reports it
    as_words: int = 0  # ... every keyword as a word, by this file's regex
    as_substrings: int = 0  # ... every keyword as a bare substring
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


def measure(gen, sets: list[tuple[str, list[str]]], n: int, max_new_tokens: int,
            dump=None) -> dict[str, Tally]:
    tallies = {mode: Tally() for mode in MODES}
    gen.generate(*sets[0], n=n, seed=0, max_new_tokens=max_new_tokens, keyword_mode="guaranteed")  # warm-up
    for i, (title, keywords) in enumerate(sets):
        loaded = gen.backend_for(title, keywords)
        for mode in (MODES if i % 2 == 0 else MODES[::-1]):
            start = time.perf_counter()
            result = gen.generate(title, keywords, n=n, seed=i, max_new_tokens=max_new_tokens, keyword_mode=mode)
            seconds = time.perf_counter() - start
            if dump is not None:  # texts by sampled row, to compare two versions' outputs
                dump({"set": i, "mode": mode, "title": title, "keywords": keywords,
                      "texts": [c.text for c in sorted(result, key=lambda c: c.index)]})
            nll, tokens, nll_kw, tokens_kw = text_nll(loaded, title, keywords, result)
            t = tallies[mode]
            t.candidates += len(result)
            t.complete += sum(not c.missing for c in result)
            t.as_words += sum(all(as_word(c.text, kw) for kw in keywords) for c in result)
            t.as_substrings += sum(all(as_substring(c.text, kw) for kw in keywords) for c in result)
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
    lines = ["| language | pool | mode | every keyword as a word | as a substring | keywords covered "
             "| perplexity | ÷ off | keyword tokens | perplexity outside keywords | ÷ off "
             "| tokens/s, fixed length | ÷ off | tokens/s as generated ÷ off |",
             "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for (lang, pool), tallies in results.items():
        off, speed = tallies["off"], pinned[lang, pool]
        for mode, t in tallies.items():
            lines.append(f"| {lang} | {pool} | {mode} | {100 * t.as_words / t.candidates:.1f}% "
                         f"| {100 * t.as_substrings / t.candidates:.1f}% "
                         f"| {100 * t.covered / t.keywords:.1f}% | {t.perplexity:.1f} "
                         f"| {t.perplexity / off.perplexity:.2f} | {100 * t.tokens_kw / max(t.tokens, 1):.1f}% "
                         f"| {t.perplexity_outside:.1f} | {t.perplexity_outside / off.perplexity_outside:.2f} "
                         f"| {speed[mode]:.0f} | {speed[mode] / speed['off']:.2f} "
                         f"| {t.tokens_per_s / off.tokens_per_s:.2f} |")
    return "\n".join(lines)


def _dumper(path: Path, language: str, pool: str):
    def dump(record: dict) -> None:
        with path.open("a", encoding="utf-8") as f:
            f.write(json.dumps({"language": language, "pool": pool, **record}, ensure_ascii=False) + "\n")
    return dump


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.keywords", description=__doc__.split("\n")[0])
    parser.add_argument("--sets", type=int, default=200, help="keyword sets per language")
    parser.add_argument("--speed-sets", type=int, default=60,
                        help="of those, how many are run again at fixed length for the speed ratio")
    parser.add_argument("--languages", default="en,zh", help="comma-separated: en, zh")
    parser.add_argument("--pools", default="common,short,phrases,poems",
                        help="comma-separated keyword pools: common (en and zh), short, phrases (en), poems (zh)")
    parser.add_argument("--n", type=int, default=3, help="candidates per request")
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--model", default=None, help="'auto' or a model folder for every language "
                        "(default: built-in models, else trained stand-ins)")
    parser.add_argument("--standin-dir", type=Path, default=Path(tempfile.gettempdir()) / "textgen-keywords-bench",
                        help="where stand-in models are trained once and kept")
    parser.add_argument("--train-seconds", type=float, default=180.0, help="training time per stand-in")
    parser.add_argument("--seed", type=int, default=0, help="seed of the keyword sampling")
    parser.add_argument("--dump", type=Path, default=None,
                        help="write every generated text here (JSON lines), e.g. to compare two versions")
    # One thread: on the shared 2-core machines a second OpenMP thread makes every small op
    # wait for a busy core (measured 5-10x slower under load), which would swamp the ratios.
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    args = parser.parse_args(argv)
    args.languages = [s.strip() for s in args.languages.split(",") if s.strip()]
    args.pools = [s.strip() for s in args.pools.split(",") if s.strip()]

    import torch

    from textgen import Generator

    torch.set_num_threads(args.threads)
    results, pinned, models = {}, {}, models_for(args)
    for lang in args.languages:
        gen = Generator.from_pretrained(models[lang])
        for pool in (p for p in POOLS[lang] if p in args.pools):
            sets, about_pool = pool_sets(lang, pool, args.sets, args.seed)
            loaded = gen.backend_for(*sets[0])
            note = (Path(models[lang]) / "STANDIN.txt")
            about = note.read_text(encoding="utf-8").strip() if note.is_file() else loaded.name
            print(f"{lang}/{pool}: {about}; dtype {loaded.dtype}; {about_pool} in the pool", file=sys.stderr)
            start = time.perf_counter()
            dump = _dumper(args.dump, lang, pool) if args.dump is not None else None
            results[lang, pool] = measure(gen, sets, args.n, args.max_new_tokens, dump)
            pinned[lang, pool] = pinned_speed(gen, sets[:args.speed_sets], args.n, args.max_new_tokens)
            print(f"{lang}/{pool}: measured in {time.perf_counter() - start:.0f}s", file=sys.stderr)
    cpu = cpu_kind()
    print(f"\n{args.sets} sets per language and pool ({min(args.sets, args.speed_sets)} for fixed-length "
          f"speed), n={args.n}, max_new_tokens={args.max_new_tokens}, {args.threads} torch thread(s), "
          f"CPU: {cpu}\n")
    print(table(results, pinned))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
