"""The "Fine-tune 微调" tab: upload a corpus, check it, train, watch, then use, download or push.

`app.build_app` calls ``build_tab(registry=..., generate=...)`` inside its ``gr.Tabs()``.
Everything about a job lives server-side in a `finetune.web.jobs.JobManager` (a worker process
trains; the page only polls); the page keeps the job's random id in its localStorage so that
after a reload ``demo.load`` re-attaches to it, and a ``gr.Timer`` polls while it runs.
When the job is done its model is selected in the Generate tab's dropdown.

API (gradio_client), besides the tab's own events: ``/finetune_upload`` (the file),
``/finetune_start``, ``/finetune_status`` and ``/finetune_stop`` return `JobView.to_dict()`.

Operators may change the caps with TEXTGEN_TRAIN_MAX_STEPS (default 300) and
TEXTGEN_TRAIN_MAX_MINUTES (default 15).
"""
from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import gradio as gr

from .assets import asset
from .caps import WEB_DEFAULTS
from .errors import JobError
from .jobs import JobManager
from .registry import ModelRegistry
from .ui_handlers import FinetuneHandlers, FinetuneSettings, lr_placeholder, make_manager
from .ui_session import session_owner, tab_error
from .ui_render import EMPTY_REPORT, check_line, empty_preview, render_samples, render_status

POLL_S = 1.0
DEFAULTS = WEB_DEFAULTS
METHOD_LABELS = {"lora": "LoRA (fast, small 快速)", "last-n": "last blocks 最后几层",
                 "head": "output layer 仅输出层", "full": "all weights 全部参数"}
KEYWORD_LABELS = [("keywords column 使用关键词列", "column"), ("extract from text 从正文提取", "auto")]
# The job's random id lives in the browser's localStorage, read by plain js at page load (a
# gr.BrowserState inside a tab that is not shown first is not mounted yet when demo.load runs);
# so does the My models key, which the browser makes once (256 random bits) and sends at load.
STORE_JOB_JS, LOAD_JOB_JS = "finetune-store-job.js", "finetune-load.js"
CONFIRM_DELETE_JS = "finetune-confirm-delete.js"
# spreadsheets are accepted by the file box only to be refused with how to save them as CSV
FILE_TYPES = [".csv", ".tsv", ".txt", ".jsonl", ".json", ".xlsx", ".xls", ".ods", ".numbers"]


@dataclass
class FinetuneTab:
    """What build_tab made (tests use `manager` and `handlers`)."""

    manager: JobManager
    handlers: FinetuneHandlers


def build_tab(*, registry: ModelRegistry, generate: Any) -> FinetuneTab:
    """The tab's layout and events; call inside ``with gr.Tabs():`` of the app's Blocks."""
    from ..config import config_specs

    spec = config_specs()
    manager = make_manager(registry)
    h = FinetuneHandlers(registry, manager)
    step_cap = int(min(manager.caps.max_steps or spec["max_steps"]["max"], spec["max_steps"]["max"]))
    ui = SimpleNamespace()  # the components, by name, for the events below
    css = asset("finetune.css")
    with gr.Tab("Fine-tune 微调", id="finetune") as ui.tab:
        gr.Markdown("Teach a model your own style: upload texts with titles and keywords, check what was "
                    "understood, then train. 用自己的文本微调模型：上传带标题和关键词的文本，检查后开始训练。",
                    elem_classes="ft-intro")
        with gr.Row(equal_height=False):
            _corpus_section(ui, spec, css)
        with gr.Row(equal_height=False):
            with gr.Column(scale=2, min_width=320):
                _settings_section(ui, spec, h, manager, step_cap, css)
            with gr.Column(scale=3, min_width=360):
                _training_section(ui, css)
        _library_section(ui)
        ui.timer = gr.Timer(POLL_S, active=False)
        ui.job_id = gr.Textbox(visible=False)  # carries the id to and from the browser's localStorage
        ui.seen = gr.State({})
        ui.key_box = gr.Textbox(visible=False)  # carries the My models key from the browser's localStorage
        ui.key = gr.State(None)  # that key, once checked
        _api(h, manager, step_cap)  # inside the tab: gr.Tabs() takes only tabs as children
    _wire(ui, h, generate)
    return FinetuneTab(manager=manager, handlers=h)


def _corpus_section(ui: SimpleNamespace, spec: dict, css: str) -> None:
    with gr.Column(scale=2, min_width=320):
        gr.Markdown("### 1 · Corpus 语料")
        ui.file = gr.File(label="Corpus file 语料文件 (CSV, TSV, JSONL)", file_count="single",
                          file_types=FILE_TYPES, type="filepath", elem_id="ft-file", height=120)
        ui.keywords = gr.Radio(KEYWORD_LABELS, value="column", label="Keywords 关键词",
                               info=spec["keywords"]["help"], elem_id="ft-keywords")
    with gr.Column(scale=3, min_width=360):
        ui.report = gr.HTML(EMPTY_REPORT, css_template=css, elem_id="ft-report")
        ui.preview = gr.Dataframe(empty_preview(), label="First rows 前几行", interactive=False,
                                  wrap=True, max_height=300, column_widths=["22%", "24%", "54%"],
                                  elem_id="ft-preview")


def _spec_slider(spec: dict, name: str, label: str, *, value: float, high: float, step: float,
                 elem_id: str) -> gr.Slider:
    low = spec[name]["min"] + step if spec[name]["low_open"] else spec[name]["min"]
    return gr.Slider(low, min(high, spec[name]["max"]), value=value, step=step, label=label,
                     info=spec[name]["help"], elem_id=elem_id)


def _settings_section(ui: SimpleNamespace, spec: dict, h: FinetuneHandlers, manager: JobManager, step_cap: int,
                      css: str) -> None:
    gr.Markdown("### 2 · Settings 设置")
    ui.base = gr.Dropdown(h.base_choices(None), value=h.default_base(), label="Base model 基础模型",
                          elem_id="ft-base")
    ui.method = gr.Radio([(METHOD_LABELS[m], m) for m in spec["method"]["choices"]],
                         value=DEFAULTS["method"], label="Method 方法", info=spec["method"]["help"],
                         elem_id="ft-method")
    ui.epochs = _spec_slider(spec, "epochs", "Epochs 轮数", value=DEFAULTS["epochs"],
                             high=manager.caps.max_epochs, step=0.5, elem_id="ft-epochs")
    ui.max_steps = gr.Slider(1, step_cap, value=min(DEFAULTS["max_steps"], step_cap), step=1,
                             label="Max steps 最多步数",
                             info=f"training ends after the epochs or at this step, whichever comes first "
                                  f"(at most {step_cap} here)", elem_id="ft-max-steps")
    with gr.Accordion("More settings 更多设置", open=False):
        # text, not a number box: empty must stay empty (the method's default), never 0
        ui.lr = gr.Textbox("", label="Learning rate 学习率", placeholder=lr_placeholder(DEFAULTS["method"]),
                           info="peak learning rate; empty: the method's default 峰值学习率，留空使用默认值",
                           max_length=20, elem_id="ft-lr")
        ui.batch_size = _spec_slider(spec, "batch_size", "Batch size 批大小", value=DEFAULTS["batch_size"],
                                     high=manager.caps.max_batch_size, step=1, elem_id="ft-batch-size")
        ui.max_length = _spec_slider(spec, "max_length", "Max length 最大长度", value=DEFAULTS["max_length"],
                                     high=manager.caps.max_length, step=1, elem_id="ft-max-length")
    ui.name = gr.Textbox(label="Model name 模型名称", max_length=60, placeholder="my poems 我的诗",
                         elem_id="ft-name")
    with gr.Row():
        ui.start = gr.Button("Start 开始", variant="primary", interactive=False, elem_id="ft-start")
        ui.stop = gr.Button("Stop 停止", variant="stop", interactive=False, elem_id="ft-stop")
        ui.resume = gr.Button("Resume 继续", visible=False, elem_id="ft-resume")
    ui.check = gr.HTML(check_line("Upload a corpus to start. 请先上传语料。"), css_template=css,
                       elem_id="ft-check")


def _training_section(ui: SimpleNamespace, css: str) -> None:
    gr.Markdown("### 3 · Training 训练")
    ui.status = gr.HTML(render_status(None), css_template=css, elem_id="ft-status")
    ui.plot = gr.LinePlot(None, x="step", y="loss", color="split", visible=False,
                          color_map={"train": "#6366f1", "eval": "#f59e0b"}, title="Loss 损失",
                          x_title="step 步", y_title="loss 损失", height=260, elem_id="ft-plot")
    ui.samples = gr.HTML(render_samples(None), css_template=css, elem_id="ft-samples")
    with gr.Column(visible=False, elem_id="ft-done") as ui.done:
        gr.Markdown("### 4 · Your model 你的模型")
        with gr.Row():
            ui.zip_button = gr.Button("Prepare download 准备下载", elem_id="ft-zip")
            ui.download = gr.DownloadButton("Download zip 下载", visible=False, variant="primary",
                                            elem_id="ft-download")
        with gr.Accordion("Push to the Hugging Face Hub 上传到 Hub", open=False):
            ui.repo_id = gr.Textbox(label="Repository 仓库", placeholder="your-name/my-model",
                                    max_length=200, elem_id="ft-repo")
            ui.token = gr.Textbox(label="Access token 访问令牌 (write)", type="password",
                                  max_length=400, info="used for this upload only; never stored "
                                                       "仅用于本次上传，不会保存", elem_id="ft-token")
            ui.private = gr.Checkbox(True, label="Private repository 私有仓库")
            ui.push = gr.Button("Push 上传", elem_id="ft-push")
            ui.pushed = gr.HTML("", css_template=css, elem_id="ft-pushed")


def _library_section(ui: SimpleNamespace) -> None:
    with gr.Accordion("My models 我的模型", open=True, elem_id="ft-library-box"):
        gr.Markdown("Models you fine-tuned in this browser, kept on the server across reloads and restarts; "
                    "another browser does not see them. 在本浏览器微调的模型，刷新或重启后仍保留，其他浏览器看不到。",
                    elem_classes="ft-intro")
        with gr.Row():
            ui.library = gr.Dropdown([], label="Your models 你的模型", elem_id="ft-library", scale=3)
            ui.use = gr.Button("Use in Generate 在生成中使用", elem_id="ft-library-use", scale=1)
            ui.fetch = gr.Button("Prepare download 准备下载", elem_id="ft-library-zip", scale=1)
            ui.remove = gr.Button("Delete 删除", variant="stop", elem_id="ft-library-delete", scale=1)
        ui.fetched = gr.DownloadButton("Download zip 下载", visible=False, variant="primary",
                                       elem_id="ft-library-download")


def _wire(ui: SimpleNamespace, h: FinetuneHandlers, generate: Any) -> None:
    """The events. `checked` are the settings `check_settings` reads after every change."""
    screen = [ui.status, ui.plot, ui.samples, ui.start, ui.stop, ui.resume, ui.done, ui.timer]
    refresh = [*screen, generate.model, ui.base, ui.library, ui.seen]
    form = [ui.report, ui.preview, ui.method, ui.epochs, ui.max_steps, ui.lr, ui.batch_size, ui.max_length, ui.name]
    checked = [ui.base, ui.method, ui.epochs, ui.max_steps, ui.lr, ui.batch_size, ui.max_length]
    private_ = dict(api_visibility="private", show_progress="hidden")
    check_ = dict(fn=h.check_settings, inputs=checked, outputs=[ui.start, ui.check], queue=False, **private_)

    ui.file.upload(h.upload, [ui.file, ui.keywords], [ui.report, ui.preview, ui.name], api_name="finetune_upload",
                   api_description="Upload a corpus (CSV, TSV or JSONL); returns the report and the first rows.",
                   show_progress="minimal", show_progress_on=[ui.report]).then(**check_)
    ui.keywords.change(h.rekeyword, ui.keywords, [ui.report, ui.preview], **private_).then(**check_)
    gr.on([c.change for c in checked], **check_)
    ui.method.change(lambda m: gr.update(placeholder=lr_placeholder(m)), ui.method, ui.lr, queue=False, **private_)
    ui.start.click(h.start, [*checked, ui.name, ui.key], [*screen, ui.job_id, ui.seen], **private_).then(
        None, ui.job_id, None, js=asset(STORE_JOB_JS), **private_).then(
        h.poll, [ui.seen, ui.key], refresh, queue=False, **private_).then(**check_)
    ui.stop.click(h.stop, None, screen, queue=False, **private_).then(**check_)
    ui.resume.click(h.resume, None, screen, **private_).then(**check_)
    ui.timer.tick(h.poll, [ui.seen, ui.key], refresh, queue=False, **private_).then(**check_)
    ui.zip_button.click(h.prepare_download, None, ui.download, **private_)
    ui.push.click(h.push, [ui.repo_id, ui.token, ui.private], [ui.pushed, ui.token], **private_)
    ui.use.click(h.library.use, [ui.key, ui.library], [generate.model, ui.base], **private_)
    ui.fetch.click(h.library.download, [ui.key, ui.library], ui.fetched, **private_)
    ui.remove.click(h.library.delete, [ui.key, ui.library], [ui.library, generate.model, ui.fetched],
                    js=asset(CONFIRM_DELETE_JS), **private_)
    ui.library.change(lambda: gr.update(visible=False), None, ui.fetched, queue=False, **private_)
    # the page opens on the Generate tab: this tab's lists are filled again when it is shown
    ui.tab.select(h.library.refresh, [ui.key, ui.library], ui.library, queue=False, **private_)

    root = gr.context.Context.root_block
    root.load(h.attach, [ui.job_id, ui.key_box], [*refresh, *form, ui.key], js=asset(LOAD_JOB_JS), queue=False,
              **private_).then(**check_)
    root.unload(h.release)


def _api(h: FinetuneHandlers, manager: JobManager, step_cap: int) -> None:
    default_base = h.default_base() or "auto"
    d = DEFAULTS

    def finetune_start(base: str = default_base, method: str = d["method"], epochs: float = d["epochs"],
                       max_steps: int = min(d["max_steps"], step_cap), lr: float | None = None,
                       batch_size: int = d["batch_size"], max_length: int = d["max_length"], name: str = "",
                       library_key: str = "", request: gr.Request = None) -> dict:
        """Fine-tune on the file sent to /finetune_upload; returns the job (poll /finetune_status).
        `base` is a model id from the app's list; max_steps caps the epochs; `lr` empty: the
        method's default. With `library_key` (64 hex digits you keep secret) the finished model
        is also kept in that key's My models."""
        form = FinetuneSettings(base, method, epochs, max_steps, lr, batch_size, max_length)
        return h.start_job(form, name, library_key or None, request=request).to_dict()

    def finetune_status(request: gr.Request = None) -> dict:
        """{"job": state, step, max_steps, losses, evals, samples, model_id …, "busy", "upload"}."""
        return h.api_status(session_owner(request))

    def finetune_stop(request: gr.Request = None) -> dict:
        """Stop your running fine-tune at the end of its step (a checkpoint is kept)."""
        owner = session_owner(request)
        try:
            return manager.stop(owner).to_dict()
        except JobError as exc:
            raise tab_error(exc) from None

    gr.api(finetune_start, api_name="finetune_start")
    gr.api(finetune_status, api_name="finetune_status", queue=False)
    gr.api(finetune_stop, api_name="finetune_stop", queue=False)
