"""Poem forms: shape, keywords, rhyme, fluency cost and speed, against free mode and real poems.

    python -m benchmarks.poems                       # 50 titles, about 4 minutes on 2 cores
    python -m benchmarks.poems --titles 200 --json poems.json

Titles (and, beside them, real poems of each shape) come from Tang poems of the chinese-poetry
collection, read from ../shared/corpora/chinese-poetry.tar.xz (MIT; the poems are public
domain). Each title is asked with 0, 2 and 4 keywords (drawn, seeded, from words people type
for poems: 月, 明月, 故乡 …), n=3, guaranteed mode, on the built-in textgen-zh, for each form
and for free mode with the same budget. Per form:

- shape: candidates whose every line has the form's count of Chinese characters, marks in
  place, nothing after the last line (`textgen.forms.form_report`);
- keywords: keywords written, of those asked; rhyme: candidates whose even lines rhyme;
- perplexity of each candidate's text under the model (given its title and keywords), form
  vs free on the same requests; and of real poems of that shape with their own titles;
- speed: generated tokens per second, form vs free, same requests.

Targets: shape and keywords 100%, rhyme ≥ 95%, perplexity form ÷ free ≤ 1.3, speed ≥ 0.9 × free.
"""
from __future__ import annotations

import argparse
import json
import math
import random
import re
import tarfile
import tempfile
import time
from pathlib import Path

from benchmarks.machine import cpu_kind
from benchmarks.report import print_table, write_json

REPO = Path(__file__).resolve().parent.parent
ARCHIVE = REPO.parent / "shared" / "corpora" / "chinese-poetry.tar.xz"
WORDS = ("月", "花", "风", "雨", "雪", "山", "江", "酒", "明月", "故乡", "春风", "秋雨", "江南", "白云", "青山",
         "流水", "归雁", "落花", "夕阳", "长安")
SHAPES = {"wujue": (4, 5), "qijue": (4, 7), "wulv": (8, 5), "qilv": (8, 7)}


def tang_poems(archive: Path, folder: Path) -> list[dict]:
    if not archive.is_file():
        raise SystemExit(f"missing {archive}: the chinese-poetry corpus (see ../shared/corpora/README.md)")
    with tarfile.open(archive) as tar:
        members = [m for m in tar.getmembers() if re.search(r"poet\.tang\.\d+\.simplified\.json$", m.name)]
        tar.extractall(folder, members=members[:6], filter="data")
    poems = []
    for path in sorted(folder.rglob("poet.tang.*.json")):
        poems += json.loads(path.read_text(encoding="utf-8"))
    return poems


def shape_of(poem: dict) -> str | None:
    lines = [x for p in poem["paragraphs"] for x in re.split(r"[，。？！]", p) if x]
    for name, (n, chars) in SHAPES.items():
        if len(lines) == n and all(len(x) == chars for x in lines):
            return name
    return None


def perplexity(gen, title: str, keywords: list[str], text: str) -> float:
    import torch

    from textgen.prompt import encode_prompt

    loaded = gen.backend_for(title, keywords)
    prompt = encode_prompt(loaded.tokenizer, loaded.fmt, title, keywords)
    ids = loaded.tokenizer(text, add_special_tokens=False)["input_ids"]
    if not ids:
        return float("nan")
    x = torch.tensor([prompt + ids])
    with torch.inference_mode():
        logits = loaded.model(x).logits.float()
    logp = torch.log_softmax(logits[0, len(prompt) - 1:-1], dim=-1)
    nll = -logp.gather(1, torch.tensor(ids)[:, None]).mean()
    return math.exp(float(nll))


def run(gen, requests: list[tuple[str, list[str]]], form: str, n: int, free_budget: int) -> dict:
    """One mode over all requests; free mode gets `free_budget` new tokens (the form's)."""
    shape = words = asked = rhymes = tokens = 0
    seconds, ppls = 0.0, []
    for i, (title, kws) in enumerate(requests):
        started = time.perf_counter()
        if form == "free":
            result = gen.generate(title, kws, n=n, seed=i, keyword_mode="guaranteed", max_new_tokens=free_budget)
        else:
            result = gen.generate(title, kws, n=n, seed=i, keyword_mode="guaranteed", form=form)
        seconds += time.perf_counter() - started
        tokens += result.tokens
        for cand in result:
            asked += len(kws)
            words += len(cand.covered)
            if cand.form:
                shape += cand.form["shape_ok"]
                rhymes += cand.form["rhymes"]
            ppls.append(perplexity(gen, title, kws, cand.text))
    total = len(requests) * n
    return {"form": form, "candidates": total, "shape": shape / total, "keywords": words / max(1, asked),
            "rhyme": rhymes / total, "perplexity": _median(ppls), "tok_s": tokens / seconds}


def _median(values: list[float]) -> float:
    values = sorted(v for v in values if not math.isnan(v))
    return values[len(values) // 2] if values else float("nan")


def main(argv: list[str] | None = None) -> None:
    from textgen import Generator
    from textgen.forms import FORMS

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--titles", type=int, default=50)
    parser.add_argument("--n", type=int, default=3)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    cpu = cpu_kind()
    rng = random.Random(0)
    with tempfile.TemporaryDirectory(prefix="textgen-poems-") as tmp:
        poems = tang_poems(ARCHIVE, Path(tmp))
    rng.shuffle(poems)
    titled = [p for p in poems if p.get("title", "").strip()]  # a few upstream poems have none
    titles = [p["title"][:12] for p in titled[:args.titles]]
    requests = [(t, rng.sample(WORDS, k)) for t in titles for k in (0, 2, 4)]
    gen = Generator.from_pretrained("textgen-zh")
    gen.generate("春", [], n=1, seed=0, form="wujue")  # warm-up: builds the form vocabulary once
    print(f"CPU: {cpu}; {len(requests)} requests × n={args.n} per form", flush=True)
    rows = []
    for form in FORMS:
        free = run(gen, requests, "free", args.n, FORMS[form].tokens)
        got = run(gen, requests, form, args.n, FORMS[form].tokens)
        real = [p for p in titled[args.titles:] if shape_of(p) == form][:100]
        real_ppl = _median([perplexity(gen, p["title"][:12], [], "".join(p["paragraphs"])) for p in real])
        row = {**got, "free_perplexity": free["perplexity"], "free_tok_s": free["tok_s"], "real_perplexity": real_ppl,
               "real_poems": len(real), "fluency_cost": got["perplexity"] / free["perplexity"],
               "speed": got["tok_s"] / free["tok_s"]}
        rows.append(row)
        print(f"{form}: shape {row['shape']:.0%}, keywords {row['keywords']:.0%}, rhyme {row['rhyme']:.0%}, "
              f"perplexity {row['perplexity']:.1f} vs free {row['free_perplexity']:.1f} "
              f"({row['fluency_cost']:.2f}×), real poems {real_ppl:.1f}; {row['tok_s']:.0f} tok/s vs free "
              f"{row['free_tok_s']:.0f} ({row['speed']:.2f}×)", flush=True)
    print_table(["form", "shape", "keywords", "rhyme", "perplexity: form", "free", "÷", "real poems",
                 "tok/s: form", "free", "÷"],
                [[FORMS[r["form"]].label, f"{r['shape']:.0%}", f"{r['keywords']:.0%}", f"{r['rhyme']:.0%}",
                  f"{r['perplexity']:.1f}", f"{r['free_perplexity']:.1f}", f"**{r['fluency_cost']:.2f}**",
                  f"{r['real_perplexity']:.1f}", f"{r['tok_s']:.0f}", f"{r['free_tok_s']:.0f}",
                  f"**{r['speed']:.2f}**"] for r in rows])
    write_json(args.json, {"cpu": cpu, "rows": rows})


if __name__ == "__main__":
    main()
