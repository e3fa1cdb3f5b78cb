"""The page on the built-in models, as a person who just ran `python app.py` sees it."""
from __future__ import annotations

import re

import pytest

from helpers import launch_app
from browser_support import NEEDS_CHROMIUM, SHOTS, TIMEOUT_MS
from test_browser import add_tags, generate_and_wait, title_box

pytestmark = NEEDS_CHROMIUM


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    import app
    from finetune.web.registry import ModelRegistry

    registry = ModelRegistry(tmp_path_factory.mktemp("home"))
    demo = app.build_app(registry)
    yield launch_app(demo, registry)
    demo.close()


@pytest.mark.parametrize("title, tags, script", [
    ("春夜", ["月", "花", "风"], r"[\u4e00-\u9fff]"),
    ("hacker", ["computer", "program"], r"[A-Za-z]{3}"),
])
def test_generate_on_builtin_model(server, browser, title, tags, script):
    page = browser.new_page(viewport={"width": 1280, "height": 900}, locale="en-US")
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(server)
    title_box(page).fill(title)
    add_tags(page, *tags)
    generate_and_wait(page)
    cards = page.locator("#tg-cards .tg-card")
    assert cards.count() == 3
    for i in range(3):  # guaranteed mode is the default: every tag highlighted in every card
        marks = cards.nth(i).locator("mark.tg-kw")
        # a mark covers the word with its ending ("programs" for "program"); its title is the keyword
        marked = {marks.nth(j).get_attribute("title").lower() for j in range(marks.count())}
        assert marked == {t.lower() for t in tags}, cards.nth(i).inner_text()
    assert re.search(script, page.locator("#tg-cards .tg-text").first.inner_text())
    SHOTS.mkdir(exist_ok=True)
    page.screenshot(path=str(SHOTS / f"builtin-{'zh' if title == '春夜' else 'en'}.png"), full_page=True)
    page.close()
