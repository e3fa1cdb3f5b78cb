"""What trains: the whole model, its last blocks, its output layer, or LoRA adapters.

>>> model, report = apply_method(model, "last-n", last_n=2)      # doctest: +SKIP
>>> report.trainable, report.total, report.description            # doctest: +SKIP
>>> model = for_saving(model)   # LoRA merged into the weights; others unchanged   # doctest: +SKIP

Special tokens a base model lacked (our [BOS] [SEP] [EOS] [PAD], added by
`textgen.prompt.add_special_tokens`) start as untrained rows of the embedding. Every method
trains those rows, and only those rows, of the input embedding (`new_token_ids`), or the
prompt would be made of tokens the model cannot tell apart.

`head`: GPT-2 ties its output layer to the input embedding (`wte`). Training the tied matrix
would change how the model reads every token as well, so `head` unties them: the output
layer becomes a copy of `wte` that trains alone, and the saved model has both matrices
(`tie_word_embeddings: false`), which every loader handles.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

METHODS = ("full", "last-n", "head", "lora")
LORA_TARGETS = ["c_attn", "c_proj", "c_fc"]  # attention qkv/out and both MLP layers of GPT-2
LORA_DROPOUT = 0.05


@dataclass
class MethodReport:
    method: str
    trainable: int  # parameters the optimizer changes (embedding rows counted one by one)
    total: int  # parameters of the model as saved
    description: str  # what trains, in words, for the summary and the model card

    @property
    def percent(self) -> float:
        return 100.0 * self.trainable / max(self.total, 1)


def apply_method(model, method: str, *, last_n: int = 6, new_token_ids: Sequence[int] = (),
                 lora_r: int = 8, lora_alpha: float = 16.0):
    """Set requires_grad (and wrap for LoRA); return (model to train, report)."""
    if method not in METHODS:
        raise ValueError(f"method: must be one of {', '.join(METHODS)}, got {method!r}")
    new = sorted(set(new_token_ids))
    if method == "full":
        for p in model.parameters():
            p.requires_grad_(True)
        n = _count(model)
        return model, MethodReport(method, n, n, "all weights")
    if method == "lora":
        return _lora(model, new, lora_r, lora_alpha)
    for p in model.parameters():
        p.requires_grad_(False)
    if method == "head":
        parts = [_untie_and_train_head(model)]
    else:
        parts = [_train_last_blocks(model, last_n)]
    extra = _train_embedding_rows(model, new) if new else 0
    if extra:
        parts.append(f"the input embeddings of the {len(new)} added special tokens")
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    if extra:  # the embedding matrix requires grad, but only its new rows change
        trainable -= model.get_input_embeddings().weight.numel() - extra
    return model, MethodReport(method, trainable, _count(model), "; ".join(parts))


def _count(model) -> int:
    # parameters() yields a tied matrix once, as the saved file stores it
    return sum(p.numel() for p in model.parameters())


def _train_last_blocks(model, n: int) -> str:
    blocks = model.transformer.h
    n = max(1, min(n, len(blocks)))
    for block in blocks[-n:]:
        block.requires_grad_(True)
    model.transformer.ln_f.requires_grad_(True)
    return f"the last {n} of {len(blocks)} transformer blocks and the final layer norm"


def _untie_and_train_head(model) -> str:
    import torch

    head, wte = model.get_output_embeddings(), model.get_input_embeddings()
    if head.weight is wte.weight or head.weight.data_ptr() == wte.weight.data_ptr():
        head.weight = torch.nn.Parameter(wte.weight.detach().clone())
        model.config.tie_word_embeddings = False
        if hasattr(model.config, "get_text_config"):
            model.config.get_text_config().tie_word_embeddings = False
    head.weight.requires_grad_(True)
    return ("the output layer (lm_head), untied from the input embedding: a separate copy of it "
            "trains, the input embedding stays as it was")


def _train_embedding_rows(model, rows: list[int]) -> int:
    """Let only `rows` of the input embedding change: their gradient passes, the rest is zeroed.

    With Adam, a parameter entry whose gradient is always zero never moves, as long as weight
    decay is 0 (train() sets it so).
    """
    import torch

    weight = model.get_input_embeddings().weight
    if weight.requires_grad:  # tied to a head that already trains in full (never here)
        return 0
    mask = torch.zeros(weight.shape[0], 1, dtype=weight.dtype)
    mask[rows] = 1.0
    weight.requires_grad_(True)
    weight.register_hook(lambda grad: grad * mask.to(grad.device, grad.dtype))
    return len(rows) * weight.shape[1]


def _lora(model, new: list[int], r: int, alpha: float):
    from peft import LoraConfig, get_peft_model

    total = _count(model)
    config = LoraConfig(
        r=r, lora_alpha=alpha, lora_dropout=LORA_DROPOUT, target_modules=LORA_TARGETS,
        fan_in_fan_out=True,  # GPT-2's Conv1D stores weights transposed
        trainable_token_indices={"wte": new} if new else None,
        task_type="CAUSAL_LM",
    )
    peft_model = get_peft_model(model, config)
    trainable = sum(p.numel() for p in peft_model.parameters() if p.requires_grad)
    what = f"LoRA adapters (r={r}, alpha={alpha:g}) on {', '.join(LORA_TARGETS)}, merged into the weights on save"
    if new:
        what += f"; the embeddings of the {len(new)} added special tokens"
    return peft_model, MethodReport("lora", trainable, total, what)


def unwrap(model):
    """The transformers model inside a PEFT wrapper (for generation configs, n_positions…)."""
    get_base = getattr(model, "get_base_model", None)
    return get_base() if callable(get_base) else model


def for_saving(model):
    """The plain GPT2LMHeadModel to save: LoRA adapters merged in, wrappers removed."""
    if hasattr(model, "merge_and_unload"):
        return model.merge_and_unload()
    return model
