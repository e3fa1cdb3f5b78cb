"""The Fine-tune tab in a real browser (Debian's Chromium driven by Playwright, as in
tests/test_browser.py): upload and report, start, progress and loss plot, a page reload that
re-attaches to the running job, stop, then a run to the end, its download and its use in the
Generate tab. Screenshots land in tests/screenshots/finetune-*.png."""
from __future__ import annotations

import zipfile
from pathlib import Path

import pytest
from browser_support import NEEDS_CHROMIUM, SHOTS, TIMEOUT_MS, launch_app
from test_browser import type_into_slider
from test_jobs import write_corpus

pytestmark = [pytest.mark.browser, pytest.mark.slow, NEEDS_CHROMIUM]
TRAIN_MS = 240_000
# The stop test needs a run that cannot finish before its Stop click, however fast the
# machine: the tiny test model trains a few steps a second or more, so it gets a larger corpus
# and a step cap far above what its epochs need.
LONG_RUN_STEPS = 20_000


@pytest.fixture(scope="module")
def server(app_registry):
    import app
    import finetune.ui as ui
    from finetune.jobs import JobManager

    managers = []
    original = ui.make_manager
    caps = ui.Caps(max_steps=LONG_RUN_STEPS, max_seconds=15 * 60)
    ui.make_manager = lambda reg: managers.append(JobManager(reg.home, reg, caps=caps, poll_s=0.1)) or managers[-1]
    try:
        demo = app.build_app(app_registry)
    finally:
        ui.make_manager = original
    yield launch_app(demo, app_registry)
    demo.close()
    managers[0].close()


@pytest.fixture()
def page(browser, server):
    context = browser.new_context(viewport={"width": 1280, "height": 900}, locale="en-US", accept_downloads=True)
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(server)
    open_tab(page)
    yield page
    context.close()


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    return write_corpus(tmp_path_factory.mktemp("corpus") / "storms.csv", 24)


@pytest.fixture(scope="module")
def long_corpus(tmp_path_factory) -> Path:
    """Enough rows that 20 epochs take minutes, not seconds (see LONG_RUN_STEPS)."""
    return write_corpus(tmp_path_factory.mktemp("corpus") / "storms.csv", 240)


def shot(page, name: str) -> None:
    SHOTS.mkdir(exist_ok=True)
    page.wait_for_timeout(400)  # let transitions settle
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def open_tab(page) -> None:
    page.get_by_role("tab", name="Fine-tune 微调").click()
    page.locator("#ft-file").wait_for(state="visible")


def upload(page, path: Path) -> None:
    page.locator("#ft-file input[type=file]").set_input_files(str(path))


def set_slider(page, elem_id: str, value: int) -> None:
    type_into_slider(page, elem_id, value)


def status_has(page, text: str, timeout: int = TIMEOUT_MS) -> None:
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    try:
        page.wait_for_function("t => document.querySelector('#ft-status').innerText.includes(t)", arg=text,
                               timeout=timeout)
    except PlaywrightTimeout:  # say what the page showed instead
        raise AssertionError(f"status never showed {text!r}; it shows: "
                             f"{page.locator('#ft-status').inner_text()!r}") from None


def step_at_least(page, n: int, timeout: int = TRAIN_MS) -> None:
    page.wait_for_function(
        "n => { const m = document.querySelector('#ft-status').innerText.match(/step (\\d+) \\//);"
        " return m && Number(m[1]) >= n; }", arg=n, timeout=timeout)


def current_step(page) -> int:
    import re

    return int(re.search(r"step (\d+) /", page.locator("#ft-status").inner_text()).group(1))


def test_upload_report_start_progress_reload_and_stop(page, long_corpus, server):
    assert "No fine-tune yet" in page.locator("#ft-status").inner_text()
    assert page.locator("#ft-start").is_disabled()
    upload(page, long_corpus)
    page.locator("#ft-report", has_text="ready to train").wait_for()
    report = page.locator("#ft-report").inner_text()
    assert "240 kept of 240" in report and "from the keywords column" in report
    page.locator("#ft-preview", has_text="Storm 0").wait_for()
    assert page.locator("#ft-name input, #ft-name textarea").first.input_value().startswith("storms")
    page.locator("#ft-start:not([disabled])").wait_for()
    shot(page, "finetune-report")

    set_slider(page, "ft-max-steps", LONG_RUN_STEPS)
    set_slider(page, "ft-epochs", 20)  # with 240 rows: over a thousand steps, evaluated every tenth
    page.locator("#ft-start").click()
    status_has(page, "training 训练中", TRAIN_MS)
    step_at_least(page, 3)
    page.locator("#ft-plot canvas, #ft-plot svg").first.wait_for()
    assert "ETA" in page.locator("#ft-status").inner_text()
    assert page.locator("#ft-start").is_disabled() and page.locator("#ft-stop").is_enabled()
    page.locator("#ft-samples .ft-sample").first.wait_for(timeout=TRAIN_MS)
    shot(page, "finetune-training")

    before = current_step(page)
    page.reload()  # the run survives a reload: the page re-attaches to it
    open_tab(page)
    status_has(page, "training 训练中")
    step_at_least(page, before + 1)
    page.locator("#ft-plot canvas, #ft-plot svg").first.wait_for()

    page.locator("#ft-stop").click()
    status_has(page, "stopped 已停止", 30_000)
    assert "Resume continues from step" in page.locator("#ft-status").inner_text()
    page.locator("#ft-resume").wait_for(state="visible")
    assert page.locator("#ft-start").is_disabled()  # the reload ended the old session: its upload went
    shot(page, "finetune-stopped")


def test_bad_file_shows_why(page, tmp_path):
    path = tmp_path / "page.csv"
    path.write_text("<!DOCTYPE html><html><body><img src=x onerror=window.__pwned=1></body></html>")
    upload(page, path)
    page.get_by_text("file is an HTML page").first.wait_for()
    assert page.evaluate("window.__pwned") is None
    assert page.locator("#ft-start").is_disabled()
    shot(page, "finetune-bad-file")


def test_a_finished_fine_tune_is_used_downloaded_and_generates(page, corpus, tmp_path):
    upload(page, corpus)
    page.locator("#ft-report", has_text="ready to train").wait_for()
    name = page.locator("#ft-name input, #ft-name textarea").first
    name.fill("Storm poems")
    set_slider(page, "ft-max-steps", 10)
    page.locator("#ft-start:not([disabled])").click()
    status_has(page, "done 完成", TRAIN_MS)
    page.locator("#ft-done").wait_for(state="visible")
    assert "step 10 / 10" in page.locator("#ft-status").inner_text()
    page.locator("#ft-zip").click()
    page.locator("#ft-download").wait_for(state="visible")
    with page.expect_download() as info:
        page.locator("#ft-download").click()
    saved = tmp_path / "model.zip"
    info.value.save_as(saved)
    with zipfile.ZipFile(saved) as zf:
        assert any(n.endswith("model.safetensors") for n in zf.namelist())
    page.get_by_text("Push to the Hugging Face Hub").click()
    token = page.locator("#ft-token input")
    assert token.get_attribute("type") == "password"
    page.locator("#ft-repo input, #ft-repo textarea").first.fill("someone/storm-poems")
    token.fill("hf_SECRET_token_123")
    page.locator("#ft-push").click()
    page.locator("#ft-pushed", has_text="could not reach the Hugging Face Hub").wait_for()
    assert token.input_value() == ""  # emptied, never echoed back
    stored = page.evaluate("JSON.stringify([Object.entries(localStorage), Object.entries(sessionStorage)])")
    assert "hf_SECRET" not in stored and "hf_SECRET" not in page.content()
    shot(page, "finetune-done")

    page.get_by_role("tab", name="Generate 生成").click()
    assert page.locator("#tg-model input").first.input_value() == "Storm poems"
    page.locator("#tg-title textarea, #tg-title input").first.fill("Storm")
    page.locator("#tg-generate").click()
    page.wait_for_function("document.querySelector('#tg-status').innerText.includes('seed')")
    assert page.locator("#tg-status").inner_text().startswith("Storm poems · seed")  # its label, not "model"
    assert page.locator("#tg-cards .tg-card").count() >= 1
    shot(page, "finetune-generate-with-it")
