"""The Fine-tune tab's handlers: upload and check a corpus, check the settings as they change,
start, stop, resume and follow a job, then download, push or keep its model (My models).
Every input is checked again here; the job manager checks it once more."""
from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr

from textgen.messages import bilingual

from .caps import WEB_LR, Caps
from .errors import Busy, HubError, JobError, LibraryError, UnknownModelError
from ..events import duration
from .job import JobView
from .jobs import JobManager
from .library import check_key
from .registry import ModelRegistry, owner_from_request
from .ui_library import LibraryHandlers
from .ui_render import (EMPTY_REPORT, check_line, empty_preview, escape, plot_frame, preview_table, render_report,
                        render_samples, render_status, report_error)
from .ui_session import hand_over, session_owner, tab_error


# Seconds per optimizer step of a LoRA run of a 4.3M-parameter built-in at batch 4 × 128 tokens
# on 2 CPU cores (benchmarks/finetune_defaults.py: 300 steps in 35-48 s); estimates scale it.
STEP_S = 0.14

STEP_PARAMS, STEP_TOKENS = 4.3e6, 4 * 128

KNOWN_PARAMS = {"gpt2": 124e6, "distilgpt2": 82e6, "gpt2-chinese": 102e6}


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


@dataclass(frozen=True)
class FinetuneSettings:
    """The Settings section as the page or the API sends it, unchecked, in the order of the
    tab's inputs; `FinetuneHandlers.settings` checks it into TrainConfig fields."""

    base: Any
    method: Any
    epochs: Any
    max_steps: Any
    lr: Any
    batch_size: Any
    max_length: Any

    def shown(self) -> dict[str, Any]:
        """The form as the page shows it again after a reload (the learning rate as typed)."""
        lr = self.lr if isinstance(self.lr, str) else ("" if self.lr is None else str(self.lr))
        return {**dataclasses.asdict(self), "lr": lr}


class FinetuneHandlers:
    """The tab's server-side functions, testable without a server.

    `screen(view)` gives the values of SCREEN_OUTPUTS: status, plot, samples, start, stop,
    resume, done box, timer."""

    def __init__(self, registry: ModelRegistry, manager: JobManager) -> None:
        self.registry, self.manager = registry, manager
        self.library = LibraryHandlers(registry, manager)  # the My models box

    # settings
    def base_choices(self, owner: str | None) -> list[tuple[str, str]]:
        """Base models: built-ins, local folders, this user's fine-tuned models; hub models
        while the hub can be reached."""
        return self.registry.choices(owner)

    def default_base(self) -> str | None:
        choices = [i for _, i in self.base_choices(None)]
        default = self.registry.default_id()
        return default if default in choices else (choices[0] if choices else None)

    def settings(self, form: FinetuneSettings, owner: str) -> dict[str, Any]:
        """Checked TrainConfig settings; the base model by registry id only (never a path)."""
        try:
            entry = self.registry.resolve(form.base, owner)
        except UnknownModelError as exc:
            raise tab_error(exc, "Unknown model 未知模型") from None
        source = "auto" if entry.kind == "auto" else str(entry.source)
        return dict(base=source, revision=entry.revision or "", method=form.method, epochs=form.epochs,
                    max_steps=form.max_steps, lr=parse_lr(form.lr, form.method), batch_size=form.batch_size,
                    max_length=form.max_length)

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
            settings = self.settings(FinetuneSettings(base, method, epochs, max_steps, lr, batch_size, max_length),
                                     owner)
            self.manager.check_settings(settings)
        except gr.Error as exc:
            return self._start_button(False, resumable), check_line(str(exc.message), bad=True)
        except ValueError as exc:
            return self._start_button(False, resumable), check_line(bilingual(str(exc)), bad=True)
        corpus = (upload or self.manager.job_upload(owner)) if resumable else upload
        if corpus is None:
            return self._start_button(False, resumable), check_line(
                "Upload a corpus to start. 请先上传语料。")
        return self._start_button(True, resumable), check_line(self.estimate(base, settings, corpus, owner))

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
        owner = session_owner(request)
        if not file:
            return EMPTY_REPORT, empty_preview(), gr.skip()
        path = Path(file if isinstance(file, (str, Path)) else getattr(file, "name", ""))
        try:
            upload, rows = self.manager.save_upload(owner, path, keywords=_keywords(keywords))
        except (ValueError, OSError) as exc:
            raise tab_error(exc, "Corpus not usable 语料无法使用") from None
        finally:
            _drop_gradio_copy(path)
        name = f"{Path(upload.name).stem[:40]} · fine-tuned 微调"
        return render_report(upload), preview_table(rows), name

    def rekeyword(self, keywords: str, request: gr.Request | None = None):
        owner = session_owner(request)
        if self.manager.upload(owner) is None:
            return gr.skip(), gr.skip()
        try:
            upload, rows = self.manager.reload_upload(owner, keywords=_keywords(keywords))
        except (ValueError, OSError) as exc:
            return report_error(str(exc)), empty_preview()
        return render_report(upload), preview_table(rows)

    # jobs
    def start_job(self, form: FinetuneSettings, name: Any, library_key: Any = None,
                  request: gr.Request | None = None) -> JobView:
        owner = session_owner(request)
        try:
            settings = self.settings(form, owner)
        except ValueError as exc:
            raise tab_error(exc, "Cannot start 无法开始") from None
        label = name if isinstance(name, str) and name.strip() else "fine-tuned 微调"
        try:
            return self.manager.start(owner, settings, label=label, form={**form.shown(), "name": label},
                                      library_key=library_key or None)
        except Busy as exc:
            raise tab_error(exc, "Busy 忙") from None
        except (JobError, ValueError) as exc:
            raise tab_error(exc, "Cannot start 无法开始") from None

    def start(self, base: Any, method: Any, epochs: Any, max_steps: Any, lr: Any, batch_size: Any,
              max_length: Any, name: Any, library_key: Any = None, request: gr.Request | None = None):
        """Start button: the screen, the job id for the browser to keep, a fresh `seen`."""
        view = self.start_job(FinetuneSettings(base, method, epochs, max_steps, lr, batch_size, max_length), name,
                              library_key, request=request)
        return (*self.screen(view, owner_from_request(request)), view.id, {"job": view.id})

    def stop(self, request: gr.Request | None = None):
        owner = session_owner(request)
        try:
            view = self.manager.stop(owner)
        except JobError as exc:
            gr.Warning(str(exc))
            view = self.manager.view(owner)
        return self.screen(view, owner)

    def resume(self, request: gr.Request | None = None):
        owner = session_owner(request)
        try:
            view = self.manager.resume(owner)
        except Busy as exc:
            raise tab_error(exc, "Busy 忙") from None
        except JobError as exc:
            raise tab_error(exc) from None
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
        owner = session_owner(request)
        return self._refresh(self.manager.view(owner), seen, owner, key)

    def attach(self, job_id: Any, key: Any = None, request: gr.Request | None = None):
        """Page load: offer this browser's kept models (My models), re-attach to the job it
        started (its id survives a reload) and show the form as that job was started."""
        owner = session_owner(request)
        kept = self.library.claim(owner, key)
        view = self.manager.adopt(job_id, owner) if job_id else None
        view = view or self.manager.view(owner)
        *screen, models, bases, _, seen = self._refresh(view, {}, owner)
        if kept and models == gr.skip():
            models = gr.update(choices=self.registry.choices(owner))
        base, *form = self._form(view, owner)
        bases = gr.update(choices=self.base_choices(owner), **({} if base is None else {"value": base}))
        return (*screen, models, bases, self.library.shelf_list(kept), seen, *form, _valid_key(key))

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

    def _refresh(self, view: JobView | None, seen: dict | None, owner: str, key: Any = None):
        seen = dict(seen or {})
        models = bases = library = gr.skip()
        if view is not None and view.state == "done" and view.model_id and seen.get("model") != view.model_id:
            seen["model"] = view.model_id
            models = gr.update(choices=self.registry.choices(owner), value=view.model_id)
            bases = gr.update(choices=self.base_choices(owner))
            if view.library_id and key:
                library = self.library.shelf_list(self.library.claim(owner, key), view.library_id)
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
        owner = session_owner(request)
        try:
            built = self.manager.zip_model(owner)
        except JobError as exc:
            raise tab_error(exc) from None
        return gr.update(value=str(hand_over(self.manager, owner, built)), visible=True)

    def push(self, repo_id: Any, token: Any, private: Any, request: gr.Request | None = None):
        """Push to the Hub with the token typed in; the token box is emptied whatever happens."""
        owner = session_owner(request)
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
