"""What the web side refuses, as exceptions the tabs turn into `gr.Error` (no gradio here)."""
from __future__ import annotations


class Busy(RuntimeError):
    """Another job runs; `eta_s` is its expected remaining time (None when unknown)."""

    def __init__(self, message: str, eta_s: float | None = None) -> None:
        super().__init__(message)
        self.eta_s = eta_s


class JobError(ValueError):
    """A request the manager refuses (no upload yet, nothing to stop, not done yet …)."""


class HubError(RuntimeError):
    """Pushing to the Hugging Face Hub failed; the message never contains the token."""


class LibraryError(ValueError):
    """A bad key or item id, or a full shelf; the message names the field."""


class UnknownModelError(ValueError):
    """The id or label names no model this user may choose."""
