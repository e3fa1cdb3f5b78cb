"""What `Generator` returns: ranked candidates with their keyword coverage, and stream events."""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Callable, Sequence

from .coverage import Span


@dataclass
class Candidate:
    """One generated text with its keyword coverage, ranked by `score`."""

    text: str
    covered: list[str]
    missing: list[str]
    spans: list[Span]
    score: float  # mean log-probability per generated token under the model
    index: int  # position in the sampled batch (stable across stream events)
    tokens: int = 0  # tokens generated, its end token included
    form: dict | None = None  # with a poem form: `textgen.forms.FormReport.to_dict()`

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Result(list):
    """A list of `Candidate`s, best first, plus what produced them."""

    def __init__(self, candidates: Sequence[Candidate], *, model: str, prompt_style: str, seed: int,
                 title: str, keywords: list[str], stopped: str | None = None):
        super().__init__(candidates)
        self.model, self.prompt_style, self.seed = model, prompt_style, seed
        self.title, self.keywords = title, keywords
        self.stopped = stopped  # None: every row ended or reached max_new_tokens; "time_limit"; "stopped"

    def to_dict(self) -> dict[str, Any]:
        return {"title": self.title, "keywords": self.keywords, "model": self.model,
                "prompt_style": self.prompt_style, "seed": self.seed, "stopped": self.stopped,
                "candidates": [{"text": c.text, "covered": c.covered, "missing": c.missing,
                                "score": round(c.score, 4), "tokens": c.tokens,
                                **({"form": c.form} if c.form else {})} for c in self]}

    @property
    def tokens(self) -> int:
        """Tokens generated for all candidates together."""
        return sum(c.tokens for c in self)


class StreamEvent:
    """Texts so far, one per sampled row; the last event also carries the ranked result.

    `steps`: tokens sampled per row so far (None: one more than the event before). Texts given
    as `decode` are decoded when first read: a server that only counts the tokens of a stream
    (the /generate API's progress) or shows a few updates a second never pays for the rest."""

    def __init__(self, texts: list[str] | None = None, done: bool = False, result: Result | None = None, *,
                 steps: int | None = None, decode: Callable[[], list[str]] | None = None) -> None:
        if (texts is None) == (decode is None):
            raise TypeError("StreamEvent: give texts or decode, not both")
        self._texts, self._decode = texts, decode
        self.done, self.result, self.steps = done, result, steps

    @property
    def texts(self) -> list[str]:
        if self._texts is None:
            self._texts = self._decode()
        return self._texts

    def __repr__(self) -> str:
        return f"StreamEvent(steps={self.steps}, done={self.done})"


def sorted_texts(result: Result, n: int) -> list[str]:
    """Texts indexed by sample row, as the stream showed them."""
    texts = [""] * n
    for c in result:
        texts[c.index] = c.text
    return texts
