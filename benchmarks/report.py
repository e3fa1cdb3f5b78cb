"""How benchmarks print their figures: a Markdown table to paste into benchmarks/README.md, and
the same figures as JSON for whoever compares runs."""
from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def print_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """A Markdown table after a blank line; cells are printed as given (format them first)."""
    print("\n| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for row in rows:
        print("| " + " | ".join(str(c) for c in row) + " |")


def write_json(path: Path | None, figures: dict[str, Any]) -> None:
    """Write the figures to `path` (nothing when None)."""
    if path is not None:
        path.write_text(json.dumps(figures, indent=2, ensure_ascii=False))
