"""Training examples: rows tokenised once, long texts cut into windows, keywords augmented.

>>> ds = ExampleDataset(rows, tokenizer, PromptFormat(), max_length=512, augment=True, seed=0)  # doctest: +SKIP
>>> ds.set_epoch(1); ds[0].keys()                          # doctest: +SKIP
dict_keys(['input_ids', 'labels'])
>>> batch = Collator(pad_id)([ds[0], ds[1]])               # doctest: +SKIP  padded to the longer one

Every example is ``prompt + text`` exactly as `textgen.prompt.encode_example` lays it out, so
training and generation agree token for token.

Windows. A text longer than ``max_length`` minus its prompt becomes several windows, each
with the row's title and keywords in front. Window k > 0 also shows the last `overlap` text
tokens of window k-1 as context; those, like the prompt and the padding, carry label -100, so
every text token is trained exactly once and never without some context.

Keyword augmentation. Each time a row is used it gets k ~ uniform{0..n} of its n keywords,
drawn without replacement in random order, from an RNG keyed by (seed, epoch, index): the
same run sees the same subsets, whatever the worker or resume point, and a model learns
to write from any subset of keywords, including none, in any order.

Keyword insertion (``insert_keywords``, off by default). A share of the training examples
also borrows 1-3 (``insert_count``) keywords of *other* rows: each is put into the text at a
word boundary and added to the prompt's keywords. A corpus's own keywords mostly follow from its text; a
borrowed one can only be written by reading the prompt, which teaches the model to write
the keywords it is given (what generation's keyword modes ask of it). Same RNG keying.
With ``insert_from="random"`` the borrowed words are random instead: Latin words of the
corpus's texts, or made-up words of 2-3 of its characters. A corpus whose keywords are few
or alike (a poetry corpus's classical words) lets a model learn the keywords themselves; a
random word can only be predicted by copying it from the prompt. With ``insert_from="words"``
they come from a word list the caller gives (``insert_words``), in the row's script: a
vocabulary the corpus lacks (modern words for a classical corpus) that users will type.
``insert_phrases`` makes that share of the borrowed Latin words (random or listed) two-word
phrases, the first word and another random one: users type phrases ("civil war"), and a
model copies a phrase's second word only where it learnt to. ``insert_within`` > 0 puts the
words among the text's first that many tokens: packed blocks (`finetune.packing`) cut long
examples, and a word in a piece cut off from its prompt could not be copied from it.
"""
from __future__ import annotations

import random
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils.data import Dataset, Sampler

from textgen.lang import has_cjk
from textgen.prompt import PromptFormat, encode_example

IGNORE_INDEX = -100  # label of tokens the loss skips (torch's cross_entropy default)
MIN_TEXT_TOKENS = 16  # a prompt must leave at least this many tokens of a window for text
PROMPT_TOO_LONG = "title and keywords leave no room for text within max_length"
INSERT_FROM = ("keywords", "random", "words")  # borrowed from: other rows' keywords, random words, a word list
RANDOM_MIN_COUNT = 2  # a text word or character seen fewer times may be a typo: never borrowed
_LATIN_WORD = re.compile(r"[^\W\d_]{3,12}")


@dataclass(frozen=True)
class Window:
    """A slice of one row's text tokens: body[context:end] is shown, body[start:end] trained."""

    row: int
    context: int
    start: int
    end: int


def plan_windows(n_text: int, budget: int, overlap: int) -> list[tuple[int, int, int]]:
    """(context, start, end) of the windows covering `n_text` tokens, `budget` tokens each.

    >>> plan_windows(10, 4, 1)
    [(0, 0, 4), (3, 4, 7), (6, 7, 10)]
    >>> plan_windows(3, 4, 1)
    [(0, 0, 3)]
    """
    assert budget > overlap >= 0, (budget, overlap)
    spans = [(0, 0, min(n_text, budget))]
    while spans[-1][2] < n_text:
        start = spans[-1][2]
        context = start - overlap
        spans.append((context, start, min(n_text, context + budget)))
    return spans


class ExampleDataset(Dataset):
    """Windows of tokenised rows; items are ``{"input_ids": [...], "labels": [...]}``.

    rows: objects with ``title``, ``keywords`` (list of str) and ``text`` (`finetune.data.Row`).
    augment: draw a fresh keyword subset per use (training); else all keywords in order (eval).
    train_on_prompt: also compute the loss on the title and keywords.
    """

    def __init__(self, rows: Sequence[Any], tokenizer, fmt: PromptFormat, max_length: int, *,
                 augment: bool, seed: int = 0, train_on_prompt: bool = False,
                 overlap: int | None = None, insert_keywords: float = 0.0,
                 insert_from: str = "keywords", insert_words: Sequence[str] = (), insert_within: int = 0,
                 insert_phrases: float = 0.0, insert_count: int = 3) -> None:
        self.rows, self.tokenizer, self.fmt = list(rows), tokenizer, fmt
        self.insert_within, self.insert_phrases, self.insert_count = insert_within, insert_phrases, insert_count
        self.max_length, self.augment, self.seed = max_length, augment, seed
        self.train_on_prompt = train_on_prompt
        self.insert_keywords = insert_keywords if augment else 0.0
        if insert_from not in INSERT_FROM:
            raise ValueError(f"insert_from: must be one of {', '.join(INSERT_FROM)}, got {insert_from!r}")
        self.insert_from = insert_from
        self._pool: list[str] = []  # the corpus's keywords: what a row may borrow
        self._latin: list[str] = []  # with insert_from="random": words of the texts ...
        self._hanzi: list[str] = []  # ... and CJK characters of the texts
        self._cjk_words: list[str] = []  # with insert_from="words": the list's CJK words (Latin ones: _latin)
        if self.insert_keywords > 0 and insert_from == "keywords":
            self._pool = sorted({k for r in self.rows for k in r.keywords})
        elif self.insert_keywords > 0 and insert_from == "words":
            if not insert_words:
                raise ValueError("insert_words: give the words to borrow with insert_from='words'")
            self._cjk_words = [w for w in insert_words if has_cjk(w)]
            self._latin = [w for w in insert_words if not has_cjk(w)]
        elif self.insert_keywords > 0:
            self._latin, self._hanzi = _random_pools(r.text for r in self.rows)
        self._word_ids: dict[str, list[int]] = {}  # borrowed keyword → its tokens in a text
        self._token_text: dict[int, str] = {}
        self.epoch = 0
        self.prompts: list[list[int]] = []  # full-keyword prompt of each row
        self.bodies: list[list[int]] = []  # text tokens of each row, [EOS] included
        self.windows: list[Window] = []
        self.lengths: list[int] = []  # tokens of each window with all keywords, for grouping
        self.dropped: Counter[str] = Counter()  # reason -> rows
        self.rows_split = 0  # rows whose text needed more than one window
        for index, row in enumerate(self.rows):
            self._add_row(index, row, overlap)

    def _add_row(self, index: int, row: Any, overlap: int | None) -> None:
        ids, text_start = encode_example(self.tokenizer, self.fmt, row.title, row.keywords, row.text)
        prompt, body = ids[:text_start], ids[text_start:]
        self.prompts.append(prompt)
        self.bodies.append(body)
        budget = self.max_length - len(prompt)
        if budget < MIN_TEXT_TOKENS:
            self.dropped[PROMPT_TOO_LONG] += 1
            return
        lap = min(budget // 4, 128) if overlap is None else min(overlap, budget - 1)
        spans = plan_windows(len(body), budget, lap)
        self.rows_split += len(spans) > 1
        for context, start, end in spans:
            self.windows.append(Window(index, context, start, end))
            self.lengths.append(len(prompt) + end - context)

    def quartile_text_tokens(self) -> int:
        """Tokens that three in four of the rows' texts reach, [EOS] included (their lower
        quartile): a length where the model's texts are still going."""
        lengths = sorted(len(b) for b in self.bodies)
        return lengths[len(lengths) // 4] if lengths else 0

    # -- torch Dataset ------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.windows)

    def set_epoch(self, epoch: int) -> None:
        """Keyword subsets depend on the epoch: each pass over the data draws new ones."""
        self.epoch = epoch

    def __getitem__(self, index: int) -> dict[str, list[int]]:
        w = self.windows[index]
        row = self.rows[w.row]
        prompt = self.prompts[w.row]
        body = self.bodies[w.row]
        context, text = body[w.context:w.start], body[w.start:w.end]
        keywords = self.draw_keywords(row.keywords, index) if self.augment and row.keywords else None
        borrowed = self.borrow_keywords(row.keywords, index)
        if borrowed:
            end = len(text) - (w.end == len(body))  # a row's last window ends with [EOS]: nothing after it
            text, placed = self._insert(text[:end], borrowed, self._rng(index, salt=2))
            text += body[w.start + end:w.end]
            keywords = (keywords or []) + placed
            random.Random(self._key(index, salt=3)).shuffle(keywords)
        if keywords is not None:
            drawn = self._prompt(row.title, keywords)
            if len(drawn) + len(context) + len(text) > self.max_length and borrowed:
                text = text[:max(self.max_length - len(drawn) - len(context), 1)]  # the inserts overran
            if len(drawn) + len(context) + len(text) <= self.max_length:  # BPE merges could, in theory, make it longer
                prompt = drawn
        prompt_labels = list(prompt) if self.train_on_prompt else [IGNORE_INDEX] * len(prompt)
        return {
            "input_ids": prompt + context + text,
            "labels": prompt_labels + [IGNORE_INDEX] * len(context) + text,
        }

    def _key(self, index: int, salt: int = 0) -> int:
        return ((self.seed * 1_000_003 + self.epoch) * 1_000_003 + index) * 7 + salt

    def _rng(self, index: int, salt: int = 0) -> random.Random:
        return random.Random(self._key(index, salt))

    def borrow_keywords(self, own: Sequence[str], index: int) -> list[str]:
        """Words to insert into example `index` (none unless insertion is on): 1-3 keywords
        of other rows, or random or listed words in the language of the example's row."""
        if not (self._pool or self._latin or self._hanzi or self._cjk_words):
            return []
        rng = self._rng(index, salt=1)
        if rng.random() >= self.insert_keywords:
            return []
        if self.insert_from == "keywords":
            others = [k for k in rng.sample(self._pool, min(len(self._pool), self.insert_count + 3)) if k not in own]
            return others[:rng.randint(1, self.insert_count)]
        count = rng.randint(1, self.insert_count)
        cjk_row = has_cjk(self.rows[self.windows[index].row].text)
        if self.insert_from == "words":  # the list's words in the row's script, where it has some
            pool = self._cjk_words if self._cjk_words and (cjk_row or not self._latin) else self._latin
            words = rng.sample(pool, min(len(pool), count + 3))
        elif self._hanzi and (cjk_row or not self._latin):
            # made-up words, every character as likely: only the prompt tells which
            words = ["".join(rng.choices(self._hanzi, k=rng.randint(2, 3))) for _ in range(count + 3)]
        else:
            words = rng.sample(self._latin, min(len(self._latin), count + 3))
        words = [w for w in words if w not in own][:count]
        if self.insert_phrases > 0 and self._latin:
            # two words that never go together, as one keyword: only the prompt tells the second
            words = [f"{w} {rng.choice(self._latin)}" if not has_cjk(w) and rng.random() < self.insert_phrases else w
                     for w in words]
        return words

    def _insert(self, text: list[int], words: list[str], rng: random.Random) -> tuple[list[int], list[str]]:
        """`text` with each word's tokens put at a random word boundary; the words placed."""
        text, placed = list(text), []
        spans: list[tuple[int, int]] = []  # where earlier words went: never inside one of them
        for word in words:
            cjk = has_cjk(word)
            ids = self._word_ids.get(word)
            if ids is None:
                ids = self.tokenizer.encode(word if cjk else " " + word, add_special_tokens=False)
                # made-up words and random phrases rarely repeat: no cache
                if not (cjk and self.insert_from == "random") and " " not in word:
                    self._word_ids[word] = ids
            last = min(len(text), self.insert_within) if self.insert_within else len(text)
            spots = [j for j in range(last + 1)
                     if self._boundary(text, j, cjk) and not any(a < j < b for a, b in spans)]
            if not ids or not spots:
                continue
            at = rng.choice(spots)
            text[at:at] = ids
            spans = [(a + len(ids), b + len(ids)) if a >= at else (a, b) for a, b in spans] + [(at, at + len(ids))]
            placed.append(word)
        return text, placed

    def _boundary(self, text: list[int], j: int, cjk: bool) -> bool:
        """Whether a word may go in before text[j]: before a token that starts a word (Latin),
        or between two whole characters (CJK; byte tokens of a split character are not)."""
        after = self._text(text[j]) if j < len(text) else " "
        if not cjk:
            return after[:1].isspace()
        before = self._text(text[j - 1]) if j > 0 else ""
        return "\ufffd" not in after and "\ufffd" not in before and not after.startswith("##")

    def _text(self, tid: int) -> str:
        text = self._token_text.get(tid)
        if text is None:
            text = self._token_text[tid] = self.tokenizer.decode([tid])
        return text

    def draw_keywords(self, keywords: Sequence[str], index: int) -> list[str]:
        """k ~ uniform{0..n} of the keywords, in random order; fixed by (seed, epoch, index)."""
        rng = random.Random((self.seed * 1_000_003 + self.epoch) * 1_000_003 + index)  # as before insertion
        return rng.sample(list(keywords), rng.randint(0, len(keywords)))

    def _prompt(self, title: str, keywords: list[str]) -> list[int]:
        ids, _ = encode_example(self.tokenizer, self.fmt, title, keywords, "", add_eos=False)
        return ids

    # -- statistics ---------------------------------------------------------------------------
    @property
    def rows_used(self) -> int:
        return len(self.rows) - sum(self.dropped.values())

    def text_tokens(self) -> int:
        """Text tokens trained per epoch (each once, whatever the windows)."""
        return sum(w.end - w.start for w in self.windows)


def _random_pools(texts) -> tuple[list[str], list[str]]:
    """(Latin words, CJK characters) seen at least RANDOM_MIN_COUNT times in the texts."""
    words: Counter[str] = Counter()
    chars: Counter[str] = Counter()
    for text in texts:
        words.update(w.lower() for w in _LATIN_WORD.findall(text) if not has_cjk(w))
        chars.update(c for c in text if has_cjk(c))
    def keep(counts):
        return sorted(k for k, n in counts.items() if n >= RANDOM_MIN_COUNT)
    return keep(words), keep(chars)


@dataclass
class Collator:
    """Pads a batch to its longest example (not to max_length): padding is [PAD], label -100."""

    pad_id: int
    pad_to_multiple_of: int | None = None  # 8 helps tensor cores on GPUs

    def __call__(self, features: Sequence[dict[str, list[int]]]) -> dict[str, torch.Tensor]:
        longest = max(len(f["input_ids"]) for f in features)
        if self.pad_to_multiple_of:
            longest = -(-longest // self.pad_to_multiple_of) * self.pad_to_multiple_of
        batch = len(features)
        input_ids = torch.full((batch, longest), self.pad_id, dtype=torch.long)  # (B, T)
        attention_mask = torch.zeros((batch, longest), dtype=torch.long)  # (B, T)
        labels = torch.full((batch, longest), IGNORE_INDEX, dtype=torch.long)  # (B, T)
        for i, f in enumerate(features):
            n = len(f["input_ids"])
            input_ids[i, :n] = torch.tensor(f["input_ids"])
            attention_mask[i, :n] = 1
            labels[i, :n] = torch.tensor(f["labels"])
        if "position_ids" in features[0]:  # packed blocks, all one length: positions keep documents apart
            # (Trainer turns the model's cache off, and without one transformers reads them as a mask)
            positions = torch.tensor([f["position_ids"] for f in features], dtype=torch.long)  # (B, T)
            return {"input_ids": input_ids, "labels": labels, "position_ids": positions}
        if bool(attention_mask.all()):  # nothing padded: attention's causal fast path
            return {"input_ids": input_ids, "labels": labels}
        return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}


class EpochSampler(Sampler[int]):
    """Indices whose order depends only on (seed, epoch), so every DDP rank and a resumed run
    see the same one. Trainer calls `set_epoch` before each pass; it is forwarded to the
    dataset, whose keyword draws (and packing) follow the epoch too."""

    def __init__(self, dataset, seed: int) -> None:
        self.dataset, self.seed, self.epoch = dataset, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        self.dataset.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.dataset)

    def generator(self) -> torch.Generator:
        return torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)


class LengthGroupedSampler(EpochSampler):
    """Indices in batches of similar length, so little of each batch is padding."""

    def __init__(self, dataset: ExampleDataset, batch_size: int, seed: int) -> None:
        super().__init__(dataset, seed)
        self.batch_size = batch_size

    def __iter__(self):
        from transformers.trainer_pt_utils import get_length_grouped_indices

        return iter(get_length_grouped_indices(self.dataset.lengths, self.batch_size, generator=self.generator()))
