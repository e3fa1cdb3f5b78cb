"""ModelRegistry: opaque ids, refusal of paths, fine-tuned models only from the data folder,
and a cache that loads each model once."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from finetune.web import registry as registry_mod
from finetune.web.errors import UnknownModelError
from finetune.web.registry import ModelRegistry, data_home, owner_from_request
from textgen import ModelLoadError


class CountingLoader:
    """Stands in for Generator.from_pretrained: counts loads, returns a fresh object each time."""

    def __init__(self, delay: float = 0.0):
        self.calls: list[str] = []
        self.delay = delay
        self._lock = threading.Lock()

    def __call__(self, entry):
        time.sleep(self.delay)
        with self._lock:
            self.calls.append(entry.id)
        return object()


@pytest.fixture(autouse=True)
def hub_online(monkeypatch):
    """These tests load hub entries with fake loaders: the hub counts as reachable."""
    from finetune.web import hub_status
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(hub_status, "probe_hub", lambda timeout=0: True)


@pytest.fixture()
def home(tmp_path) -> Path:
    folder = tmp_path / "home"
    folder.mkdir()
    return folder


def _copy_model(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def test_entries_and_opaque_ids(home, bpe_model_dir):
    reg = ModelRegistry(home, extra=[bpe_model_dir], builtins=False)
    ids = [e.id for e in reg.entries()]
    assert {"gpt2", "distilgpt2", "gpt2-chinese"} <= set(ids)
    for e in reg.entries():
        assert "/" not in e.id and "\\" not in e.id and ".." not in e.id
        assert str(e.source) != e.id or e.kind == "hub"  # a local folder is never its own id
        assert str(bpe_model_dir) not in e.label
    assert reg.default_id() == "local-" + bpe_model_dir.name.lower().replace("_", "-")
    assert reg.choices()[0] == (reg.entries()[0].label, reg.entries()[0].id)


@pytest.mark.parametrize("key", [
    "../../etc", "/etc/passwd", "https://evil.example/model", "openai-community/gpt2",
    "uer/gpt2-chinese-cluecorpussmall", "someone/some-gpt2", "", "x" * 10_000, None, 3, ["gpt2"],
])
def test_unknown_keys_refused(home, key):
    reg = ModelRegistry(home, builtins=False)
    with pytest.raises(UnknownModelError, match="model: unknown model"):
        reg.resolve(key)


def test_paths_of_listed_models_are_not_ids(home, bpe_model_dir):
    reg = ModelRegistry(home, extra=[bpe_model_dir], builtins=False, loader=CountingLoader())
    with pytest.raises(UnknownModelError):
        reg.get(str(bpe_model_dir))
    with pytest.raises(UnknownModelError):
        reg.get(bpe_model_dir.name)


def test_label_selects_too(home):
    reg = ModelRegistry(home, builtins=False)
    label = dict((i, l) for l, i in ((e.label, e.id) for e in reg.entries()))["gpt2"]
    assert reg.resolve(label).id == "gpt2"


def test_long_unknown_key_is_not_echoed_whole(home):
    reg = ModelRegistry(home, builtins=False)
    with pytest.raises(UnknownModelError) as info:
        reg.resolve("y" * 1_000_000)
    assert len(str(info.value)) < 300


def test_broken_extra_model_is_skipped(home, bpe_model_dir, tmp_path):
    broken = _copy_model(bpe_model_dir, tmp_path / "broken")
    (broken / "model.safetensors").unlink()
    reg = ModelRegistry(home, extra=[broken, tmp_path / "missing"], builtins=False, hub=False)
    assert reg.entries() == []
    assert reg.default_id() is None


def test_builtins_listed_with_auto(home, bpe_model_dir, bert_zh_model_dir, tmp_path, monkeypatch):
    from textgen import loading

    builtin = tmp_path / "models"
    _copy_model(bpe_model_dir, builtin / "textgen-en")
    _copy_model(bert_zh_model_dir, builtin / "textgen-zh")
    monkeypatch.setattr(loading, "BUILTIN_DIR", builtin)
    reg = ModelRegistry(home)
    assert [e.id for e in reg.entries()][:3] == ["auto", "textgen-en", "textgen-zh"]
    assert reg.default_id() == "auto" and reg.has_builtins()


def test_register_finetuned_inside_home(home, bpe_model_dir):
    reg = ModelRegistry(home, builtins=False, hub=False)
    folder = _copy_model(bpe_model_dir, home / "jobs" / "a" / "model")
    model_id = reg.register_finetuned(folder, "  My   poems\n", owner="alice")
    assert model_id.startswith("ft-") and "model" not in model_id and "jobs" not in model_id
    entry = reg.resolve(model_id, owner="alice")
    assert entry.label == "My poems" and entry.kind == "finetuned"
    again = reg.register_finetuned(folder, "My poems", owner="alice")
    assert again != model_id and reg.resolve(again, owner="alice").label == "My poems (2)"


def test_finetuned_models_are_private_to_their_owner(home, bpe_model_dir):
    reg = ModelRegistry(home, builtins=False, hub=False)
    folder = _copy_model(bpe_model_dir, home / "m")
    model_id = reg.register_finetuned(folder, "secret", owner="alice")
    assert [e.id for e in reg.entries("bob")] == []
    assert [e.id for e in reg.entries(None)] == []
    for key in (model_id, "secret"):
        with pytest.raises(UnknownModelError):
            reg.resolve(key, owner="bob")
    public = reg.register_finetuned(folder, "shared", owner=None)
    assert public in [e.id for e in reg.entries("bob")]


@pytest.mark.parametrize("where", ["outside", "dotdot", "symlink", "home", "missing"])
def test_register_finetuned_refuses_paths_outside_home(home, bpe_model_dir, tmp_path, where):
    reg = ModelRegistry(home, builtins=False, hub=False)
    outside = _copy_model(bpe_model_dir, tmp_path / "outside")
    path = {
        "outside": outside,
        "dotdot": home / ".." / "outside",
        "symlink": home / "link",
        "home": home,
        "missing": home / "nope",
    }[where]
    if where == "symlink":
        path.symlink_to(outside, target_is_directory=True)
    with pytest.raises(ValueError, match="path: "):
        reg.register_finetuned(path, "x")
    assert reg.entries() == []


def test_register_finetuned_refuses_incomplete_or_unsafe_folders(home, bpe_model_dir):
    reg = ModelRegistry(home, builtins=False, hub=False)
    folder = _copy_model(bpe_model_dir, home / "partial")
    (folder / "model.safetensors").unlink()
    (folder / "pytorch_model.bin").write_bytes(b"not really a pickle")
    with pytest.raises(ModelLoadError, match="pickled weights"):
        reg.register_finetuned(folder, "partial")
    assert reg.entries() == []


@pytest.mark.parametrize("label", ["", "   ", "x" * 61, 5])
def test_bad_labels(home, bpe_model_dir, label):
    reg = ModelRegistry(home, builtins=False, hub=False)
    folder = _copy_model(bpe_model_dir, home / "m")
    with pytest.raises(ValueError, match="label: "):
        reg.register_finetuned(folder, label)


def test_cache_returns_same_object_and_loads_once(home):
    loader = CountingLoader(delay=0.2)
    reg = ModelRegistry(home, builtins=False, loader=loader)
    got: list[object] = []
    threads = [threading.Thread(target=lambda: got.append(reg.get("gpt2"))) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert loader.calls == ["gpt2"]
    assert all(g is got[0] for g in got)
    assert reg.get("gpt2") is got[0]
    assert reg.get(reg.resolve("gpt2").label) is got[0]


def test_lru_eviction_keeps_callers_object(home):
    loader = CountingLoader()
    reg = ModelRegistry(home, builtins=False, loader=loader, cache_size=2)
    first = reg.get("gpt2")
    reg.get("distilgpt2")
    reg.get("gpt2")  # most recently used now
    reg.get("gpt2-chinese")  # evicts distilgpt2
    assert reg.cached_ids() == ["gpt2", "gpt2-chinese"]
    assert reg.get("gpt2") is first
    assert loader.calls == ["gpt2", "distilgpt2", "gpt2-chinese"]


def test_unregister_drops_model_but_not_running_requests(home, bpe_model_dir):
    reg = ModelRegistry(home, builtins=False, hub=False)
    folder = _copy_model(bpe_model_dir, home / "m")
    model_id = reg.register_finetuned(folder, "mine", owner="alice")
    gen = reg.get(model_id, owner="alice")  # a request in flight holds this
    with pytest.raises(UnknownModelError):
        reg.unregister(model_id, owner="bob")
    reg.unregister(model_id, owner="alice")
    assert model_id not in reg.cached_ids()
    with pytest.raises(UnknownModelError):
        reg.get(model_id, owner="alice")
    result = gen.generate("Storm", "sea", n=1, seed=0, max_new_tokens=5)
    assert len(result) == 1


def test_real_model_loaded_once(home, bpe_model_dir):
    reg = ModelRegistry(home, extra=[bpe_model_dir], builtins=False, hub=False)
    key = reg.default_id()
    gen = reg.get(key)
    assert reg.get(key) is gen
    assert gen.generate("Storm", "sea", n=1, seed=0, max_new_tokens=4)[0].text is not None


def test_preload_loads_in_background(home):
    loader = CountingLoader(delay=0.1)
    reg = ModelRegistry(home, builtins=False, loader=loader)
    reg.preload("gpt2").join(5)
    assert reg.cached_ids() == ["gpt2"]
    reg.get("gpt2")
    assert loader.calls == ["gpt2"]


def test_failing_load_is_reported_and_not_cached(home):
    def failing(entry):
        raise ModelLoadError("model: could not reach the Hugging Face Hub (no network: …)")

    reg = ModelRegistry(home, builtins=False, loader=failing)
    with pytest.raises(ModelLoadError, match="no network"):
        reg.get("gpt2")
    assert reg.cached_ids() == []
    reg.preload("gpt2").join(5)  # logs, never raises in the thread


def test_data_home(monkeypatch, tmp_path):
    monkeypatch.setenv("TEXTGEN_HOME", str(tmp_path / "h"))
    assert data_home() == (tmp_path / "h").resolve()
    monkeypatch.delenv("TEXTGEN_HOME")
    expected = Path("/data/textgen") if Path("/data").is_dir() else registry_mod.REPO_ROOT / "runs"
    assert data_home() == expected


def test_from_env_reads_extra_models(monkeypatch, tmp_path, bpe_model_dir, bert_zh_model_dir):
    monkeypatch.setenv("TEXTGEN_HOME", str(tmp_path))
    monkeypatch.setenv("TEXTGEN_EXTRA_MODELS", os.pathsep.join([str(bpe_model_dir), str(bert_zh_model_dir)]))
    reg = ModelRegistry.from_env(builtins=False, hub=False)
    assert [e.kind for e in reg.entries()] == ["local", "local"]
    assert reg.home == tmp_path.resolve()


def test_owner_from_request():
    class Req:
        username = None
        session_hash = "abc"

    assert owner_from_request(None) is None
    assert owner_from_request(Req()) == "abc"
    Req.username = "alice"
    assert owner_from_request(Req()) == "alice"


def test_registry_needs_no_gradio():
    code = "import sys, finetune.web.registry; print('gradio' in sys.modules, 'torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parent.parent)
    assert out.stdout.strip() == "False False"


# -- hub models are pinned -------------------------------------------------------------------
def test_every_hub_model_is_pinned_to_a_commit():
    import re

    assert registry_mod.HUB_MODELS
    for model_id, _label, _repo, revision in registry_mod.HUB_MODELS:
        assert revision is not None and re.fullmatch(r"[0-9a-f]{40}", revision), model_id


def _hub_cache_with_two_commits(cache: Path, repo_folder: str, model_dir: Path, pinned: str, main: str) -> None:
    """An offline Hugging Face cache (the hub's own layout) holding two commits of one repo:
    the branch `main` points at `main`, whose config differs in a harmless, visible field."""
    import json

    repo = cache / repo_folder
    for commit, epsilon in ((pinned, 1e-5), (main, 1e-3)):
        snapshot = repo / "snapshots" / commit
        shutil.copytree(model_dir, snapshot)
        config = json.loads((snapshot / "config.json").read_text())
        config["layer_norm_epsilon"] = epsilon
        (snapshot / "config.json").write_text(json.dumps(config))
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(main)


def test_hub_model_loads_its_pinned_commit_for_generation_and_fine_tuning(tmp_path, home, bpe_model_dir):
    """With a repo whose branch moved on, the registry's `gpt2` still loads the pinned commit,
    and so does a fine-tune started from it in the web UI; without the pin, the branch's."""
    pinned = dict((m, r) for m, _, _, r in registry_mod.HUB_MODELS)["gpt2"]
    _hub_cache_with_two_commits(tmp_path / "hub", "models--gpt2", bpe_model_dir, pinned, "f" * 40)
    script = f"""
import sys
from finetune.config import TrainConfig
from finetune.training import _load_base
from finetune.web.registry import ModelRegistry
from textgen.loading import load

reg = ModelRegistry({str(home)!r}, builtins=False)
entry = reg.resolve("gpt2")
gen = reg.get("gpt2")
print("registry", gen.backend_for("", []).model.config.layer_norm_epsilon)
print("branch", load("gpt2").model.config.layer_norm_epsilon)
config = TrainConfig(data="x.csv", out="out", base=entry.source, revision=entry.revision)
loaded, name, _ = _load_base(config, None, [], None, True, False)
print("finetune", loaded.model.config.layer_norm_epsilon, name)
"""
    env = {**os.environ, "HF_HUB_CACHE": str(tmp_path / "hub"), "HF_HUB_OFFLINE": "1",
           "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    lines = dict(line.split(" ", 1) for line in out.stdout.splitlines() if " " in line)
    assert float(lines["registry"]) == 1e-5
    assert float(lines["branch"]) == 1e-3  # the cache really has a moved branch
    epsilon, name = lines["finetune"].split(" ", 1)
    assert float(epsilon) == 1e-5 and name == f"gpt2@{pinned}"


def test_bad_revision_is_refused_naming_the_field():
    from finetune.config import TrainConfig

    for bad in ("../main", "a b", "x" * 129, "main;rm"):
        with pytest.raises(ValueError, match=r"^revision: "):
            TrainConfig(data="x.csv", out="out", base="gpt2", revision=bad)
