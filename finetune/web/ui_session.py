"""What every Fine-tune handler needs of its request: whose session it is, how a refusal reads
(a bilingual `gr.Error`), and handing a prepared file to the browser."""
from __future__ import annotations

import secrets
import shutil
from pathlib import Path

import gradio as gr

from textgen.messages import bilingual

from .registry import owner_from_request


def tab_error(exc: Exception, title: str = "Fine-tune 微调") -> gr.Error:
    return gr.Error(bilingual(str(exc)), title=title, print_exception=False)


def session_owner(request: gr.Request | None) -> str:
    owner = owner_from_request(request)
    if not owner:
        raise gr.Error("session: no browser session; reload the page 请刷新页面", print_exception=False)
    return owner


def hand_over(manager, owner: str, built: Path) -> Path:
    """Move a zip from the session's folder to a random folder of gradio's cache (the data
    folder itself is blocked from gradio's file route); deleted when the session ends."""
    folder = Path(gr.utils.get_upload_folder()) / f"textgen-{secrets.token_hex(20)}"
    folder.mkdir(parents=True, mode=0o700)
    dest = folder / built.name
    shutil.move(built, dest)
    manager.keep_until_release(owner, folder)
    return dest
