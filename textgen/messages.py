"""Error messages in both languages: every message names its field first ("lr: …"); a
message that has no Chinese yet gets the field's Chinese name and what is wrong with it.

>>> bilingual("lr: must be > 0 and <= 1, got 0.0")
'lr: must be > 0 and <= 1, got 0.0 · 学习率：取值有误'
>>> bilingual("title: 标题不能为空")
'title: 标题不能为空'
"""
from __future__ import annotations

from .lang import has_cjk

FIELDS_ZH = {
    "title": "标题", "keywords": "关键词", "keyword_mode": "关键词模式", "model": "模型", "n": "候选数",
    "length": "长度", "max_new_tokens": "最大生成长度", "temperature": "温度", "top_k": "Top-k",
    "top_p": "Top-p", "repetition_penalty": "重复惩罚", "seed": "随机种子", "max_seconds": "时间上限",
    "base": "基础模型", "method": "方法", "epochs": "轮数", "max_steps": "最多步数", "lr": "学习率",
    "batch_size": "批大小", "max_length": "最大长度", "name": "模型名称", "label": "模型名称",
    "data": "语料", "file": "文件", "encoding": "编码", "repo_id": "仓库", "token": "访问令牌",
    "push": "上传", "session": "会话", "busy": "服务器忙", "start": "开始", "resume": "继续",
    "stop": "停止", "library": "我的模型", "title/keywords": "标题和关键词",
}
PROBLEMS_ZH = (  # (English words in the message, what to say in Chinese), first match wins
    (("at most", "too long", "too many", "more than"), "超出上限"),
    (("must not be empty", "give a", "is empty", "first"), "不能为空"),
    (("unknown", "not available", "cannot be reached", "not offered"), "不可用"),
    (("busy", "try again"), "请稍后再试"),
)


def field_of(message: str) -> str:
    head = message.split(":", 1)[0].strip()
    return head if head in FIELDS_ZH else ""


def bilingual(message: str) -> str:
    """The message as it is when it already speaks Chinese, else with a Chinese summary."""
    if has_cjk(message):
        return message
    name = field_of(message)
    lower = message.lower()
    problem = next((zh for words, zh in PROBLEMS_ZH if any(w in lower for w in words)), "取值有误")
    return f"{message} · {FIELDS_ZH[name]}：{problem}" if name else f"{message} · {problem}"
