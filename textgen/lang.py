"""Language detection, just enough to pick a built-in model: CJK characters mean Chinese."""
from __future__ import annotations

import re

CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0002ffff]")


def has_cjk(text: str) -> bool:
    return bool(CJK.search(text))


def detect_language(*texts: str) -> str:
    """Return "zh" when any text holds a CJK ideograph, else "en"."""
    return "zh" if any(has_cjk(t or "") for t in texts) else "en"
