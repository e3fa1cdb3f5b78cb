"""The Fine-tune tab in a real browser (Debian's Chromium driven by Playwright, as in
tests/test_browser.py): upload and report, start, progress and loss plot, a page reload that
re-attaches to the running job, stop, then a run to the end, its download and its use in the
Generate tab. Screenshots land in tests/screenshots/finetune-*.png."""
from __future__ import annotations

import re
import zipfile
from pathlib import Path

import pytest
from helpers import launch_app
from browser_support import NEEDS_CHROMIUM, SHOTS, TIMEOUT_MS, final_status
from test_browser import type_into_slider
from helpers import write_corpus

pytestmark = [pytest.mark.browser, pytest.mark.slow, NEEDS_CHROMIUM]
TRAIN_MS = 240_000
# The stop test needs a run that cannot finish before its Stop click, however fast the
# machine: the tiny test model trains a few steps a second or more, so it gets a larger corpus
# and a step cap far above what its epochs need.
LONG_RUN_STEPS = 20_000


@pytest.fixture(scope="module")
def server(app_registry):
    import app
    import finetune.web.ui as ui
    from finetune.web import caps
    from finetune.web.jobs import JobManager

    managers = []
    original = ui.make_manager
    caps = caps.Caps(max_steps=LONG_RUN_STEPS, max_seconds=15 * 60)
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
    page.get_by_text("all weights 全部参数").click()
    page.locator("#ft-name input, #ft-name textarea").first.fill("长跑 run")
    page.wait_for_function("document.querySelector('#ft-check').innerText.includes('rows → about')")
    assert "240 rows" in page.locator("#ft-check").inner_text()
    page.locator("#ft-start").click()
    status_has(page, "training 训练中", TRAIN_MS)
    step_at_least(page, 3)
    page.locator("#ft-plot canvas, #ft-plot svg").first.wait_for()
    assert "ETA" in page.locator("#ft-status").inner_text()
    assert page.locator("#ft-start").is_disabled() and page.locator("#ft-stop").is_enabled()
    page.locator("#ft-samples .ft-sample").first.wait_for(timeout=TRAIN_MS)
    shot(page, "finetune-training")

    before = current_step(page)
    page.reload()  # the run survives a reload: the page re-attaches to it, and shows how it was started
    open_tab(page)
    status_has(page, "training 训练中")
    step_at_least(page, before + 1)
    page.locator("#ft-plot canvas, #ft-plot svg").first.wait_for()
    page.wait_for_function("document.querySelector('#ft-report').innerText.includes('storms.csv')")
    assert "240 kept of 240" in page.locator("#ft-report").inner_text()
    page.locator("#ft-preview", has_text="Storm 0").wait_for()
    assert page.locator("#ft-method input[value=full]").is_checked()
    assert page.locator("#ft-epochs input[type=range]").input_value() == "20"
    assert page.locator("#ft-max-steps input[type=range]").input_value() == str(LONG_RUN_STEPS)
    assert page.locator("#ft-name input, #ft-name textarea").first.input_value() == "长跑 run"

    page.locator("#ft-stop").click()
    status_has(page, "stopped 已停止", 30_000)
    assert "Resume continues from step" in page.locator("#ft-status").inner_text()
    page.locator("#ft-resume").wait_for(state="visible")
    # both ways on are explicit: resume from the checkpoint, or start over (with the run's corpus)
    resume_label = page.locator("#ft-resume").inner_text()
    assert re.search(r"Resume from step \d+ 从第 \d+ 步继续", resume_label), resume_label
    page.locator("#ft-start:not([disabled])", has_text="Start over 重新开始").wait_for()
    shot(page, "finetune-stopped")
    page.locator("#ft-start").click()
    status_has(page, "training 训练中", TRAIN_MS)
    assert current_step(page) < before + 50  # a new run, from the first steps
    page.locator("#ft-stop").click()
    status_has(page, "stopped 已停止", 30_000)


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
    assert final_status(page, "seed").startswith("Storm poems · seed")  # its label, not "model"
    assert page.locator("#tg-cards .tg-card").count() >= 1
    shot(page, "finetune-generate-with-it")


def test_settings_that_cannot_break_start(page, corpus, tmp_path):
    page.get_by_text("More settings 更多设置").click()
    lr = page.locator("#ft-lr input, #ft-lr textarea").first
    lr.wait_for(state="visible")
    assert lr.input_value() == "" and "0.002" in lr.get_attribute("placeholder")  # empty stays empty
    assert page.locator("#ft-start").is_disabled()
    assert "Upload a corpus" in page.locator("#ft-check").inner_text()
    upload(page, corpus)
    page.locator("#ft-start:not([disabled])").wait_for()
    check = page.locator("#ft-check").inner_text()
    assert "24 rows → about" in check and "light change of style" in check and "风格变化较轻" in check
    lr.fill("0.o1")
    lr.blur()
    page.locator("#ft-start[disabled]").wait_for()
    page.wait_for_function("document.querySelector('#ft-check').innerText.includes('lr: must be a number')")
    assert "学习率" in page.locator("#ft-check").inner_text()
    shot(page, "finetune-invalid-lr")
    lr.fill("")
    lr.blur()
    page.locator("#ft-start:not([disabled])").wait_for()
    page.get_by_text("all weights 全部参数").click()
    page.wait_for_function("document.querySelector('#ft-lr input, #ft-lr textarea').placeholder.includes('5e-05')")


def test_a_spreadsheet_is_refused_with_how_to_save_it(page, tmp_path):
    path = tmp_path / "book.xlsx"
    path.write_bytes(b"PK\x03\x04" + b"\0" * 64)
    upload(page, path)
    page.get_by_text("save it as CSV UTF-8").first.wait_for()
    assert page.get_by_text("另存为 UTF-8 编码的 CSV").count() >= 1
    assert page.locator("#ft-start").is_disabled()


def _server_on(registry, port: int):
    import app
    import finetune.web.ui as ui
    from finetune.web.jobs import JobManager

    managers = []
    original = ui.make_manager
    ui.make_manager = lambda reg: managers.append(JobManager(reg.home, reg, poll_s=0.1)) or managers[-1]
    try:
        demo = app.build_app(registry)
    finally:
        ui.make_manager = original
    launch_app(demo, registry, port=port)
    return demo, managers[0]


def _train(page, corpus: Path, name: str) -> None:
    upload(page, corpus)
    box = page.locator("#ft-name input, #ft-name textarea").first
    page.wait_for_function("e => e.value.startsWith('storms')", arg=box.element_handle())  # this upload's
    box.fill(name)
    set_slider(page, "ft-max-steps", 4)
    page.locator("#ft-start:not([disabled])").click()
    page.wait_for_function("n => { const t = document.querySelector('#ft-status').innerText;"
                           " return t.includes(n) && t.includes('done 完成'); }", arg=name, timeout=TRAIN_MS)


def library_labels(page) -> list[str]:
    page.locator("#ft-library input").first.click()
    labels = [o.replace("✓", "").strip() for o in page.locator("[role=option]").all_inner_texts()]
    page.keyboard.press("Escape")
    return labels


def test_my_models_are_kept_across_reloads_and_restarts_for_this_browser_only(
        browser, bpe_model_dir, corpus, tmp_path):
    import socket

    from finetune.web.registry import ModelRegistry

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}/"
    home = tmp_path / "home"

    def registry():
        return ModelRegistry(home, extra=[bpe_model_dir], builtins=False, hub=False)

    demo, manager = _server_on(registry(), port)
    context = browser.new_context(viewport={"width": 1280, "height": 900}, locale="zh-CN", accept_downloads=True)
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    try:
        page.goto(url)
        open_tab(page)
        _train(page, corpus, "模型A")
        page.reload()  # a fresh upload box
        open_tab(page)
        _train(page, corpus, "模型B")
        page.reload()
        open_tab(page)
        page.wait_for_function("document.querySelector('#ft-library input').value.includes('模型B')")
        assert [label.split(" · ")[0] for label in library_labels(page)] == ["模型A", "模型B"]
        shot(page, "finetune-my-models")

        demo.close()  # the app restarts on the same data folder and port
        manager.close()
        demo, manager = _server_on(registry(), port)
        page.goto(url)
        open_tab(page)
        page.wait_for_function("document.querySelector('#ft-library input').value.includes('模型B')")
        page.locator("#ft-library input").first.click()
        page.get_by_role("option", name=re.compile("^模型A")).click()
        page.locator("#ft-library-zip").click()
        page.locator("#ft-library-download").wait_for(state="visible")
        with page.expect_download() as info:
            page.locator("#ft-library-download").click()
        assert info.value.suggested_filename == "moxing-a.zip"  # a safe file name from the label
        saved = tmp_path / "a.zip"
        info.value.save_as(saved)
        with zipfile.ZipFile(saved) as zf:
            card = zf.read("moxing-a/README.md").decode("utf-8")
        assert "\n# 模型A\n" in card  # the card is titled with the label
        page.locator("#ft-library-use").click()
        page.get_by_role("tab", name="Generate 生成").click()
        assert page.locator("#tg-model input").first.input_value() == "模型A"
        page.locator("#tg-title textarea, #tg-title input").first.fill("Storm")
        page.locator("#tg-generate").click()
        assert final_status(page, "seed").startswith("模型A · seed")

        other = browser.new_context(viewport={"width": 1280, "height": 900})  # another browser
        stranger = other.new_page()
        stranger.set_default_timeout(TIMEOUT_MS)
        stranger.goto(url)
        open_tab(stranger)
        stranger.wait_for_timeout(1500)
        assert library_labels(stranger) == []
        stranger.get_by_role("tab", name="Generate 生成").click()
        stranger.locator("#tg-model input").first.click()
        assert not [o for o in stranger.locator("[role=option]").all_inner_texts() if "模型" in o]
        other.close()

        page.get_by_role("tab", name="Fine-tune 微调").click()
        page.once("dialog", lambda dialog: dialog.accept())
        page.locator("#ft-library-delete").click()
        page.wait_for_function("!document.querySelector('#ft-library input').value.includes('模型A')")
        assert [label.split(" · ")[0] for label in library_labels(page)] == ["模型B"]
    finally:
        context.close()
        demo.close()
        manager.close()
