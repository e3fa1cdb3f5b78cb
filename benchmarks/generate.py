"""Tokens/s of textgen's Generator vs a plain transformers text-generation pipeline (fp32).

    python -m benchmarks.generate [--tokens 64] [--repeats 5] [--skip-builtin | --builtin-only]

For each model (a GPT-2-small-sized model with random weights, built here, and each
built-in model) and for n=1 and n=4, it prints the median tokens/s of
- the baseline: `pipeline("text-generation")` in fp32; at n=4, four sequential calls;
- ours: `Generator.generate` with its load-time defaults (bf16 on CPUs with native bf16),
  the n candidates sampled in one batched call, including the scoring pass.
Both generate exactly --tokens new tokens (min_new_tokens pins the count), with fixed seeds,
after a warm-up run.
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def build_gpt2_small(folder: Path) -> Path:
    """GPT-2 small shape (12 layers, 768 wide, 50,257-token vocabulary), random weights.

    The tokenizer is a real WordPiece built from Debian's word list (no download needed),
    sized to GPT-2's vocabulary so the output layer costs what it costs in GPT-2.
    """
    import torch
    from transformers import BertTokenizerFast, GPT2Config, GPT2LMHeadModel

    from textgen.prompt import PromptFormat, add_special_tokens

    words = Path("/usr/share/dict/words").read_text(encoding="utf-8", errors="ignore").split()
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [chr(c) for c in range(33, 127)]
    vocab += sorted({w.lower() for w in words if w.isalpha()})
    vocab = list(dict.fromkeys(vocab))[: 50257 - 2]
    tok = BertTokenizerFast(vocab={t: i for i, t in enumerate(vocab)})
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


def bench_model(folder: Path, label: str, tokens: int, repeats: int) -> list[tuple]:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, pipeline

    from textgen import Generator
    from textgen.prompt import PromptFormat, encode_prompt

    title, keywords = ("春夜", ["月", "花"]) if "zh" in label else ("Storm", ["sea", "night"])
    # baseline: the plain pipeline, fp32, same prompt text
    tok = AutoTokenizer.from_pretrained(folder)
    base_model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32, use_safetensors=True)
    base_model.generation_config.min_new_tokens = tokens
    pipe = pipeline("text-generation", model=base_model, tokenizer=tok, device="cpu")
    prompt = tok.decode(encode_prompt(tok, PromptFormat.load(folder), title, keywords))

    gen = Generator.from_pretrained(str(folder))
    loaded = gen.backend_for(title, keywords)
    loaded.model.generation_config.min_new_tokens = tokens
    rows = []
    for n in (1, 4):
        def baseline():
            for i in range(n):
                torch.manual_seed(i)
                pipe(prompt, max_new_tokens=tokens, do_sample=True, top_k=30, top_p=0.9, temperature=0.9,
                     return_full_text=False)

        def ours():
            gen.generate(title, keywords, n=n, seed=0, max_new_tokens=tokens, keyword_mode="off")

        b = median_rate(baseline, tokens * n, repeats)
        o = median_rate(ours, tokens * n, repeats)
        rows.append((label, n, b, o, o / b, str(loaded.dtype).replace("torch.", "")))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokens", type=int, default=64, help="new tokens per candidate")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per cell (median)")
    parser.add_argument("--skip-builtin", action="store_true", help="only the GPT-2-small-sized model")
    parser.add_argument("--builtin-only", action="store_true", help="only the built-in models")
    args = parser.parse_args()

    from textgen.loading import builtin_models

    rows = []
    if not args.builtin_only:
        with tempfile.TemporaryDirectory() as tmp:
            rows += bench_model(build_gpt2_small(Path(tmp)), "gpt2-small-sized (124M, random)", args.tokens,
                                args.repeats)
    if not args.skip_builtin:
        for name, folder in builtin_models().items():
            rows += bench_model(folder, name, args.tokens, args.repeats)
    print(f"\n{args.tokens} new tokens per candidate, median of {args.repeats}\n")
    print("| model | n | baseline tok/s (pipeline, fp32) | textgen tok/s | ratio | textgen dtype |")
    print("|---|---|---|---|---|---|")
    for label, n, b, o, r, dt in rows:
        print(f"| {label} | {n} | {b:.1f} | {o:.1f} | **{r:.2f}×** | {dt} |")


if __name__ == "__main__":
    main()
