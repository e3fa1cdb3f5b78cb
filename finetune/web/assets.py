"""The page's CSS and JS, kept as files of assets/ui/ (so editors and linters see them as what
they are) and read when the app is built."""
from __future__ import annotations

from .. import REPO_ROOT

UI_DIR = REPO_ROOT / "assets" / "ui"


def asset(name: str) -> str:
    """A CSS or JS file of the page (assets/ui/)."""
    return (UI_DIR / name).read_text(encoding="utf-8")
