"""Packed training blocks: examples laid end to end and cut into blocks of one fixed length.

Pretraining from scratch on many short rows wastes most of a padded batch, and variable
shapes cost the CPU's matmul kernels more still. Packing keeps every position busy and every
batch the same shape.

Each example is exactly what `finetune.dataset.ExampleDataset` makes (prompt with drawn and
inserted keywords, text, [EOS]). Its position ids start at 0, as at generation, and it attends
only to itself: transformers reads packed position ids (a position that does not follow the one
before starts a new document) and gives attention a block-diagonal causal mask. Plain
concatenation, where a document starts at any position after the one before, taught the
built-ins a first token they never see at generation: a prompt at position 0 drew "，" as the
first character of a poem 13% of the time. A block may begin in the middle of an example: that
piece starts at position 0 too (an example may be longer than the model's positions), and its
first tokens see less context. Labels keep the examples' own (-100 on prompts).
"""
from __future__ import annotations

import random
import torch
from torch.utils.data import Dataset

from .dataset import EpochSampler, ExampleDataset


class PackedDataset(Dataset):
    """Blocks of `block` tokens from an ExampleDataset's items, rebuilt for each epoch (new
    keyword draws, new example order), fixed by (seed, epoch)."""

    def __init__(self, examples: ExampleDataset, block: int, seed: int = 0) -> None:
        if block < 2:
            raise ValueError(f"block: must be at least 2 tokens, got {block}")
        self.examples, self.block, self.seed = examples, block, seed
        self.epoch = -1
        self._ids: list[int] = []
        self._labels: list[int] = []
        self._starts: list[bool] = []  # where an example begins
        total = sum(len(examples.prompts[w.row]) + w.end - w.context for w in examples.windows)
        self._blocks = max(total // block, 1)  # the same count every epoch: Trainer plans steps from it
        self.set_epoch(0)

    def set_epoch(self, epoch: int) -> None:
        if epoch == self.epoch:
            return
        self.epoch = epoch
        self.examples.set_epoch(epoch)
        order = list(range(len(self.examples)))
        random.Random(self.seed * 1_000_003 + epoch).shuffle(order)
        ids: list[int] = []
        labels: list[int] = []
        starts: list[bool] = []
        need = self._blocks * self.block
        while len(ids) < need:  # drawn keywords can make an epoch a little shorter: wrap around
            for i in order:
                item = self.examples[i]
                ids += item["input_ids"]
                labels += item["labels"]
                starts += [True] + [False] * (len(item["input_ids"]) - 1)
                if len(ids) >= need:
                    break
        self._ids, self._labels, self._starts = ids[:need], labels[:need], starts[:need]

    def __len__(self) -> int:
        return self._blocks

    def __getitem__(self, index: int) -> dict[str, list[int]]:
        cut = slice(index * self.block, (index + 1) * self.block)
        positions, at = [], -1
        for start in self._starts[cut]:
            at = 0 if start else at + 1
            positions.append(at)
        return {"input_ids": self._ids[cut], "labels": self._labels[cut], "position_ids": positions}

    # what the pipeline reports of its training data
    @property
    def rows_used(self) -> int:
        return self.examples.rows_used

    @property
    def rows_split(self) -> int:
        return self.examples.rows_split

    @property
    def dropped(self):
        return self.examples.dropped


class PackedSampler(EpochSampler):
    """Blocks in a random order fixed by (seed, epoch); `set_epoch` also repacks the dataset."""

    def __iter__(self):
        return iter(torch.randperm(len(self.dataset), generator=self.generator()).tolist())
