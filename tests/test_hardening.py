"""The launched app under hostile but bounded load:
memory flat across thousands of sessions, an offline hub that holds nobody up, fair turns
for a flooding client, a client that hangs up freeing its place, raw uploads purged and
bounded, a request's budget and wall-time cap."""
from __future__ import annotations

import os
import threading
import time
import uuid
from pathlib import Path

import httpx
import pytest

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

from gradio_client import Client  # noqa: E402

import app  # noqa: E402

from finetune.web import requests
from finetune.web.hub_status import HubStatus  # noqa: E402
from finetune.web.registry import ModelRegistry  # noqa: E402
from textgen.results import Result, StreamEvent  # noqa: E402
from textgen.params import param_specs  # noqa: E402

from benchmarks.load import RawClient, free_port, generate_args, rss_mb, start_app  # noqa: E402

from helpers import launch_app, seed_writing  # noqa: E402

SPECS = param_specs()


class _Timed:
    """Each request takes `seconds`, then ends with an empty result titled as asked."""

    name = "timed"

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.closed = threading.Event()

    def stream(self, title, keywords, params, interval=0.0):
        try:
            end = time.monotonic() + self.seconds
            while time.monotonic() < end:
                time.sleep(0.01)
                yield StreamEvent([title] * params.n)
            yield StreamEvent([title] * params.n, done=True,
                              result=Result([], model="timed", prompt_style="plain", seed=0, title=title, keywords=[]))
        finally:
            self.closed.set()


def online(tmp_path, monkeypatch, loader, **kwargs) -> ModelRegistry:
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    return ModelRegistry(tmp_path, builtins=False, loader=loader, hub_status=HubStatus(probe=lambda: True), **kwargs)


@pytest.fixture()
def served():
    demos = []

    def serve(registry, **kwargs):
        demo = app.build_app(registry, modes=["off"], finetune_tab=False, **kwargs)
        demos.append(demo)
        return launch_app(demo, registry)

    yield serve
    for demo in demos:
        demo.close()


# -- memory -------------------------------------------------------------------------------------
@pytest.mark.slow
def test_a_thousand_sessions_and_requests_keep_memory_flat(tmp_path, bpe_model_dir):
    port = free_port()
    proc = start_app(port, tmp_path, {"TEXTGEN_EXTRA_MODELS": str(bpe_model_dir)})
    url = f"http://127.0.0.1:{port}"
    try:
        config = httpx.get(url + "/config").json()
        args = generate_args(SPECS, model=f"local-{bpe_model_dir.name}", n=1, max_new_tokens=1)

        def one_pass(sessions: int, requests: int) -> float:
            before = rss_mb(proc.pid)
            for _ in range(sessions):  # a page opened and left
                RawClient(url, config=config).load_events()
            client = RawClient(url, config=config)
            for i in range(requests):  # each request from a session never seen before
                client.session = uuid.uuid4().hex[:11]
                ok, out = client.call("generate", args)
                assert ok, out
            client.close()
            return rss_mb(proc.pid) - before

        settling = one_pass(400, 400)  # fills gradio's session table and the allocator's pools
        growth = one_pass(1000, 1000)
        print(f"RSS growth: settling pass {settling:+.1f} MB, 1,000 sessions + 1,000 requests {growth:+.1f} MB")
        assert growth < 30, f"RSS grew {growth:.1f} MB over 1,000 sessions and 1,000 requests"
    finally:
        proc.terminate()
        proc.wait(30)


def test_a_session_gradio_forgot_can_still_use_its_fine_tuned_model(tmp_path, bpe_model_dir):
    import shutil

    reg = ModelRegistry(tmp_path, extra=[bpe_model_dir], builtins=False, hub=False)
    folder = tmp_path / "finetune" / "x" / "model"
    shutil.copytree(bpe_model_dir, folder)
    demo = app.build_app(reg, modes=["off"], finetune_tab=False)
    url = launch_app(demo, reg, session_capacity=2)
    try:
        alice = RawClient(url)
        model_id = reg.register_finetuned(folder, "Alice's storms", owner=alice.session)
        alice.load_events()  # her dropdown now lists her model
        for _ in range(4):  # newer sessions push hers out of gradio's table (capacity 2)
            RawClient(url, config=alice.config).load_events()
        button = next(c["id"] for c in alice.config["components"] if c.get("props", {}).get("elem_id") == "tg-generate")
        dep = next(d for d in alice.config["dependencies"] if [button, "click"] in d["targets"])
        inputs = [model_id, "Storm", ["sea"], "off", 1, 4, 0.9, 30, 0.9, 1.2, 0, False, "free", True]
        body = {"data": inputs, "fn_index": dep["id"], "session_hash": alice.session, "event_data": None,
                "trigger_id": None}
        assert alice.http.post(f"{url}gradio_api/queue/join", json=body).status_code == 200
        text = alice.http.get(f"{url}gradio_api/queue/data", params={"session_hash": alice.session}).text
        assert '"process_completed"' in text and '"success":true' in text.replace(" ", ""), text[-400:]
        assert "Alice" in text  # the status line names her model by its label
    finally:
        demo.close()


# -- an offline hub -----------------------------------------------------------------------------
def test_an_offline_hub_pick_fails_fast_and_holds_nobody_up(tmp_path, bpe_model_dir, monkeypatch, served):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    slow_probe = []

    def probe():
        slow_probe.append(1)
        time.sleep(0.3)  # a probe that waits for the network, once
        return False

    reg = ModelRegistry(tmp_path, extra=[bpe_model_dir], builtins=False, hub_status=HubStatus(probe=probe))
    url = served(reg)
    local = f"local-{bpe_model_dir.name}"
    errors, times = [], []

    def hub_pick():
        started = time.monotonic()
        try:
            Client(url, verbose=False).predict(title="Storm", model="gpt2", api_name="/generate")
        except Exception as exc:  # noqa: BLE001 - the message is what we check
            errors.append(str(exc))
        times.append(time.monotonic() - started)

    pickers = [threading.Thread(target=hub_pick) for _ in range(3)]
    for t in pickers:
        t.start()
    out = Client(url, verbose=False).predict(title="Storm", model=local, max_new_tokens=6, n=1,
                                             api_name="/generate")
    for t in pickers:
        t.join(30)
    assert out["done"] and len(out["candidates"]) == 1
    assert len(errors) == 3 and all("cannot be reached from this server" in e for e in errors)
    assert max(times) < 2 and len(slow_probe) == 1
    choices = Client(url, verbose=False).view_api(print_info=False, return_format="dict")
    assert choices  # the app still answers its API description


# -- fair turns ----------------------------------------------------------------------------------
def test_one_clients_flood_delays_another_by_at_most_one_request(tmp_path, monkeypatch, served):
    """With one generation at a time (the scarcest setting), the next slot goes to the client
    served least recently."""
    timed = _Timed(0.6)
    url = served(online(tmp_path, monkeypatch, lambda e: timed), concurrency=1)
    flooder, other = Client(url, verbose=False), Client(url, verbose=False)
    done_at: dict[str, float] = {}
    jobs = [flooder.submit(title=f"a{i}", model="gpt2", api_name="/generate") for i in range(6)]
    time.sleep(0.3)  # a0 runs, a1 waits; the rest are refused at once
    started = time.monotonic()
    b = other.submit(title="b", model="gpt2", api_name="/generate")
    named = {f"a{i}": job for i, job in enumerate(jobs)} | {"b": b}
    deadline = time.monotonic() + 30
    while len(done_at) < len(named) and time.monotonic() < deadline:
        for name, job in named.items():
            if name not in done_at and job.done():
                done_at[name] = time.monotonic()
        time.sleep(0.01)
    served_, refused = [], []
    for name, job in named.items():
        try:
            assert job.result()["title"] == name
            served_.append(name)
        except Exception as exc:  # noqa: BLE001 - the message is what we check
            assert "you already have 2 requests waiting or running" in str(exc)
            refused.append(name)
    assert len(refused) == 4 and all(done_at[n] - started < 0.5 for n in refused)  # refused at once
    first, second = sorted((n for n in served_ if n != "b"), key=done_at.get)
    assert done_at[first] < done_at["b"] < done_at[second], "the other client waited behind more than one"
    assert done_at["b"] - started < 2 * timed.seconds + 1.0


def test_a_client_that_hangs_up_frees_its_place(tmp_path, monkeypatch, served):
    endless = _Timed(600)
    url = served(online(tmp_path, monkeypatch, lambda e: endless))
    client = RawClient(url)
    ok, why = client.call("generate", generate_args(SPECS, model="gpt2"), hang_up_after="process_generating")
    assert (ok, why) == (False, "hung up")
    client.close()
    assert endless.closed.wait(3), "the generation went on after its client hung up"
    endless.seconds = 0.05
    out = Client(url, verbose=False).predict(title="next", model="gpt2", api_name="/generate")
    assert out["title"] == "next"


def test_a_generation_stops_at_the_time_cap_and_keeps_its_text(tmp_path, bpe_model_dir, served):
    reg = ModelRegistry(tmp_path, extra=[bpe_model_dir], builtins=False, hub=False)
    # a seed with which this tiny model writes all 250 tokens without an end, found on this machine
    # (the CPU kind picks the dtype, and so the texts), so that only the time cap can stop it
    seed = seed_writing(reg.get(reg.default_id()), 250, title="Storm", n=1, max_new_tokens=250)
    # 10 ms: on the ONNX graph this model writes its 250 tokens in about 23 ms, within 0.05 s
    url = served(reg, limits=requests.ServeLimits(seconds=0.01))
    out = Client(url, verbose=False).predict(title="Storm", model=reg.default_id(), n=1, max_new_tokens=250,
                                             seed=seed, api_name="/generate")
    assert out["stopped"] == "time_limit" and out["candidates"][0]["text"], str(out)


# -- uploads -------------------------------------------------------------------------------------
def _upload(url: str, name: str, data: bytes) -> httpx.Response:
    return httpx.post(f"{url}gradio_api/upload", files={"files": (name, data, "text/csv")}, timeout=30)


def test_raw_uploads_are_purged_within_the_interval(tmp_path, bpe_model_dir, served):
    reg = ModelRegistry(tmp_path, extra=[bpe_model_dir], builtins=False, hub=False)
    url = served(reg, purge=(1, 1))
    paths = [_upload(url, f"junk{i}.csv", os.urandom(200_000)).json()[0] for i in range(3)]
    refused = _upload(url, "page.csv", b"<html><body>not a corpus</body></html>").json()[0]
    assert all(Path(p).is_file() for p in [*paths, refused])
    assert httpx.get(f"{url}gradio_api/file={paths[0]}").status_code == 200
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(Path(p).exists() for p in [*paths, refused]):
        time.sleep(0.2)
    assert not any(Path(p).exists() for p in [*paths, refused])
    assert httpx.get(f"{url}gradio_api/file={paths[0]}").status_code in (403, 404)


def test_total_upload_space_is_bounded_with_a_busy_answer(tmp_path, bpe_model_dir, monkeypatch):
    cache = tmp_path / "cache"
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(cache))
    reg = ModelRegistry(tmp_path / "home", extra=[bpe_model_dir], builtins=False, hub=False)
    demo = app.build_app(reg, modes=["off"], finetune_tab=False)
    url = launch_app(demo, reg, upload_limit_mb=1)
    try:
        assert _upload(url, "a.csv", os.urandom(700_000)).status_code == 200
        time.sleep(2.1)  # the quota measures the folder at most every 2 s
        full = _upload(url, "b.csv", os.urandom(700_000))
        assert full.status_code == 503 and full.json()["detail"].startswith("busy: the server's upload space is full")
        assert sum(f.stat().st_size for f in cache.rglob("*") if f.is_file()) < 1_000_000
    finally:
        demo.close()
