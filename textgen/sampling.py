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


class LogProbRecorder(LogitsProcessor):
    """Records the model's log-probability of each sampled token as generation runs, so ranking
    needs no second forward pass over the finished sequences (about a tenth of the time).

    It must come first among our processors: transformers runs custom processors before its
    temperature/top-k/top-p warpers, so here `scores` are still the model's own logits.
    """

    def __init__(self) -> None:
        self._last: torch.Tensor | None = None  # (B, V) log-probs of the latest step
        self._picked: list[torch.Tensor] = []  # one (B,) tensor per finished step

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        if self._last is not None:  # input_ids now ends with the token sampled from _last
            self._picked.append(self._last.gather(1, input_ids[:, -1:]).squeeze(1))
        self._last = torch.log_softmax(scores.float(), dim=-1)
        return scores

    def log_probs(self, sequences: torch.LongTensor, new_tokens: int) -> torch.Tensor:
        """(B, new_tokens) log-probabilities of the generated tokens."""
        picked = list(self._picked)
        if self._last is not None and len(picked) < new_tokens:
            picked.append(self._last.gather(1, sequences[:, -1:]).squeeze(1))
        if not picked:
            return torch.zeros(sequences.shape[0], 0)
        return torch.stack(picked[:new_tokens], dim=1)
