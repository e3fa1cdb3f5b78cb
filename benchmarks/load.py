"""Load on the running app: N virtual users on loopback for a while, each its own session,
calling /generate the way gradio's JavaScript client does (join the queue, read the event
stream). Prints successes, busy answers, errors, latency percentiles and the app's memory
before and after, so a leak or a 5xx shows at once.

    python -m benchmarks.load                       # 50 users, 120 s, starts `python app.py` itself
    python -m benchmarks.load --users 10 --seconds 20 --max-new-tokens 16

Needs only the repo's requirements (httpx and psutil come with them). `RawClient` is also what
the hardening tests use to make thousands of sessions and to hang up mid-request.
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.machine import cpu_kind
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
API = "/gradio_api"


class RawClient:
    """One browser-like session against a gradio app, over plain HTTP."""

    def __init__(self, url: str, *, session: str | None = None, config: dict | None = None,
                 timeout: float = 120.0) -> None:
        self.url = url.rstrip("/")
        self.session = session or uuid.uuid4().hex[:11]
        self.http = httpx.Client(timeout=timeout)
        self.config = config or self.http.get(self.url + "/config").json()

    def close(self) -> None:
        self.http.close()

    def fn_index(self, api_name: str) -> int:
        for dep in self.config["dependencies"]:
            if dep.get("api_name") == api_name:
                return dep["id"]
        raise KeyError(api_name)

    def load_events(self) -> None:
        """What a page does when it opens: its `demo.load` events (those that skip the queue)."""
        for dep in self.config["dependencies"]:
            if any(t[1] == "load" for t in dep["targets"]) and dep.get("queue") is False and not dep.get("js"):
                self.http.post(f"{self.url}{API}/run/predict",
                               json={"data": [], "fn_index": dep["id"], "session_hash": self.session,
                                     "trigger_id": None, "event_data": None})

    def call(self, api_name: str, data: list[Any], *, hang_up_after: str | None = None) -> tuple[bool, Any]:
        """Join the queue and read the stream to the end: (True, output) or (False, message).
        hang_up_after: close the connection when this message type arrives (a client that goes
        away), returning (False, "hung up")."""
        body = {"data": data, "fn_index": self.fn_index(api_name), "session_hash": self.session,
                "event_data": None, "trigger_id": None}
        joined = self.http.post(f"{self.url}{API}/queue/join", json=body)
        if joined.status_code != 200:
            return False, f"HTTP {joined.status_code}: {joined.text[:200]}"
        with self.http.stream("GET", f"{self.url}{API}/queue/data", params={"session_hash": self.session}) as s:
            for line in s.iter_lines():
                if not line.startswith("data:"):
                    continue
                msg = json.loads(line[5:])
                if hang_up_after and msg.get("msg") == hang_up_after:
                    return False, "hung up"
                if msg.get("msg") == "process_completed":
                    out = msg.get("output") or {}
                    if msg.get("success"):
                        return True, (out.get("data") or [None])[0]
                    return False, out.get("error") or out.get("title") or "error"
        return False, "stream ended without an answer"


def generate_args(specs: dict[str, dict], **values: Any) -> list[Any]:
    """The /generate API's positional inputs, defaults filled in."""
    d = {k: v["default"] for k, v in specs.items()}
    order = [("title", "Storm"), ("keywords", ["sea"]), ("model", values.pop("model", None)),
             ("keyword_mode", "off"), ("n", d["n"]), ("max_new_tokens", d["max_new_tokens"]),
             ("temperature", d["temperature"]), ("top_k", d["top_k"]), ("top_p", d["top_p"]),
             ("repetition_penalty", d["repetition_penalty"]), ("seed", None), ("length", None),
             ("form", "free"), ("rhyme", True)]
    args = [values.get(name, default) for name, default in order]
    if args[2] is None:
        raise ValueError("model: give the model id to call")
    return args


def rss_mb(pid: int) -> float:
    import psutil

    return psutil.Process(pid).memory_info().rss / 2**20


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_app(port: int, home: Path, extra_env: dict[str, str] | None = None) -> subprocess.Popen:
    env = {**os.environ, "GRADIO_SERVER_NAME": "127.0.0.1", "GRADIO_SERVER_PORT": str(port),
           "GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1", "TEXTGEN_HOME": str(home),
           **(extra_env or {})}
    proc = subprocess.Popen([sys.executable, "app.py"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            httpx.get(f"http://127.0.0.1:{port}/config", timeout=2).raise_for_status()
            return proc
        except httpx.HTTPError:
            if proc.poll() is not None:
                raise SystemExit("app.py exited while starting") from None
            time.sleep(0.5)
    proc.kill()
    raise SystemExit("app.py did not answer within 120 s")


@dataclass
class Tally:
    ok: int = 0
    busy: int = 0
    errors: list[str] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def user(url: str, config: dict, args: list[Any], until: float, tally: Tally) -> None:
    client = RawClient(url, config=config)
    client.load_events()
    try:
        while time.monotonic() < until:
            started = time.monotonic()
            try:
                ok, out = client.call("generate", args)
            except httpx.HTTPError as exc:
                ok, out = False, f"{type(exc).__name__}: {exc}"
            took = time.monotonic() - started
            with tally.lock:
                if ok:
                    tally.ok += 1
                    tally.latencies.append(took)
                elif isinstance(out, str) and out.startswith("busy"):
                    tally.busy += 1
                else:
                    tally.errors.append(str(out)[:200])
            if not ok:
                time.sleep(0.5)  # a person waits a moment before trying again
    finally:
        client.close()


def run_users(url: str, config: dict, args: list[Any], users: int, seconds: float, tally: Tally) -> Tally:
    until = time.monotonic() + seconds
    threads = [threading.Thread(target=user, args=(url, config, args, until, tally), daemon=True)
               for _ in range(users)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(seconds + 300)
    return tally


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--users", type=int, default=50)
    ap.add_argument("--seconds", type=float, default=120)
    ap.add_argument("--max-new-tokens", type=int, default=24)
    ap.add_argument("--n", type=int, default=2)
    ap.add_argument("--url", help="an app already running (its memory is then not measured)")
    opts = ap.parse_args()

    import tempfile

    from textgen.params import param_specs

    proc = None
    if opts.url:
        url = opts.url
    else:
        port = free_port()
        proc = start_app(port, Path(tempfile.mkdtemp(prefix="textgen-load-")))
        url = f"http://127.0.0.1:{port}"
    try:
        config = httpx.get(url + "/config").json()
        model = next(c for c in config["components"] if c.get("props", {}).get("elem_id") == "tg-model")
        model_id = model["props"]["value"]
        args = generate_args(param_specs(), model=model_id, n=opts.n, max_new_tokens=opts.max_new_tokens)
        warm = RawClient(url, config=config)
        for _ in range(3):  # load the model and settle the allocator before measuring
            warm.call("generate", args)
        warm.close()
        settle = min(30.0, opts.seconds / 4)
        run_users(url, config, args, opts.users, settle, Tally())  # the same load, not measured
        before = rss_mb(proc.pid) if proc else None
        tally = run_users(url, config, args, opts.users, opts.seconds, Tally())
        after = rss_mb(proc.pid) if proc else None
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(30)
    lat = sorted(tally.latencies)
    pct = (lambda q: lat[min(len(lat) - 1, int(q * len(lat)))] if lat else float("nan"))
    print(f"CPU: {cpu_kind()}; {os.cpu_count()} cores; model {model_id}; {opts.users} users for "
          f"{opts.seconds:.0f} s after {settle:.0f} s of the same load to settle; n={opts.n}, "
          f"{opts.max_new_tokens} new tokens")
    fivexx = sum(e.startswith("HTTP 5") for e in tally.errors)
    print(f"successes {tally.ok}, busy {tally.busy}, errors {len(tally.errors)} (5xx: {fivexx})")
    print(f"latency of successes: p50 {pct(0.5):.2f} s, p95 {pct(0.95):.2f} s, "
          f"mean {statistics.fmean(lat) if lat else float('nan'):.2f} s")
    if before is not None:
        print(f"app RSS: {before:.0f} MB before, {after:.0f} MB after ({after - before:+.1f} MB)")
    for err in sorted(set(tally.errors))[:10]:
        print("  error:", err)


if __name__ == "__main__":
    main()
