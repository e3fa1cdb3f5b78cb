"""The Fine-tune tab's "My models 我的模型" box: this browser's kept models, offered to its session,
used in the Generate tab, downloaded or deleted."""
from __future__ import annotations

import datetime as dt
from typing import Any

import gradio as gr

from textgen.messages import bilingual

from .errors import LibraryError
from .jobs import JobManager
from .registry import ModelRegistry
from .ui_session import hand_over, session_owner, tab_error


class LibraryHandlers:
    """The box's server-side functions; the key is the browser's secret (`Library`)."""

    def __init__(self, registry: ModelRegistry, manager: JobManager) -> None:
        self.registry, self.manager = registry, manager

    def claim(self, owner: str, key: Any) -> list:
        if not key:
            return []
        try:
            return self.manager.claim(owner, key)
        except LibraryError as exc:
            gr.Warning(bilingual(str(exc)))
            return []

    def shelf_list(self, kept: list, selected: str | None = None):
        choices = [(f"{item.label} · {dt.datetime.fromtimestamp(item.created):%Y-%m-%d %H:%M}", item.id)
                   for item, _ in kept]
        ids = [i for _, i in choices]
        value = selected if selected in ids else (ids[-1] if ids else None)
        return gr.update(choices=choices, value=value)

    def refresh(self, key: Any, selected: Any = None, request: gr.Request | None = None):
        """The tab is shown: the list again (before the page load sent the key: as it is)."""
        owner = session_owner(request)
        if not key:
            return gr.skip()
        return self.shelf_list(self.claim(owner, key), selected if isinstance(selected, str) else None)

    def use(self, key: Any, item_id: Any, request: gr.Request | None = None):
        """Select a kept model in the Generate tab (and as the base of the next fine-tune)."""
        owner = session_owner(request)
        kept = dict((item.id, model_id) for item, model_id in self.claim(owner, key))
        if item_id not in kept or kept[item_id] is None:
            raise tab_error(LibraryError("library: choose one of your models first 请先选择一个模型"), "My models 我的模型")
        gr.Info("Selected in the Generate tab 已在「生成」页选中")
        return (gr.update(choices=self.registry.choices(owner), value=kept[item_id]),
                gr.update(choices=self.registry.choices(owner)))

    def download(self, key: Any, item_id: Any, request: gr.Request | None = None):
        owner = session_owner(request)
        try:
            built = self.manager.zip_item(owner, key, item_id)
        except LibraryError as exc:
            raise tab_error(exc, "My models 我的模型") from None
        return gr.update(value=str(hand_over(self.manager, owner, built)), visible=True)

    def delete(self, key: Any, item_id: Any, request: gr.Request | None = None):
        owner = session_owner(request)
        if item_id is None:  # the confirmation was declined
            return gr.skip(), gr.skip(), gr.skip()
        try:
            item = self.manager.forget(owner, key, item_id)
        except LibraryError as exc:
            raise tab_error(exc, "My models 我的模型") from None
        gr.Info(f"Deleted {item.label} 已删除")
        return (self.shelf_list(self.claim(owner, key)), gr.update(choices=self.registry.choices(owner)),
                gr.update(visible=False))

