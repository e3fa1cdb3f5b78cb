"""What several test files share: a small story corpus, job settings and waiting, serving a
built app on a free local port, a tiny model with confident logits."""
from __future__ import annotations

import csv
import time
from pathlib import Path

from benchmarks.load import free_port

STORY = ("The storm rolled over the sea at night and the sailors watched the lightning. "
         "A quiet garden in spring, with flowers opening under a pale moon. ")


def write_corpus(path: Path, rows: int = 24, *, keywords: str = "storm, sea, night", long_every: int = 4,
                 long_times: int = 6, encoding: str = "utf-8") -> Path:
    """A title,keywords,text CSV; every `long_every`-th text is `long_times` stories long."""
    with path.open("w", encoding=encoding, newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["title", "keywords", "text"])
        for i in range(rows):
            writer.writerow([f"Storm {i}", keywords, (STORY * (long_times if i % long_every == 0 else 1)).strip()])
    return path


def seed_writing(gen, tokens: int, *, tries: int = 200, **request) -> int:
    """A seed with which `gen` writes at least `tokens` tokens in some candidate of `request`
    (title, n, max_new_tokens…), found on this machine: the CPU kind picks the dtype, and so
    the texts."""
    for seed in range(tries):
        if max(c.tokens for c in gen.generate(seed=seed, **request)) >= tokens:
            return seed
    raise AssertionError(f"no seed of {tries} writes {tokens} tokens for {request}")


def settings(base: Path, **over) -> dict:
    """Settings of a short LoRA job on the tiny test model."""
    values = dict(base=str(base), method="lora", epochs=20.0, max_steps=10, batch_size=4, max_length=64,
                  eval_steps=5, samples=1, precision="fp32", device="cpu")
    return {**values, **over}


def wait_for(manager, owner: str, test, timeout: float = 180.0):
    """The owner's job view once `test(view)` holds; on a timeout, the workers' logs."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        view = manager.view(owner)
        if view is not None and test(view):
            return view
        time.sleep(0.1)
    logs = "\n".join(p.read_text()[-2000:] for p in manager.root.glob("*/*/worker.log"))
    raise AssertionError(f"timed out; last view: {manager.view(owner)}\n{logs}")


def launch_app(demo, registry, *, port: int | None = None, **options) -> str:
    """Serve a built app on a local port, as `python app.py` would; returns its URL. `options`
    change `app.launch_kwargs` (session_capacity, upload_limit_mb)."""
    import app

    _, url, _ = demo.launch(server_name="127.0.0.1", server_port=port or free_port(), prevent_thread_lock=True,
                            quiet=True, **app.launch_kwargs(registry, **options))
    return url


def trained_like(folder):
    """The tiny test model with weights scaled up, so that its logits are far from uniform and
    an int8 error would show in the ranking (random small weights rank almost anything first)."""
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32, use_safetensors=True).eval()
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 2:
                p.mul_(8.0)
    return model
