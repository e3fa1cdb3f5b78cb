"""Small pieces plugged into transformers' generate(): a repetition penalty that spares
the prompt, and a stop flag.

transformers' RepetitionPenaltyLogitsProcessor also penalises every prompt token, which
pushes the model away from exactly the keywords the user asked for; ours looks only at
the generated part. It is a few lines, so we write it rather than patch the library's.
"""
from __future__ import annotations

import threading

import torch
from transformers import LogitsProcessor, StoppingCriteria


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


class StopFlag(StoppingCriteria):
    """Stops every row once `event` is set (the consumer of a stream went away)."""

    def __init__(self, event: threading.Event) -> None:
        self.event = event

    def __call__(self, input_ids: torch.LongTensor, scores, **kwargs) -> torch.BoolTensor:
        return torch.full((input_ids.shape[0],), self.event.is_set(), dtype=torch.bool,
                          device=input_ids.device)
