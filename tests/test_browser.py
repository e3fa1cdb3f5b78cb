"""The page in a real browser: Debian's Chromium driven by Playwright (never a downloaded one).

Screenshots land in tests/screenshots/ (gitignored) for a human to look at.
"""
from __future__ import annotations

import contextlib

import re

import pytest
from helpers import launch_app
from browser_support import NEEDS_CHROMIUM, SHOTS, TIMEOUT_MS
from benchmarks.keywords import LETTER, as_word

pytestmark = NEEDS_CHROMIUM


@pytest.fixture(scope="module")
def server(app_registry):
    import app

    demo = app.build_app(app_registry)
    yield launch_app(demo, app_registry)
    demo.close()


@pytest.fixture()
def page(browser, server):
    context = browser.new_context(viewport={"width": 1280, "height": 900}, locale="en-US")
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=server.rstrip("/"))
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(server)
    page.wait_for_selector("#tg-title textarea, #tg-title input")
    yield page
    context.close()


def shot(page, name: str) -> None:
    SHOTS.mkdir(exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def title_box(page):
    return page.locator("#tg-title textarea, #tg-title input").first


def add_tags(page, *entries: str) -> None:
    box = page.locator("#tg-keywords input").first
    box.click()
    for entry in entries:
        box.fill(entry)
        box.press("Enter")


def tags(page) -> list[str]:
    return [t.strip() for t in page.locator("#tg-keywords .token").all_inner_texts()]


def set_slider(page, name: str, value: int) -> None:
    type_into_slider(page, f"tg-{name}", value)


def type_into_slider(page, elem_id: str, value: int, tries: int = 3) -> None:
    """Type a value into a slider's number box and wait until the slider shows it. A keystroke
    that lands while the accordion or page is still settling can be lost, as for a person
    who then types again; so do we, a bounded number of times."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    number = page.locator(f"#{elem_id} input[type=number]").first
    number.wait_for(state="visible")
    for attempt in range(tries):
        number.fill(str(value))
        number.press("Enter")
        number.blur()
        try:
            page.wait_for_function(
                f"document.querySelector('#{elem_id} input[type=range]').value === '{value}'", timeout=10_000)
            return
        except PlaywrightTimeout:
            if attempt == tries - 1:
                shown = page.locator(f"#{elem_id} input[type=range]").first.input_value()
                raise AssertionError(f"slider {elem_id} shows {shown}, not {value}") from None


def generate_and_wait(page) -> None:
    page.locator("#tg-generate").click()
    page.wait_for_function("document.querySelector('#tg-status').innerText.includes('seed')")


def open_sampling(page) -> None:
    page.get_by_text("Sampling 采样设置").click()


def test_title_tags_generate_highlight(page):
    title_box(page).fill("The Storm")
    add_tags(page, "sea", "night", "long road, lightning")
    page.wait_for_function("document.querySelectorAll('#tg-keywords .token').length === 4")
    assert tags(page) == ["sea", "night", "long road", "lightning"]  # the pasted list was split
    page.locator("#tg-keywords .token", has_text="night").locator(".token-remove").click()
    page.wait_for_function("document.querySelectorAll('#tg-keywords .token').length === 3")
    assert tags(page) == ["sea", "long road", "lightning"]
    open_sampling(page)
    set_slider(page, "length", 60)
    generate_and_wait(page)
    cards = page.locator("#tg-cards .tg-card")
    assert cards.count() == 3
    assert page.locator("#tg-cards .tg-best").count() == 1
    best = page.locator("#tg-best textarea").input_value()
    assert best and best in page.locator("#tg-cards .tg-text").first.inner_text()
    for i in range(3):
        marks = cards.nth(i).locator("mark.tg-kw")
        marked = {marks.nth(j).get_attribute("title"): marks.nth(j).inner_text() for j in range(marks.count())}
        assert set(marked) == {"sea", "long road", "lightning"}
        assert all(as_word(text, kw) for kw, text in marked.items()), marked
        assert "3/3" in cards.nth(i).inner_text()
    shot(page, "generate-en")


def test_highlighted_keywords_are_whole_words(page):
    """Short keywords hide inside longer words ("hat" in "that"): what the cards mark is a
    word, and the ✓ chips count exactly the marked keywords."""
    add_tags(page, "hat, eat, sit, long road")
    page.wait_for_function("document.querySelectorAll('#tg-keywords .token').length === 4")
    open_sampling(page)
    set_slider(page, "length", 40)
    generate_and_wait(page)
    cards = page.evaluate("""() => [...document.querySelectorAll('#tg-cards .tg-card')].map(card => ({
        text: card.querySelector('.tg-text').textContent,
        covered: [...card.querySelectorAll('.tg-covered')].map(c => c.textContent),
        missing: [...card.querySelectorAll('.tg-missing')].map(c => c.textContent),
        marks: [...card.querySelectorAll('mark.tg-kw')].map(m => [m.title, m.textContent,
            m.previousSibling ? m.previousSibling.textContent.slice(-1) : '',
            m.nextSibling ? m.nextSibling.textContent.slice(0, 1) : ''])}))""")
    assert len(cards) == 3
    for card in cards:
        assert sorted(card["covered"]) == sorted(kw for kw, *_ in card["marks"])
        for kw, text, before, after in card["marks"]:
            assert as_word(text, kw), (kw, text)
            assert not re.match(LETTER, before) and not re.match(LETTER, after), (kw, before, text, after)
        for kw in card["missing"]:
            assert not as_word(card["text"], kw), (kw, card["text"])
        assert card["missing"] == []
    shot(page, "generate-short-keywords")


def test_chinese_example_with_other_model(page, app_registry, bert_zh_model_dir):
    page.locator(".gallery-item, tr.tr-body, button", has_text="春夜").first.click()
    page.wait_for_function("document.querySelectorAll('#tg-keywords .token').length === 3")
    assert title_box(page).input_value() == "春夜" and tags(page) == ["月", "花", "雨"]
    label = next(label for label, _ in app_registry.choices() if label.startswith(bert_zh_model_dir.name))
    page.locator("#tg-model input").first.click()
    page.get_by_role("option", name=label).click()
    open_sampling(page)
    set_slider(page, "length", 40)
    set_slider(page, "n", 2)
    generate_and_wait(page)
    assert bert_zh_model_dir.name in page.locator("#tg-status").inner_text()
    assert page.locator("#tg-cards .tg-card").count() == 2
    assert set(page.locator("#tg-cards .tg-card").first.locator("mark.tg-kw").all_inner_texts()) == {"月", "花", "雨"}
    shot(page, "generate-zh")


def test_copy_button_copies_the_card_text(page):
    title_box(page).fill("Storm")
    add_tags(page, "sea")
    generate_and_wait(page)
    first = page.locator("#tg-cards .tg-card").first
    first.locator(".tg-copy").click()
    page.wait_for_function("document.querySelector('#tg-cards .tg-copy').innerText.includes('Copied')")
    copied = page.evaluate("navigator.clipboard.readText()")
    assert copied == first.locator(".tg-text").inner_text()


def test_markup_in_keywords_is_shown_as_text(page):
    evil = "<img src=x onerror=window.__pwned=1>"
    title_box(page).fill("<b>bold</b> ${1+1}")
    add_tags(page, evil)
    open_sampling(page)
    set_slider(page, "length", 40)
    generate_and_wait(page)
    assert page.evaluate("window.__pwned") is None
    assert page.locator("#tg-cards img").count() == 0
    assert evil in page.locator("#tg-cards").inner_text()


def test_input_errors_are_shown(page):
    add_tags(page, "sea")
    page.locator("#tg-keywords .token-remove").first.click()
    page.locator("#tg-generate").click()
    message = page.get_by_text(re.compile("title: give a title or at least one keyword")).first
    message.wait_for()
    page.wait_for_timeout(500)  # let the toast finish sliding in
    shot(page, "error")


def test_stop_then_generate_again(page):
    title_box(page).fill("Storm")
    add_tags(page, "sea")
    open_sampling(page)
    set_slider(page, "length", 80)
    set_slider(page, "n", 8)
    page.locator("#tg-generate").click()
    page.locator("#tg-stop").click()
    set_slider(page, "length", 20)
    set_slider(page, "n", 1)
    generate_and_wait(page)  # the queue slot was freed: the next job runs
    assert page.locator("#tg-cards .tg-card").count() == 1


def test_narrow_and_dark(browser, server):
    context = browser.new_context(viewport={"width": 420, "height": 900}, color_scheme="dark")
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    try:
        page.goto(server + "?__theme=dark")
        page.wait_for_selector("#tg-title textarea, #tg-title input")
        title_box(page).fill("夏日海边")
        add_tags(page, "海浪、沙滩")
        generate_and_wait(page)
        assert page.locator("#tg-cards .tg-card").count() == 3
        shot(page, "narrow-dark")
    finally:
        context.close()


# -- every way a generation ends --------------------------------------------------------------
class _Scripted:
    """A stand-in model that writes "tick N" until closed, or until `fail_after` events, when
    it raises the ValueError a real model raises for a request it cannot serve."""

    def __init__(self, fail_after: int | None = None):
        import threading

        self.fail_after = fail_after
        self.closed = threading.Event()

    def stream(self, title, keywords, params, interval=0.0):
        import time

        from textgen.results import StreamEvent

        try:
            count = 0
            while True:
                count += 1
                if self.fail_after is not None and count > self.fail_after:
                    raise ValueError("max_new_tokens: at most 3 for this prompt")
                yield StreamEvent([f"tick {count}"] * params.n)
                time.sleep(0.02)
        finally:
            self.closed.set()

    def length_plan(self, title, keywords):
        from textgen.length import LengthPlan

        return LengthPlan("en", 1.0, 400)


@pytest.fixture()
def scripted_app(browser, tmp_path, monkeypatch):
    """An app whose "gpt2" entry is a `_Scripted` model; yields (page, models by fail_after)."""
    from finetune.web.hub_status import HubStatus
    from finetune.web.registry import ModelRegistry

    models = {"gpt2": _Scripted(), "distilgpt2": _Scripted(fail_after=5)}
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    reg = ModelRegistry(tmp_path, builtins=False, loader=lambda entry: models[entry.id],
                        hub_status=HubStatus(probe=lambda: True))
    with page_on(browser, reg) as page:
        yield page, models


@contextlib.contextmanager
def page_on(browser, registry):
    """A page of a fresh app on `registry` (keyword mode off), closed afterwards."""
    import app

    demo = app.build_app(registry, modes=["off"])
    url = launch_app(demo, registry)
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    try:
        page.goto(url)
        page.wait_for_selector("#tg-title textarea, #tg-title input")
        yield page
    finally:
        context.close()
        demo.close()


def status_text(page) -> str:
    return page.locator("#tg-status").inner_text()


def wait_status(page, text: str) -> None:
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    try:
        page.wait_for_function("t => document.querySelector('#tg-status').innerText.includes(t)", arg=text,
                               timeout=30_000)
    except PlaywrightTimeout:
        raise AssertionError(f"status never showed {text!r}; it shows {status_text(page)!r}") from None


def pick_model(page, name: str) -> None:
    page.locator("#tg-model input").first.click()
    page.get_by_role("option", name=re.compile(f"^{name} ")).click()


def test_stop_leaves_the_texts_so_far_marked_stopped(scripted_app):
    page, models = scripted_app
    pick_model(page, "gpt2")
    title_box(page).fill("Storm")
    page.locator("#tg-generate").click()
    page.wait_for_function("document.querySelector('#tg-cards').innerText.includes('tick 5')")
    assert not models["gpt2"].closed.is_set()
    page.locator("#tg-stop").click()
    wait_status(page, "Stopped 已停止")
    assert models["gpt2"].closed.wait(10), "Stop did not end the generation"
    page.wait_for_timeout(600)  # nothing from the cancelled stream may land after the final state
    cards = page.locator("#tg-cards .tg-card")
    assert cards.count() == 3
    for i in range(3):
        card = cards.nth(i).inner_text()
        assert "stopped 已停止" in card and "tick" in card and "…" not in card
    assert page.locator("#tg-best textarea").input_value().startswith("tick")
    assert "Generating" not in status_text(page)
    shot(page, "ending-stopped")


def test_a_refused_request_says_why_and_leaves_no_waiting_cards(scripted_app):
    page, _ = scripted_app
    title_box(page).fill("   ")
    page.locator("#tg-generate").click()
    wait_status(page, "Invalid input 输入有误")
    assert "title: give a title or at least one keyword" in status_text(page)
    assert "请填写标题" in status_text(page)
    page.locator("#tg-cards .tg-refused").wait_for()
    assert page.locator("#tg-cards .tg-card").count() == 0
    assert "Generating" not in status_text(page)
    shot(page, "ending-refused")


def test_a_failed_generation_keeps_what_was_written_and_says_so(scripted_app):
    page, models = scripted_app
    pick_model(page, "distilgpt2")
    title_box(page).fill("Storm")
    page.locator("#tg-generate").click()
    wait_status(page, "Generation failed 生成失败")
    assert "max_new_tokens: at most 3" in status_text(page) and "最大生成长度" in status_text(page)
    cards = page.locator("#tg-cards .tg-card")
    assert cards.count() == 3
    assert all("ended by an error" in cards.nth(i).inner_text() for i in range(3))
    assert "…" not in page.locator("#tg-cards").inner_text()


def test_an_unreachable_hub_model_ends_in_a_clear_state(browser, tmp_path, monkeypatch):
    from finetune.web.hub_status import HubStatus
    from finetune.web.registry import ModelRegistry

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    reg = ModelRegistry(tmp_path, builtins=False, hub_status=HubStatus(probe=lambda: False))
    with page_on(browser, reg) as page:
        box = page.locator("#tg-model input").first  # a stale page or a typed id: custom value
        box.fill("distilgpt2")
        box.press("Enter")
        title_box(page).fill("Storm")
        page.locator("#tg-generate").click()
        wait_status(page, "Model not available 模型不可用")
        assert "Loading" not in status_text(page)
        page.locator("#tg-cards .tg-refused").wait_for()
        shot(page, "ending-hub-offline")


# -- length, rewrite, export, score -------------------------------------------------------------
def slider_state(page, elem_id: str) -> dict:
    return page.evaluate(f"""() => {{ const r = document.querySelector('#{elem_id} input[type=range]');
        return {{max: Number(r.max), value: Number(r.value),
                 label: document.querySelector('#{elem_id}').innerText}}; }}""")


def test_length_is_in_words_or_characters_and_bounded_by_the_model(page, app_registry, bert_zh_model_dir):
    page.wait_for_function("document.querySelector('#tg-length').innerText.includes('长度 (words')")
    english = slider_state(page, "tg-length")
    assert english["max"] < 256  # the tiny model reads 256 tokens
    label = next(label for label, _ in app_registry.choices() if label.startswith(bert_zh_model_dir.name))
    page.locator("#tg-model input").first.click()
    page.get_by_role("option", name=label).click()
    page.wait_for_function("document.querySelector('#tg-length').innerText.includes('长度 (characters 字')")
    chinese = slider_state(page, "tg-length")
    assert chinese["max"] < 256 and chinese["value"] <= chinese["max"]
    title_box(page).fill("春夜")
    set_slider(page, "length", 30)
    generate_and_wait(page)
    from transformers import AutoTokenizer

    from textgen.length import LengthPlanner

    # a random tiny model writes anything, so the budget is what is checked: 30 characters in
    # the tokenizer's measured ratio, for each of the 3 candidates
    budget = LengthPlanner(AutoTokenizer.from_pretrained(bert_zh_model_dir)).plan(
        prompt_tokens=4, context=256, texts=("春夜",)).tokens_for(30)
    spent = re.search(r"(\d+) tokens in [\d.]+ s \(\d+ tokens/s\)", status_text(page))
    assert spent and 0 < int(spent.group(1)) <= 3 * budget


def test_rewrite_one_candidate_export_and_score_explained(page, tmp_path):
    import json

    title_box(page).fill("Storm")
    add_tags(page, "sea")
    set_slider(page, "length", 20)
    generate_and_wait(page)
    before = page.locator("#tg-cards .tg-text").all_inner_texts()
    assert len(before) == 3
    assert "mean log-probability per token" in page.locator("#tg-cards .tg-legend").inner_text()
    assert "mean log-probability" in page.locator("#tg-cards .tg-score").first.get_attribute("title")
    page.locator("#tg-cards .tg-card").nth(1).locator(".tg-again").click()
    wait_status(page, "Rewrote #2 已重写")
    after = page.locator("#tg-cards .tg-text").all_inner_texts()
    assert after[0] == before[0] and after[2] == before[2]
    assert "rewritten 已重写" in page.locator("#tg-cards .tg-card").nth(1).inner_text()
    with page.expect_download() as info:
        page.locator("#tg-export-json").click()
    path = tmp_path / "candidates.json"
    info.value.save_as(path)
    data = json.loads(path.read_text(encoding="utf-8"))
    assert [c["text"] for c in data["candidates"]] == after and data["title"] == "Storm"
    with page.expect_download() as info:
        page.locator("#tg-export-txt").click()
    info.value.save_as(tmp_path / "candidates.txt")
    txt = (tmp_path / "candidates.txt").read_text(encoding="utf-8")
    assert all(t in txt for t in after) and "Title 标题: Storm" in txt
    shot(page, "rewrite-export")


def test_poem_forms_are_offered_for_chinese_models_and_reported_in_the_cards(page, app_registry, bert_zh_model_dir):
    page.wait_for_function("document.querySelector('#tg-length').innerText.includes('长度 (words')")
    assert not page.locator("#tg-form").is_visible()  # the English model: no poem forms
    label = next(label for label, _ in app_registry.choices() if label.startswith(bert_zh_model_dir.name))
    page.locator("#tg-model input").first.click()
    page.get_by_role("option", name=label).click()
    page.locator("#tg-form").wait_for(state="visible")
    page.locator("#tg-form label", has_text="五言绝句").click()
    title_box(page).fill("春夜")
    add_tags(page, "月, 春风")
    generate_and_wait(page)
    from textgen.forms import FORMS, form_report

    cards = page.locator("#tg-cards .tg-card")
    assert cards.count() == 3
    for i in range(3):
        text = cards.nth(i).locator(".tg-text").inner_text()
        assert form_report(FORMS["wujue"], text).shape_ok, text
        chips = cards.nth(i).locator(".tg-form .tg-covered").all_inner_texts()
        assert any("五言绝句" in c for c in chips) and any("押韵" in c for c in chips), chips
    shot(page, "generate-poem-form")
