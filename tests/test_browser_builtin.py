"""The page on the built-in models, as a person who just ran `python app.py` sees it."""
from __future__ import annotations

import re
import socket

import pytest

from test_browser import ARGS, CHROMIUM, SHOTS, TIMEOUT_MS, add_tags, generate_and_wait, title_box

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(),
                                reason="needs Debian's Chromium at /usr/bin/chromium (apt-get install chromium)")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    import app
    from finetune.registry import ModelRegistry

    registry = ModelRegistry(tmp_path_factory.mktemp("home"))
    demo = app.build_app(registry)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    _, url, _ = demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True,
                            **app.launch_kwargs(registry))
    yield url
    demo.close()


@pytest.mark.parametrize("title, tags, script", [
    ("春夜", ["月", "花", "风"], r"[\u4e00-\u9fff]"),
    ("hacker", ["computer", "program"], r"[A-Za-z]{3}"),
])
def test_generate_on_builtin_model(server, title, tags, script):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900}, locale="en-US")
        page.set_default_timeout(TIMEOUT_MS)
        page.goto(server)
        title_box(page).fill(title)
        add_tags(page, *tags)
        generate_and_wait(page)
        cards = page.locator("#tg-cards .tg-card")
        assert cards.count() == 3
        for i in range(3):  # guaranteed mode is the default: every tag highlighted in every card
            marked = {m.lower() for m in cards.nth(i).locator("mark.tg-kw").all_inner_texts()}
            assert marked == {t.lower() for t in tags}
        assert re.search(script, page.locator("#tg-cards .tg-text").first.inner_text())
        SHOTS.mkdir(exist_ok=True)
        page.screenshot(path=str(SHOTS / f"builtin-{'zh' if title == '春夜' else 'en'}.png"), full_page=True)
        browser.close()
