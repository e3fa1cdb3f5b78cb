"""Safe model loading: built-in names, local folders and hub ids.

Safetensors only, never remote code. A folder that offers only pickled weights
(`pytorch_model.bin`) is refused, because unpickling runs arbitrary code.
"""
from __future__ import annotations

import json
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .prompt import PromptFormat, add_special_tokens, token_ids

BUILTIN_DIR = Path(__file__).resolve().parent.parent / "assets" / "models"
BUILTIN_BY_LANGUAGE = {"zh": "textgen-zh", "en": "textgen-en"}
# Hub ids as the hub allows them: "name" or "owner/name", no dots-only parts, no "..".
_HUB_ID = re.compile(r"^(?!.*\.\.)[A-Za-z0-9][\w.-]{0,95}(/[A-Za-z0-9][\w.-]{0,95})?$")
_NO_NETWORK_HINT = "no network: choose a built-in model or a local folder"
# transformers builds a model under process-wide state (parameters made on the meta device, the
# default dtype), so two models built at once in two threads break each other: parameters left
# on meta, tied weights untied and re-initialised at random. Loads take turns while they build
# (a hub download in one makes the others wait); what follows (the decode path) runs side by side.
_BUILDING = threading.Lock()


class ModelLoadError(RuntimeError):
    """A model could not be loaded; the message says why and what to do."""


@dataclass
class LoadedModel:
    model: Any
    tokenizer: Any
    fmt: PromptFormat
    name: str
    device: Any
    dtype: Any
    quantize: str = "none"  # "int8": int8 weights on the CPU decode path
    runtime: str = "torch"  # "onnx": ONNX Runtime runs the decode steps
    decode_path: Any = None  # a `textgen.steppers.DecodePath`: the int8 matrices or ONNX Runtime's graph


def builtin_models() -> dict[str, Path]:
    """Built-in model folders shipped in assets/models, by name (complete ones only)."""
    if not BUILTIN_DIR.is_dir():
        return {}
    return {p.name: p for p in sorted(BUILTIN_DIR.iterdir())
            if (p / "config.json").is_file() and has_weights(p)}


def has_weights(folder: Path) -> bool:
    """Safetensors weights in one file or in shards with their index."""
    return (folder / "model.safetensors").is_file() or (folder / "model.safetensors.index.json").is_file()


def builtin_for_language(language: str) -> Path:
    name = BUILTIN_BY_LANGUAGE.get(language)
    models = builtin_models()
    if name in models:
        return models[name]
    if models:  # a bilingual or differently named built-in is better than nothing
        return next(iter(models.values()))
    raise ModelLoadError(f"model: no built-in model for language {language!r} in {BUILTIN_DIR}; "
                         "pass a local folder or a hub id")


def resolve_source(source: str | Path) -> tuple[str, bool]:
    """Turn a built-in name, folder or hub id into (path or id, is_local)."""
    if isinstance(source, Path) or not isinstance(source, str):
        return str(source), True
    models = builtin_models()
    if source in models:
        return str(models[source]), True
    path = Path(source).expanduser()
    if path.exists() or source.startswith((".", "/", "~")) or "\\" in source:
        return str(path), True
    if _HUB_ID.match(source):
        return source, False
    raise ModelLoadError(f"model: {source!r} is neither a built-in model "
                         f"({', '.join(models) or 'none installed'}), a local folder, nor a hub id")


def check_local_folder(path: Path) -> None:
    """Refuse folders that are missing, unsafe (pickle-only, remote code) or incomplete."""
    if not path.is_dir():
        raise ModelLoadError(f"model: folder {path} does not exist")
    config = path / "config.json"
    if not config.is_file():
        raise ModelLoadError(f"model: {path} has no config.json; is it a model folder?")
    check_config(_read_json(config, path))
    if not any(path.glob("*.safetensors")):
        if any(path.glob("*.bin")) or any(path.glob("*.pt")) or any(path.glob("*.pth")):
            raise ModelLoadError(f"model: {path} has only pickled weights (pytorch_model.bin); "
                                 "textgen loads safetensors only, because unpickling can run code. "
                                 "Convert the weights to model.safetensors with a trusted tool.")
        raise ModelLoadError(f"model: {path} has no model.safetensors")


def _read_json(file: Path, folder: Path) -> dict:
    try:
        return json.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelLoadError(f"model: {folder} has a broken {file.name}: {exc}") from None


def check_config(config: dict) -> None:
    if "auto_map" in config:
        raise ModelLoadError("model: its config.json asks for custom code (auto_map); "
                             "textgen never runs remote code")
    if config.get("model_type") not in (None, "gpt2"):
        raise ModelLoadError(f"model: type {config.get('model_type')!r} is not supported; "
                             "textgen runs GPT-2 models")


def _fix_bert_vocab_ids(model, tokenizer) -> None:
    """uer/gpt2-chinese-* declare bos/eos 50256, outside their 21128-token BERT vocabulary,
    so EOS would never fire: map them to [CLS]/[SEP]/[PAD]."""
    vocab = len(tokenizer)
    cfg, gen = model.config, getattr(model, "generation_config", None)
    bad = lambda tid: tid is None or (isinstance(tid, int) and tid >= vocab)  # noqa: E731
    if not (bad(cfg.eos_token_id) or bad(cfg.bos_token_id)):
        return
    tok = tokenizer.get_vocab()
    if "[SEP]" not in tok:
        return
    ids = {"bos": tok.get("[CLS]", tok["[SEP]"]), "eos": tok["[SEP]"], "pad": tok.get("[PAD]", tok["[SEP]"])}
    for target in filter(None, (cfg, gen)):
        target.bos_token_id, target.eos_token_id, target.pad_token_id = ids["bos"], ids["eos"], ids["pad"]
    if tokenizer.eos_token is None or tokenizer.eos_token_id >= vocab:
        tokenizer.eos_token = "[SEP]"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = "[PAD]" if "[PAD]" in tok else "[SEP]"


def load(source: str | Path, *, device: str | None = None, dtype: str | None = None,
         revision: str | None = None, quantize: str | None = None,
         runtime: str | None = None) -> LoadedModel:
    """Load model and tokenizer safely; resolve device, dtype, quantization and the runtime of
    the decode steps now."""
    import torch

    from .device import resolve_device, resolve_dtype
    from .onnx_step import check_runtime
    from .quantize import resolve_quantize

    check_runtime(runtime)  # a misspelt choice is refused before the download
    where, local = resolve_source(source)
    if local:
        check_local_folder(Path(where))
    dev = resolve_device(device)
    dt = resolve_dtype(dev, dtype)
    resolve_quantize(quantize, lean=True)  # a misspelt choice is refused before the download
    # on the CPU the weights are read in fp32 and cast after the decode path is chosen: the
    # fp32 paths (ONNX Runtime's graph, the int8 kernels) then start from the file's exact
    # values, not bf16-rounded ones
    model, tokenizer = _from_pretrained(where, local, torch.float32 if dev.type == "cpu" else dt, revision)
    try:
        fmt = PromptFormat.load(where) if local else _hub_format(where, revision)
    except ValueError as exc:  # a format version this textgen cannot read
        raise ModelLoadError(f"model: {where}: {exc}") from None
    if fmt is None:
        fmt = PromptFormat.plain()
    _fix_bert_vocab_ids(model, tokenizer)
    if fmt.style == "textgen":
        try:
            token_ids(tokenizer, fmt)
        except ValueError as exc:
            raise ModelLoadError(f"model: {where}: the tokenizer does not match its textgen_format.json "
                                 f"({exc})") from None
    else:
        add_special_tokens(tokenizer, fmt)  # only sets pad = eos for plain models
    model.to(dev).eval()
    name = Path(where).name if local else where
    quant, run, path, dt = _decode_path(model, dt, quantize, runtime, dtype)
    return LoadedModel(model=model, tokenizer=tokenizer, fmt=fmt, name=name, device=dev, dtype=dt,
                       quantize=quant, runtime=run, decode_path=path)


def _decode_path(model, dt, quantize: str | None, runtime: str | None, dtype_asked: str | None):
    """What runs the decode steps, with which weights: (quantize, runtime, DecodePath, dtype).

    ONNX Runtime's graph (`textgen.onnx_step`) is built in fp32 and takes int8 weights on
    every matrix unless told "none"; PyTorch's lean path takes fbgemm's int8 only where a
    matrix is big enough to gain. A dtype asked for explicitly with quantize "none" keeps
    PyTorch, which runs that dtype. Both fp32 paths run on the CPU, where `load` reads the
    weights in fp32; the model is cast to the dtype returned here."""
    import torch

    from .onnx_graph import graph_fits
    from .onnx_step import resolve_runtime
    from .quantize import resolve_quantize
    from .steppers import DecodePath, GPT2Stepper

    lean = GPT2Stepper.supports(model)
    keeps_dtype = quantize == "none" and dtype_asked not in (None, "auto", "float32")
    run = resolve_runtime(runtime, lean=lean and not keeps_dtype and graph_fits(model.config))
    if run == "onnx":
        from .onnx_step import OnnxGPT2Step

        quant = "none" if quantize == "none" else "int8"
        model.float()  # the graph is built from fp32 weights
        return quant, run, DecodePath(graph=OnnxGPT2Step(model, int8=quant == "int8")), torch.float32
    quant = resolve_quantize(quantize, lean=lean)
    path = DecodePath()
    if quant == "int8":
        from .quantize import Int8GPT2

        int8 = Int8GPT2.from_model(model)
        if not int8.matrices:  # every matrix too small to gain
            quant = "none"
        else:  # the int8 kernels read and return fp32; the small matrices stay fp32
            path, dt = DecodePath(int8=int8), torch.float32
    model.to(dt)
    return quant, run, path, dt


def _hub_format(repo: str, revision: str | None) -> PromptFormat | None:
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError

    try:
        return PromptFormat.load(Path(hf_hub_download(repo, "textgen_format.json", revision=revision)).parent)
    except (EntryNotFoundError, OSError):
        return None


def _from_pretrained(where: str, local: bool, dtype, revision: str | None):
    with _BUILDING:  # the import too: two threads importing transformers' lazy module at once fail
        from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    kwargs = dict(trust_remote_code=False, revision=revision, local_files_only=local)
    try:
        config = AutoConfig.from_pretrained(where, **kwargs)
        check_config(config.to_dict())
        tokenizer = AutoTokenizer.from_pretrained(where, **kwargs)
        with _BUILDING:
            model = AutoModelForCausalLM.from_pretrained(where, config=config, dtype=dtype,
                                                         use_safetensors=True, **kwargs)
    except ModelLoadError:
        raise
    except (OSError, ValueError, EnvironmentError) as exc:
        raise ModelLoadError(_explain(where, local, exc)) from exc
    except Exception as exc:  # safetensors raises its own error types on truncated files
        if type(exc).__module__.startswith("safetensors") or "safetensors" in str(exc).lower():
            raise ModelLoadError(f"model: {where} has broken weights ({exc})") from exc
        raise
    return model, tokenizer


def _explain(where: str, local: bool, exc: Exception) -> str:
    text = str(exc)
    if not local and any(s in text.lower() for s in ("connect", "offline", "resolve", "network",
                                                      "couldn't", "could not", "timed out")):
        return f"model: could not reach the Hugging Face Hub for {where!r} ({_NO_NETWORK_HINT})"
    if "safetensors" in text.lower() or "use_safetensors" in text:
        return f"model: {where} offers no safetensors weights; textgen loads safetensors only"
    return f"model: could not load {where}: {text.splitlines()[0] if text else type(exc).__name__}"
