"""Command line: `python -m textgen --title "春夜" --keywords "月, 花"`.

Flags for sampling come from `GenerationParams`, so bounds and help live in one place.
Heavy imports happen after argument parsing, so `--help` is instant.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Sequence

from .fields import plain_number
from .params import GenerationParams, param_specs


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m textgen",
        description="Write texts from a title and keywords with a GPT-2 model.",
        epilog='Example: python -m textgen --title "Storm" --keywords "sea, night" --n 3',
    )
    parser.add_argument("--title", default="", help="title of the text (may be empty when keywords are given)")
    parser.add_argument("--keywords", default="",
                        help="keywords separated by , ， 、 ; ； | or newlines (spaces only when none of those)")
    parser.add_argument("--model", default="auto",
                        help="'auto' (built-in model for the prompt's language), a built-in name, "
                             "a local folder or a Hugging Face Hub id")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, …")
    parser.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16", "float16"],
                        help="compute dtype; auto = bf16 on GPUs and bf16-capable CPUs, else fp32")
    parser.add_argument("--quantize", default="auto", choices=["auto", "none", "int8"],
                        help="weights of the CPU decode path; auto = int8 for GPT-2 models on x86 CPUs "
                             "(within 0.2%% of fp32's perplexity, benchmarks/quantize.py), none = as loaded")
    parser.add_argument("--runtime", default="auto", choices=["auto", "onnx", "torch"],
                        help="what runs the int8 decode steps; auto = ONNX Runtime where installed "
                             "(one C++ graph a step: several times faster on small models), torch = "
                             "PyTorch's own kernels")
    parser.add_argument("--input", type=Path, help="batch mode: JSONL file of {\"title\", \"keywords\"} objects")
    parser.add_argument("--output", type=Path, help="batch mode: JSONL file to write results to")
    parser.add_argument("--json", action="store_true", help="print the result as one JSON object")
    for name, spec in param_specs().items():
        flag = "--" + name.replace("_", "-")
        kind = int if spec["type"] in ("int", "int | None") else float
        bounds = "" if spec["choices"] else f" [{plain_number(spec['min'])}–{plain_number(spec['max'])}]"
        if spec["type"] == "bool":
            parser.add_argument(flag, dest=name, default=spec["default"], action=argparse.BooleanOptionalAction,
                                help=f"{spec['help']} (default: %(default)s)")
        elif spec["choices"]:
            parser.add_argument(flag, dest=name, default=spec["default"], choices=spec["choices"],
                                help=f"{spec['help']} (default: %(default)s)")
        else:
            parser.add_argument(flag, dest=name, type=kind, default=spec["default"],
                                help=f"{spec['help']}{bounds} (default: %(default)s)")
    return parser


def _params(args: argparse.Namespace) -> GenerationParams:
    return GenerationParams(**{name: getattr(args, name) for name in param_specs()})


def _single(gen, args, params) -> int:
    result = gen.generate(args.title, args.keywords, params)
    if args.json:
        print(json.dumps(result.to_dict(), ensure_ascii=False))
        return 0
    print(f"# model: {result.model} ({result.prompt_style} prompt), seed {result.seed}")
    for i, cand in enumerate(result, 1):
        missing = f"   missing: {', '.join(cand.missing)}" if cand.missing else ""
        print(f"\n[{i}] covered: {', '.join(cand.covered) or '-'}{missing}\n{cand.text}")
    return 0


def _read_prompts(path: Path) -> list[dict[str, Any]]:
    prompts = []
    with path.open(encoding="utf-8-sig") as fh:
        for number, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise SystemExit(f"--input: line {number} is not valid JSON ({exc.msg})")
            if not isinstance(obj, dict):
                raise SystemExit(f"--input: line {number} must be an object with \"title\" and \"keywords\"")
            prompts.append(obj)
    return prompts


def _batch(gen, args, params) -> int:
    from tqdm import tqdm

    if args.output is None:
        raise SystemExit("--output: batch mode needs an output file")
    prompts = _read_prompts(args.input)
    failures = 0
    with args.output.open("w", encoding="utf-8") as out:
        for obj in tqdm(prompts, desc="generating", unit="prompt", file=sys.stderr):
            title, keywords = obj.get("title", ""), obj.get("keywords", "")
            try:
                record = gen.generate(title, keywords, params).to_dict()
            except ValueError as exc:
                failures += 1
                record = {"title": title, "keywords": keywords, "model": gen.name, "error": str(exc)}
            out.write(json.dumps(record, ensure_ascii=False) + "\n")
    print(f"wrote {len(prompts)} results to {args.output}" + (f" ({failures} failed)" if failures else ""),
          file=sys.stderr)
    return 1 if failures else 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        params = _params(args)
    except ValueError as exc:
        parser.error(str(exc))
    if args.input is None and not args.title.strip() and not args.keywords.strip():
        parser.error("give --title and/or --keywords, or --input for batch mode")

    from .generator import Generator
    from .loading import ModelLoadError

    try:
        gen = Generator.from_pretrained(args.model, device=args.device, dtype=args.dtype, quantize=args.quantize,
                                      runtime=args.runtime)
        return _batch(gen, args, params) if args.input else _single(gen, args, params)
    except (ValueError, ModelLoadError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
