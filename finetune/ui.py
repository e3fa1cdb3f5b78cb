"""The "Fine-tune 微调" tab: upload a corpus, check it, train, watch, then use, download or push.

`app.build_app` calls ``build_tab(registry=..., generate=...)`` inside its ``gr.Tabs()``.
Everything about a job lives server-side in a `finetune.jobs.JobManager` (a worker process
trains; the page only polls); the page keeps the job's random id in its localStorage so that
after a reload ``demo.load`` re-attaches to it, and a ``gr.Timer`` polls while it runs.
When the job is done its model is selected in the Generate tab's dropdown.

API (gradio_client), besides the tab's own events: ``/finetune_upload`` (the file),
``/finetune_start``, ``/finetune_status`` and ``/finetune_stop`` return `JobView.to_dict()`.

Operators may change the caps with TEXTGEN_TRAIN_MAX_STEPS (default 300) and
TEXTGEN_TRAIN_MAX_MINUTES (default 15).
"""
from __future__ import annotations

import html
import os
import secrets
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr
import pandas as pd

from .jobs import WEB_DEFAULTS, Busy, Caps, HubError, JobError, JobManager, JobView, duration
from .registry import ModelRegistry, UnknownModelError, owner_from_request

POLL_S = 1.0
PREVIEW_ROWS = 8
PREVIEW_CHARS = 160
DEFAULTS = WEB_DEFAULTS
METHOD_LABELS = {"lora": "LoRA (fast, small 快速)", "last-n": "last blocks 最后几层",
                 "head": "output layer 仅输出层", "full": "all weights 全部参数"}
KEYWORD_LABELS = [("keywords column 使用关键词列", "column"), ("extract from text 从正文提取", "auto")]
PLOT_COLUMNS = ["step", "loss", "split"]
# The job's random id lives in the browser's localStorage, read by plain js at page load: a
# gr.BrowserState inside a tab that is not shown first is not mounted yet when demo.load runs.
JOB_KEY = "textgen-finetune-job"
STORE_JOB_JS = f"(id) => {{ if (id) localStorage.setItem('{JOB_KEY}', id); return []; }}"
LOAD_JOB_JS = f"() => [localStorage.getItem('{JOB_KEY}')]"
CSS = """
.ft-box { border: 1px solid var(--border-color-primary); border-radius: 10px; padding: 12px 14px;
  background: var(--block-background-fill); line-height: 1.6; }
.ft-empty { color: var(--body-text-color-subdued); text-align: center; padding: 28px 12px;
  border: 1px dashed var(--border-color-primary); border-radius: 10px; }
.ft-head { display: flex; align-items: center; gap: 8px; font-weight: 600; margin-bottom: 6px; }
.ft-badge { border-radius: 999px; padding: 0 9px; font-size: 0.85em; font-weight: 500; }
.ft-ok { background: #dcfce7; color: #166534; }
.ft-run { background: #e0e7ff; color: #3730a3; }
.ft-warn { background: #fef3c7; color: #92400e; }
.ft-bad { background: #fee2e2; color: #991b1b; }
.ft-bar { height: 12px; border-radius: 999px; background: var(--border-color-primary); overflow: hidden;
  margin: 8px 0 6px; }
.ft-fill { height: 100%; border-radius: 999px; background: var(--color-accent); transition: width 0.6s ease; }
.ft-fill.ft-done { background: #16a34a; }
.ft-fill.ft-halt { background: #9ca3af; }
.ft-meta { display: flex; flex-wrap: wrap; gap: 4px 16px; font-size: 0.9em; color: var(--body-text-color-subdued); }
.ft-meta b { color: var(--body-text-color); font-weight: 600; }
.ft-msg { margin-top: 6px; }
.ft-note { margin-top: 8px; font-size: 0.9em; border-left: 3px solid #f59e0b; padding-left: 8px; }
.ft-note.ft-error { border-left-color: #dc2626; }
.ft-report dl { display: grid; grid-template-columns: max-content 1fr; gap: 2px 14px; margin: 0; }
.ft-report dt { color: var(--body-text-color-subdued); }
.ft-report dd { margin: 0; overflow-wrap: anywhere; }
.ft-sample { border-top: 1px solid var(--border-color-primary); padding: 8px 0 4px; }
.ft-sample:first-of-type { border-top: none; }
.ft-prompt { font-size: 0.85em; color: var(--body-text-color-subdued); }
.ft-text { white-space: pre-wrap; overflow-wrap: anywhere; }
"""


# -- settings -------------------------------------------------------------------------------
def caps_from_env() -> Caps:
    def number(name: str, default: float) -> float:
        value = os.environ.get(name, "").strip()
        try:
            return float(value) if value else default
        except ValueError:
            raise SystemExit(f"{name}: must be a number, got {value!r}") from None

    return Caps(max_steps=int(number("TEXTGEN_TRAIN_MAX_STEPS", 300)),
                max_seconds=number("TEXTGEN_TRAIN_MAX_MINUTES", 15) * 60)


def make_manager(registry: ModelRegistry) -> JobManager:
    """The tab's job manager (tests replace this to keep a handle on it)."""
    return JobManager(registry.home, registry, caps=caps_from_env())


def escape(text: Any) -> str:
    """HTML-escape, and neutralise the template syntax gr.HTML understands (${…}, {{…}})."""
    return (html.escape(str(text), quote=True)
            .replace("$", "&#36;").replace("{", "&#123;").replace("}", "&#125;"))


def _error(exc: Exception, title: str = "Fine-tune 微调") -> gr.Error:
    return gr.Error(str(exc), title=title, print_exception=False)


def _owner(request: gr.Request | None) -> str:
    owner = owner_from_request(request)
    if not owner:
        raise gr.Error("session: no browser session; reload the page 请刷新页面", print_exception=False)
    return owner


# -- rendering --------------------------------------------------------------------------------
def render_report(upload) -> str:
    """The validation report of an upload, as safe HTML."""
    r = upload.report
    delimiter = {None: "none", "\t": "tab", ",": "comma ,", ";": "semicolon ;", "|": "pipe |"}.get(
        r.delimiter, repr(r.delimiter))
    shape = "fields by name" if r.format == "jsonl" else ("header row" if r.has_header else "no header row")
    columns = ", ".join(f"{role} ← {name}" for role, name in r.columns.items())
    dropped = ", ".join(f"{n} {why}" for why, n in r.dropped.items())
    keywords = {"column": "from the keywords column 来自关键词列",
                "auto": "extracted from the text 从正文自动提取",
                "mixed": "from the column, extracted where empty 列中为空时自动提取"}[r.keywords_source]
    rows = [("File 文件", f"{upload.name} · {r.format.upper()}"),
            ("Encoding 编码", r.encoding),
            ("Layout 格式", shape if r.format == "jsonl" else f"delimiter {delimiter} · {shape}"),
            ("Columns 列", columns),
            ("Rows 行", f"{r.rows_kept:,} kept of {r.rows_total:,}" + (f" · dropped: {dropped}" if dropped else "")),
            ("Keywords 关键词", keywords),
            ("Text 文本", f"{r.total_chars:,} characters · language {r.language}")]
    body = "".join(f"<dt>{escape(k)}</dt><dd>{escape(v)}</dd>" for k, v in rows)
    return (f'<div class="ft-box ft-report"><div class="ft-head">Corpus report 语料报告'
            f'<span class="ft-badge ft-ok">✓ ready to train 可以训练</span></div><dl>{body}</dl></div>')


def report_error(message: str) -> str:
    return (f'<div class="ft-box ft-report"><div class="ft-head">Corpus report 语料报告'
            f'<span class="ft-badge ft-bad">✗ not usable 无法使用</span></div>'
            f'<div class="ft-msg">{escape(message)}</div></div>')


EMPTY_REPORT = ('<div class="ft-empty">Upload a CSV, TSV or JSONL file with title, keywords and text columns: '
                'its report and first rows appear here before anything trains.<br>'
                '上传含标题、关键词、正文列的 CSV/TSV/JSONL 文件，训练前会在此显示检查报告和前几行。</div>')


def preview_table(rows) -> pd.DataFrame:
    def cut(text: str) -> str:
        text = " ".join(text.split())
        return text if len(text) <= PREVIEW_CHARS else text[:PREVIEW_CHARS - 1] + "…"

    data = [[cut(r.title), ", ".join(r.keywords) + (" (auto 自动)" if r.keywords_auto else ""), cut(r.text)]
            for r in rows[:PREVIEW_ROWS]]
    return pd.DataFrame(data, columns=["title 标题", "keywords 关键词", "text 正文"])


def empty_preview() -> pd.DataFrame:
    return pd.DataFrame([], columns=["title 标题", "keywords 关键词", "text 正文"])


def plot_frame(view: JobView | None) -> pd.DataFrame | None:
    """step / loss / split (train | eval) for the live loss plot.

    gradio 6's chart keeps the series it was first given: so this is None until there is a
    point (after an empty frame it would draw no lines at all), and a split without points yet
    gets one empty (NaN) point so that its line appears once evaluations come."""
    if view is None or not (view.losses or view.evals):
        return None
    points = [(s, l, "train") for s, l in view.losses] + [(s, l, "eval") for s, l in view.evals]
    first = min(p[0] for p in points)
    points += [(first, float("nan"), split) for split, have in (("train", view.losses), ("eval", view.evals))
               if not have]
    return pd.DataFrame(points, columns=PLOT_COLUMNS)


def render_status(view: JobView | None, busy: str | None = None) -> str:
    """The job's state, progress bar with ETA, and message, as safe HTML."""
    note = f'<div class="ft-note">{escape(busy)}</div>' if busy else ""
    if view is None:
        return (f'<div class="ft-empty">No fine-tune yet: upload a corpus, check the report, then Start.<br>'
                f'尚未开始微调：上传语料，检查报告，然后点击开始。{note}</div>')
    badge = {"starting": ("ft-run", "starting 启动中"), "running": ("ft-run", "training 训练中"),
             "stopping": ("ft-warn", "stopping 停止中"), "stopped": ("ft-warn", "stopped 已停止"),
             "done": ("ft-ok", "done 完成"), "failed": ("ft-bad", "failed 失败")}[view.state]
    pct = 100.0 * view.step / view.max_steps if view.max_steps else 0.0
    fill = {"done": " ft-done", "stopped": " ft-halt", "failed": " ft-halt"}.get(view.state, "")
    if view.state == "done":
        pct = 100.0
    meta = []
    if view.max_steps:
        meta.append(f"step <b>{view.step}</b> / {view.max_steps}")
    if view.losses:
        meta.append(f"loss <b>{view.losses[-1][1]:.3f}</b>")
    if view.evals:
        meta.append(f"eval loss <b>{view.evals[-1][1]:.3f}</b>")
    if view.active and view.eta_s is not None and view.state == "running":
        meta.append(f"ETA <b>{duration(view.eta_s)}</b>")
    meta.append(f"elapsed {duration(view.elapsed_s)}")
    if view.state == "starting" or (view.state == "running" and not view.step):
        text = f"{view.phase} …"
    elif view.state == "stopping":
        text = "Stopping at the end of this step; a checkpoint is kept. 正在停止，将保存检查点。"
    elif view.state == "done":
        text = f"{view.message} The model is selected in the Generate tab. 模型已在「生成」页选中。"
    else:
        text = view.message
    return (f'<div class="ft-box"><div class="ft-head">{escape(view.label)}'
            f'<span class="ft-badge {badge[0]}">{badge[1]}</span></div>'
            f'<div class="ft-bar" role="progressbar" aria-valuenow="{pct:.0f}" aria-valuemin="0" '
            f'aria-valuemax="100"><div class="ft-fill{fill}" style="width: {pct:.1f}%"></div></div>'
            f'<div class="ft-meta">{"".join(f"<span>{m}</span>" for m in meta)}</div>'
            f'<div class="ft-msg">{escape(text)}</div>{note}</div>')


def render_samples(view: JobView | None) -> str:
    if view is None or not view.samples:
        return ('<div class="ft-empty">Sample texts from the model appear here at each evaluation.<br>'
                '每次评估时会在此显示模型的示例文本。</div>')
    cards = "".join(
        f'<div class="ft-sample"><div class="ft-prompt">{escape(s["title"])} · {escape(", ".join(s["keywords"]))}'
        f'</div><div class="ft-text">{escape(s["text"]) or "…"}</div></div>' for s in view.samples)
    return (f'<div class="ft-box"><div class="ft-head">Samples at step {view.sample_step} '
            f'第 {view.sample_step} 步的示例</div>{cards}</div>')


# -- handlers ---------------------------------------------------------------------------------
class FinetuneHandlers:
    """The tab's server-side functions, testable without a server.

    `screen(view)` gives the values of SCREEN_OUTPUTS: status, plot, samples, start, stop,
    resume, done box, timer."""

    def __init__(self, registry: ModelRegistry, manager: JobManager) -> None:
        self.registry, self.manager = registry, manager

    # settings
    def base_choices(self, owner: str | None) -> list[tuple[str, str]]:
        """Base models: built-ins, local folders, this user's fine-tuned models; hub models
        while the hub can be reached."""
        return self.registry.choices(owner)

    def default_base(self) -> str | None:
        choices = [i for _, i in self.base_choices(None)]
        default = self.registry.default_id()
        return default if default in choices else (choices[0] if choices else None)

    def settings(self, base: Any, method: Any, epochs: Any, max_steps: Any, lr: Any, batch_size: Any,
                 max_length: Any, owner: str) -> dict[str, Any]:
        """Checked TrainConfig settings; the base model by registry id only (never a path)."""
        try:
            entry = self.registry.resolve(base, owner)
        except UnknownModelError as exc:
            raise _error(exc, "Unknown model 未知模型") from None
        source = "auto" if entry.kind == "auto" else str(entry.source)
        return dict(base=source, revision=entry.revision or "", method=method, epochs=epochs, max_steps=max_steps,
                    lr=None if lr in (None, "") else lr, batch_size=batch_size, max_length=max_length)

    # upload
    def upload(self, file: Any, keywords: str = "column", request: gr.Request | None = None):
        """File → (report html, preview table, model name, start button)."""
        owner = _owner(request)
        if not file:
            return EMPTY_REPORT, empty_preview(), gr.skip(), gr.skip()
        path = Path(file if isinstance(file, (str, Path)) else getattr(file, "name", ""))
        try:
            upload, rows = self.manager.save_upload(owner, path, keywords=_keywords(keywords))
        except (ValueError, OSError) as exc:
            raise _error(exc, "Corpus not usable 语料无法使用") from None
        finally:
            _drop_gradio_copy(path)
        name = f"{Path(upload.name).stem[:40]} · fine-tuned 微调"
        return render_report(upload), preview_table(rows), name, gr.update(interactive=True)

    def rekeyword(self, keywords: str, request: gr.Request | None = None):
        owner = _owner(request)
        if self.manager.upload(owner) is None:
            return gr.skip(), gr.skip()
        try:
            upload, rows = self.manager.reload_upload(owner, keywords=_keywords(keywords))
        except (ValueError, OSError) as exc:
            return report_error(str(exc)), empty_preview()
        return render_report(upload), preview_table(rows)

    # jobs
    def start_job(self, base: Any, method: Any, epochs: Any, max_steps: Any, lr: Any, batch_size: Any,
                  max_length: Any, name: Any, request: gr.Request | None = None) -> JobView:
        owner = _owner(request)
        settings = self.settings(base, method, epochs, max_steps, lr, batch_size, max_length, owner)
        label = name if isinstance(name, str) and name.strip() else "fine-tuned 微调"
        try:
            return self.manager.start(owner, settings, label=label)
        except Busy as exc:
            raise _error(exc, "Busy 忙") from None
        except (JobError, ValueError) as exc:
            raise _error(exc, "Cannot start 无法开始") from None

    def start(self, base: Any, method: Any, epochs: Any, max_steps: Any, lr: Any, batch_size: Any,
              max_length: Any, name: Any, request: gr.Request | None = None):
        """Start button: the screen, the job id for the browser to keep, a fresh `seen`."""
        view = self.start_job(base, method, epochs, max_steps, lr, batch_size, max_length, name, request=request)
        return (*self.screen(view, owner_from_request(request)), view.id, {"job": view.id})

    def stop(self, request: gr.Request | None = None):
        owner = _owner(request)
        try:
            view = self.manager.stop(owner)
        except JobError as exc:
            gr.Warning(str(exc))
            view = self.manager.view(owner)
        return self.screen(view, owner)

    def resume(self, request: gr.Request | None = None):
        owner = _owner(request)
        try:
            view = self.manager.resume(owner)
        except Busy as exc:
            raise _error(exc, "Busy 忙") from None
        except JobError as exc:
            raise _error(exc) from None
        return self.screen(view, owner)

    def screen(self, view: JobView | None, owner: str | None = None) -> tuple:
        active = view is not None and view.active
        can_start = not active and owner is not None and self.manager.upload(owner) is not None
        frame = plot_frame(view)
        return (render_status(view, None if active else self.manager.busy(owner)),
                gr.update(value=frame, visible=frame is not None), render_samples(view),
                gr.update(interactive=can_start), gr.update(interactive=active),
                gr.update(visible=bool(view and view.resumable)),
                gr.update(visible=bool(view and view.state == "done")),
                gr.Timer(active=active))

    def poll(self, seen: dict | None, request: gr.Request | None = None):
        """Timer tick and page load: the screen, plus the model lists once a model is ready."""
        owner = _owner(request)
        return self._refresh(self.manager.view(owner), seen, owner)

    def attach(self, job_id: Any, request: gr.Request | None = None):
        """Page load: re-attach to the job this browser started (its id survives a reload)."""
        owner = _owner(request)
        view = self.manager.adopt(job_id, owner) if job_id else None
        return self._refresh(view or self.manager.view(owner), {}, owner)

    def _refresh(self, view: JobView | None, seen: dict | None, owner: str):
        seen = dict(seen or {})
        models = bases = gr.skip()
        if view is not None and view.state == "done" and view.model_id and seen.get("model") != view.model_id:
            seen["model"] = view.model_id
            models = gr.update(choices=self.registry.choices(owner), value=view.model_id)
            bases = gr.update(choices=self.base_choices(owner))
        status, plot, samples, *rest = self.screen(view, owner)
        key = (view.id, len(view.losses), len(view.evals)) if view else None
        if seen.get("plot") == list(key or []):
            plot = gr.skip()
        seen["plot"] = list(key or [])
        if view is not None and seen.get("samples") == [view.id, view.sample_step]:
            samples = gr.skip()
        seen["samples"] = [view.id, view.sample_step] if view else []
        return (status, plot, samples, *rest, models, bases, seen)

    def release(self, request: gr.Request | None = None) -> None:
        """The session ended (tab closed or reloaded): its upload and downloads go now."""
        self.manager.release(owner_from_request(request))

    # results
    def prepare_download(self, request: gr.Request | None = None):
        """Zip the model in the session's folder, then hand it to gradio from a random folder
        of its cache (the data folder itself is blocked); deleted when the session ends."""
        owner = _owner(request)
        try:
            built = self.manager.zip_model(owner)
        except JobError as exc:
            raise _error(exc) from None
        folder = Path(gr.utils.get_upload_folder()) / f"textgen-{secrets.token_hex(20)}"
        folder.mkdir(parents=True, mode=0o700)
        dest = folder / built.name
        shutil.move(built, dest)
        self.manager.keep_until_release(owner, folder)
        return gr.update(value=str(dest), visible=True)

    def push(self, repo_id: Any, token: Any, private: Any, request: gr.Request | None = None):
        """Push to the Hub with the token typed in; the token box is emptied whatever happens."""
        owner = _owner(request)
        try:
            url = self.manager.push_to_hub(owner, repo_id, token, private=bool(private))
        except (ValueError, HubError) as exc:
            return f'<div class="ft-note ft-error">{escape(exc)}</div>', ""
        return (f'<div class="ft-msg">Pushed to <a href="{escape(url)}" target="_blank" rel="noopener">'
                f'{escape(repo_id)}</a>. 已上传。</div>'), ""

    # API (gradio_client)
    def api_status(self, owner: str) -> dict:
        view = self.manager.view(owner)
        upload = self.manager.upload(owner)
        return {"job": view.to_dict() if view else None, "busy": self.manager.busy(owner),
                "upload": {"name": upload.name, **upload.report.to_dict(), "path": None} if upload else None}


def _keywords(value: Any) -> str:
    if value not in ("column", "auto"):
        raise gr.Error(f"keywords: must be column or auto, got {value!r}", print_exception=False)
    return value


def _drop_gradio_copy(path: Path) -> None:
    """The upload is in our own folder now; gradio's cached copy would be served to anyone with
    its URL, so it goes (RELIABILITY G4)."""
    try:
        cache = Path(gr.utils.get_upload_folder()).resolve()
        if path.resolve().is_relative_to(cache) and path.is_file():
            path.unlink()
            path.parent.rmdir()  # gradio's per-file folder; left alone if anything else is in it
    except OSError:
        pass


# -- layout -----------------------------------------------------------------------------------
@dataclass
class FinetuneTab:
    """What build_tab made (tests use `manager` and `handlers`)."""

    manager: JobManager
    handlers: FinetuneHandlers


def _spec_slider(spec: dict, name: str, label: str, *, value: float, high: float, step: float,
                 elem_id: str) -> gr.Slider:
    low = spec[name]["min"] + step if spec[name]["low_open"] else spec[name]["min"]
    return gr.Slider(low, min(high, spec[name]["max"]), value=value, step=step, label=label,
                     info=spec[name]["help"], elem_id=elem_id)


def build_tab(*, registry: ModelRegistry, generate: Any) -> FinetuneTab:
    """The tab's layout and events; call inside ``with gr.Tabs():`` of the app's Blocks."""
    from .training import config_specs

    spec = config_specs()
    manager = make_manager(registry)
    h = FinetuneHandlers(registry, manager)
    step_cap = int(min(manager.caps.max_steps or spec["max_steps"]["max"], spec["max_steps"]["max"]))
    with gr.Tab("Fine-tune 微调", id="finetune"):
        gr.Markdown("Teach a model your own style: upload texts with titles and keywords, check what was "
                    "understood, then train. 用自己的文本微调模型：上传带标题和关键词的文本，检查后开始训练。",
                    elem_classes="ft-intro")
        with gr.Row(equal_height=False):
            with gr.Column(scale=2, min_width=320):
                gr.Markdown("### 1 · Corpus 语料")
                file = gr.File(label="Corpus file 语料文件 (CSV, TSV, JSONL)", file_count="single",
                               file_types=[".csv", ".tsv", ".txt", ".jsonl", ".json"], type="filepath",
                               elem_id="ft-file", height=120)
                keywords = gr.Radio(KEYWORD_LABELS, value="column", label="Keywords 关键词",
                                    info=spec["keywords"]["help"], elem_id="ft-keywords")
            with gr.Column(scale=3, min_width=360):
                report = gr.HTML(EMPTY_REPORT, css_template=CSS, elem_id="ft-report")
                preview = gr.Dataframe(empty_preview(), label="First rows 前几行", interactive=False,
                                       wrap=True, max_height=300, column_widths=["22%", "24%", "54%"],
                                       elem_id="ft-preview")
        with gr.Row(equal_height=False):
            with gr.Column(scale=2, min_width=320):
                gr.Markdown("### 2 · Settings 设置")
                base = gr.Dropdown(h.base_choices(None), value=h.default_base(), label="Base model 基础模型",
                                   elem_id="ft-base")
                method = gr.Radio([(METHOD_LABELS[m], m) for m in spec["method"]["choices"]],
                                  value=DEFAULTS["method"], label="Method 方法", info=spec["method"]["help"],
                                  elem_id="ft-method")
                epochs = _spec_slider(spec, "epochs", "Epochs 轮数", value=DEFAULTS["epochs"],
                                      high=manager.caps.max_epochs, step=0.5, elem_id="ft-epochs")
                max_steps = gr.Slider(1, step_cap, value=min(DEFAULTS["max_steps"], step_cap), step=1,
                                      label="Max steps 最多步数",
                                      info=f"training ends after the epochs or at this step, whichever comes first "
                                           f"(at most {step_cap} here)", elem_id="ft-max-steps")
                with gr.Accordion("More settings 更多设置", open=False):
                    lr = gr.Number(None, label="Learning rate 学习率", info=spec["lr"]["help"],
                                   minimum=0, maximum=spec["lr"]["max"], elem_id="ft-lr")
                    batch_size = _spec_slider(spec, "batch_size", "Batch size 批大小", value=DEFAULTS["batch_size"],
                                              high=manager.caps.max_batch_size, step=1, elem_id="ft-batch-size")
                    max_length = _spec_slider(spec, "max_length", "Max length 最大长度",
                                              value=DEFAULTS["max_length"], high=manager.caps.max_length, step=1,
                                              elem_id="ft-max-length")
                name = gr.Textbox(label="Model name 模型名称", max_length=60, placeholder="my poems 我的诗",
                                  elem_id="ft-name")
                with gr.Row():
                    start = gr.Button("Start 开始", variant="primary", interactive=False, elem_id="ft-start")
                    stop = gr.Button("Stop 停止", variant="stop", interactive=False, elem_id="ft-stop")
                    resume = gr.Button("Resume 继续", visible=False, elem_id="ft-resume")
            with gr.Column(scale=3, min_width=360):
                gr.Markdown("### 3 · Training 训练")
                status = gr.HTML(render_status(None), css_template=CSS, elem_id="ft-status")
                plot = gr.LinePlot(None, x="step", y="loss", color="split", visible=False,
                                   color_map={"train": "#6366f1", "eval": "#f59e0b"}, title="Loss 损失",
                                   x_title="step 步", y_title="loss 损失", height=260, elem_id="ft-plot")
                samples = gr.HTML(render_samples(None), css_template=CSS, elem_id="ft-samples")
                with gr.Column(visible=False, elem_id="ft-done") as done:
                    gr.Markdown("### 4 · Your model 你的模型")
                    with gr.Row():
                        zip_button = gr.Button("Prepare download 准备下载", elem_id="ft-zip")
                        download = gr.DownloadButton("Download zip 下载", visible=False, variant="primary",
                                                     elem_id="ft-download")
                    with gr.Accordion("Push to the Hugging Face Hub 上传到 Hub", open=False):
                        repo_id = gr.Textbox(label="Repository 仓库", placeholder="your-name/my-model",
                                             max_length=200, elem_id="ft-repo")
                        token = gr.Textbox(label="Access token 访问令牌 (write)", type="password",
                                           max_length=400, info="used for this upload only; never stored "
                                                                "仅用于本次上传，不会保存", elem_id="ft-token")
                        private = gr.Checkbox(True, label="Private repository 私有仓库")
                        push = gr.Button("Push 上传", elem_id="ft-push")
                        pushed = gr.HTML("", css_template=CSS, elem_id="ft-pushed")
        timer = gr.Timer(POLL_S, active=False)
        job_id = gr.Textbox(visible=False)  # carries the id to and from the browser's localStorage
        seen = gr.State({})
        _api(h, manager, step_cap)  # inside the tab: gr.Tabs() takes only tabs as children

    screen = [status, plot, samples, start, stop, resume, done, timer]
    refresh = [*screen, generate.model, base, seen]
    settings = [base, method, epochs, max_steps, lr, batch_size, max_length, name]
    private_ = dict(api_visibility="private", show_progress="hidden")

    file.upload(h.upload, [file, keywords], [report, preview, name, start], api_name="finetune_upload",
                api_description="Upload a corpus (CSV, TSV or JSONL); returns the report and the first rows.",
                show_progress="minimal", show_progress_on=[report])
    keywords.change(h.rekeyword, keywords, [report, preview], **private_)
    start.click(h.start, settings, [*screen, job_id, seen], **private_).then(
        None, job_id, None, js=STORE_JOB_JS, **private_).then(h.poll, seen, refresh, queue=False, **private_)
    stop.click(h.stop, None, screen, queue=False, **private_)
    resume.click(h.resume, None, screen, **private_)
    timer.tick(h.poll, seen, refresh, queue=False, **private_)
    zip_button.click(h.prepare_download, None, download, **private_)
    push.click(h.push, [repo_id, token, private], [pushed, token], **private_)

    root = gr.context.Context.root_block
    root.load(h.attach, job_id, refresh, js=LOAD_JOB_JS, queue=False, **private_)
    root.unload(h.release)
    return FinetuneTab(manager=manager, handlers=h)


def _api(h: FinetuneHandlers, manager: JobManager, step_cap: int) -> None:
    default_base = h.default_base() or "auto"
    d = DEFAULTS

    def finetune_start(base: str = default_base, method: str = d["method"], epochs: float = d["epochs"],
                       max_steps: int = min(d["max_steps"], step_cap), lr: float | None = None,
                       batch_size: int = d["batch_size"], max_length: int = d["max_length"], name: str = "",
                       request: gr.Request = None) -> dict:
        """Fine-tune on the file sent to /finetune_upload; returns the job (poll /finetune_status).
        `base` is a model id from the app's list; max_steps caps the epochs."""
        return h.start_job(base, method, epochs, max_steps, lr, batch_size, max_length, name,
                           request=request).to_dict()

    def finetune_status(request: gr.Request = None) -> dict:
        """{"job": state, step, max_steps, losses, evals, samples, model_id …, "busy", "upload"}."""
        return h.api_status(_owner(request))

    def finetune_stop(request: gr.Request = None) -> dict:
        """Stop your running fine-tune at the end of its step (a checkpoint is kept)."""
        owner = _owner(request)
        try:
            return manager.stop(owner).to_dict()
        except JobError as exc:
            raise _error(exc) from None

    gr.api(finetune_start, api_name="finetune_start")
    gr.api(finetune_status, api_name="finetune_status", queue=False)
    gr.api(finetune_stop, api_name="finetune_stop", queue=False)
