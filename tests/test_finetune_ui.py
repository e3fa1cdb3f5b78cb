"""The Fine-tune tab (finetune/web/ui.py): handlers as plain functions, then the launched app driven
through gradio_client: upload, a 10-step fine-tune in a worker process, then /generate with the
new model."""
from __future__ import annotations

import csv
import html
import os
import time
import zipfile
from dataclasses import replace
from pathlib import Path

import pytest

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import gradio as gr  # noqa: E402
from gradio_client import Client, handle_file  # noqa: E402

import app  # noqa: E402
from helpers import launch_app, write_corpus  # noqa: E402
import finetune.web.ui as ui  # noqa: E402
from finetune.web.ui_handlers import FinetuneSettings  # noqa: E402
from finetune.web import ui_handlers  # noqa: E402
from finetune.web import ui_render  # noqa: E402
from finetune.web import uploads  # noqa: E402
from finetune.web.caps import Caps  # noqa: E402
from finetune.web.errors import HubError  # noqa: E402
from finetune.web.job import JobView  # noqa: E402
from finetune.web.jobs import JobManager  # noqa: E402
from finetune.web.registry import ModelRegistry  # noqa: E402



class Req:
    """Stands in for gr.Request: who the call belongs to."""

    def __init__(self, session: str) -> None:
        self.username, self.session_hash = None, session


ALICE, BOB = Req("alice"), Req("bob")




def view(**over) -> JobView:
    values = dict(id="a" * 32, state="running", phase="training", message="", label="Storms", method="lora",
                  step=3, max_steps=10, start_step=0, elapsed_s=12.0, eta_s=30.0,
                  losses=((1, 6.4), (2, 6.3), (3, 6.2)), evals=(), samples=(), sample_step=0, model_id=None,
                  resumable=False, stop_reason="", result=None)
    return JobView(**{**values, **over})



@pytest.fixture()
def handlers(registry):
    manager = JobManager(registry.home, registry, poll_s=0.1)
    yield ui_handlers.FinetuneHandlers(registry, manager)
    manager.close()


@pytest.fixture()
def corpus(tmp_path) -> Path:
    return write_corpus(tmp_path / "storms.csv", keywords="storm, sea")


# -- plain functions -------------------------------------------------------------------------
def test_upload_shows_the_report_and_the_first_rows(handlers, corpus):
    report, preview, name = handlers.upload(str(corpus), "column", ALICE)
    for text in ("storms.csv · CSV", "utf-8", "delimiter comma , · header row", "24 kept of 24",
                 "from the keywords column", "language en", "ready to train"):
        assert text in report, text
    assert str(handlers.manager.root) not in report  # the server's paths stay private
    assert list(preview.columns) == ["title 标题", "keywords 关键词", "text 正文"]
    assert len(preview) == uploads.PREVIEW_ROWS and preview.iloc[0, 0] == "Storm 0"
    assert preview.iloc[0, 1] == "storm, sea" and len(preview.iloc[0, 2]) <= ui_render.PREVIEW_CHARS
    assert name == "storms · fine-tuned 微调"
    assert handlers.manager.upload("alice").path.is_file() and handlers.manager.upload("bob") is None

    report, preview = handlers.rekeyword("auto", ALICE)
    assert "extracted from the text" in report and preview.iloc[0, 1].endswith("(auto 自动)")
    assert handlers.rekeyword("auto", BOB) == (gr.skip(), gr.skip())  # bob has nothing uploaded


def test_upload_reads_gbk_and_clearing_the_file_resets(handlers, tmp_path):
    path = tmp_path / "诗.csv"
    with path.open("w", encoding="gbk", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["标题", "关键词", "正文"])
        for i in range(12):
            writer.writerow([f"春夜{i}", "春、雨", "春夜喜雨，好雨知时节，当春乃发生。随风潜入夜，润物细无声。"])
    report, preview, _ = handlers.upload(str(path), "column", ALICE)
    assert "gb18030" in report and "title ← 标题" in report and "language zh" in report
    assert preview.iloc[0, 1] == "春, 雨"
    report, preview, name = handlers.upload(None, "column", ALICE)
    assert report == ui_render.EMPTY_REPORT and preview.empty


@pytest.mark.parametrize("content, name, message", [
    (b"<!DOCTYPE html><html><body><script>alert(1)</script></body></html>", "page.csv", "HTML page"),
    (b"PK\x03\x04" + b"\0" * 64, "book.csv", "Excel"),
    (b"", "empty.csv", "not enough text"),
    (b"title,keywords,text\n", "header.csv", "no data rows"),
    (b"<svg onload=alert(1)>", "x.svg", "not a .csv"),
    (b'<svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)">' + b"<text>a storm at sea, b</text>\n" * 40
     + b"</svg>", "image.csv", "SVG or XML"),
    (b'<?xml version="1.0"?>\n<rows>' + b"<row>title,text</row>\n" * 40 + b"</rows>", "rows.csv", "SVG or XML"),
    (b"a,b\n", "x.csv.html", "not a .csv"),
    (b"PK\x03\x04" + b"\0" * 64, "book.xlsx", "is a spreadsheet; save it as CSV UTF-8"),
    (b"\xd0\xcf\x11\xe0" + b"\0" * 64, "old.xls", "另存为 UTF-8 编码的 CSV"),
])
def test_bad_files_get_a_clear_message_and_are_not_kept(handlers, tmp_path, content, name, message):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(gr.Error) as info:
        handlers.upload(str(path), "column", ALICE)
    assert message in info.value.message and len(info.value.message) < 300
    assert not list(handlers.manager.root.glob("*/upload-*"))


def test_start_refuses_bad_settings_naming_the_field(handlers, registry, corpus):
    base = registry.default_id()
    good = dict(base=base, method="lora", epochs=3.0, max_steps=10, lr=None, batch_size=4, max_length=64,
                name="storms")

    def start_job(name, request=ALICE, **settings):
        return handlers.start_job(FinetuneSettings(**settings), name, request=request)

    with pytest.raises(gr.Error, match="upload a corpus first"):
        start_job(**good)
    handlers.upload(str(corpus), "column", ALICE)
    for change, message in [(dict(base="../../etc/passwd"), "model: unknown model"),
                            (dict(base=str(registry.home)), "model: unknown model"),
                            (dict(max_steps=301), "max_steps: must be 1 to 300"),
                            (dict(lr=0), "lr: must be > 0"),
                            (dict(lr="0.o1"), "lr: must be a number such as 0.0003"),
                            (dict(method="everything"), "method: must be one of"),
                            (dict(batch_size=0), "batch_size:"),
                            (dict(name="x" * 61), "label: 61 characters")]:
        with pytest.raises(gr.Error) as info:
            start_job(**{**good, **change})
        assert message in info.value.message
    with pytest.raises(gr.Error, match="session"):
        start_job(**good, request=None)
    assert handlers.manager.view("alice") is None


def test_status_shows_progress_eta_and_escapes_everything():
    running = ui_render.render_status(view(label="<img src=x onerror=alert(1)> ${x}"))
    assert "<img" not in running and "&lt;img" in running and "${" not in running
    assert 'style="width: 30.0%"' in running and "step <b>3</b> / 10" in running
    assert "loss <b>6.200</b>" in running and "ETA <b>30s</b>" in running
    starting = ui_render.render_status(view(state="starting", step=0, max_steps=0, losses=(), phase="loading the base model"))
    assert "loading the base model …" in starting and "starting 启动中" in starting
    done = ui_render.render_status(view(state="done", step=10, message="Done: 10 steps in 17s.", eta_s=None))
    assert 'width: 100.0%' in done and "selected in the Generate tab" in done and "ft-done" in done
    failed = ui_render.render_status(view(state="failed", message="out of memory: <lower>"))
    assert "failed 失败" in failed and "&lt;lower&gt;" in failed
    assert "No fine-tune yet" in ui_render.render_status(None)
    assert "try again in ~3 min" in ui_render.render_status(None, "busy: … try again in ~3 min")


def test_samples_and_plot():
    v = view(evals=((5, 6.1),), samples=({"title": "<b>Storm</b>", "keywords": ["sea"], "text": "<script>"},),
             sample_step=5)
    html = ui_render.render_samples(v)
    assert "Samples at step 5" in html and "<script>" not in html and "&lt;b&gt;Storm" in html
    frame = ui_render.plot_frame(v)
    assert list(frame.columns) == ["step", "loss", "split"]
    assert frame.values.tolist() == [[1, 6.4, "train"], [2, 6.3, "train"], [3, 6.2, "train"], [5, 6.1, "eval"]]
    before_eval = ui_render.plot_frame(view())  # an empty point keeps the eval line's place in the chart
    assert before_eval["split"].tolist() == ["train"] * 3 + ["eval"] and before_eval["loss"].isna().sum() == 1
    assert ui_render.plot_frame(None) is None and ui_render.plot_frame(view(losses=())) is None


class FakeManager:
    """Just enough of JobManager for the handlers that only show what it says."""

    def __init__(self, tmp_path: Path, job: JobView | None = None) -> None:
        self.tmp, self.job, self.kept, self.pushed = tmp_path, job, [], []

    def view(self, owner):
        return self.job if owner == "alice" else None

    def busy(self, owner):
        return None

    def upload(self, owner):
        return object() if owner == "alice" else None

    def zip_model(self, owner):
        path = self.tmp / "storms.zip"
        with zipfile.ZipFile(path, "w") as zf:
            zf.writestr("storms/config.json", "{}")
        return path

    def keep_until_release(self, owner, path):
        self.kept.append((owner, Path(path)))

    def push_to_hub(self, owner, repo_id, token, private=True):
        self.pushed.append((repo_id, private))
        raise HubError("push: could not reach the Hugging Face Hub (offline or no network)")


def test_a_finished_model_is_selected_once_in_the_generate_tab(registry, tmp_path):
    done = view(state="done", model_id=registry.default_id(), eta_s=None)
    h = ui_handlers.FinetuneHandlers(registry, FakeManager(tmp_path, done))
    first = h.poll({}, None, ALICE)
    status, plot, samples, start, stop, resume, box, timer, models, bases, library, seen = first
    assert models["value"] == done.model_id and models["choices"] == registry.choices("alice")
    assert box["visible"] is True and "interactive" not in start and stop["interactive"] is False
    assert timer.active is False
    again = h.poll(seen, None, ALICE)
    assert again[8] == gr.skip() and again[1] == gr.skip()  # nothing new: no re-render, no reselect
    running = h.screen(replace(done, state="running"))
    assert running[7].active is True and running[4]["interactive"] is True


def test_download_is_moved_to_a_random_cache_folder_and_push_empties_the_token(registry, tmp_path):
    fake = FakeManager(tmp_path, view(state="done"))
    h = ui_handlers.FinetuneHandlers(registry, fake)
    update = h.prepare_download(ALICE)
    path = Path(update["value"])
    assert update["visible"] is True and path.is_file() and path.name == "storms.zip"
    assert path.parent.parent.resolve() == Path(gr.utils.get_upload_folder()).resolve()
    assert len(path.parent.name) == len("textgen-") + 40
    assert fake.kept == [("alice", path.parent)]
    message, token = h.push("me/storms", "hf_SECRET", True, ALICE)
    assert token == "" and "could not reach" in message and "hf_SECRET" not in message
    message, token = h.push("../x", "hf_SECRET", True, ALICE)  # the real checks live in the manager
    assert token == ""


def test_base_choices_hide_hub_models_when_offline(tmp_path, bpe_model_dir, monkeypatch):
    from finetune.web.hub_status import HubStatus

    reg = ModelRegistry(tmp_path, extra=[bpe_model_dir], builtins=False, hub=True,
                        hub_status=HubStatus(probe=lambda: True))
    h = ui_handlers.FinetuneHandlers(reg, FakeManager(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert {reg.resolve(i).kind for _, i in h.base_choices("alice")} == {"local"}
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    assert {reg.resolve(i).kind for _, i in h.base_choices("alice")} == {"local", "hub"}


def test_caps_come_from_the_environment(monkeypatch):
    monkeypatch.setenv("TEXTGEN_TRAIN_MAX_STEPS", "50")
    monkeypatch.setenv("TEXTGEN_TRAIN_MAX_MINUTES", "2")
    assert ui_handlers.caps_from_env() == Caps(max_steps=50, max_seconds=120.0)
    monkeypatch.setenv("TEXTGEN_TRAIN_MAX_STEPS", "many")
    with pytest.raises(SystemExit, match="TEXTGEN_TRAIN_MAX_STEPS"):
        ui_handlers.caps_from_env()


# -- the launched app ---------------------------------------------------------------------------
@pytest.fixture()
def server(registry, monkeypatch):
    managers = []

    def make(reg):
        managers.append(JobManager(reg.home, reg, poll_s=0.1))
        return managers[-1]

    monkeypatch.setattr(ui, "make_manager", make)
    demo = app.build_app(registry, queue_size=8)
    url = launch_app(demo, registry)
    yield url, managers[0]
    demo.close()
    managers[0].close()


def status(client: Client) -> dict:
    return client.predict(api_name="/finetune_status")


@pytest.mark.slow
def test_upload_finetune_then_generate_with_the_new_model_through_the_api(server, registry, corpus, tmp_path):
    url, manager = server
    alice, bob = Client(url, verbose=False), Client(url, verbose=False)
    report, preview, name = alice.predict(handle_file(str(corpus)), "column", api_name="/finetune_upload")[:3]
    assert "24 kept of 24" in report and name.startswith("storms")
    assert status(alice)["upload"]["rows_kept"] == 24 and status(alice)["upload"]["path"] is None
    assert status(bob)["upload"] is None and status(bob)["job"] is None
    gradio_copy = [p for p in Path(gr.utils.get_upload_folder()).rglob("storms.csv")]
    assert gradio_copy == []  # gradio's cached copy went once ours was made (G4)

    base = registry.default_id()
    started = time.monotonic()
    job = alice.predict(base=base, epochs=20, max_steps=10, batch_size=4, max_length=64, name="Storms",
                        api_name="/finetune_start")
    assert job["state"] == "starting" and job["label"] == "Storms"
    bob.predict(handle_file(str(corpus)), "column", api_name="/finetune_upload")
    with pytest.raises(Exception, match="busy: another fine-tune is running"):
        bob.predict(base=base, max_steps=10, api_name="/finetune_start")
    # generation keeps answering while the worker trains
    out = alice.predict(title="Storm", keywords="sea", model=base, max_new_tokens=6, n=1, api_name="/generate")
    assert len(out["candidates"]) == 1
    print("generate answered during training; job state:", status(alice)["job"]["state"])

    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        job = status(alice)["job"]
        if job["state"] in ("done", "failed", "stopped"):
            break
        time.sleep(0.5)
    assert job["state"] == "done", job["message"]
    assert job["step"] == 10 and len(job["losses"]) == 10 and job["evals"]
    print(f"10-step fine-tune through the API: {time.monotonic() - started:.1f} s")

    model_id = job["model_id"]
    out = alice.predict(title="Storm", keywords="sea", model=model_id, max_new_tokens=8, n=1, api_name="/generate")
    assert out["model"] == "Storms" and len(out["candidates"]) == 1  # its label, not its folder
    with pytest.raises(Exception, match="model: unknown model"):
        bob.predict(title="Storm", keywords="sea", model=model_id, max_new_tokens=8, api_name="/generate")
    assert status(bob)["job"] is None
    # the model and the corpus live in the data folder, which gradio's file route refuses (G4)
    import httpx

    folder = next(manager.root.glob(f"*/{job['id']}"))
    for path in (folder / "model" / "model.safetensors", folder / "events.jsonl", folder.parent):
        resp = httpx.get(f"{url}gradio_api/file={path}")
        assert resp.status_code in (403, 404), path


def test_the_api_checks_every_setting_the_tab_bounds(server, corpus):
    url, _ = server
    client = Client(url, verbose=False)
    client.predict(handle_file(str(corpus)), "column", api_name="/finetune_upload")
    for change, message in [(dict(batch_size=1024), "batch_size: at most 32 here"),
                            (dict(max_length=8192), "max_length: at most 1024 here"),
                            (dict(epochs=500), "epochs: at most 20 here"),
                            (dict(max_steps=10_000), "max_steps: must be 1 to 300"),
                            (dict(lr=1.5), "lr: must be > 0 and <= 1"),
                            (dict(method="all"), "method: must be one of")]:
        with pytest.raises(Exception) as info:
            client.predict(**{"max_steps": 10, **change}, api_name="/finetune_start")
        assert message in str(info.value), change
    assert status(client)["job"] is None


def test_spoofed_files_are_refused_through_the_api(server, tmp_path):
    url, _ = server
    client = Client(url, verbose=False)
    page = tmp_path / "data.csv"
    page.write_text("<html><body><svg onload=alert(1)></svg></body></html>")
    with pytest.raises(Exception, match="HTML page"):
        client.predict(handle_file(str(page)), "column", api_name="/finetune_upload")
    with pytest.raises(Exception, match="start: |upload a corpus first"):
        client.predict(max_steps=10, api_name="/finetune_start")
    with pytest.raises(Exception, match="no fine-tune running"):
        client.predict(api_name="/finetune_stop")


def test_check_settings_enables_start_only_with_a_corpus_and_valid_settings(handlers, registry, corpus):
    base = registry.default_id()
    start, line = handlers.check_settings(base, "lora", 3.0, 10, "", 4, 64, ALICE)
    assert start["interactive"] is False and "Upload a corpus" in line
    handlers.upload(str(corpus), "column", ALICE)
    start, line = handlers.check_settings(base, "lora", 3.0, 10, "", 4, 64, ALICE)
    assert start["interactive"] is True and start["value"] == "Start 开始"
    assert "24 rows → about 10 steps" in line and "(an estimate)" in line and "light change of style" in line
    for bad, message in [(dict(lr="abc"), "lr: must be a number"), (dict(lr="0"), "lr: must be > 0"),
                         (dict(max_steps=301), "max_steps: must be 1 to 300"), (dict(batch_size=0), "batch_size")]:
        values = dict(base=base, method="lora", epochs=3.0, max_steps=10, lr="", batch_size=4, max_length=64)
        start, line = handlers.check_settings(*{**values, **bad}.values(), ALICE)
        assert start["interactive"] is False and html.escape(message) in line, line
        assert "ft-check-bad" in line and any("\u4e00" <= ch <= "\u9fff" for ch in line)  # both languages
    assert ui_handlers.parse_lr("", "lora") == 2e-3 and ui_handlers.parse_lr(" 1e-4 ", "full") == 1e-4 and ui_handlers.parse_lr(None, "full") == 5e-5
    assert "0.002" in ui_handlers.lr_placeholder("lora") and "5e-05" in ui_handlers.lr_placeholder("full")


def test_my_models_refuse_bad_keys_and_ids_with_a_message(handlers):
    key = "ab" * 32
    with pytest.raises(gr.Error, match="choose one of your models first"):
        handlers.library.use(key, None, ALICE)
    for item in ("../../etc", "x" * 200, None):
        with pytest.raises(gr.Error, match="no model .* in your models"):
            handlers.library.download(key, item, ALICE)
    with pytest.raises(gr.Error, match="the browser's key must be 64 hexadecimal digits"):
        handlers.library.download("not-a-key", "x", ALICE)
    assert handlers.library.delete(key, None, ALICE) == (gr.skip(), gr.skip(), gr.skip())  # declined
    assert handlers.library.refresh(None, None, ALICE) == gr.skip()  # before the page sent its key
