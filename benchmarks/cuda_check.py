"""The same code on a GPU: it runs, it samples what the CPU's fp32 model would, and its speed
beside transformers' own `generate()` on the same GPU. A short check for a session that is lent
one (the device tool); on the CPU (`--device cpu`) it checks itself at small scale.

    python -m benchmarks.cuda_check [--device cuda] [--prompts 20] [--tokens 48] [--repeats 5]

Models: each built-in, and a GPT-2 12 × 768 with random weights on textgen-en's tokenizer
(8k vocabulary; built here, so that the GPU machine needs no word list). `--small` swaps the
12 × 768 model for a 2 × 64 one (the CPU self-check). For each model:
- **runs**: `Generator.from_pretrained(model, device=...)` at its default dtype there (bf16 on
  CUDA), guaranteed mode with two keywords on every prompt: every candidate holds every keyword;
- **same distribution**: over the prompts, each followed by a 32-token continuation sampled on
  the CPU in fp32, the next-token distributions of the device's model against the CPU fp32
  model's, teacher-forced: mean KL(CPU ‖ device) per token in nats, and how often both rank the
  same token first; and texts sampled on the device (n=4 a prompt, off mode) scored by the CPU
  fp32 model, mean log-probability per token, beside the same for texts sampled on the CPU
  (equal within the spread when the device samples the same distribution);
- **speed**: tokens/s of `Generator.generate` (off and guaranteed) and of the model's own
  `generate()` (do_sample, the same top-k / top-p / temperature, min_new_tokens pinned so both
  make exactly --tokens new tokens), n=1 and n=4, median of --repeats after a warm-up, and the ratio.
"""
from __future__ import annotations

import argparse
import math
import shutil
import statistics
import tempfile
from pathlib import Path

SAMPLING = dict(temperature=0.9, top_k=30, top_p=0.9)
PROMPTS = {
    "en": [("Storm", ["sea", "night"]), ("The history of tea", ["leaf", "trade"]), ("Volcano", ["ash", "island"]),
           ("Rivers of Europe", ["bridge", "city"]), ("A train at night", ["station", "light"]),
           ("Winter", ["snow", "road"]), ("The old harbour", ["ship", "fish"]), ("Bees", ["honey", "flower"])],
    "zh": [("春夜", ["月", "花"]), ("秋思", ["雁", "霜"]), ("江上", ["舟", "风"]), ("山居", ["松", "云"]),
           ("送别", ["酒", "柳"]), ("夜雨", ["灯", "窗"]), ("登楼", ["远", "烟"]), ("早梅", ["雪", "香"])],
}


def random_model(folder: Path, like: Path, layers: int, width: int) -> Path:
    """A GPT-2 of `layers` × `width` with random weights and `like`'s tokenizer and format."""
    import torch
    from transformers import AutoConfig, GPT2Config, GPT2LMHeadModel

    base = AutoConfig.from_pretrained(like)
    config = GPT2Config(vocab_size=base.vocab_size, n_positions=base.n_positions, n_embd=width, n_layer=layers,
                        n_head=max(width // 64, 1), bos_token_id=base.bos_token_id, eos_token_id=base.eos_token_id,
                        pad_token_id=base.pad_token_id)
    torch.manual_seed(0)
    GPT2LMHeadModel(config).save_pretrained(folder)
    for name in ("tokenizer.json", "tokenizer_config.json", "textgen_format.json", "generation_config.json"):
        if (like / name).is_file():
            shutil.copyfile(like / name, folder / name)
    return folder


def check_model(folder: Path, label: str, language: str, args) -> list[str]:
    import torch
    import torch.nn.functional as F
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from benchmarks.generate import median_rate
    from textgen import Generator
    from textgen.prompt import PromptFormat, encode_prompt

    prompts = (PROMPTS[language] * math.ceil(args.prompts / len(PROMPTS[language])))[:args.prompts]
    tok = AutoTokenizer.from_pretrained(folder)
    fmt = PromptFormat.load(folder)
    cpu_model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32, use_safetensors=True).eval()
    cpu = Generator.from_pretrained(str(folder), device="cpu", dtype="float32", quantize="none", runtime="torch")
    gen = Generator.from_pretrained(str(folder), device=args.device)
    loaded = gen.backend_for(*prompts[0])
    device, dtype = loaded.device, str(loaded.dtype).replace("torch.", "")
    lines = [f"\n{label} on {device.type}, {dtype}:"]

    # runs: guaranteed mode covers every keyword
    held = total = 0
    for i, (title, kws) in enumerate(prompts):
        result = gen.generate(title, kws, n=2, seed=i, max_new_tokens=args.tokens, keyword_mode="guaranteed")
        held += sum(not c.missing for c in result)
        total += len(result)
    lines.append(f"guaranteed keywords: {held}/{total} candidates hold every keyword")

    # the same distribution, teacher-forced on CPU-sampled continuations
    kls, agree, positions = [], 0, 0
    for i, (title, kws) in enumerate(prompts):
        ids = encode_prompt(tok, fmt, title, kws)
        text = cpu.generate(title, kws, n=1, seed=i, max_new_tokens=32, keyword_mode="off", **SAMPLING)[0].text
        seq = torch.tensor([ids + tok.encode(text, add_special_tokens=False)[:32]])
        with torch.inference_mode():
            ref = F.log_softmax(cpu_model(seq).logits[0, len(ids) - 1:].float(), dim=-1)
            got = F.log_softmax(loaded.model(seq.to(device)).logits[0, len(ids) - 1:].float().cpu(), dim=-1)
        kls.append(float((ref.exp() * (ref - got)).sum(-1).mean()))
        agree += int((ref.argmax(-1) == got.argmax(-1)).sum())
        positions += ref.shape[0]
    lines.append(f"KL(CPU fp32 ‖ {device.type} {dtype}) per token: {statistics.mean(kls):.5f} nats; "
                 f"same first-ranked token: {100 * agree / positions:.1f}% of {positions}")

    def mean_logp(g) -> float:
        total_lp, count = 0.0, 0
        for i, (title, kws) in enumerate(prompts):
            ids = encode_prompt(tok, fmt, title, kws)
            for c in g.generate(title, kws, n=4, seed=1000 + i, max_new_tokens=args.tokens, keyword_mode="off",
                                **SAMPLING):
                new = tok.encode(c.text, add_special_tokens=False)[:args.tokens]
                if not new:
                    continue
                seq = torch.tensor([ids + new])
                with torch.inference_mode():
                    lp = F.log_softmax(cpu_model(seq).logits[0, len(ids) - 1:-1].float(), dim=-1)
                total_lp += float(lp.gather(1, seq[0, len(ids):, None]).sum())
                count += len(new)
        return total_lp / max(count, 1)

    lines.append(f"texts scored by the CPU fp32 model, mean log-prob per token: sampled on {device.type} "
                 f"{mean_logp(gen):.3f}, sampled on the CPU {mean_logp(cpu):.3f}")

    # speed beside transformers' generate() on the same device and dtype
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

    def rate(fn, tokens: int) -> float:  # each call ends when the device has finished it
        return median_rate(lambda: (fn(), sync()), tokens, args.repeats)
    title, kws = prompts[0]
    loaded.model.generation_config.min_new_tokens = args.tokens  # pins our count as generate() honours it
    theirs = AutoModelForCausalLM.from_pretrained(folder, dtype=loaded.dtype, use_safetensors=True).to(device).eval()
    prompt = torch.tensor([encode_prompt(tok, fmt, title, kws)], device=device)
    for n in (1, 4):
        rates = {}
        for mode in ("off", "guaranteed"):
            rates[mode] = rate(lambda mode=mode: gen.generate(title, kws, n=n, seed=0, max_new_tokens=args.tokens,
                                                              keyword_mode=mode, **SAMPLING), n * args.tokens)

        def hf(n=n):
            with torch.inference_mode():
                theirs.generate(prompt.repeat(n, 1), do_sample=True, max_new_tokens=args.tokens,
                                min_new_tokens=args.tokens, pad_token_id=tok.pad_token_id, **SAMPLING)
        rates["generate()"] = rate(hf, n * args.tokens)
        lines.append(f"n={n}: textgen off {rates['off']:.0f} tok/s, guaranteed {rates['guaranteed']:.0f}, "
                     f"transformers generate() {rates['generate()']:.0f}; off ÷ generate() "
                     f"**{rates['off'] / rates['generate()']:.2f}**, guaranteed ÷ generate() "
                     f"**{rates['guaranteed'] / rates['generate()']:.2f}**")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--prompts", type=int, default=20)
    parser.add_argument("--tokens", type=int, default=48)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--small", action="store_true", help="a 2 × 64 random model instead of 12 × 768")
    args = parser.parse_args()
    import torch

    from textgen.loading import builtin_models

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit("torch sees no CUDA GPU here; --device cpu checks this script on the CPU")
    if args.device.startswith("cuda"):
        print(f"GPU: {torch.cuda.get_device_name(0)}, torch {torch.__version__}")
    builtins = builtin_models()
    if "textgen-en" not in builtins:
        raise SystemExit("the built-in models are missing (assets/models/): they are the tokenizers too")
    with tempfile.TemporaryDirectory() as tmp:
        layers, width = (2, 64) if args.small else (12, 768)
        models = [(folder, name, "zh" if name.endswith("-zh") else "en") for name, folder in builtins.items()]
        models.append((random_model(Path(tmp) / "random", builtins["textgen-en"], layers, width),
                       f"GPT-2 {layers}×{width}, random, 8k vocab", "en"))
        for folder, label, language in models:
            for line in check_model(folder, label, language, args):
                print(line, flush=True)


if __name__ == "__main__":
    main()
