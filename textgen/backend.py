"""A loaded model with what generation needs beside it: its end tokens, length planner, and
(once built) its poem-form vocabulary and shared decode loop."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .cleanup import spaces_between_cjk
from .length import LengthPlanner
from .loading import LoadedModel
from .prompt import token_ids


@dataclass
class Backend:
    """One model as the generator uses it (one per language with the built-ins)."""

    loaded: LoadedModel
    strip_cjk_spaces: bool = False
    end_ids: list[int] = field(default_factory=list)
    lengths: LengthPlanner | None = None
    form_vocab: Any = None  # textgen.forms.FormVocab, built at the first poem form
    loop: Any = None  # textgen.batching.DecodeLoop, when requests share one batch

    def __post_init__(self) -> None:
        if self.lengths is None:
            self.lengths = LengthPlanner(self.loaded.tokenizer)

    @property
    def context(self) -> int:
        return int(getattr(self.loaded.model.config, "n_positions", 1024))

    @classmethod
    def wrap(cls, loaded: LoadedModel) -> "Backend":
        tok, fmt = loaded.tokenizer, loaded.fmt
        if fmt.style == "textgen":
            ids = token_ids(tok, fmt)
            # a generated [SEP]/[BOS] after the prompt can only mean the text is over
            ends = [ids["eos"], ids["pad"], ids["sep"], ids["bos"]]
        else:
            ends = [loaded.model.generation_config.eos_token_id, tok.eos_token_id, tok.pad_token_id]
        flat: list[int] = []
        for e in ends:
            flat.extend(e if isinstance(e, list) else [e])
        return cls(loaded, spaces_between_cjk(tok), sorted({e for e in flat if e is not None}))
