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

import html
import math
import os
import secrets
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr
import pandas as pd

from textgen.messages import bilingual

from .caps import WEB_DEFAULTS, WEB_LR, Caps
from .errors import Busy, HubError, JobError
from .job import JobView, duration
from .jobs import JobManager
from .library import LibraryError, check_key
from .registry import ModelRegistry, UnknownModelError, owner_from_request
from .uploads import PREVIEW_ROWS

POLL_S = 1.0
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
# My models: the browser makes its own secret key once (256 random bits) and sends it at load.
LIBRARY_KEY = "textgen-library-key"
LOAD_JOB_JS = f"""() => {{
  let key = localStorage.getItem('{LIBRARY_KEY}');
  if (!key || !/^[0-9a-f]{{64}}$/.test(key)) {{
    key = Array.from(crypto.getRandomValues(new Uint8Array(32)), b => b.toString(16).padStart(2, '0')).join('');
    localStorage.setItem('{LIBRARY_KEY}', key);
  }}
  return [localStorage.getItem('{JOB_KEY}'), key];
}}"""
CONFIRM_DELETE_JS = ("(key, item) => confirm('Delete this model for good? 确定永久删除这个模型？') "
                     "? [key, item] : [key, null]")
# Seconds per optimizer step of a LoRA run of a 4.3M-parameter built-in at batch 4 × 128 tokens
# on 2 CPU cores (benchmarks/finetune_defaults.py: 300 steps in 35-48 s); estimates scale it.
STEP_S = 0.14
STEP_PARAMS, STEP_TOKENS = 4.3e6, 4 * 128
KNOWN_PARAMS = {"gpt2": 124e6, "distilgpt2": 82e6, "gpt2-chinese": 102e6}
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
.ft-check { font-size: 0.9em; color: var(--body-text-color-subdued); line-height: 1.5; }
.ft-check-bad { color: #b91c1c; }
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
    return gr.Error(bilingual(str(exc)), title=title, print_exception=False)


def _owner(request: gr.Request | None) -> str:
    owner = owner_from_request(request)
    if not owner:
        raise gr.Error("session: no browser session; reload the page 请刷新页面", print_exception=False)
    return owner


def parse_lr(value: Any, method: Any) -> float | None:
    """The learning-rate box: empty means the method's web default (`WEB_LR`)."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return WEB_LR.get(method) if isinstance(method, str) else None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    try:
        return float(str(value).strip())
    except ValueError:
        raise ValueError(f"lr: must be a number such as 0.0003, or empty for the method's default; got "
                         f"{str(value)[:20]!r} 学习率须为数字或留空") from None


def lr_placeholder(method: Any) -> str:
    lr = WEB_LR.get(method) if isinstance(method, str) else None
    return f"empty: {lr:g} for this method 留空即默认值" if lr else "empty: the method's default 留空即默认值"


def _check_line(text: str, *, bad: bool = False) -> str:
    return f'<div class="ft-check{" ft-check-bad" if bad else ""}">{"✗ " if bad else ""}{escape(text)}</div>'


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
                    lr=parse_lr(lr, method), batch_size=batch_size, max_length=max_length)

    def check_settings(self, base: Any, method: Any, epochs: Any, max_steps: Any, lr: Any, batch_size: Any,
                       max_length: Any, request: gr.Request | None = None):
        """Any settings change: (Start button, the check line under it). Start is enabled only
        with a corpus and settings that pass every check; the line says why not, or what to
        expect (steps, time, effect)."""
        owner = owner_from_request(request)
        view = self.manager.view(owner)
        if view is not None and view.active:
            return gr.skip(), gr.skip()
        upload = self.manager.upload(owner) if owner else None
        resumable = bool(view and view.resumable)
        try:
            settings = self.settings(base, method, epochs, max_steps, lr, batch_size, max_length, owner)
            self.manager.check_settings(settings)
        except gr.Error as exc:
            return self._start_button(False, resumable), _check_line(str(exc.message), bad=True)
        except ValueError as exc:
            return self._start_button(False, resumable), _check_line(bilingual(str(exc)), bad=True)
        corpus = (upload or self.manager.job_upload(owner)) if resumable else upload
        if corpus is None:
            return self._start_button(False, resumable), _check_line(
                "Upload a corpus to start. 请先上传语料。")
        return self._start_button(True, resumable), _check_line(self.estimate(base, settings, corpus, owner))

    @staticmethod
    def _start_button(ok: bool, resumable: bool):
        return gr.update(interactive=ok, value="Start over 重新开始" if resumable else "Start 开始")

    def estimate(self, base: Any, settings: dict[str, Any], corpus, owner: str | None) -> str:
        """Steps, time and what to expect, before Start (an estimate: said so)."""
        rows = corpus.report.rows_kept
        train_rows = max(1, rows - max(1, round(rows * 0.1)))
        per_epoch = math.ceil(train_rows / settings["batch_size"])
        steps = min(int(settings["max_steps"]), math.ceil(per_epoch * settings["epochs"]))
        params = self._params(base, owner)
        scale = (params / STEP_PARAMS) * (settings["batch_size"] * settings["max_length"] / STEP_TOKENS)
        seconds = steps * STEP_S * max(scale, 0.2) * (1.0 if settings["method"] == "lora" else 1.5)
        if rows < 100:
            effect = ("expect a light change of style; 500+ rows give a strong one "
                      "数据较少，风格变化较轻；500 行以上效果明显")
        elif rows < 500:
            effect = "expect a clear change of style 风格会有明显变化"
        else:
            effect = "expect a strong change of style 风格会有显著变化"
        return (f"{rows} rows → about {steps} steps, roughly {duration(seconds)} on this server (an estimate). "
                f"{effect}. 约 {steps} 步，预计 {duration(seconds)}（估计）。")

    def _params(self, base: Any, owner: str | None) -> float:
        try:
            entry = self.registry.resolve(base, owner)
        except UnknownModelError:
            return STEP_PARAMS
        if entry.id in self.registry.cached_ids():
            gen = self.registry.get(entry.id, owner)
            try:
                model = gen.backend_for("文" if entry.kind == "auto" else "text", []).model
                return float(sum(p.numel() for p in model.parameters()))
            except Exception:  # noqa: BLE001 - an estimate falls back to the built-ins' size
                return STEP_PARAMS
        return KNOWN_PARAMS.get(entry.id, STEP_PARAMS)

    # upload
    def upload(self, file: Any, keywords: str = "column", request: gr.Request | None = None):
        """File → (report html, preview table, model name); Start follows from `check_settings`."""
        owner = _owner(request)
        if not file:
            return EMPTY_REPORT, empty_preview(), gr.skip()
        path = Path(file if isinstance(file, (str, Path)) else getattr(file, "name", ""))
        try:
            upload, rows = self.manager.save_upload(owner, path, keywords=_keywords(keywords))
        except (ValueError, OSError) as exc:
            raise _error(exc, "Corpus not usable 语料无法使用") from None
        finally:
            _drop_gradio_copy(path)
        name = f"{Path(upload.name).stem[:40]} · fine-tuned 微调"
        return render_report(upload), preview_table(rows), name

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
                  max_length: Any, name: Any, library_key: Any = None,
                  request: gr.Request | None = None) -> JobView:
        owner = _owner(request)
        try:
            settings = self.settings(base, method, epochs, max_steps, lr, batch_size, max_length, owner)
        except ValueError as exc:
            raise _error(exc, "Cannot start 无法开始") from None
        label = name if isinstance(name, str) and name.strip() else "fine-tuned 微调"
        form = dict(base=base, method=method, epochs=epochs, max_steps=max_steps, lr=lr if isinstance(lr, str) else
                    ("" if lr is None else str(lr)), batch_size=batch_size, max_length=max_length, name=label)
        try:
            return self.manager.start(owner, settings, label=label, form=form, library_key=library_key or None)
        except Busy as exc:
            raise _error(exc, "Busy 忙") from None
        except (JobError, ValueError) as exc:
            raise _error(exc, "Cannot start 无法开始") from None

    def start(self, base: Any, method: Any, epochs: Any, max_steps: Any, lr: Any, batch_size: Any,
              max_length: Any, name: Any, library_key: Any = None, request: gr.Request | None = None):
        """Start button: the screen, the job id for the browser to keep, a fresh `seen`."""
        view = self.start_job(base, method, epochs, max_steps, lr, batch_size, max_length, name, library_key,
                              request=request)
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
        """Start is only ever disabled here (while a job runs); `check_settings`, which runs
        after every screen, enables it when the settings and the corpus allow."""
        active = view is not None and view.active
        resumable = bool(view and view.resumable)
        frame = plot_frame(view)
        start = (gr.update(interactive=False) if active else
                 gr.update(value="Start over 重新开始" if resumable else "Start 开始"))
        resume = gr.update(visible=resumable, value=f"Resume from step {view.resume_step} 从第 {view.resume_step} 步继续"
                           if resumable and view.resume_step is not None else "Resume 继续")
        return (render_status(view, None if active else self.manager.busy(owner)),
                gr.update(value=frame, visible=frame is not None), render_samples(view),
                start, gr.update(interactive=active), resume,
                gr.update(visible=bool(view and view.state == "done")),
                gr.Timer(active=active))

    def poll(self, seen: dict | None, key: Any = None, request: gr.Request | None = None):
        """Timer tick: the screen, plus the model lists and My models once a model is ready."""
        owner = _owner(request)
        return self._refresh(self.manager.view(owner), seen, owner, key)

    def attach(self, job_id: Any, key: Any = None, request: gr.Request | None = None):
        """Page load: offer this browser's kept models (My models), re-attach to the job it
        started (its id survives a reload) and show the form as that job was started."""
        owner = _owner(request)
        kept = self._claim(owner, key)
        view = self.manager.adopt(job_id, owner) if job_id else None
        view = view or self.manager.view(owner)
        *screen, models, bases, _, seen = self._refresh(view, {}, owner)
        if kept and models == gr.skip():
            models = gr.update(choices=self.registry.choices(owner))
        base, *form = self._form(view, owner)
        bases = gr.update(choices=self.base_choices(owner), **({} if base is None else {"value": base}))
        return (*screen, models, bases, self._library_list(kept), seen, *form, _valid_key(key))

    def _claim(self, owner: str, key: Any) -> list:
        if not key:
            return []
        try:
            return self.manager.claim(owner, key)
        except LibraryError as exc:
            gr.Warning(bilingual(str(exc)))
            return []

    def _form(self, view: JobView | None, owner: str) -> tuple:
        """(base id or None, then FORM_OUTPUTS): the settings, name, report and preview of the
        owner's latest job."""
        if view is None or not view.form:
            return (None, *(gr.skip(),) * 9)
        f, upload = view.form, self.manager.job_upload(owner)
        report = render_report(upload) if upload else gr.skip()
        preview = preview_table(upload.preview) if upload else gr.skip()
        value = (lambda k: f[k] if k in f else gr.skip())
        return (f.get("base"), report, preview, value("method"),
                value("epochs"), value("max_steps"), gr.update(value=f.get("lr", ""),
                                                               placeholder=lr_placeholder(f.get("method"))),
                value("batch_size"), value("max_length"), value("name"))

    # My models
    def _library_list(self, kept: list, selected: str | None = None):
        import datetime as dt

        choices = [(f"{item.label} · {dt.datetime.fromtimestamp(item.created):%Y-%m-%d %H:%M}", item.id)
                   for item, _ in kept]
        ids = [i for _, i in choices]
        value = selected if selected in ids else (ids[-1] if ids else None)
        return gr.update(choices=choices, value=value)

    def library_refresh(self, key: Any, selected: Any = None, request: gr.Request | None = None):
        """The tab is shown: the list again (before the page load sent the key: as it is)."""
        owner = _owner(request)
        if not key:
            return gr.skip()
        return self._library_list(self._claim(owner, key), selected if isinstance(selected, str) else None)

    def library_use(self, key: Any, item_id: Any, request: gr.Request | None = None):
        """Select a kept model in the Generate tab (and as the base of the next fine-tune)."""
        owner = _owner(request)
        kept = dict((item.id, model_id) for item, model_id in self._claim(owner, key))
        if item_id not in kept or kept[item_id] is None:
            raise _error(LibraryError("library: choose one of your models first 请先选择一个模型"), "My models 我的模型")
        gr.Info("Selected in the Generate tab 已在「生成」页选中")
        return (gr.update(choices=self.registry.choices(owner), value=kept[item_id]),
                gr.update(choices=self.base_choices(owner)))

    def library_download(self, key: Any, item_id: Any, request: gr.Request | None = None):
        owner = _owner(request)
        try:
            built = self.manager.zip_item(owner, key, item_id)
        except LibraryError as exc:
            raise _error(exc, "My models 我的模型") from None
        return gr.update(value=str(self._hand_over(owner, built)), visible=True)

    def library_delete(self, key: Any, item_id: Any, request: gr.Request | None = None):
        owner = _owner(request)
        if item_id is None:  # the confirmation was declined
            return gr.skip(), gr.skip(), gr.skip()
        try:
            item = self.manager.forget(owner, key, item_id)
        except LibraryError as exc:
            raise _error(exc, "My models 我的模型") from None
        gr.Info(f"Deleted {item.label} 已删除")
        return (self._library_list(self._claim(owner, key)), gr.update(choices=self.registry.choices(owner)),
                gr.update(visible=False))

    def _refresh(self, view: JobView | None, seen: dict | None, owner: str, key: Any = None):
        seen = dict(seen or {})
        models = bases = library = gr.skip()
        if view is not None and view.state == "done" and view.model_id and seen.get("model") != view.model_id:
            seen["model"] = view.model_id
            models = gr.update(choices=self.registry.choices(owner), value=view.model_id)
            bases = gr.update(choices=self.base_choices(owner))
            if view.library_id and key:
                library = self._library_list(self._claim(owner, key), view.library_id)
            if view.library_note:
                gr.Warning(view.library_note)
        status, plot, samples, *rest = self.screen(view, owner)
        key = (view.id, len(view.losses), len(view.evals)) if view else None
        if seen.get("plot") == list(key or []):
            plot = gr.skip()
        seen["plot"] = list(key or [])
        if view is not None and seen.get("samples") == [view.id, view.sample_step]:
            samples = gr.skip()
        seen["samples"] = [view.id, view.sample_step] if view else []
        return (status, plot, samples, *rest, models, bases, library, seen)

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
        return gr.update(value=str(self._hand_over(owner, built)), visible=True)

    def _hand_over(self, owner: str, built: Path) -> Path:
        """Move a zip from the session's folder to a random folder of gradio's cache (the data
        folder itself is blocked from gradio's file route); deleted when the session ends."""
        folder = Path(gr.utils.get_upload_folder()) / f"textgen-{secrets.token_hex(20)}"
        folder.mkdir(parents=True, mode=0o700)
        dest = folder / built.name
        shutil.move(built, dest)
        self.manager.keep_until_release(owner, folder)
        return dest

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


def _valid_key(key: Any) -> str | None:
    try:
        return check_key(key)
    except LibraryError:
        return None


def _keywords(value: Any) -> str:
    if value not in ("column", "auto"):
        raise gr.Error(f"keywords: must be column or auto, got {value!r}", print_exception=False)
    return value


def _drop_gradio_copy(path: Path) -> None:
    """The upload is in our own folder now; gradio's cached copy would be served to anyone with
    its URL, so it goes."""
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
    from ..config import config_specs

    spec = config_specs()
    manager = make_manager(registry)
    h = FinetuneHandlers(registry, manager)
    step_cap = int(min(manager.caps.max_steps or spec["max_steps"]["max"], spec["max_steps"]["max"]))
    with gr.Tab("Fine-tune 微调", id="finetune") as tab:
        gr.Markdown("Teach a model your own style: upload texts with titles and keywords, check what was "
                    "understood, then train. 用自己的文本微调模型：上传带标题和关键词的文本，检查后开始训练。",
                    elem_classes="ft-intro")
        with gr.Row(equal_height=False):
            with gr.Column(scale=2, min_width=320):
                gr.Markdown("### 1 · Corpus 语料")
                # spreadsheets are accepted here only to be refused with how to save them as CSV
                file = gr.File(label="Corpus file 语料文件 (CSV, TSV, JSONL)", file_count="single",
                               file_types=[".csv", ".tsv", ".txt", ".jsonl", ".json", ".xlsx", ".xls", ".ods",
                                           ".numbers"], type="filepath",
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
                    # text, not a number box: empty must stay empty (the method's default), never 0
                    lr = gr.Textbox("", label="Learning rate 学习率", placeholder=lr_placeholder(DEFAULTS["method"]),
                                    info="peak learning rate; empty: the method's default 峰值学习率，留空使用默认值",
                                    max_length=20, elem_id="ft-lr")
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
                check = gr.HTML(_check_line("Upload a corpus to start. 请先上传语料。"), css_template=CSS,
                                elem_id="ft-check")
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
        with gr.Accordion("My models 我的模型", open=True, elem_id="ft-library-box"):
            gr.Markdown("Models you fine-tuned in this browser, kept on the server across reloads and restarts; "
                        "another browser does not see them. 在本浏览器微调的模型，刷新或重启后仍保留，其他浏览器看不到。",
                        elem_classes="ft-intro")
            with gr.Row():
                library = gr.Dropdown([], label="Your models 你的模型", elem_id="ft-library", scale=3)
                use = gr.Button("Use in Generate 在生成中使用", elem_id="ft-library-use", scale=1)
                fetch = gr.Button("Prepare download 准备下载", elem_id="ft-library-zip", scale=1)
                remove = gr.Button("Delete 删除", variant="stop", elem_id="ft-library-delete", scale=1)
            fetched = gr.DownloadButton("Download zip 下载", visible=False, variant="primary",
                                        elem_id="ft-library-download")
        timer = gr.Timer(POLL_S, active=False)
        job_id = gr.Textbox(visible=False)  # carries the id to and from the browser's localStorage
        seen = gr.State({})
        key_box = gr.Textbox(visible=False)  # carries the My models key from the browser's localStorage
        key = gr.State(None)  # that key, once checked
        _api(h, manager, step_cap)  # inside the tab: gr.Tabs() takes only tabs as children

    screen = [status, plot, samples, start, stop, resume, done, timer]
    refresh = [*screen, generate.model, base, library, seen]
    form = [report, preview, method, epochs, max_steps, lr, batch_size, max_length, name]
    checked = [base, method, epochs, max_steps, lr, batch_size, max_length]
    settings = [*checked, name, key]
    private_ = dict(api_visibility="private", show_progress="hidden")
    check_ = dict(fn=h.check_settings, inputs=checked, outputs=[start, check], queue=False, **private_)

    file.upload(h.upload, [file, keywords], [report, preview, name], api_name="finetune_upload",
                api_description="Upload a corpus (CSV, TSV or JSONL); returns the report and the first rows.",
                show_progress="minimal", show_progress_on=[report]).then(**check_)
    keywords.change(h.rekeyword, keywords, [report, preview], **private_).then(**check_)
    gr.on([c.change for c in checked], **check_)
    method.change(lambda m: gr.update(placeholder=lr_placeholder(m)), method, lr, queue=False, **private_)
    start.click(h.start, settings, [*screen, job_id, seen], **private_).then(
        None, job_id, None, js=STORE_JOB_JS, **private_).then(
        h.poll, [seen, key], refresh, queue=False, **private_).then(**check_)
    stop.click(h.stop, None, screen, queue=False, **private_).then(**check_)
    resume.click(h.resume, None, screen, **private_).then(**check_)
    timer.tick(h.poll, [seen, key], refresh, queue=False, **private_).then(**check_)
    zip_button.click(h.prepare_download, None, download, **private_)
    push.click(h.push, [repo_id, token, private], [pushed, token], **private_)
    use.click(h.library_use, [key, library], [generate.model, base], **private_)
    fetch.click(h.library_download, [key, library], fetched, **private_)
    remove.click(h.library_delete, [key, library], [library, generate.model, fetched], js=CONFIRM_DELETE_JS,
                 **private_)
    library.change(lambda: gr.update(visible=False), None, fetched, queue=False, **private_)
    # the page opens on the Generate tab: this tab's lists are filled again when it is shown
    tab.select(h.library_refresh, [key, library], library, queue=False, **private_)

    root = gr.context.Context.root_block
    root.load(h.attach, [job_id, key_box], [*refresh, *form, key], js=LOAD_JOB_JS, queue=False, **private_).then(
        **check_)
    root.unload(h.release)
    return FinetuneTab(manager=manager, handlers=h)


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
        return h.start_job(base, method, epochs, max_steps, lr, batch_size, max_length, name, library_key or None,
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
