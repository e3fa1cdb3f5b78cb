"""The Generate tab's cards as HTML: each candidate's text with its keywords marked, which
keywords it wrote and which it missed, its score and its poem-form report. Pure functions of
their inputs, escaped against gr.HTML's template syntax."""
from __future__ import annotations

import html
from typing import Any, Sequence

from textgen.coverage import Span, coverage



EMPTY_HTML = ('<div class="tg-empty">Candidates appear here as they are written.<br>'
              '候选文本会在生成时逐字显示在这里。</div>')


def escape(text: Any) -> str:
    """HTML-escape, and also neutralise the template syntax gr.HTML understands (${…}, {{…}})."""
    return (html.escape(str(text), quote=True)
            .replace("$", "&#36;").replace("{", "&#123;").replace("}", "&#125;"))


def highlight(text: str, spans: Sequence[Span]) -> str:
    """Text as safe HTML with each keyword occurrence in <mark>; overlapping spans are merged away."""
    out, pos = [], 0
    for span in sorted(spans, key=lambda s: (s.start, -s.end)):
        if span.start < pos:
            continue
        out.append(escape(text[pos:span.start]))
        out.append(f'<mark class="tg-kw" title="{escape(span.keyword)}">{escape(text[span.start:span.end])}</mark>')
        pos = span.end
    out.append(escape(text[pos:]))
    return "".join(out)


def _chips(words: Sequence[str], cls: str) -> str:
    return "".join(f'<span class="tg-chip {cls}">{escape(w)}</span>' for w in words)


SCORE_HELP = ("score: the mean log-probability per token under the model; closer to 0 means the model "
              "finds the text more likely. Cards are ranked by keywords written first, then by score. "
              "得分：模型给每个词元的平均对数概率，越接近 0 越通顺；先按写出的关键词数排序，再按得分。")


def render_card(rank: str, text: str, keywords: Sequence[str], *, score: float | None = None,
                best: bool = False, spans: Sequence[Span] | None = None, note: str = "",
                index: int | None = None, waiting: bool = True, form: dict | None = None) -> str:
    """One candidate. `spans` (a finished candidate's own coverage) saves finding the keywords
    again; `index` adds a "Rewrite" button for that sample row; `note` marks a cut text."""
    if spans is None:
        covered, missing, spans = coverage(text, keywords)
    else:
        found = {s.keyword for s in spans}
        covered, missing = [k for k in keywords if k in found], [k for k in keywords if k not in found]
    meta = [f'<span class="tg-rank">{escape(rank)}</span>']
    if best:
        meta.append('<span class="tg-best">best 最佳</span>')
    if note:
        meta.append(f'<span class="tg-note">{escape(note)}</span>')
    if score is not None:
        meta.append(f'<span class="tg-score" title="{escape(SCORE_HELP)}">score {score:.2f}</span>')
    summary = ""
    if keywords:
        summary = (f'<div class="tg-summary"><span class="tg-count">{len(covered)}/{len(keywords)} '
                   f'keywords 关键词</span>{_chips(covered, "tg-covered")}{_chips(missing, "tg-missing")}</div>')
    if form:
        summary += render_form(form)
    if text:
        body = highlight(text, spans)
    elif waiting:
        body = '<span class="tg-wait">…</span>'
    else:
        body = '<span class="tg-wait">(nothing written 未写出文本)</span>'
    again = (f'<button type="button" class="tg-again" data-index="{index}" title="Write this candidate again '
             f'with a new seed 用新种子重写这一条">Rewrite 重写</button>' if index is not None else "")
    return (f'<div class="tg-card{" tg-card-best" if best else ""}"><div class="tg-head">{"".join(meta)}'
            f'<span class="tg-actions">{again}<button type="button" class="tg-copy" title="Copy text 复制文本">'
            f'Copy 复制</button></span></div><div class="tg-text">{body}</div>{summary}</div>')


def render_form(report: dict) -> str:
    """A candidate's form report: its shape and rhyme, as ✓/✗ chips."""
    from textgen.forms import FORMS

    label = FORMS[report["form"]].label
    shape = _chips([f"{label} shape 格式"], "tg-covered" if report["shape_ok"] else "tg-missing")
    group = report.get("rhyme_group")
    lines = ", ".join(str(n) for n in report.get("rhyming_lines", []))
    rhyme = _chips([f"rhyme 押韵 -{group} (lines 句 {lines})" if group else "rhyme 押韵"],
                   "tg-covered" if report["rhymes"] else "tg-missing")
    return f'<div class="tg-summary tg-form">{shape}{rhyme}</div>'


def render_stream(texts: Sequence[str], keywords: Sequence[str], *, note: str = "", waiting: bool = True) -> str:
    cards = [render_card(f"Candidate {i} 候选 {i}", t, keywords, note=note, waiting=waiting)
             for i, t in enumerate(texts, 1)]
    return f'<div class="tg-cards">{"".join(cards)}</div>'


def render_result(result, keywords: Sequence[str], note: str = "") -> str:
    """The ranked cards of a `Result` or of `Shown.candidates` (dicts), with the score legend."""
    cards = []
    for rank, c in enumerate(result, 1):
        c = c if isinstance(c, dict) else candidate_dict(c)
        spans = [Span(*s) for s in c["spans"]]
        cards.append(render_card(f"#{rank}", c["text"], keywords, score=c["score"], best=rank == 1, spans=spans,
                                 note=c.get("note") or note, index=rank - 1, waiting=False, form=c.get("form")))
    legend = f'<div class="tg-legend">{escape(SCORE_HELP)}</div>' if cards else ""
    return f'<div class="tg-cards">{"".join(cards)}{legend}</div>'


def render_notice(message: str, title: str) -> str:
    """The cards area when nothing was written: why, in place of empty cards."""
    return (f'<div class="tg-empty tg-refused"><b>{escape(title)}</b><br>{escape(message)}</div>')


def candidate_dict(c) -> dict[str, Any]:
    return {"text": c.text, "covered": list(c.covered), "missing": list(c.missing), "score": float(c.score),
            "tokens": int(c.tokens), "spans": [[s.keyword, s.start, s.end] for s in c.spans], "note": "",
            "form": c.form}


def status_html(text: str) -> str:
    return f'<span class="tg-status">{escape(text)}</span>'
