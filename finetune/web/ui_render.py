"""The Fine-tune tab's HTML and tables: the corpus report, the first rows, the job's status
and progress bar, the loss curve's frame, the samples of the last evaluation. Pure functions,
escaped against gr.HTML's template syntax."""
from __future__ import annotations

import pandas as pd

from ..events import duration
from .cards import escape
from .job import JobView
from .uploads import PREVIEW_ROWS

PREVIEW_CHARS = 160

PLOT_COLUMNS = ["step", "loss", "split"]


def check_line(text: str, *, bad: bool = False) -> str:
    return f'<div class="ft-check{" ft-check-bad" if bad else ""}">{"✗ " if bad else ""}{escape(text)}</div>'


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
