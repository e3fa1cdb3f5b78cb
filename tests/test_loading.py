import json
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from textgen import Generator, ModelLoadError, loading


class _Marker:
    """Unpickling this creates a file: proof that a pickle was executed."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (Path.touch, (Path(self.path),))


def test_pickle_only_folder_refused_and_never_unpickled(bpe_model_dir, tmp_path):
    folder = tmp_path / "evil"
    folder.mkdir()
    shutil.copy(bpe_model_dir / "config.json", folder)
    marker = tmp_path / "pwned"
    (folder / "pytorch_model.bin").write_bytes(pickle.dumps(_Marker(marker)))
    with pytest.raises(ModelLoadError, match="only pickled weights"):
        Generator.from_pretrained(str(folder))
    assert not marker.exists()


def test_remote_code_config_refused(bpe_model_dir, tmp_path):
    folder = tmp_path / "remote"
    shutil.copytree(bpe_model_dir, folder)
    cfg = json.loads((folder / "config.json").read_text())
    cfg["auto_map"] = {"AutoModelForCausalLM": "evil.Model"}
    (folder / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ModelLoadError, match="never runs remote code"):
        Generator.from_pretrained(str(folder))


def test_truncated_weights_give_clear_error(bpe_model_dir, tmp_path):
    folder = tmp_path / "truncated"
    shutil.copytree(bpe_model_dir, folder)
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:200])
    with pytest.raises(ModelLoadError, match="model: "):
        Generator.from_pretrained(str(folder))


def test_missing_tokenizer_gives_clear_error(bpe_model_dir, tmp_path):
    folder = tmp_path / "notok"
    folder.mkdir()
    for name in ("config.json", "model.safetensors", "textgen_format.json"):
        shutil.copy(bpe_model_dir / name, folder)
    with pytest.raises(ModelLoadError, match="model: "):
        Generator.from_pretrained(str(folder))


@pytest.mark.parametrize("source, message", [
    ("/no/such/folder", "does not exist"),
    ("https://evil.example/model", "neither a built-in model"),
    ("a b c", "neither a built-in model"),
])
def test_bad_sources(source, message):
    with pytest.raises(ModelLoadError, match=message):
        Generator.from_pretrained(source)


def test_relative_path_to_a_folder_that_is_not_a_model(tmp_path, monkeypatch):
    # Relative paths are resolved against the working directory; build the
    # layout so the test does not depend on where the checkout lives.
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "passwd").write_text("root:x:0:0\n")
    inner = tmp_path / "a" / "b"
    inner.mkdir(parents=True)
    monkeypatch.chdir(inner)
    with pytest.raises(ModelLoadError, match="is it a model folder"):
        Generator.from_pretrained("../../etc")


def test_folder_without_config(tmp_path):
    with pytest.raises(ModelLoadError, match="no config.json"):
        Generator.from_pretrained(str(tmp_path))


def test_unreachable_hub_says_no_network(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelLoadError, match="no network: choose a built-in model or a local folder"):
        Generator.from_pretrained("someone/some-gpt2")


def test_uer_style_ids_are_mapped(uer_like_model_dir):
    g = Generator.from_pretrained(str(uer_like_model_dir))
    loaded = g.backend_for("春夜", [])
    sep = loaded.tokenizer.convert_tokens_to_ids("[SEP]")
    assert loaded.model.generation_config.eos_token_id == sep
    assert loaded.model.config.bos_token_id == loaded.tokenizer.convert_tokens_to_ids("[CLS]")
    result = g.generate("春夜", "月", n=2, seed=0, max_new_tokens=10)
    assert result.prompt_style == "plain"
    assert all("[SEP]" not in c.text and "[CLS]" not in c.text for c in result)


def test_auto_picks_builtin_by_language(bpe_model_dir, bert_zh_model_dir, tmp_path, monkeypatch):
    shutil.copytree(bpe_model_dir, tmp_path / "textgen-en")
    shutil.copytree(bert_zh_model_dir, tmp_path / "textgen-zh")
    monkeypatch.setattr(loading, "BUILTIN_DIR", tmp_path)
    g = Generator.from_pretrained("auto")
    assert g.generate("春夜", "月", n=1, seed=0, max_new_tokens=5).model == "textgen-zh"
    assert g.generate("Storm", "sea", n=1, seed=0, max_new_tokens=5).model == "textgen-en"
    assert Generator.from_pretrained("textgen-zh").name == "textgen-zh"


def test_device_and_dtype_resolved_at_load(bpe_model_dir):
    import torch

    g = Generator.from_pretrained(str(bpe_model_dir), dtype="float32", device="cpu")
    loaded = g.backend_for("x", [])
    assert loaded.dtype == torch.float32 and next(loaded.model.parameters()).dtype == torch.float32
    with pytest.raises(ValueError, match="dtype: must be one of"):
        Generator.from_pretrained(str(bpe_model_dir), dtype="int3")


def test_cpu_paths_start_from_the_files_exact_weights(bpe_model_dir, tmp_path):
    """fp16 weights read on the CPU: the fp32 paths (the ONNX graph, int8) get the file's values,
    not bf16-rounded ones; a bf16 PyTorch path still runs bf16."""
    import torch
    from transformers import AutoModelForCausalLM

    folder = tmp_path / "half"
    shutil.copytree(bpe_model_dir, folder)
    half = AutoModelForCausalLM.from_pretrained(folder).half()
    half.save_pretrained(folder)
    exact = half.transformer.wte.weight.float()
    assert not torch.equal(exact.bfloat16().float(), exact)  # bf16 would round these weights
    onnx = loading.load(folder, device="cpu", dtype="bfloat16", runtime="onnx")
    assert onnx.dtype == torch.float32 and torch.equal(onnx.model.transformer.wte.weight, exact)
    plain = loading.load(folder, device="cpu", dtype="bfloat16", quantize="none", runtime="torch")
    assert plain.dtype == torch.bfloat16 and next(plain.model.parameters()).dtype == torch.bfloat16


@pytest.mark.parametrize("cpuinfo, name, bf16, vnni, kind", [
    ("model name\t: AMD EPYC 7B13\nflags\t\t: fpu sse avx2 fma\n", "AMD EPYC 7B13", False, False,
     "AVX2 (no native bf16), no VNNI"),
    ("model name\t: AMD EPYC 9B14\nflags\t\t: avx2 avx512f avx512_vnni avx512_bf16\n", "AMD EPYC 9B14", True, True,
     "AVX-512 with native bf16, with VNNI"),
    ("flags\t\t: avx2 avx_vnni\n", "CPU", False, True, "AVX2 (no native bf16), with VNNI"),
    ("", "CPU", False, False, "unknown"),
])
def test_the_cpu_kind_is_read_from_its_flags(monkeypatch, cpuinfo, name, bf16, vnni, kind):
    import torch

    from benchmarks.machine import cpu_kind
    from textgen import device

    monkeypatch.setattr(device, "cpu_info", lambda: cpuinfo)
    assert (device.cpu_name(), device.cpu_has_fast_bf16(), device.cpu_has_int8_dot(), cpu_kind()) == \
        (name, bf16, vnni, kind)
    assert device.resolve_dtype(torch.device("cpu")) == (torch.bfloat16 if bf16 else torch.float32)


@pytest.mark.parametrize("imported", [False, True], ids=["first-import", "imported"])
def test_models_loaded_at_once_in_threads_are_whole(bpe_model_dir, bert_zh_model_dir, imported):
    """The app loads models in threads (a preload, users' first requests); transformers builds
    a model under process-wide state. In a fresh interpreter (transformers imported or not yet),
    twelve loads of two models start together; each must come out as a sequential load does:
    its weights on the CPU, the output layer tied to the embeddings, the same logits."""
    script = f"""
import threading, torch
{"from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer" if imported else ""}
from textgen.loading import load
folders = [{str(bpe_model_dir)!r}, {str(bert_zh_model_dir)!r}] * 6
start, out = threading.Barrier(len(folders)), {{}}
def go(i):
    start.wait()
    try:
        out[i] = load(folders[i], quantize="none", runtime="torch").model
    except Exception as exc:
        out[i] = exc
threads = [threading.Thread(target=go, args=(i,)) for i in range(len(folders))]
[t.start() for t in threads]; [t.join() for t in threads]
alone = [load(f, quantize="none", runtime="torch").model for f in folders[:2]]
ids = torch.tensor([[1, 5, 9, 3]])
for i, model in sorted(out.items()):
    assert not isinstance(model, Exception), f"load {{i}}: {{model!r}}"
    assert all(p.device.type == "cpu" for p in model.parameters()), f"load {{i}}: weights left off the CPU"
    assert model.lm_head.weight.data_ptr() == model.transformer.wte.weight.data_ptr(), f"load {{i}}: untied"
    with torch.no_grad():
        assert torch.equal(model(ids).logits, alone[i % 2](ids).logits), f"load {{i}}: other logits"
print("ok", len(out))
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300,
                          cwd=Path(__file__).resolve().parent.parent)
    assert done.returncode == 0 and "ok 12" in done.stdout, done.stderr[-3000:]


def test_import_is_light():
    code = ("import sys, textgen, textgen.cli; "
            "bad = [m for m in ('gradio', 'finetune', 'torch', 'transformers') if m in sys.modules]; "
            "print(bad)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parent.parent)
    assert out.stdout.strip() == "[]"


def test_library_never_imports_gradio():
    code = "import sys, textgen; textgen.Generator; print('gradio' in sys.modules, 'finetune' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parent.parent)
    assert out.stdout.strip() == "False False"
