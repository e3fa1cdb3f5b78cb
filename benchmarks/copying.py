"""How much a keyword in the prompt helps a model write it (the root of guaranteed keywords' fluency cost).

    python -m benchmarks.copying [--sets 100] [--languages en,zh] [--model auto|PATH]

Guaranteed mode pays, in perplexity, for every keyword token the model would not have
written by itself. A model that reads its prompt makes those tokens cheap: once a keyword's
first token is written, its later tokens can be copied from the prompt. This measures that
side by side on the same texts: for each keyword set of `benchmarks.keywords` (same word
lists, same seeds), the model's own off-mode text for the set gets the keywords put
in at random word boundaries (Latin: before a space; Chinese: between two characters); the
keywords' tokens are then scored given the prompt with the keywords and given the prompt
without them. Reported per language: mean NLL (nats) of the keywords' first tokens and of
their later tokens, both ways, and the saving (without - with; exp(saving) is how many times
likelier the prompt makes a token).
"""
from __future__ import annotations

import argparse
import math
import random
from dataclasses import dataclass

from benchmarks.keywords import chinese_pool, english_pool, keyword_sets


@dataclass
class Costs:
    first: float = 0.0  # summed NLL of keywords' first tokens
    n_first: int = 0
    later: float = 0.0  # summed NLL of keywords' later tokens
    n_later: int = 0

    def mean_first(self) -> float:
        return self.first / max(self.n_first, 1)

    def mean_later(self) -> float:
        return self.later / max(self.n_later, 1)


def insert_words(text: str, words: list[str], rng: random.Random, cjk: bool) -> tuple[str, list[tuple[int, int]]]:
    """`text` with each word put at a random boundary of the original text (so that no word
    lands inside another); the words' (start, end) character spans in the result."""
    if cjk:
        spots = [i for i in range(len(text) + 1) if i == 0 or not text[i - 1].isspace()]
    else:
        spots = [i for i, ch in enumerate(text) if ch == " "] + [len(text)]
    placed = sorted((rng.choice(spots), n) for n in range(len(words)))
    out, spans, done = [], [None] * len(words), 0
    for at, n in placed:
        out.append(text[done:at])
        start = sum(map(len, out)) + (not cjk)  # Latin words go in with a leading space
        out.append(words[n] if cjk else " " + words[n])
        spans[n], done = (start, start + len(words[n])), at
    out.append(text[done:])
    return "".join(out), spans


def keyword_costs(loaded, title: str, keywords: list[str], text: str, spans, with_keywords: bool, costs: Costs) -> None:
    import torch

    from textgen.prompt import encode_prompt

    tok = loaded.tokenizer
    prompt = encode_prompt(tok, loaded.fmt, title, keywords if with_keywords else [])
    enc = tok(text, add_special_tokens=False, return_offsets_mapping=True)
    ids = torch.tensor([prompt + enc["input_ids"]], device=loaded.device)
    with torch.inference_mode():
        logp = torch.log_softmax(loaded.model(ids).logits[0, :-1].float(), -1)
    nll = -logp.gather(1, ids[0, 1:, None]).squeeze(-1).cpu()[len(prompt) - 1:]
    for start, end in spans:
        toks = [j for j, (a, b) in enumerate(enc["offset_mapping"]) if a < end and start < b]
        if not toks:
            continue
        costs.first += nll[toks[0]].item()
        costs.n_first += 1
        costs.later += sum(nll[j].item() for j in toks[1:])
        costs.n_later += len(toks) - 1


def measure(model: str, language: str, sets: int) -> dict[bool, Costs]:
    from textgen import Generator

    gen = Generator.from_pretrained(model)
    pool = chinese_pool() if language == "zh" else english_pool()
    rng = random.Random(1)
    out = {True: Costs(), False: Costs()}
    for i, (title, keywords) in enumerate(keyword_sets(pool, sets, 0)):
        loaded = gen.backend_for(title, keywords)
        base = gen.generate(title, keywords, n=1, seed=i, max_new_tokens=48, keyword_mode="off")[0].text
        text, spans = insert_words(base, keywords, rng, cjk=language == "zh")
        for with_keywords in (True, False):
            keyword_costs(loaded, title, keywords, text, spans, with_keywords, out[with_keywords])
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", type=int, default=100)
    parser.add_argument("--languages", default="en,zh")
    parser.add_argument("--model", default="auto", help="auto (the built-in model of each language) or a folder")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    print(f"{args.sets} keyword sets per language, keywords put into the model's own off-mode texts\n")
    print("| language | keyword tokens | NLL without them in the prompt | NLL with them | saving (nats) | x likelier |")
    print("|---|---|---|---|---|---|")
    for language in args.languages.split(","):
        costs = measure(args.model, language, args.sets)
        for part, n, without, with_ in (
                ("first", costs[True].n_first, costs[False].mean_first(), costs[True].mean_first()),
                ("later", costs[True].n_later, costs[False].mean_later(), costs[True].mean_later())):
            saving = without - with_
            print(f"| {language} | {part} ({n}) | {without:.2f} | {with_:.2f} | {saving:.2f} | {math.exp(saving):.1f} |")


if __name__ == "__main__":
    main()
