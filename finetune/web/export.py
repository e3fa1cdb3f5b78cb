"""A finished model leaves the app: as a zip the browser downloads, or pushed to a Hugging Face
Hub repository with a token that is used for that call only."""
from __future__ import annotations

import os
import re
import secrets
import zipfile
from pathlib import Path
from typing import Any

from .errors import HubError
from .names import file_stem

HUB_REPO = re.compile(r"^[A-Za-z0-9][\w.-]{0,95}/[A-Za-z0-9][\w.-]{0,95}$")


def zip_model(model: Path, label: str, folder: Path) -> Path:
    """Zip a model folder as <file stem of its label>.zip inside `folder`; returns its path."""
    name = file_stem(label)
    dest = folder / f"{name}.zip"
    tmp = folder / f".{name}-{secrets.token_hex(4)}.zip"
    try:
        with zipfile.ZipFile(tmp, "w") as zf:
            for path in sorted(model.iterdir()):
                if path.is_file() and not path.is_symlink():
                    packed = zipfile.ZIP_STORED if path.suffix == ".safetensors" else zipfile.ZIP_DEFLATED
                    zf.write(path, f"{name}/{path.name}", compress_type=packed)
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    return dest



def push_model(model: Path, label: str, repo_id: Any, token: Any, *, private: bool = True,
               endpoint: str | None = None) -> str:
    """Upload the model folder to the Hub repo `repo_id` ("user/name"); returns its URL. The
    token is never stored, logged or put in a message."""
    repo_id, token = check_push(repo_id, token)
    try:
        from huggingface_hub import HfApi

        api = HfApi(token=token, endpoint=endpoint)
        url = api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
        api.upload_folder(folder_path=str(model), repo_id=repo_id, repo_type="model",
                          commit_message=f"textgen fine-tune: {label}")
    except Exception as exc:  # noqa: BLE001 - every failure becomes one clean message
        raise HubError(hub_message(exc, token)) from None
    return str(url)


def check_push(repo_id: Any, token: Any) -> tuple[str, str]:
    """The repository id and token, stripped; ValueError naming the field when one is not usable."""
    if not isinstance(repo_id, str) or not HUB_REPO.match(repo_id.strip()) or ".." in repo_id:
        raise ValueError("repo_id: give the repository as your-name/model-name (letters, digits, - _ .)")
    if not isinstance(token, str) or not token.strip() or len(token) > 400:
        raise ValueError("token: paste a Hugging Face access token with write permission")
    return repo_id.strip(), token.strip()


def hub_message(exc: Exception, token: str) -> str:
    """One clear sentence for a failed push, with the token scrubbed from anything quoted."""
    import httpx
    from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled

    status = getattr(getattr(exc, "response", None), "status_code", None)
    if isinstance(exc, (OfflineModeIsEnabled, httpx.TransportError, ConnectionError, TimeoutError)) or \
            "offline" in str(exc).lower():
        text = ("could not reach the Hugging Face Hub (offline or no network); the model was not pushed. "
                "Download the zip instead. 无法连接 Hugging Face Hub，请改为下载压缩包。")
    elif status in (401, 403):
        text = "the Hub refused the token: use an access token with write permission for this repository."
    elif isinstance(exc, HfHubHTTPError):
        text = f"the Hub refused the upload (HTTP {status}): {str(exc)[:200]}"
    else:
        text = f"pushing failed ({type(exc).__name__}): {str(exc)[:200]}"
    return "push: " + text.replace(token, "***")

