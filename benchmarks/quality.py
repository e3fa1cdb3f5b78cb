"""Quality of the built-in models, old vs new side by side, and real text beside them.

    python -m benchmarks.quality --old-ref HEAD~1               # the built-ins of a commit vs the checkout's
    python -m benchmarks.quality --old /tmp/old --prompts 50 --json quality.json

Needs the corpora of ../shared/corpora/ (see its README): chinese-poetry.tar.xz, and
enwiki-AA.tar.xz (what textgen-en trains on, for novelty) and enwiki-AB.tar.xz (held out); it
unpacks them to a temporary folder. English words are checked against Debian's `wamerican`
list (`apt-get install wamerican`); the benchmark says so when it is missing.

Prompts are held out of training: English article titles of enwiki-AB (textgen-en reads AA
only), Chinese titles of the last Song-shi files (the build stops reading long before them).
Each prompt is asked with n=2, seed = its index, in off mode and in guaranteed mode with 2
keywords of the held-out text.

- en: share of lower-case words that are not English words (not in wamerican; capitalised
  words are left out, so names don't count), of the generated texts and of the held-out
  sections themselves (target: ≤ 3% off, ≤ 4% guaranteed);
- zh: share of regular poems (4 or 8 lines, every line 5 or every line 7 characters) and of
  regular poems whose even lines end in one rhyme group (pypinyin finals,
  `textgen.forms.rhyme_group`), of the generated texts and of the held-out poems (target:
  ≥ 60% off, ≥ 50% guaranteed);
- perplexity per character (zh) or word (en) of held-out texts under each model, given
  their titles and keywords: the tokenizers differ, so tokens would not compare;
- novelty: share of generated 8-grams (characters for zh, words for en) found verbatim in
  the new model's training corpus (target: ≤ 2%).
"""
from __future__ import annotations

import argparse
import json
import math
import re
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from benchmarks.machine import cpu_kind
from finetune.builtin.card import QUALITY_HEADING
from finetune.builtin.metrics import ngrams, units_of

REPO = Path(__file__).resolve().parent.parent
CORPORA = REPO.parent / "shared" / "corpora"
WORDLIST = Path("/usr/share/dict/american-english")
NAMES = {"zh": "textgen-zh", "en": "textgen-en"}
_WORD = re.compile(r"[A-Za-z]+(?:'[A-Za-z]+)*")
_CLAUSE = re.compile(r"[，。？！；]")


def unpack(archive: str, into: Path, members: re.Pattern | None = None) -> Path:
    path = CORPORA / archive
    if not path.is_file():
        raise SystemExit(f"missing {path}: the corpora of ../shared/corpora/ (see its README.md)")
    with tarfile.open(path) as tar:
        chosen = [m for m in tar.getmembers() if members is None or members.search(m.name)]
        tar.extractall(into, members=chosen, filter="data")
    return into


def english_words() -> set[str]:
    if not WORDLIST.is_file():
        raise SystemExit(f"missing {WORDLIST}: install Debian's word list with `apt-get install wamerican`")
    return {w.strip().lower() for w in WORDLIST.read_text(encoding="utf-8", errors="replace").splitlines()}


def nonword_rate(texts: list[str], words: set[str]) -> tuple[float, int]:
    """(share of lower-case words not in `words`, lower-case words looked at)."""
    lower = [w for t in texts for w in _WORD.findall(t) if w.islower()]
    if not lower:
        return float("nan"), 0
    return sum(w not in words for w in lower) / len(lower), len(lower)


def poem_shape(text: str) -> tuple[bool, bool]:
    """(regular: 4 or 8 lines, all of 5 or all of 7 characters, ended; regular and its even lines rhyme)."""
    from finetune.builtin.poetry import poem_shape as regular_shape
    from textgen.forms import rhyme_group

    body = text.strip()
    if not body or body[-1] not in "。？！" or regular_shape(body.split("\n")) is None:
        return False, False
    lines = [c for c in _CLAUSE.split(body.replace("\n", "")) if c]
    groups = {rhyme_group(c[-1]) for c in lines[1::2]}
    return True, len(groups) == 1 and None not in groups


def per_unit_perplexity(gen, docs: list[tuple[str, list[str], str]], language: str) -> float:
    """exp(total NLL of the texts' tokens / their characters (zh) or words (en))."""
    import torch

    from textgen.prompt import encode_prompt

    nll = count = 0.0
    for title, kws, text in docs:
        loaded = gen.backend_for(title, kws)
        prompt = encode_prompt(loaded.tokenizer, loaded.fmt, title, kws)
        eos = loaded.tokenizer.convert_tokens_to_ids(loaded.fmt.eos)
        ids = loaded.tokenizer(text, add_special_tokens=False)["input_ids"] + [eos]
        room = loaded.model.config.n_positions - len(prompt)
        ids = ids[:room]
        shown = loaded.tokenizer.decode(ids[:-1] if ids[-1] == eos else ids)
        x = torch.tensor([prompt + ids])
        with torch.inference_mode():
            logits = loaded.model(x).logits.float()
        logp = torch.log_softmax(logits[0, len(prompt) - 1:-1], dim=-1)
        nll -= float(logp.gather(1, torch.tensor(ids)[:, None]).sum())
        count += len(units_of(shown, language)) + 1  # the end counts as one unit
    return math.exp(nll / count)


def held_out_song_poems(tmp: Path) -> list:
    """The poem rows of the Song shi files `poet.song.200000`-`249000`, which the built-in's
    build never reached (regular or not)."""
    from finetune.builtin.poetry import read_chinese_poetry

    root = unpack("chinese-poetry.tar.xz", tmp / "cp", re.compile(r"poet\.song\.2[0-4]\d000\.simplified\.json$"))
    rows, _ = read_chinese_poetry(root / "chinese-poetry", ("song",), regular_only=False)
    return rows


def held_out(language: str, tmp: Path, count: int) -> list[tuple[str, list[str], str]]:
    """(title, keywords, text) of texts none of the new models trained on."""
    from finetune.extract import extract_keywords
    from finetune.builtin.wikipedia import read_wikiextractor

    if language == "en":
        root = unpack("enwiki-AB.tar.xz", tmp / "enwiki-AB", re.compile(r"wiki_0\d$"))
        # sections outnumber leads about 17 to 1: 3M characters hold ~180 leads, ~60 prompts
        rows, _ = read_wikiextractor(root, max_chars=max(3_000_000, 60_000 * count))
        rows = [r for r in rows if ":" not in r.title][::3]  # leads: the article titles people type
        if len(rows) < count:
            print(f"en: only {len(rows)} held-out prompts in enwiki-AB's first files, not {count}", file=sys.stderr)
        return [(r.title, extract_keywords(r.text, 2, "en"), r.text[:800]) for r in rows[:count]]
    rows = held_out_song_poems(tmp)[::7]
    return [(r.title, r.keywords[:2], r.text) for r in rows[:count]]


def real_rates(language: str, docs, words) -> dict:
    texts = [d[2] for d in docs]
    if language == "en":
        rate, n = nonword_rate(texts, words)
        return {"nonword": rate, "words": n}
    shapes = [poem_shape(t) for t in texts]
    return {"regular": sum(s[0] for s in shapes) / len(shapes), "rhyming": sum(s[1] for s in shapes) / len(shapes)}


def generate(gen, language: str, docs, mode: str, max_new_tokens: int) -> list[str]:
    texts = []
    for i, (title, kws, _) in enumerate(docs):
        result = gen.generate(title, kws if mode == "guaranteed" else [], n=2, seed=i, keyword_mode=mode,
                              max_new_tokens=max_new_tokens)
        texts += [c.text for c in result]
    return texts


def score(language: str, texts: list[str], words, train_grams: set | None) -> dict:
    out: dict = {"texts": len(texts)}
    if language == "en":
        out["nonword"], out["words"] = nonword_rate(texts, words)
    else:
        shapes = [poem_shape(t) for t in texts]
        out["regular"] = sum(s[0] for s in shapes) / len(shapes)
        out["rhyming"] = sum(s[1] for s in shapes) / len(shapes)
    if train_grams is not None:
        grams = [g for t in texts for g in ngrams(units_of(t, language))]
        out["novelty_copied"] = sum(hash(g) in train_grams for g in grams) / max(1, len(grams))
        out["ngrams"] = len(grams)
    return out


def training_grams(language: str, tmp: Path) -> set:
    from finetune.builtin.recipes import RECIPES
    from finetune.builtin.upstream import read_corpus

    recipe = RECIPES[language]
    if language == "en":
        root = unpack("enwiki-AA.tar.xz", tmp / "enwiki-AA")
    else:
        root = unpack("chinese-poetry.tar.xz", tmp / "cp-train", re.compile(r"全唐诗/poet\.")) / "chinese-poetry"
    rows, _ = read_corpus(recipe.corpus, root, max_chars=recipe.max_chars)
    return {hash(g) for r in rows for g in ngrams(units_of(r.text, language))}  # hashes: a tenth of the memory


def old_models(ref: str, tmp: Path) -> Path:
    out = tmp / "old"
    out.mkdir()
    archive = subprocess.run(["git", "archive", ref, "assets/models"], cwd=REPO, capture_output=True, check=True)
    subprocess.run(["tar", "-x", "-C", str(out)], input=archive.stdout, check=True)
    return out / "assets" / "models"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--old", type=Path, help="folder holding the old textgen-zh/ and textgen-en/")
    parser.add_argument("--old-ref", help="a git commit whose assets/models are the old models")
    parser.add_argument("--new", type=Path, default=REPO / "assets" / "models")
    parser.add_argument("--prompts", type=int, default=50, help="held-out prompts per language")
    parser.add_argument("--languages", default="zh,en")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--cards", action="store_true", help="write the figures into the new models' cards")
    args = parser.parse_args(argv)
    import torch

    from textgen import Generator

    torch.set_num_threads(max(1, torch.get_num_threads()))
    languages = [x.strip() for x in args.languages.split(",") if x.strip()]
    words = english_words() if "en" in languages else set()
    report = {"cpu": cpu_kind(), "prompts": args.prompts, "languages": {}}
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        old_root = args.old or (old_models(args.old_ref, tmp) if args.old_ref else None)
        for language in languages:
            docs = held_out(language, tmp, args.prompts)
            grams = training_grams(language, tmp)
            budget = 80 if language == "zh" else 96
            rows = {"real held-out text": real_rates(language, docs, words)}
            ppl = {}
            for label, root in (("old", old_root), ("new", args.new)):
                if root is None:
                    continue
                gen = Generator.from_pretrained(str(root / NAMES[language]))
                ppl[label] = per_unit_perplexity(gen, docs, language)
                for mode in ("off", "guaranteed"):
                    texts = generate(gen, language, docs, mode, budget)
                    rows[f"{label} · {mode}"] = score(language, texts, words, grams if label == "new" else None)
                    print(f"{language} {label} {mode}: {rows[f'{label} · {mode}']}", file=sys.stderr)
            report["languages"][language] = {"rows": rows, "perplexity_per_unit": ppl,
                                             "unit": "character" if language == "zh" else "word"}
    print(tables(report))
    if args.cards:
        for language in report["languages"]:
            write_card_section(args.new / NAMES[language] / "README.md", tables(report, only=language),
                               " ".join(["python -m benchmarks.quality"] + (argv if argv is not None else sys.argv[1:])))
    if args.json:
        args.json.write_text(json.dumps(report, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    return 0


def tables(report: dict, only: str | None = None) -> str:
    out = [f"CPU: {report['cpu']}; {report['prompts']} held-out prompts per language, n=2, seed = prompt index"]
    for language, data in report["languages"].items():
        if only and language != only:
            continue
        rows = data["rows"]
        if language == "en":
            out.append("\n| en | lower-case non-words | words | 8-grams copied from training |\n|---|---:|---:|---:|")
            for label, r in rows.items():
                copied = f"{r['novelty_copied']:.2%}" if "novelty_copied" in r else "—"
                out.append(f"| {label} | {r['nonword']:.1%} | {r['words']:,} | {copied} |")
        else:
            out.append("\n| zh | regular poems | regular and rhyming | 8-grams copied from training |\n"
                       "|---|---:|---:|---:|")
            for label, r in rows.items():
                copied = f"{r['novelty_copied']:.2%}" if "novelty_copied" in r else "—"
                out.append(f"| {label} | {r['regular']:.0%} | {r['rhyming']:.0%} | {copied} |")
        ppl = data["perplexity_per_unit"]
        out.append(f"\nHeld-out perplexity per {data['unit']}: " + ", ".join(f"{k} {v:.1f}" for k, v in ppl.items()))
    return "\n".join(out)


def write_card_section(card: Path, table: str, command: str) -> None:
    """Put the figures into a model card, replacing the section an earlier run wrote."""
    text = card.read_text(encoding="utf-8")
    if QUALITY_HEADING in text:
        start = text.index(QUALITY_HEADING)
        end = text.find("\n## ", start + len(QUALITY_HEADING))
        text = text[:start].rstrip("\n") + ("\n\n" + text[end + 1:] if end != -1 else "")
    section = f"{QUALITY_HEADING}\n\n`{command}` (old: the previous built-in model; new: this one)\n\n{table}\n"
    card.write_text(text.rstrip("\n") + "\n\n" + section, encoding="utf-8")


if __name__ == "__main__":
    raise SystemExit(main())
