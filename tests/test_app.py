"""The web app: handlers as plain functions, then the real server on 127.0.0.1 called through
gradio_client and plain HTTP."""
from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import gradio as gr  # noqa: E402
import httpx  # noqa: E402
from gradio_client import Client  # noqa: E402

import app  # noqa: E402
from helpers import free_port, launch_app  # noqa: E402

from finetune.web import cards

from finetune.web import generate

from finetune.web import generate_tab

from finetune.web import requests

from textgen.params import GenerationParams
from finetune.web.hub_status import HubStatus  # noqa: E402
from finetune.web.registry import ModelRegistry  # noqa: E402
from textgen import ModelLoadError  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
MODES = requests.KEYWORD_MODES_BEST_FIRST
MODE = "guaranteed"
SMALL = dict(n=2, length=8, temperature=0.9, top_k=30, top_p=0.9, repetition_penalty=1.2)



@pytest.fixture(scope="module")
def registry(bpe_model_dir, bert_zh_model_dir, tmp_path_factory) -> ModelRegistry:
    return ModelRegistry(tmp_path_factory.mktemp("home"), extra=[bpe_model_dir, bert_zh_model_dir],
                         builtins=False)


@pytest.fixture(scope="module")
def handlers(registry) -> generate.GenerateHandlers:
    return generate.GenerateHandlers(registry)


@pytest.fixture(scope="module")
def server(registry):
    demo = app.build_app(registry, queue_size=8)
    url = launch_app(demo, registry)
    yield url
    demo.close()


@pytest.fixture(scope="module")
def client(server) -> Client:
    return Client(server, verbose=False)


def ui_args(model, title="Storm", keywords=("sea", "night"), mode=MODE, seed=3, **over):
    values = {**SMALL, **over}
    return [model, title, list(keywords), mode, values["n"], values["length"], values["temperature"],
            values["top_k"], values["top_p"], values["repetition_penalty"], seed, seed is None]


# -- plain functions ------------------------------------------------------------------------
def test_keyword_list_keeps_tags_whole_and_splits_pasted_lists():
    assert requests.keyword_list(["long road", "sea"]) == ["long road", "sea"]
    assert requests.keyword_list(["月, 花、雨", "sea；night"]) == ["月", "花", "雨", "sea", "night"]
    assert requests.keyword_list("sea night") == ["sea", "night"]  # a plain string splits like the CLI
    assert requests.keyword_list("long road, sea") == ["long road", "sea"]
    assert requests.keyword_list(["Sea", "sea", " "]) == ["Sea"]
    assert requests.keyword_list(None) == []
    for bad in ([1, 2], [f"k{i}" for i in range(40)], {"a": 1}, 7):
        with pytest.raises(ValueError, match="keywords: "):
            requests.keyword_list(bad)


@pytest.mark.parametrize("change, field", [
    (dict(title="x" * 1_000_000), "title"),
    (dict(title="   ", keywords=[]), "title"),
    (dict(title=5), "title"),
    (dict(keywords=[f"k{i}" for i in range(10_000)]), "keywords"),
    (dict(keywords=["x" * 41]), "keywords"),
    (dict(max_new_tokens=1e9), "max_new_tokens"),
    (dict(max_new_tokens=0), "max_new_tokens"),
    (dict(max_new_tokens=-1), "max_new_tokens"),
    (dict(max_new_tokens="12"), "max_new_tokens"),
    (dict(temperature=0), "temperature"),
    (dict(temperature=float("nan")), "temperature"),
    (dict(top_p=1.5), "top_p"),
    (dict(n=99), "n"),
    (dict(repetition_penalty=0.5), "repetition_penalty"),
    (dict(seed=-1), "seed"),
    (dict(keyword_mode="always"), "keyword_mode"),
])
def test_check_request_names_the_field(change, field):
    values = dict(title="Storm", keywords=["sea"], keyword_mode="off", **SMALL)
    values.update(change)
    with pytest.raises(gr.Error) as info:
        requests.check_request(values.pop("title"), values.pop("keywords"), values.pop("keyword_mode"),
                          modes=["off"], **values)
    assert info.value.message.startswith(f"{field}:")
    assert len(info.value.message) < 300


def test_unavailable_mode_is_refused_by_name():
    with pytest.raises(gr.Error, match="keyword_mode: 'guaranteed' is not available"):
        requests.check_request("Storm", ["sea"], "guaranteed", modes=["off"], **SMALL)


def test_html_is_escaped():
    evil = '<img src=x onerror="alert(1)"> ${alert(2)} {{value}} & sea'
    out = cards.render_card("#1", evil, ["sea", "<b>"])
    assert "<img" not in out and "<b>" not in out and "${" not in out and "{{" not in out
    assert "&lt;img" in out and '<mark class="tg-kw" title="sea">sea</mark>' in out
    assert "&lt;b&gt;" in out  # the missing keyword chip, escaped


def test_highlight_marks_each_keyword_once_and_skips_overlaps():
    from textgen.coverage import coverage

    text = "The sea at night; seas again."
    _, _, spans = coverage(text, ["sea", "seat", "night", "the"])
    out = cards.highlight(text, spans)
    assert out.count("<mark") == 3
    assert '<mark class="tg-kw" title="the">The</mark>' in out


def test_stream_handler_yields_growing_cards_then_ranked_result(handlers, registry):
    model = registry.default_id()
    updates = list(handlers.stream(*ui_args(model)))
    cards, best, status, seed, shown, txt, js = updates[-1]
    assert cards.count('class="tg-rank"') == 2 and "#1" in cards and "best 最佳" in cards
    assert isinstance(best, str) and best
    assert "seed 3" in status and seed == 3 and re.search(r"\d+ tokens in [\d.]+ s \(\d+ tokens/s\)", status)
    assert [c["text"] for c in shown["candidates"]][0] == best
    assert Path(js["value"]).read_text(encoding="utf-8").count('"text"') == 2 and txt["visible"]
    assert any("Candidate 1 候选 1" in u[0] for u in updates if isinstance(u[0], str))
    if MODE == "guaranteed":
        assert cards.count('<mark class="tg-kw"') == 4 and "2/2 keywords" in cards


def test_api_progress_reports_the_first_token_at_once(handlers, registry):
    """A short text is written in well under the progress interval; its first token still gets
    an event of its own, before the answer (the time to first token a client sees)."""
    events = list(handlers.generate_events(registry.default_id(), "Storm", ["sea"], "off", n=1,
                                           max_new_tokens=6, seed=3))
    progress, final = events[:-1], events[-1]
    assert final["done"] and final["candidates"]
    generating = [e for e in progress if e["status"] == "generating"]
    assert generating[0]["tokens"] == 0  # the start
    assert any(e["tokens"] > 0 for e in generating), progress


def test_stream_handler_random_seed_is_returned(handlers, registry):
    *_, last = handlers.stream(*ui_args(registry.default_id(), seed=None))
    assert isinstance(last[3], int) and f"seed {last[3]}" in last[2]


def test_stream_handler_reports_loading_then_uses_the_cache(bpe_model_dir, tmp_path):
    reg = ModelRegistry(tmp_path, extra=[bpe_model_dir], builtins=False, hub=False)
    h = generate.GenerateHandlers(reg, modes=MODES)
    first = list(h.stream(*ui_args(reg.default_id())))
    assert "Loading" in first[0][2]
    gen = reg.get(reg.default_id())
    second = list(h.stream(*ui_args(reg.default_id())))
    assert not any(isinstance(u[2], str) and "Loading" in u[2] for u in second)
    assert reg.get(reg.default_id()) is gen


def final_status(updates) -> str:
    """The status a handler's last update leaves on the page (refusals end the stream too)."""
    return list(updates)[-1][2]


def test_stream_handler_errors_end_in_a_final_state(handlers, registry):
    assert "model: unknown model" in final_status(handlers.stream(*ui_args("../../etc/passwd")))
    updates = list(handlers.stream(*ui_args(registry.default_id(), title="x" * 1_000_000)))
    assert len(updates) == 1
    cards, best, status, *_ = updates[0]
    assert "title: 1000000 characters" in status and "Invalid input 输入有误" in status and "标题" in status
    assert 'class="tg-empty tg-refused"' in cards and "tg-card" not in cards and best == ""


def test_length_beyond_the_model_is_fitted_on_the_page_and_refused_by_the_api(handlers, registry):
    # the tiny model reads 256 positions: 1000 words do not fit. The page's slider means "at
    # most what fits" (its bound may have changed while its tab was hidden) ...
    status = final_status(handlers.stream(*ui_args(registry.default_id(), length=1000, n=1)))
    assert "seed 3" in status and "tokens/s" in status
    # ... an API caller asked for exactly 1000 and is told why not
    with pytest.raises(gr.Error, match=r"length: at most \d+ words for this prompt and model, got 1000"):
        handlers.generate(registry.default_id(), "Storm", ["sea"], "off", n=1, length=1000)


def test_rewrite_replaces_one_candidate_in_place(handlers, registry):
    *_, last = handlers.stream(*ui_args(registry.default_id(), n=3))
    shown = last[4]
    *_, again = handlers.again(1, shown)
    cards, best, status, seed, new, *_ = again
    assert "Rewrote #2" in status and seed is gr.skip() or isinstance(seed, dict)
    old, now = shown["candidates"], new["candidates"]
    assert [now[0]["text"], now[2]["text"]] == [old[0]["text"], old[2]["text"]] and best == old[0]["text"]
    assert now[1]["note"] == "rewritten 已重写" and cards.count('class="tg-again"') == 3
    assert "nothing to rewrite" in list(handlers.again(7, shown))[-1][2]
    assert "nothing to rewrite" in list(handlers.again(0, None))[-1][2]


def test_stop_keeps_the_texts_so_far(tmp_path, monkeypatch):
    endless = _EndlessGenerator()
    h = generate.GenerateHandlers(online_registry(tmp_path, monkeypatch, lambda e: endless), modes=["off"])
    monkeypatch.setattr(generate, "STREAM_EVERY_S", 0)
    assert all(v is gr.skip() or v == gr.skip() for v in h.stopped())  # nothing running: nothing changes
    stream = h.stream(*ui_args("gpt2", mode="off"))
    for update in stream:
        if isinstance(update[0], str) and "tick" in update[0]:
            break
    cards, best, status, *_ = h.stopped()
    stream.close()
    assert "Stopped 已停止" in status and cards.count("stopped 已停止") == 2 and best == "tick"
    assert "…" not in cards


def online_registry(folder, monkeypatch, loader, **kwargs) -> ModelRegistry:
    """A registry whose hub probe answers "reachable" (conftest switches the real hub off)."""
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    return ModelRegistry(folder, builtins=False, loader=loader, hub_status=HubStatus(probe=lambda: True), **kwargs)


def test_offline_hub_model_is_refused_at_once_and_never_loaded(tmp_path, monkeypatch):
    loads, probes = [], []
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    hub = HubStatus(probe=lambda: probes.append(1) or False)
    reg = ModelRegistry(tmp_path, builtins=False, loader=loads.append, hub_status=hub)
    h = generate.GenerateHandlers(reg, modes=["off"])
    started = time.monotonic()
    for _ in range(3):
        status = final_status(h.stream(*ui_args("gpt2", mode="off")))
        assert "cannot be reached from this server" in status and "Model not available 模型不可用" in status
    assert time.monotonic() - started < 2
    assert loads == [] and probes == [1]  # learned once, remembered
    assert not [i for _, i in reg.choices()]  # hub models are not offered ...
    assert "gpt2" in reg.hub_note() and "cannot be reached" in reg.hub_note()  # ... and the page says why


def test_a_failed_load_is_remembered(tmp_path, monkeypatch):
    calls = []

    def broken(entry):
        calls.append(entry.id)
        raise ModelLoadError("model: could not reach the Hugging Face Hub for 'gpt2'")

    h = generate.GenerateHandlers(online_registry(tmp_path, monkeypatch, broken), modes=["off"])
    for _ in range(3):
        assert "could not reach" in final_status(h.stream(*ui_args("gpt2", mode="off")))
    assert calls == ["gpt2"]
    assert "tried again in" in final_status(h.stream(*ui_args("gpt2", mode="off")))


class _EndlessGenerator:
    """Streams forever until closed, like a long generation; records that it was closed."""

    name = "endless"

    def __init__(self):
        self.closed = threading.Event()

    def stream(self, title, keywords, params, interval=0.0):
        from textgen.results import StreamEvent

        try:
            while True:
                yield StreamEvent(["tick"] * params.n)
                time.sleep(0.01)
        finally:
            self.closed.set()

    def length_plan(self, title, keywords):
        from textgen.length import LengthPlan

        return LengthPlan("en", 1.0, 200)


def test_closing_the_handler_stops_the_stream(tmp_path, monkeypatch):
    endless = _EndlessGenerator()
    h = generate.GenerateHandlers(online_registry(tmp_path, monkeypatch, lambda e: endless), modes=["off"])
    monkeypatch.setattr(generate, "STREAM_EVERY_S", 0)
    stream = h.stream(*ui_args("gpt2", mode="off"))
    for update in stream:
        if isinstance(update[0], str) and "tick" in update[0]:
            break
    assert not endless.closed.is_set()
    stream.close()  # what gradio does on Stop or when the tab goes away
    assert endless.closed.wait(2)


def test_switching_models_mid_request_finishes_on_the_old_model(bpe_model_dir, bert_zh_model_dir, tmp_path,
                                                                monkeypatch):
    reg = ModelRegistry(tmp_path, extra=[bpe_model_dir, bert_zh_model_dir], builtins=False, hub=False,
                        cache_size=1)
    h = generate.GenerateHandlers(reg, modes=MODES)
    monkeypatch.setattr(generate, "STREAM_EVERY_S", 0)
    first, other = [e.id for e in reg.entries()]
    stream = h.stream(*ui_args(first, length=12))
    for update in stream:
        if isinstance(update[0], str) and "Candidate 1" in update[0]:
            break
    reg.get(other)  # another user switches: the cache (size 1) drops our model
    assert reg.cached_ids() == [other]
    *_, last = stream
    assert bpe_model_dir.name in last[2]


def test_split_tags_and_refresh_models(registry, bpe_model_dir, tmp_path):
    update = generate.GenerateHandlers.split_tags(["月, 花", "long road"])
    assert update["value"] == ["月", "花", "long road"]
    reg = ModelRegistry(tmp_path, builtins=False, hub=False)
    h = generate.GenerateHandlers(reg, modes=["off"])
    import shutil

    shutil.copytree(bpe_model_dir, tmp_path / "ft")
    model_id = reg.register_finetuned(tmp_path / "ft", "mine", owner="alice")

    class Req:
        username, session_hash = None, "alice"

    assert h.refresh_models(Req())["choices"] == [("mine", model_id)]
    assert h.refresh_models(None)["choices"] == []


def test_build_app_loads_no_model(tmp_path):
    def forbidden(entry):
        raise AssertionError("build_app must not load a model")

    demo = app.build_app(ModelRegistry(tmp_path, builtins=False, loader=forbidden), modes=["off"])
    assert isinstance(demo, gr.Blocks)


# -- the real server -------------------------------------------------------------------------
def test_api_generate_returns_candidates(client, registry):
    out = client.predict(title="Storm", keywords=["sea", "long road"], api_name="/generate",
                         keyword_mode=MODE, seed=5, **SMALL)
    assert out["keywords"] == ["sea", "long road"] and out["seed"] == 5
    assert len(out["candidates"]) == 2
    for cand in out["candidates"]:
        assert set(cand) == {"text", "covered", "missing", "score", "tokens"} and 0 < cand["tokens"] <= 30
        if MODE == "guaranteed":
            assert cand["missing"] == []
    again = client.predict(title="Storm", keywords="sea, long road", api_name="/generate",
                           keyword_mode=MODE, seed=5, **SMALL)
    assert again["candidates"] == out["candidates"]


def test_api_reports_keywords_written_as_words(client):
    from benchmarks.keywords import as_word

    keywords = ["hat", "eat", "sit", "long road"]
    for seed in range(3):
        out = client.predict(title="", keywords=keywords, api_name="/generate", keyword_mode=MODE, seed=seed,
                             n=3, max_new_tokens=30)
        for cand in out["candidates"]:
            assert cand["covered"] == [kw for kw in keywords if as_word(cand["text"], kw)], cand["text"]
            assert cand["missing"] == [kw for kw in keywords if kw not in cand["covered"]]
            if MODE == "guaranteed":
                assert cand["missing"] == []


def test_api_only_title_and_keywords_needed(client, registry):
    info = client.view_api(return_format="dict", print_info=False)["named_endpoints"]["/generate"]
    required = [p["parameter_name"] for p in info["parameters"] if not p["parameter_has_default"]]
    assert required == ["title"]
    defaults = {p["parameter_name"]: p["parameter_default"] for p in info["parameters"]}
    assert defaults["model"] == registry.default_id() and defaults["keyword_mode"] == MODES[0]
    out = client.predict(title="春夜", keywords=["月"], max_new_tokens=8, api_name="/generate")
    assert out["model"] == Path(registry.resolve(registry.default_id()).source).name
    assert len(out["candidates"]) == generate_tab.SPECS["n"]["default"]


def test_api_model_by_id_and_label(client, registry, bert_zh_model_dir):
    zh = next(e for e in registry.entries() if Path(e.source) == bert_zh_model_dir.resolve())
    for key in (zh.id, zh.label):
        out = client.predict(title="春夜", keywords="月、花", model=key, api_name="/generate", **SMALL)
        assert out["model"] == bert_zh_model_dir.name and out["keywords"] == ["月", "花"]


@pytest.mark.parametrize("change, field", [
    (dict(title="x" * 1_000_000), "title:"),
    (dict(max_new_tokens=1e9), "max_new_tokens:"),
    (dict(temperature=0), "temperature:"),
    (dict(top_p=1.5), "top_p:"),
    (dict(n="3"), "n:"),
    (dict(keywords=[f"k{i}" for i in range(10_000)]), "keywords:"),
    (dict(model="../../etc/passwd"), "model: unknown model"),
    (dict(model=str(Path.home())), "model: unknown model"),
    (dict(model="openai-community/gpt2"), "model: unknown model"),
    (dict(model="gpt2"), "model: gpt2 · English · Hugging Face Hub is not available"),
    (dict(n=8, max_new_tokens=300), "max_new_tokens: n × max_new_tokens may be at most 2048"),
])
def test_api_bad_inputs_get_errors_naming_the_field(client, change, field):
    values = dict(title="Storm", keywords=["sea"], keyword_mode="off", max_new_tokens=8)
    values.update(change)
    with pytest.raises(Exception) as info:
        client.predict(api_name="/generate", **values)
    assert field in str(info.value)


@pytest.mark.parametrize("path", [
    "gradio_api/file=/etc/passwd",
    "gradio_api/file=../../../../etc/passwd",
    "gradio_api/file=..%2f..%2f..%2f..%2fetc%2fpasswd",
    "gradio_api/file=//localhost/etc/passwd",
    "gradio_api/file=/ETC/PASSWD",
    f"gradio_api/file={ROOT / 'app.py'}",
    f"gradio_api/file={ROOT / 'app.py'}".replace("/", "%2f"),
    "gradio_api/file=app.py",
    "gradio_api/file=.git/config",
    "static/..%2f..%2fapp.py",
])
def test_file_route_traversal_refused(server, path):
    resp = httpx.get(server + path, follow_redirects=False)
    assert resp.status_code in (400, 403, 404), (path, resp.status_code)
    assert "root:" not in resp.text and "import gradio" not in resp.text and "[core]" not in resp.text


def test_model_files_in_the_data_folder_are_not_served(server, registry):
    registry.home.mkdir(parents=True, exist_ok=True)
    secret = registry.home / "secret.txt"
    secret.write_text("do not serve")
    resp = httpx.get(f"{server}gradio_api/file={secret}")
    assert resp.status_code in (403, 404) and "do not serve" not in resp.text


def test_rest_calls_cannot_skip_the_queue(server):
    for route in ("gradio_api/api/generate", "gradio_api/run/generate", "gradio_api/api/predict"):
        resp = httpx.post(server + route, json={"data": ["Storm", ["sea"]]})
        assert resp.status_code != 200, route
        assert "candidates" not in resp.text


def test_no_cors_for_other_origins(server):
    for origin in ("https://evil.example", "null"):
        resp = httpx.get(server + "config", headers={"Origin": origin})
        assert "access-control-allow-origin" not in {k.lower() for k in resp.headers}


def test_page_is_served_with_both_languages(server):
    resp = httpx.get(server + "config")
    text = resp.text
    for label in ("Title 标题", "Keywords 关键词", "Generate 生成", "Examples 示例"):
        assert label in text


class _Blocking:
    """A generator that holds its slot until released: fills the queue deterministically."""

    name = "blocking"

    def __init__(self, release: threading.Event):
        self.release = release

    def stream(self, title, keywords, params, interval=0.0):
        from textgen.results import Result, StreamEvent

        while not self.release.wait(0.05):
            yield StreamEvent([""] * params.n)
        result = Result([], model="blocking", prompt_style="plain", seed=0, title=title, keywords=[])
        yield StreamEvent([], done=True, result=result)


def test_full_queue_refuses_at_once_and_earlier_jobs_finish(tmp_path, monkeypatch):
    release = threading.Event()
    reg = online_registry(tmp_path, monkeypatch, lambda e: _Blocking(release))
    demo = app.build_app(reg, queue_size=2, concurrency=1, modes=["off"])
    url = launch_app(demo, reg)
    try:
        clients = [Client(url, verbose=False) for _ in range(6)]  # six users: one request each
        jobs = []
        for i, client in enumerate(clients):
            jobs.append(client.submit(title=f"t{i}", keywords="sea", api_name="/generate"))
            time.sleep(0.2)  # in order: the first three are admitted
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and sum(j.done() for j in jobs) < 3:
            time.sleep(0.1)
        refused = [j for j in jobs if j.done()]
        assert len(refused) == 3, "1 running + 2 waiting; the other 3 must be refused before any finishes"
        for job in refused:
            with pytest.raises(Exception, match="busy: 2 requests are waiting already"):
                job.result()
        release.set()
        finished = [j.result(timeout=30) for j in jobs if j not in refused]
        assert len(finished) == 3 and all(r["title"].startswith("t") for r in finished)
    finally:
        release.set()
        demo.close()


def test_python_app_py_starts_in_seconds(tmp_path, bpe_model_dir):
    port = free_port()
    env = {**os.environ, "TEXTGEN_EXTRA_MODELS": str(bpe_model_dir), "TEXTGEN_HOME": str(tmp_path),
           "GRADIO_SERVER_NAME": "127.0.0.1", "GRADIO_SERVER_PORT": str(port),
           "GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1"}
    started = time.monotonic()
    proc = subprocess.Popen([sys.executable, "app.py"], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        url = f"http://127.0.0.1:{port}/"
        while time.monotonic() - started < 90:
            assert proc.poll() is None, proc.stdout.read()
            try:
                if httpx.get(url + "config", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.3)
        took = time.monotonic() - started
        assert took < 90, "the server did not come up"
        try:
            out = Client(url, verbose=False).predict(title="Storm", keywords="sea", max_new_tokens=6, n=1,
                                                     api_name="/generate")
        except Exception as exc:  # the server went away: what it printed says why
            proc.terminate()
            raise AssertionError(f"{type(exc).__name__}: {exc}; the app printed:\n{proc.communicate(timeout=10)[0][-4000:]}")
        assert out["model"] == "textgen-en"  # the quickstart's default: the built-in model
        assert out["candidates"] and out["candidates"][0]["text"]
        print(f"python app.py answered after {took:.1f} s")
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


def test_zerogpu_path_hands_the_gpu_function_ids_not_models(bpe_model_dir, tmp_path, monkeypatch):
    calls = []

    class FakeSpaces:
        @staticmethod
        def GPU(duration=None):
            def wrap(fn):
                def run(*args):
                    calls.append((fn.__name__, args, duration))
                    return fn(*args)
                return run
            return wrap

    monkeypatch.setattr(generate, "spaces", FakeSpaces)
    reg = ModelRegistry(tmp_path, extra=[bpe_model_dir], builtins=False, hub=False)
    h = generate.GenerateHandlers(reg, modes=MODES)
    *_, last = h.stream(*ui_args(reg.default_id()))
    out = h.generate(reg.default_id(), "Storm", ["sea"], MODE, None, **SMALL)
    assert "seed 3" in last[2] and len(out["candidates"]) == 2
    assert [name for name, _, _ in calls] == ["_stream_by_id", "_stream_by_id"]  # the UI and the API
    for _, args, duration in calls:
        assert args[0] == reg.default_id() and duration == generate.GPU_SECONDS
        plain = (str, type(None), GenerationParams)
        assert all(isinstance(a, plain) or (isinstance(a, list) and all(isinstance(w, str) for w in a))
                   for a in args)


def test_finetune_tab_plugs_in(tmp_path, monkeypatch):
    import importlib.machinery
    import types

    seen = {}
    fake = types.ModuleType("finetune.web.ui")
    fake.__spec__ = importlib.machinery.ModuleSpec("finetune.web.ui", None)

    def build_tab(*, registry, generate):
        seen.update(registry=registry, generate=generate)
        with gr.Tab("Fine-tune 微调"):
            gr.Button("Train").click(generate.refresh_models, None, generate.model)

    fake.build_tab = build_tab
    monkeypatch.setitem(sys.modules, "finetune.web.ui", fake)
    reg = ModelRegistry(tmp_path, builtins=False)
    demo = app.build_app(reg, modes=["off"])
    assert seen["registry"] is reg and isinstance(seen["generate"].model, gr.Dropdown)
    assert "Fine-tune 微调" in str(demo.config)
    assert "Fine-tune 微调" not in str(app.build_app(reg, modes=["off"], finetune_tab=False).config)



def test_torch_threads_for_serving(monkeypatch):
    """One torch thread on machines of up to 2 cores (the web server needs the other),
    torch's own default elsewhere; TEXTGEN_TORCH_THREADS overrides, and a bad value is named."""
    import app

    monkeypatch.delenv("TEXTGEN_TORCH_THREADS", raising=False)
    assert app._torch_threads(cores=2) == 1 and app._torch_threads(cores=1) == 1
    assert app._torch_threads(cores=16) == 0
    monkeypatch.setenv("TEXTGEN_TORCH_THREADS", "3")
    assert app._torch_threads(cores=2) == 3
    for bad in ("-1", "two"):
        monkeypatch.setenv("TEXTGEN_TORCH_THREADS", bad)
        with pytest.raises(SystemExit, match="TEXTGEN_TORCH_THREADS"):
            app._torch_threads(cores=2)


def test_absent_matplotlib_fails_fast_with_the_same_error(monkeypatch):
    """gradio imports matplotlib around every event; where it is not installed the failed
    import is made to fail at once (an ImportError as before), and where it is installed
    nothing changes."""
    import importlib
    import importlib.util
    import sys

    import app

    monkeypatch.delitem(sys.modules, "matplotlib", raising=False)
    installed = importlib.util.find_spec("matplotlib") is not None
    app._absent_matplotlib_fails_fast()
    if installed:
        assert "matplotlib" not in sys.modules or sys.modules["matplotlib"] is not None
        return
    assert "matplotlib" in sys.modules and sys.modules["matplotlib"] is None
    with pytest.raises(ImportError):
        importlib.import_module("matplotlib")
    monkeypatch.delitem(sys.modules, "matplotlib")
