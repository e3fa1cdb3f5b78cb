"""What the browser tests share: Debian's Chromium driven by Playwright (never a downloaded
browser), one browser per test module, and the app served on a free local port.

Loaded as a pytest plugin by conftest.py, so `browser` and `app_registry` are fixtures in every
test module; the constants and `launch_app` are imported where needed.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

CHROMIUM = Path("/usr/bin/chromium")
NEEDS_CHROMIUM = pytest.mark.skipif(not CHROMIUM.exists(),
                                    reason="needs Debian's Chromium at /usr/bin/chromium (apt-get install chromium)")
SHOTS = Path(__file__).resolve().parent / "screenshots"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
TIMEOUT_MS = 60_000



@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        yield b
        b.close()


@pytest.fixture(scope="module")
def app_registry(bpe_model_dir, bert_zh_model_dir, tmp_path_factory):
    """A fresh app home per module offering the two tiny test models, no built-ins."""
    from finetune.web.registry import ModelRegistry

    return ModelRegistry(tmp_path_factory.mktemp("home"), extra=[bpe_model_dir, bert_zh_model_dir],
                         builtins=False)


def final_status(page, contains: str) -> str:
    """The Generate status once it shows `contains`, without the elapsed-time badge gradio's
    progress display may still draw in front of it for a moment ("0.3s")."""
    page.wait_for_function("t => document.querySelector('#tg-status').innerText.includes(t)", arg=contains)
    return page.locator("#tg-status").inner_text().split("\n")[-1]
