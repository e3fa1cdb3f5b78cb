"""Do the web app's default fine-tune settings visibly move a model towards a small corpus?

    python -m benchmarks.finetune_defaults                    # 4 runs, about 10 minutes on 2 cores
    python -m benchmarks.finetune_defaults --rows 40 --json out.json
    python -m benchmarks.finetune_defaults --set method=full --set lr=0.001   # try other settings

Each run fine-tunes a built-in model with exactly the settings the Fine-tune tab starts with
(`finetune.web.caps.WEB_DEFAULTS`, the tab's step cap included) on a small corpus whose style
differs from the model's own, and reports held-out perplexity before (the base model) and after,
on the same held-out rows (the run's own evaluation split; loss on the text only):

- textgen-zh (classical poems) on modern Chinese prose: paragraphs of Lu Xun's stories
  (呐喊, 彷徨, 朝花夕拾), from ../shared/corpora/luxun.tar.xz (public domain; MIT repo);
- textgen-en (encyclopedia articles) on legal prose: paragraphs of the licence texts every
  Debian system has in /usr/share/common-licenses (GPL, Apache, MPL, …).

Target (the Fine-tune tab's promise): at 40 to 200 rows, held-out perplexity at least 30% below
the base model's, within 3 minutes of wall time on 2 CPU cores.
"""
from __future__ import annotations

import argparse
import csv
import math
import random
import re
import sys
import tarfile
import tempfile
import time
from pathlib import Path

from benchmarks.machine import cpu_kind
from benchmarks.report import print_table, write_json

REPO = Path(__file__).resolve().parent.parent
LUXUN = REPO.parent / "shared" / "corpora" / "luxun.tar.xz"
LICENSES = Path("/usr/share/common-licenses")
LUXUN_BOOKS = ("呐喊", "彷徨", "朝花夕拾")
TARGET_DROP, TARGET_SECONDS = 0.30, 180.0


def luxun_rows(archive: Path, folder: Path) -> list[tuple[str, str]]:
    """(story title, paragraph) of 40-220 characters from three of Lu Xun's books."""
    if not archive.is_file():
        raise SystemExit(f"missing {archive}: the Lu Xun corpus (see ../shared/corpora/README.md)")
    with tarfile.open(archive) as tar:
        tar.extractall(folder, filter="data")
    rows = []
    for book in LUXUN_BOOKS:
        for path in sorted(folder.glob(f"*/data/raw/{book}/*.md")):
            if "目录" in path.stem:
                continue
            for para in path.read_text(encoding="utf-8").split("\n"):
                para = re.sub(r"[⑴-⒇]|\(\d+\)|`", "", para).strip().strip("\u3000")
                if 40 <= len(para) <= 220:
                    rows.append((path.stem, para))
    return rows


def license_rows() -> list[tuple[str, str]]:
    """(licence name, paragraph) of 120-700 characters."""
    if not LICENSES.is_dir():
        raise SystemExit(f"missing {LICENSES}: install Debian's base-files package")
    rows = []
    for path in sorted(LICENSES.iterdir()):
        if not path.is_file() or path.is_symlink():
            continue
        for para in re.split(r"\n\s*\n", path.read_text(encoding="utf-8", errors="replace")):
            para = " ".join(para.split())
            if 120 <= len(para) <= 700:
                rows.append((f"{path.name} licence", para))
    return rows


def write_csv(rows: list[tuple[str, str]], n: int, path: Path, seed: int = 0) -> Path:
    picked = random.Random(seed).sample(rows, min(n, len(rows)))
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["title", "text"])
        writer.writerows(picked)
    return path


class _Evals:
    def __init__(self) -> None:
        self.evals: list[tuple[int, float]] = []

    def on_eval(self, step: int, eval_loss: float, samples: list[str]) -> None:
        self.evals.append((step, eval_loss))


def run_one(base: str, csv_path: Path, out: Path, settings: dict) -> dict:
    from finetune.config import TrainConfig
    from finetune.training import train
    from textgen.loading import builtin_models

    config = TrainConfig(data=str(csv_path), out=str(out), base=str(builtin_models()[base]), keywords="auto",
                         steps_cap=True, samples=0, **settings)
    evals = _Evals()
    started = time.perf_counter()
    result = train(config, callbacks=[evals])
    took = time.perf_counter() - started
    before, after = evals.evals[0][1], result.eval_loss
    return {"base": base, "rows": sum(1 for _ in open(csv_path, encoding="utf-8")) - 1,
            "steps": result.global_step, "seconds": round(took, 1),
            "ppl_before": round(math.exp(before), 2), "ppl_after": round(math.exp(after), 2),
            "drop": round(1 - math.exp(after - before), 3)}


def _value(text: str):
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def main(argv: list[str] | None = None) -> None:
    from finetune.web.caps import WEB_DEFAULTS

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[40, 200], help="corpus sizes to try")
    parser.add_argument("--only", choices=("zh", "en"), help="one of the two corpora")
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                        help="override one default setting (TrainConfig field)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    settings = dict(WEB_DEFAULTS)
    for item in args.set:
        name, _, value = item.partition("=")
        settings[name] = _value(value)
    cpu = cpu_kind()
    print(f"settings: {settings}\nCPU: {cpu}", flush=True)
    results = []
    with tempfile.TemporaryDirectory(prefix="textgen-ftdefaults-") as tmp:
        tmp = Path(tmp)
        corpora = {"zh": ("textgen-zh", "modern prose (Lu Xun)", lambda: luxun_rows(LUXUN, tmp / "luxun")),
                   "en": ("textgen-en", "legal prose (licences)", license_rows)}
        for key, (base, what, read) in corpora.items():
            if args.only and key != args.only:
                continue
            rows = read()
            for n in args.rows:
                path = write_csv(rows, n, tmp / f"{key}-{n}.csv")
                res = {"corpus": what, **run_one(base, path, tmp / f"out-{key}-{n}", settings)}
                results.append(res)
                ok = res["drop"] >= TARGET_DROP and res["seconds"] <= TARGET_SECONDS
                print(f"{base} on {what}, {res['rows']} rows: {res['steps']} steps in {res['seconds']} s, "
                      f"held-out perplexity {res['ppl_before']} -> {res['ppl_after']} "
                      f"({res['drop']:.0%} lower) {'OK' if ok else 'MISSES the target'}", flush=True)
    print_table(["base", "corpus", "rows", "steps", "time", "perplexity before", "after", "lower by"],
                [[r["base"], r["corpus"], r["rows"], r["steps"], f"{r['seconds']:.0f} s", r["ppl_before"],
                  r["ppl_after"], f"**{r['drop']:.0%}**"] for r in results])
    write_json(args.json, {"settings": settings, "cpu": cpu, "results": results})
    sys.exit(0 if all(r["drop"] >= TARGET_DROP and r["seconds"] <= TARGET_SECONDS for r in results) else 1)


if __name__ == "__main__":
    main()
