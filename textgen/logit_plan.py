"""What one step does to the logits: gathered over the rows into a `Plan`, applied at once.

transformers applies custom processors *before* its temperature/top-k/top-p warpers
(`GenerationMixin._get_logits_processor`). A forced token is therefore made the only
finite logit of its row: every warper keeps the maximum, so it survives in any order.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

# Soft mode: share of the end tokens' probability moved to the pending keywords' first
# tokens, so that where the model would stop it writes a keyword instead. (Guaranteed mode
# blocks the end tokens and lets their mass spread over all tokens: moving it to the keywords
# there placed them early in short texts and cost more perplexity, see benchmarks/README.md.)
SOFT_END_TRANSFER = 0.5


@dataclass
class Plan:
    """What one step does to the logits, gathered over the rows and then applied at once."""

    boost: float
    forced: list[tuple[int, int]] = field(default_factory=list)  # (row, token): the only choice
    offers: list[tuple[int, int, float]] = field(default_factory=list)  # (row, first token, log share)
    ending: list[int] = field(default_factory=list)  # rows whose end tokens are held back
    unglued: list[int] = field(default_factory=list)  # rows where no token may join the last word


def apply_plan(scores: torch.FloatTensor, plan: Plan, *, ends: torch.Tensor, guaranteed: bool,
               glue: Callable[[int, torch.device], torch.Tensor]) -> torch.FloatTensor:
    """The step's logits with `plan` applied. `ends`: the end ids on the scores' device;
    `glue(vocab, device)`: the mask of tokens that would join the last word."""
    if not (plan.forced or plan.offers or plan.ending or plan.unglued):
        return scores
    scores = scores.clone()
    dev = scores.device
    if plan.unglued:
        rows = torch.tensor(plan.unglued, device=dev)
        scores[rows] = scores[rows].masked_fill(glue(scores.shape[1], dev), float("-inf"))
    if guaranteed:  # offers nothing (it judges moments instead): holds back the ends
        # few, batched tensor ops: at these sizes each op costs more than its arithmetic
        if len(plan.ending) == scores.shape[0]:
            scores[:, ends] = float("-inf")
        elif plan.ending:
            scores[torch.tensor(plan.ending, device=dev)[:, None], ends[None, :]] = float("-inf")
    else:
        if plan.offers:  # a share of the wish to end, split evenly among them
            rows_l, toks_l, shares = zip(*plan.offers)
            rows, toks = torch.tensor(rows_l, device=dev), torch.tensor(toks_l, device=dev)
            boosted = scores[rows, toks] + plan.boost
            moved = torch.logsumexp(scores[:, ends], dim=1)[rows] + math.log(SOFT_END_TRANSFER)
            boosted = torch.logaddexp(boosted, moved + torch.tensor(shares, dtype=scores.dtype, device=dev))
            scores[rows, toks] = boosted
        if plan.ending:
            rows = torch.tensor(plan.ending, device=dev)[:, None]
            scores[rows, ends[None, :]] += math.log1p(-SOFT_END_TRANSFER)
    if plan.forced:
        rows, toks = (torch.tensor(x, device=dev) for x in zip(*plan.forced))
        scores[rows] = float("-inf")  # top-k/top-p keep the maximum, so this survives them
        # its value is moot as the only finite one, but must stay finite through any
        # temperature (a blocked token's -inf, or the dtype's minimum ÷ 0.9, would not)
        scores[rows, toks] = 0.0
    return scores
