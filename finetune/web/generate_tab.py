"""The Generate tab's layout: title, keyword tags, sampling sliders, the cards, and the
events that tie them to `GenerateHandlers`. CSS and JS are files of assets/ui/."""
from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace
from typing import Iterator

import gradio as gr

from textgen.keywords import MAX_KEYWORDS
from textgen.params import param_specs
from textgen.prompt import MAX_TITLE_CHARS

from .assets import asset
from .cards import EMPTY_HTML, status_html
from .generate import DEFAULT_LENGTH, GENERATE_OUTPUTS, GenerateHandlers
from .registry import ModelRegistry, owner_from_request


SPECS = param_specs()
FORM_LABELS = [("free 自由", "free"), ("五言绝句", "wujue"), ("七言绝句", "qijue"), ("五言律诗", "wulv"),
               ("七言律诗", "qilv")]


MODE_LABELS = {"guaranteed": "guaranteed 保证出现", "soft": "soft 尽量出现", "off": "off 不约束"}
# what the built-in models write best: classical poem titles (zh, trained on Tang and Song
# poems) and encyclopedic or everyday titles (en, trained on Wikipedia)
EXAMPLES = [
    ["春夜", ["月", "花", "雨"]],
    ["送别", ["江", "柳", "酒"]],
    ["Volcano", ["lava", "island"]],
    ["The history of tea", ["China", "trade", "ships"]],
]


# offered in the keyword box's list; gr.Examples also shows only values among the choices
SUGGESTED_KEYWORDS = list(dict.fromkeys(k for _, words in EXAMPLES for k in words))


@dataclass
class GenerateTab:
    """What the Generate tab offers to other tabs."""

    model: gr.Dropdown
    handlers: GenerateHandlers
    length_inputs: list | None = None  # what `GenerateHandlers.length_bounds` reads and writes
    length_outputs: list | None = None

    def refresh_models(self, request: gr.Request | None = None):
        return self.handlers.refresh_models(request)


def _slider(name: str, label: str) -> gr.Slider:
    spec = SPECS[name]
    low = spec["min"] + spec["step"] if spec["low_open"] else spec["min"]
    return gr.Slider(low, spec["max"], value=spec["default"], step=spec["step"], label=label,
                     info=spec["help"], elem_id=f"tg-{name}")


THEME = gr.themes.Soft(primary_hue="indigo", secondary_hue="amber").set(
    button_primary_background_fill="*primary_600", button_primary_background_fill_hover="*primary_700",
    button_primary_text_color="white", button_primary_background_fill_dark="*primary_600",
    button_primary_background_fill_hover_dark="*primary_500", button_primary_text_color_dark="white")


def no_builtin_notice(registry: ModelRegistry) -> str:
    if registry.has_builtins():
        return ""
    return ("**No built-in model installed yet 尚未安装内置模型** (expected in `assets/models/textgen-zh`, "
            "`textgen-en`). Choose a model below: Hugging Face Hub models need a network connection; "
            "set `TEXTGEN_EXTRA_MODELS=/path/to/model` to offer a local one. "
            "请选择下方模型：Hub 模型需要联网，或用 `TEXTGEN_EXTRA_MODELS` 指定本地模型文件夹。")


def build_generate_tab(registry: ModelRegistry, handlers: GenerateHandlers, *,
                       concurrency: int | None) -> GenerateTab:
    ui = SimpleNamespace()  # the components, by name, for the events below
    with gr.Row(equal_height=False):
        with gr.Column(scale=2, min_width=320):
            _prompt_section(ui, registry, handlers)
            _sampling_section(ui)
            gr.Examples(EXAMPLES, inputs=[ui.title, ui.keywords], label="Examples 示例")
        with gr.Column(scale=3, min_width=360):
            _results_section(ui)
    ui.shown = gr.State(None)
    ui.unit = gr.State(None)
    _wire(ui, handlers, concurrency)
    return GenerateTab(model=ui.model, handlers=handlers, length_inputs=ui.length_inputs,
                       length_outputs=ui.length_outputs)


def _prompt_section(ui: SimpleNamespace, registry: ModelRegistry, handlers: GenerateHandlers) -> None:
    # custom values: the registry checks every id server-side, and a session whose state
    # gradio dropped still holds choices (its fine-tuned models) the default list lacks
    ui.model = gr.Dropdown(registry.choices(), value=registry.default_id(), label="Model 模型",
                           allow_custom_value=True, elem_id="tg-model")
    ui.title = gr.Textbox(label="Title 标题", placeholder="e.g. 春夜 / The Storm",
                          max_length=MAX_TITLE_CHARS, elem_id="tg-title")
    ui.keywords = gr.Dropdown(choices=SUGGESTED_KEYWORDS, value=[], multiselect=True, allow_custom_value=True,
                              max_choices=MAX_KEYWORDS, label="Keywords 关键词", elem_id="tg-keywords",
                              info="Type a keyword and press Enter, or paste a list separated by , ， 、 ; "
                                   "— × removes one. 输入关键词后按回车，或粘贴用逗号、顿号分隔的列表。")
    ui.mode = gr.Radio([(MODE_LABELS[m], m) for m in handlers.modes], value=handlers.default_mode,
                       label="Keyword mode 关键词模式", info=SPECS["keyword_mode"]["help"], elem_id="tg-mode")
    with gr.Row(visible=False, elem_id="tg-form-row") as ui.form_row:
        ui.form = gr.Radio(FORM_LABELS, value="free", label="Poem form 诗体", info=SPECS["form"]["help"],
                           elem_id="tg-form", scale=3)
        ui.rhyme = gr.Checkbox(True, label="Rhyme 押韵", info=SPECS["rhyme"]["help"], elem_id="tg-rhyme",
                               scale=1)
    ui.length = gr.Slider(
        minimum=1, maximum=400, value=DEFAULT_LENGTH["zh"], step=1, label="Length 长度",
        info="about how long each text is: characters for Chinese, words for English "
             "每条文本大约的长度：中文按字，英文按词", elem_id="tg-length")
    with gr.Row():
        ui.run = gr.Button("Generate 生成", variant="primary", elem_id="tg-generate")
        ui.stop = gr.Button("Stop 停止", variant="stop", elem_id="tg-stop")


def _sampling_section(ui: SimpleNamespace) -> None:
    with gr.Accordion("Sampling 采样设置", open=False):
        ui.n = _slider("n", "Candidates 候选数")
        ui.temperature = _slider("temperature", "Temperature 温度")
        ui.top_k = _slider("top_k", "Top-k")
        ui.top_p = _slider("top_p", "Top-p")
        ui.repetition_penalty = _slider("repetition_penalty", "Repetition penalty 重复惩罚")
        with gr.Row():
            ui.seed = gr.Number(label="Seed 随机种子", precision=0, minimum=SPECS["seed"]["min"],
                                maximum=SPECS["seed"]["max"], value=0, elem_id="tg-seed")
            ui.random_seed = gr.Checkbox(label="Random seed 随机", value=True, elem_id="tg-random")


def _results_section(ui: SimpleNamespace) -> None:
    ui.status = gr.HTML(status_html("Ready 就绪"), elem_id="tg-status")
    ui.cards = gr.HTML(EMPTY_HTML, css_template=asset("cards.css"), js_on_load=asset("cards.js"),
                       elem_id="tg-cards", min_height=160)
    ui.best = gr.Textbox(label="Best text 最佳文本", lines=4, interactive=False, buttons=["copy"], elem_id="tg-best")
    with gr.Row():
        ui.export_txt = gr.DownloadButton("Export TXT 导出文本", visible=False, size="sm", elem_id="tg-export-txt")
        ui.export_json = gr.DownloadButton("Export JSON 导出 JSON", visible=False, size="sm",
                                           elem_id="tg-export-json")
    # The cards' Rewrite buttons write the candidate's index here and click `again`
    # (cards.js): hidden by CSS, since gradio does not render invisible components.
    with gr.Row(elem_classes="tg-hidden"):
        ui.again_index = gr.Number(-1, precision=0, elem_id="tg-again-index", show_label=False)
        ui.again = gr.Button("again", elem_id="tg-again")


def _wire(ui: SimpleNamespace, handlers: GenerateHandlers, concurrency: int | None) -> None:
    """The events; `outputs` in the order of `GENERATE_OUTPUTS`."""
    outputs = [getattr(ui, name) for name in GENERATE_OUTPUTS]
    inputs = [ui.model, ui.title, ui.keywords, ui.mode, ui.n, ui.length, ui.temperature, ui.top_k, ui.top_p,
              ui.repetition_penalty, ui.seed, ui.random_seed, ui.form, ui.rhyme]
    ui.length_inputs = [ui.model, ui.title, ui.keywords, ui.n, ui.length, ui.unit]
    ui.length_outputs = [ui.length, ui.unit, ui.form_row, ui.form]
    # preprocess=False: the handlers check every value themselves, and the Length slider's own
    # check would refuse, with gradio's bare "Error", a value above a bound that changed while
    # its tab was hidden (the length check then answers in words the user reads)
    private = dict(api_visibility="private")
    event = gr.on([ui.run.click, ui.title.submit], handlers.stream, inputs, outputs, preprocess=False,
                  concurrency_limit=concurrency, concurrency_id="generate",
                  show_progress="minimal", show_progress_on=[ui.status], **private)
    rewrite = ui.again.click(handlers.again, [ui.again_index, ui.shown], outputs, concurrency_limit=concurrency,
                             concurrency_id="generate", show_progress="minimal", show_progress_on=[ui.status],
                             **private)
    # Stop cancels; the stopped state is drawn by a `.then` of the cancelled event, which the page
    # runs only once the cancel is done and the event's own late updates can no longer land on
    # top of it (after a normal ending there is nothing left to mark, and it changes nothing)
    ui.stop.click(None, None, None, cancels=[event, rewrite], queue=False, show_progress="hidden", **private)
    for ended in (event, rewrite):
        ended.then(handlers.stopped, None, outputs, queue=False, show_progress="hidden", **private)
    ui.keywords.change(handlers.split_tags, ui.keywords, ui.keywords, queue=False, show_progress="hidden", **private)
    ui.seed.input(lambda: False, None, ui.random_seed, queue=False, show_progress="hidden", **private)
    gr.on([ui.model.change, ui.title.blur, ui.keywords.change, ui.n.change], handlers.length_bounds,
          ui.length_inputs, ui.length_outputs, show_progress="hidden", preprocess=False, **private)


def api_endpoint(handlers: GenerateHandlers, registry: ModelRegistry, *, concurrency: int | None) -> None:
    s = {k: v["default"] for k, v in SPECS.items()}
    default_model, default_mode = registry.default_id() or "", handlers.default_mode

    def generate(title: str, keywords: list[str] | str = "", model: str = default_model,
                 keyword_mode: str = default_mode, n: int = s["n"],
                 max_new_tokens: int = s["max_new_tokens"], temperature: float = s["temperature"],
                 top_k: int = s["top_k"], top_p: float = s["top_p"],
                 repetition_penalty: float = s["repetition_penalty"], seed: int | None = None,
                 length: int | None = None, form: str = "free", rhyme: bool = True,
                 request: gr.Request = None) -> Iterator[dict]:
        """Write texts from a title and keywords; the final answer (what `predict` returns) is
        {"done": true, "candidates": [{"text", "covered", "missing", "score"}, …], "model",
        "seed", "stopped", …}, best candidate first; `submit` also sees progress
        {"done": false, "status": "loading" | "waiting" | "generating", "position", "tokens"}.
        `keywords` is a list or a text separated by , ， 、 ; |; `model` is a model id or label
        from the app's list; `length` (characters for Chinese, words for English) replaces
        `max_new_tokens` when given (gradio_client fills it in when left out, so older
        clients keep working); each candidate also says how many `tokens` it took. `form` (wujue,
        qijue, wulv, qilv) writes a Chinese poem of that shape, rhyming unless `rhyme` is false;
        each candidate then has a "form" report (shape_ok, rhyme_group, rhyming_lines, rhymes)."""
        yield from handlers.generate_events(model, title, keywords, keyword_mode, owner_from_request(request),
                                            request, n=n, max_new_tokens=max_new_tokens, length=length,
                                            temperature=temperature, top_k=top_k, top_p=top_p,
                                            repetition_penalty=repetition_penalty, seed=seed, form=form,
                                            rhyme=rhyme)

    gr.api(generate, api_name="generate", concurrency_limit=concurrency, concurrency_id="generate")
