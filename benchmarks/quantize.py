"""What int8 weights cost in quality: the same decode path with fp32 and with int8 matrices,
PyTorch's (fbgemm, `runtime="torch"`) and ONNX Runtime's (`textgen.onnx_step`, the default
where it is installed).

    python -m benchmarks.quantize [--docs 40] [--prompts 20] [--tokens 64]

For each built-in model and for a GPT-2 of 12 × 768 with random weights on textgen-en's
tokenizer (91M parameters, built here), it prints
- held-out perplexity per token under fp32 and under each int8, and their ratio (target ≤ 1.01):
  every token is scored through the decode path generation uses (the prompt, then one step
  per token), so what is measured is what users get;
- greedy agreement: fp32 greedy continuations of held-out prompts, and the share of their
  tokens that int8 also ranks first when fed the same text (target ≥ 95%).

Held-out texts are the quality benchmark's (benchmarks/quality.py): English Wikipedia
articles of enwiki-AB and Song poems of chinese-poetry that the built-ins never trained on;
it needs ../shared/corpora/ and says so when it is missing. The random model reads the
English texts.
"""
from __future__ import annotations

import argparse
import math
import tempfile
from pathlib import Path

from benchmarks.machine import cpu_kind
from benchmarks.quality import held_out


def build_random_gpt2(folder: Path, tokenizer_from: Path) -> Path:
    import torch
    from transformers import AutoTokenizer, GPT2Config, GPT2LMHeadModel

    from textgen.prompt import PromptFormat

    tok = AutoTokenizer.from_pretrained(tokenizer_from)
    fmt = PromptFormat.load(tokenizer_from)
    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=len(tok), n_layer=12, n_embd=768, n_head=12, n_positions=512,
                                       bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id))
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    fmt.save(folder)
    return folder


def scored_steps(loaded, path, prompt: list[int], ids: list[int]):
    """Log-probabilities (T, V) the decode path gives before each of `ids`, after `prompt`.
    path: a `textgen.steppers.DecodePath`."""
    import torch

    from textgen.steppers import stepper_for

    stepper = stepper_for(loaded.model, 1, len(prompt) + len(ids), path)
    with torch.inference_mode():
        rows = [stepper.prefill(torch.tensor([prompt]))]
        for token in ids[:-1]:
            rows.append(stepper.step(torch.tensor([token])))
    return torch.log_softmax(torch.cat(rows), dim=-1)


def greedy(loaded, prompt: list[int], tokens: int) -> list[int]:
    import torch

    from textgen.steppers import stepper_for

    stepper = stepper_for(loaded.model, 1, len(prompt) + tokens)
    out = []
    with torch.inference_mode():
        logits = stepper.prefill(torch.tensor([prompt]))
        for _ in range(tokens):
            out.append(int(logits.argmax(-1)))
            logits = stepper.step(torch.tensor([out[-1]]))
    return out


def compare(folder: Path, docs, prompts: int, tokens: int) -> dict:
    import torch

    from textgen.loading import load
    from textgen.prompt import encode_prompt
    from textgen.onnx_step import OnnxGPT2Step, onnx_available
    from textgen.quantize import Int8GPT2
    from textgen.steppers import DecodePath

    loaded = load(folder, dtype="float32", quantize="none", runtime="torch")
    paths = {"fp32": DecodePath(), "int8": DecodePath(int8=Int8GPT2.from_model(loaded.model))}
    if onnx_available():
        paths["int8 onnx"] = DecodePath(graph=OnnxGPT2Step(loaded.model))
    tok, fmt = loaded.tokenizer, loaded.fmt
    eos = tok.convert_tokens_to_ids(fmt.eos)
    nll = dict.fromkeys(paths, 0.0)
    count = 0
    for title, kws, text in docs:
        prompt = encode_prompt(tok, fmt, title, kws)
        ids = (tok(text, add_special_tokens=False)["input_ids"] + [eos])[: loaded.model.config.n_positions - len(prompt)]
        target = torch.tensor(ids)[:, None]
        for name, path in paths.items():
            nll[name] -= float(scored_steps(loaded, path, prompt, ids).gather(1, target).sum())
        count += len(ids)
    agree, total = dict.fromkeys(paths, 0), 0
    for title, kws, _ in docs[:prompts]:
        prompt = encode_prompt(tok, fmt, title, kws)
        ids = greedy(loaded, prompt, tokens)
        for name, path in paths.items():
            picked = scored_steps(loaded, path, prompt, ids).argmax(-1).tolist()
            agree[name] += sum(a == b for a, b in zip(picked, ids))
        total += len(ids)
    ppl = {k: math.exp(v / count) for k, v in nll.items()}
    return {"tokens": count, "ppl": ppl, "agreement": {k: v / total for k, v in agree.items()},
            "params": sum(p.numel() for p in loaded.model.parameters())}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--docs", type=int, default=40, help="held-out texts per model")
    parser.add_argument("--prompts", type=int, default=20, help="greedy continuations per model")
    parser.add_argument("--tokens", type=int, default=64, help="tokens per greedy continuation")
    args = parser.parse_args(argv)

    import torch

    from textgen.loading import builtin_models
    from textgen.quantize import int8_available

    if not int8_available():
        raise SystemExit("this PyTorch build has no fbgemm kernels: int8 is not offered here")
    torch.set_num_threads(2)
    rows = []
    models = builtin_models()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        docs = {lang: held_out(lang, tmp, args.docs) for lang in ("zh", "en")}
        for name, folder in models.items():
            rows.append((name, compare(folder, docs["zh" if name.endswith("zh") else "en"], args.prompts, args.tokens)))
        big = build_random_gpt2(tmp / "random", models["textgen-en"])
        rows.append(("GPT-2 12×768, random weights", compare(big, docs["en"], args.prompts, args.tokens)))
    print(f"\nCPU: {cpu_kind()}; {args.docs} held-out texts, {args.prompts} greedy continuations of "
          f"{args.tokens} tokens per model\n")
    print("| model | params | held-out tokens | weights | perplexity | ÷ fp32 | greedy agreement with fp32 |")
    print("|---|---|---|---|---|---|---|")
    for name, r in rows:
        for path, ppl in r["ppl"].items():
            label = {"fp32": "fp32", "int8": "int8, PyTorch (fbgemm)", "int8 onnx": "int8, ONNX Runtime"}[path]
            ratio = ppl / r["ppl"]["fp32"]
            print(f"| {name} | {r['params'] / 1e6:.1f}M | {r['tokens']:,} | {label} | {ppl:.2f} | "
                  f"**{ratio:.4f}** | **{r['agreement'][path]:.1%}** |")


if __name__ == "__main__":
    main()
