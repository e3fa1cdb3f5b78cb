"""Tokens/s of textgen's Generator beside CTranslate2 (int8 and float32) and a plain
transformers pipeline, on the same weights and prompt.

    pip install -r benchmarks/requirements.txt      # ctranslate2, for its rows
    python -m benchmarks.generate [--tokens 48] [--repeats 5] [--models gpt2-small,random-89m,builtin]

Models: a GPT-2-small-sized model (12 × 768, 50k WordPiece vocabulary from Debian's
`wamerican` list, 124M) and an 89M one (12 × 768, 4k vocabulary), both with random weights
built here, and each built-in model. For n=1 and n=4 it prints the median tokens/s of
- textgen (`Generator.generate`, its load-time defaults: int8 weights, decode steps in ONNX
  Runtime where it is installed; scoring and bookkeeping included) in off mode and in
  guaranteed mode with two keywords, and in off mode on PyTorch's own decode path
  (`runtime="torch"`: int8 from fbgemm where a matrix is big enough), the path before ONNX
  Runtime;
- CTranslate2's `Generator.generate_batch` with compute type int8 and float32 (the model
  converted here; CTranslate2 has no per-step hook, so no guaranteed mode);
- `pipeline("text-generation")` in fp32 (n=4: four calls);
and textgen ÷ CTranslate2-int8. textgen and CTranslate2 are timed in turns, one call of each
per round (`interleaved_rates`): on a shared machine whose speed drifts, timing one library
after the other put the drift into the ratio. Every run makes exactly --tokens new tokens (minimum lengths
pin the count), top-k 30, top-p 0.9, temperature 0.9, fixed seeds, one warm-up. Both
libraries run at their best thread count, 1 or all cores (each cell says which).
"""
from __future__ import annotations

import argparse
import functools
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

from benchmarks.machine import cpu_kind

ROOT = Path(__file__).resolve().parent.parent
SAMPLING = dict(temperature=0.9, top_k=30, top_p=0.9)


def _wordpiece(size: int):
    from transformers import BertTokenizerFast

    words_file = Path("/usr/share/dict/words")
    if not words_file.is_file():
        raise SystemExit("missing /usr/share/dict/words: apt-get install wamerican")
    words = words_file.read_text(encoding="utf-8", errors="ignore").split()
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [chr(c) for c in range(33, 127)]
    vocab += ["storm", "sea", "night"]  # the benchmark's prompt, so that guaranteed mode can write it
    listed = sorted({w.lower() for w in words if w.isalpha()})
    room = size - 2 - len(vocab)
    vocab += listed[:: max(1, len(listed) // room)]  # spread over the alphabet, not its first letters
    vocab = list(dict.fromkeys(vocab))[: size - 2]
    return BertTokenizerFast(vocab={t: i for i, t in enumerate(vocab)})


def build_random_gpt2(folder: Path, vocab: int) -> Path:
    """12 layers × 768 with random weights; a real WordPiece tokenizer of `vocab` tokens."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    from textgen.prompt import PromptFormat, add_special_tokens

    tok = _wordpiece(vocab)
    fmt = PromptFormat()
    add_special_tokens(tok, fmt)
    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=len(tok), n_layer=12, n_embd=768, n_head=12,
                                       n_positions=1024, bos_token_id=0, eos_token_id=0))
    add_special_tokens(tok, fmt, model)
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    fmt.save(folder)
    return folder


def median_rate(fn, tokens: int, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return tokens / statistics.median(times)


# Each library at its best thread count: on 2 cores CTranslate2's two threads ran 10× slower
# than one on the small models (they spin against each other, and against torch's idle ones)
THREADS = sorted({1, os.cpu_count() or 1})


def interleaved_rates(runs: dict[str, list[tuple[int, object]]], tokens: int, repeats: int,
                      set_threads) -> dict[str, tuple[float, int]]:
    """{name: (tokens/s at its best thread count, that count)} for runs {name: [(threads, fn)]}.
    At each thread count the runs are timed in turns (each fn once per round, `repeats` rounds,
    medians), so that the drift of a shared machine hits every library alike instead of
    whichever was timed during it; thread counts are not mixed within a round (a pool of two
    threads still spinning after its call would slow the next one-thread call)."""
    best: dict[str, tuple[float, int]] = {}
    for threads in THREADS:
        set_threads(threads)
        fns = {name: fn for name, variants in runs.items() for t, fn in variants if t == threads}
        for fn in fns.values():
            fn()  # warm-up
        times: dict[str, list[float]] = {name: [] for name in fns}
        for _ in range(repeats):
            for name, fn in fns.items():
                start = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - start)
        for name, took in times.items():
            rate = tokens / statistics.median(took)
            if name not in best or rate > best[name][0]:
                best[name] = (rate, threads)
    return best


def convert_ct2(folder: Path, out: Path, quantization: str) -> Path:
    """CTranslate2's converter, then the config fields it leaves null for our models (token
    names it could not find, layer_norm_epsilon)."""
    import ctranslate2
    from transformers import AutoConfig, AutoTokenizer

    ctranslate2.converters.TransformersConverter(str(folder)).convert(str(out), quantization=quantization,
                                                                      force=True)
    config_path = out / "config.json"
    config = json.loads(config_path.read_text())
    tok = AutoTokenizer.from_pretrained(folder)
    fallback = tok.eos_token or tok.sep_token or tok.convert_ids_to_tokens(0)
    for key, token in (("unk_token", tok.unk_token), ("bos_token", tok.bos_token), ("eos_token", tok.eos_token),
                       ("decoder_start_token", tok.bos_token)):
        if key in config or key == "unk_token":
            config[key] = config.get(key) or token or fallback
    config["layer_norm_epsilon"] = config.get("layer_norm_epsilon") or AutoConfig.from_pretrained(
        folder).layer_norm_epsilon
    config_path.write_text(json.dumps(config))
    return out


def bench_model(folder: Path, label: str, tokens: int, repeats: int, ct2_dir: Path | None) -> list[dict]:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, pipeline

    from textgen import Generator
    from textgen.prompt import PromptFormat, encode_prompt

    title, keywords = ("春夜", ["月", "花"]) if "zh" in label else ("Storm", ["sea", "night"])
    tok = AutoTokenizer.from_pretrained(folder)
    prompt_ids = encode_prompt(tok, PromptFormat.load(folder), title, keywords)

    gen = Generator.from_pretrained(str(folder))
    loaded = gen.backend_for(title, keywords)
    loaded.model.generation_config.min_new_tokens = tokens  # pins the count, as generate() honours it
    on_torch = Generator.from_pretrained(str(folder), runtime="torch")
    on_torch.backend_for(title, keywords).model.generation_config.min_new_tokens = tokens
    base_model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32, use_safetensors=True)
    base_model.generation_config.min_new_tokens = tokens
    pipe = pipeline("text-generation", model=base_model, tokenizer=tok, device="cpu")
    prompt_text = tok.decode(prompt_ids)
    ct2 = {}
    if ct2_dir is not None:
        import ctranslate2

        for kind in ("int8", "float32"):
            path = convert_ct2(folder, ct2_dir / f"{label}-{kind}", kind)
            ct2[kind] = [ctranslate2.Generator(str(path), device="cpu", compute_type=kind, intra_threads=t)
                         for t in THREADS]
    start_tokens = tok.convert_ids_to_tokens(prompt_ids)

    rows = []
    for n in (1, 4):
        row = {"model": label, "n": n, "params": sum(p.numel() for p in base_model.parameters()),
               "quantize": loaded.quantize, "runtime": loaded.runtime,
               "dtype": str(loaded.dtype).replace("torch.", "")}
        runs: dict[str, list] = {}
        for mode in ("off", "guaranteed"):
            def ours(mode=mode):
                gen.generate(title, keywords, n=n, seed=0, max_new_tokens=tokens, keyword_mode=mode, **SAMPLING)
            runs[f"textgen_{mode}"] = [(t, ours) for t in THREADS]

        def ours_on_torch():
            on_torch.generate(title, keywords, n=n, seed=0, max_new_tokens=tokens, keyword_mode="off", **SAMPLING)
        runs["torch_off"] = [(t, ours_on_torch) for t in THREADS]
        for kind, models in ct2.items():
            def theirs(model):
                model.generate_batch([start_tokens] * n, max_length=tokens, min_length=tokens,
                                     sampling_topk=SAMPLING["top_k"], sampling_topp=SAMPLING["top_p"],
                                     sampling_temperature=SAMPLING["temperature"],
                                     include_prompt_in_result=False)
            runs[f"ct2_{kind}"] = [(t, functools.partial(theirs, model)) for t, model in zip(THREADS, models)]
        for name, (rate, threads) in interleaved_rates(runs, tokens * n, repeats, torch.set_num_threads).items():
            row[name], row[f"{name}_threads"] = rate, threads
        torch.set_num_threads(max(THREADS))

        def baseline():
            for i in range(n):
                torch.manual_seed(i)
                pipe(prompt_text, max_new_tokens=tokens, do_sample=True, return_full_text=False, **SAMPLING)
        row["pipeline"] = median_rate(baseline, tokens * n, repeats)
        rows.append(row)
    return rows


def check_ct2_counts(folder: Path, ct2_dir: Path, tokens: int) -> None:
    """CTranslate2 must make exactly `tokens` new tokens per row, as textgen does, or the rates
    would not compare."""
    import ctranslate2
    from transformers import AutoTokenizer

    from textgen.prompt import PromptFormat, encode_prompt

    tok = AutoTokenizer.from_pretrained(folder)
    start = tok.convert_ids_to_tokens(encode_prompt(tok, PromptFormat.load(folder), "Storm", ["sea"]))
    model = ctranslate2.Generator(str(convert_ct2(folder, ct2_dir / "count", "int8")), device="cpu")
    out = model.generate_batch([start] * 2, max_length=tokens, min_length=tokens, sampling_topk=30,
                               include_prompt_in_result=False)
    counts = [len(r.sequences_ids[0]) for r in out]
    if counts != [tokens, tokens]:
        raise SystemExit(f"CTranslate2 made {counts} new tokens, not {tokens}: its length options changed")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokens", type=int, default=48, help="new tokens per candidate")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per cell (median)")
    parser.add_argument("--models", default="gpt2-small,random-89m,builtin",
                        help="comma-separated: gpt2-small, random-89m, builtin")
    args = parser.parse_args()
    chosen = set(args.models.split(","))

    from textgen.loading import builtin_models

    import importlib.util

    have_ct2 = importlib.util.find_spec("ctranslate2") is not None
    if not have_ct2:
        print("ctranslate2 is not installed (pip install -r benchmarks/requirements.txt): its rows are left out")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        ct2_dir = tmp / "ct2" if have_ct2 else None
        folders = []
        if "gpt2-small" in chosen:
            folders.append((build_random_gpt2(tmp / "gpt2-small", 50257), "GPT-2 12×768, random, 50k vocab"))
        if "random-89m" in chosen:
            folders.append((build_random_gpt2(tmp / "random-89m", 4096), "GPT-2 12×768, random, 4k vocab"))
        if "builtin" in chosen:
            folders += [(folder, name) for name, folder in builtin_models().items()]
        if have_ct2 and folders:
            check_ct2_counts(folders[-1][0], ct2_dir, args.tokens)
        for folder, label in folders:
            rows += bench_model(folder, label, args.tokens, args.repeats, ct2_dir)
    print(f"\nCPU: {cpu_kind()}, {os.cpu_count()} cores; {args.tokens} new tokens per candidate, "
          f"median of {args.repeats}; tokens/s\n")
    print("| model | params | n | textgen off | textgen guaranteed | textgen off, PyTorch steps | CT2 int8 "
          "| CT2 float32 | pipeline fp32 | off ÷ CT2 int8 | guaranteed ÷ CT2 int8 | textgen weights, steps |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        c8 = r.get("ct2_int8")
        fmt = (lambda key: f"{r[key]:.0f} ({r[key + '_threads']}t)" if r.get(key) else "–")
        ratio = (lambda v: f"**{v / c8:.2f}**" if c8 else "–")
        weights = ("int8" if r["quantize"] == "int8" else r["dtype"]) + ", " + r["runtime"]
        print(f"| {r['model']} | {r['params'] / 1e6:.1f}M | {r['n']} | {fmt('textgen_off')} | "
              f"{fmt('textgen_guaranteed')} | {fmt('torch_off')} | {fmt('ct2_int8')} | {fmt('ct2_float32')} | "
              f"{r['pipeline']:.0f} | {ratio(r['textgen_off'])} | {ratio(r['textgen_guaranteed'])} | {weights} |")


if __name__ == "__main__":
    main()
