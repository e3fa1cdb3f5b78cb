"""Many users at once on the real app: 1, 2, 4 and 8 concurrent streaming clients.

    python -m benchmarks.serve [--clients 1,2,4,8] [--rounds 3] [--max-new-tokens 48] [--mode off]

Starts `python app.py` on loopback (its default model and settings, so requests of one
model share its batched decode loop) and, for each client count, has every
client (`gradio_client`, streaming: `submit` and read the progress events) make --rounds
requests of n=1 with its own title and seed, one after another. Prints the aggregate tokens/s
(all generated tokens over the wall time of the round), each client's own tokens/s, and the
time to first token (the first progress event that reports a token) p50/p95; and the
aggregate of 8 clients ÷ that of 1 (target ≥ 4). Bounded: at most --rounds × clients requests
per count, each at most --max-new-tokens.
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
from pathlib import Path

from benchmarks.load import free_port, start_app
from benchmarks.machine import cpu_kind

FIRST_POLL_S = 0.005  # resolution of the time to first token
TITLES = ["Storm", "The history of tea", "Volcano", "Rivers of Europe", "A train at night", "Winter",
          "The old harbour", "Bees"]


def client_run(url: str, model: str, index: int, rounds: int, tokens: int, mode: str, out: dict,
               ready: threading.Barrier) -> None:
    from gradio_client import Client

    # one address per client, as users behind the Space's proxy have: the app's fair share caps
    # what one address may run at once, which is not what this measures
    # plain HTTP on loopback, so no certificates to check: gradio_client opens a new httpx client
    # per call, and with checking on each parsed certifi's bundle (~25 ms of this machine's CPU,
    # three per request)
    client = Client(url, verbose=False, headers={"X-Forwarded-For": f"10.0.0.{index + 1}"}, ssl_verify=False)
    firsts, made, spent = [], 0, 0.0
    # every client connected (gradio_client fetches the app's config and API description,
    # a page load's work) before the clock starts: what is timed is the requests
    ready.wait()
    for r in range(rounds):
        start = time.perf_counter()
        job = client.submit(title=TITLES[index % len(TITLES)], keywords=["sea", "night"], model=model,
                            keyword_mode=mode, n=1, max_new_tokens=tokens, seed=index * 100 + r,
                            api_name="/generate")
        # Polled every FIRST_POLL_S until the first token, then a blocking wait: iterating the
        # job instead (gradio_client's Job.__next__) polls every millisecond, and eight such
        # clients took 45% of this 2-core machine from the server they measure.
        first = None
        while first is None and not job.done():
            if any(not u.get("done") and u.get("tokens") for u in job.outputs()):
                first = time.perf_counter() - start
            else:
                time.sleep(FIRST_POLL_S)
        final = job.result()
        spent += time.perf_counter() - start
        made += sum(c["tokens"] for c in final["candidates"])
        firsts.append(first if first is not None else time.perf_counter() - start)
    out[index] = {"tokens": made, "seconds": spent, "firsts": firsts}


def warm_up(url: str, model: str, tokens: int, mode: str) -> None:
    """One request in each language: the default model serves English and Chinese titles with
    a model each, and the app loads the second in the background after the first, so a
    warm-up in English alone left that load to the first timed round (a 1.5 s stall there)."""
    from gradio_client import Client

    client = Client(url, verbose=False, ssl_verify=False)
    for title in ("Warm-up", "秋夜"):
        client.predict(title=title, keywords=[], model=model, keyword_mode=mode, n=1, max_new_tokens=tokens,
                       seed=0, api_name="/generate")


def measure(url: str, model: str, clients: int, rounds: int, tokens: int, mode: str) -> dict:
    out: dict[int, dict] = {}
    ready = threading.Barrier(clients + 1)
    threads = [threading.Thread(target=client_run, args=(url, model, i, rounds, tokens, mode, out, ready))
               for i in range(clients)]
    for t in threads:
        t.start()
    ready.wait(120)
    start = time.perf_counter()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    firsts = sorted(f for r in out.values() for f in r["firsts"])
    pct = (lambda q: firsts[min(len(firsts) - 1, int(q * len(firsts)))])
    return {"clients": clients, "aggregate": sum(r["tokens"] for r in out.values()) / wall,
            "per_client": statistics.median(r["tokens"] / r["seconds"] for r in out.values()),
            "ttft_p50": pct(0.5), "ttft_p95": pct(0.95), "requests": len(firsts)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clients", default="1,2,4,8")
    ap.add_argument("--rounds", type=int, default=3, help="requests per client, one after another")
    ap.add_argument("--max-new-tokens", type=int, default=48)
    ap.add_argument("--mode", default="off", choices=["off", "soft", "guaranteed"])
    ap.add_argument("--concurrency", type=int, help="TEXTGEN_CONCURRENCY of the app (default: the app's)")
    opts = ap.parse_args()

    import httpx

    port = free_port()
    env = {"TEXTGEN_BEHIND_PROXY": "1"}  # clients say their own address (X-Forwarded-For)
    if opts.concurrency:
        env["TEXTGEN_CONCURRENCY"] = str(opts.concurrency)
    proc = start_app(port, Path(tempfile.mkdtemp(prefix="textgen-serve-")), env)
    url = f"http://127.0.0.1:{port}/"
    rows = []
    try:
        config = httpx.get(url + "config").json()
        model = next(c["props"]["value"] for c in config["components"]
                     if c.get("props", {}).get("elem_id") == "tg-model")
        warm_up(url, model, opts.max_new_tokens, opts.mode)
        for count in (int(c) for c in opts.clients.split(",")):
            rows.append(measure(url, model, count, opts.rounds, opts.max_new_tokens, opts.mode))
    finally:
        proc.terminate()
        proc.wait(30)
    print(f"\nCPU: {cpu_kind()}; model {model}; mode {opts.mode}; n=1, up to {opts.max_new_tokens} new tokens, "
          f"{opts.rounds} requests per client\n")
    print("| clients | requests | aggregate tok/s | per client tok/s (median) | first token p50 | first token p95 "
          "| aggregate ÷ 1 client |")
    print("|---|---|---|---|---|---|---|")
    one = rows[0]["aggregate"] if rows and rows[0]["clients"] == 1 else None
    for r in rows:
        ratio = f"**{r['aggregate'] / one:.2f}×**" if one else "–"
        print(f"| {r['clients']} | {r['requests']} | {r['aggregate']:.0f} | {r['per_client']:.0f} | "
              f"{r['ttft_p50']:.2f} s | {r['ttft_p95']:.2f} s | {ratio} |")


if __name__ == "__main__":
    main()
