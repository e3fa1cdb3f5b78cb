"""A repetition penalty that spares the prompt, run by the sampling loop (`decoding.sample`).

transformers' RepetitionPenaltyLogitsProcessor also penalises every prompt token, which
pushes the model away from exactly the keywords the user asked for; ours looks only at
the generated part. It is a few lines, so we write it rather than patch the library's.
"""
from __future__ import annotations

import torch
from transformers import LogitsProcessor


class GeneratedRepetitionPenalty(LogitsProcessor):
    """CTRL-style penalty (divide positive logits, multiply negative ones) for tokens
    already generated after `prompt_len`."""

    def __init__(self, penalty: float, prompt_len: int) -> None:
        self.penalty = float(penalty)
        self.prompt_len = prompt_len

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        generated = input_ids[:, self.prompt_len:]  # (B, T_new)
        if self.penalty == 1.0 or generated.shape[1] == 0:
            return scores
        picked = torch.gather(scores, 1, generated)
        picked = torch.where(picked < 0, picked * self.penalty, picked / self.penalty)
        return scores.scatter(1, generated, picked)
