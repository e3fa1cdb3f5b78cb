"""`python -m finetune.builtin zh|en`: rebuild a built-in model from scratch, evaluate it, and
write its model card.

    python -m finetune.builtin zh --corpus-dir chinese-poetry   # → assets/models/textgen-zh
    python -m finetune.builtin en --corpus-dir enwiki/AA        # → assets/models/textgen-en
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Sequence

from .. import REPO_ROOT
from .build import build
from .card import rewrite_card
from .recipes import RECIPES


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
