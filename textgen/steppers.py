"""One forward step of a causal LM with a key/value cache: the prompt once, then a token per row.

Two implementations with one interface (`prefill`, `step`):

- `HFStepper` calls the model as transformers defines it, with its `DynamicCache`: any
  causal LM, any device.
- `GPT2Stepper` runs the decode steps of a `GPT2LMHeadModel` on the CPU as a straight line of
  torch ops over the model's own weights, with a preallocated cache. Why by hand: on the small
  GPT-2s this project ships (4 blocks × 256), the model's matrix work per token is a few
  hundred microseconds, while transformers' module tree around it (hooks, output
  recorders, mask builders, deprecation shims) costs about 2 ms per step on a laptop-class
  CPU — several times the arithmetic. No maintained library runs a Hugging Face GPT-2 without
  that overhead short of `torch.compile`, whose 20+ s start-up would land on a user's
  first request. The weights are the model's own tensors (nothing is copied or converted),
  and tests/test_decoding.py checks it against the transformers forward.

A `DecodePath` says what else runs the lean path. With int8 weights (`textgen.quantize`) it
multiplies by fbgemm's int8 kernels and runs in fp32 around them. With the graph
(`textgen.onnx_step`, the default where onnxruntime is installed) the prompt and the decode
steps run as one ONNX Runtime graph on this stepper's cache.

Both take the prompt at batch size 1 and repeat its cache for the n rows: every row starts
from the same prompt, so there is no padding and no attention mask.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

# activations GPT-2 configs use, as transformers' ACT2FN defines them
_ACTIVATIONS = {
    "gelu_new": lambda x: F.gelu(x, approximate="tanh"),
    "gelu_pytorch_tanh": lambda x: F.gelu(x, approximate="tanh"),
    "gelu_fast": lambda x: F.gelu(x, approximate="tanh"),
    "gelu": F.gelu,
    "relu": F.relu,
}


def attention_scale(config, layer: int) -> float:
    """What GPT-2 scales layer `layer`'s attention scores by, as transformers' GPT2Attention does."""
    scale = 1.0 / math.sqrt(config.n_embd // config.n_head) if config.scale_attn_weights else 1.0
    if config.scale_attn_by_inverse_layer_idx:
        scale /= float(layer + 1)
    return scale


class HFStepper:
    """The model's own forward with transformers' DynamicCache."""

    def __init__(self, model, n: int) -> None:
        from transformers import DynamicCache

        self.model, self.n = model, n
        self.cache = DynamicCache(config=model.config)

    def prefill(self, prompt: torch.Tensor) -> torch.Tensor:
        """prompt (1, P) → next-token logits (n, V) in float32."""
        out = self.model(input_ids=prompt, cache=self.cache, use_cache=True, logits_to_keep=1)
        if self.n > 1:
            self.cache.batch_repeat_interleave(self.n)
        return out.logits[:, -1, :].float().repeat(self.n, 1)

    def step(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens (n,) → next-token logits (n, V) in float32."""
        out = self.model(input_ids=tokens[:, None], cache=self.cache, use_cache=True, logits_to_keep=1)
        return out.logits[:, -1, :].float()


@dataclass(frozen=True)
class DecodePath:
    """What runs a GPT-2's decode steps besides torch's own ops, at most one of the two
    (`textgen.loading` picks): `int8`, the model's `textgen.quantize.Int8GPT2`, multiplies by
    int8 weights; `graph`, its `textgen.onnx_step.OnnxGPT2Step`, runs the whole step in ONNX
    Runtime."""

    int8: Any = None
    graph: Any = None


class GPT2Stepper:
    """Decode steps of a GPT2LMHeadModel in eval mode on the CPU (see the module docstring)."""

    def __init__(self, model, n: int, max_len: int, path: DecodePath | None = None) -> None:
        config = model.config
        t = model.transformer
        self.n, self.max_len = n, max_len
        path = path or DecodePath()
        int8 = path.int8
        # the graph was built in fp32: a model cast since (to float64, say) runs its own way
        self.graph = path.graph if t.wte.weight.dtype == torch.float32 else None
        self.graph_threads = self.graph.threads_for(n) if self.graph is not None else None
        self.heads, self.width = config.n_head, config.n_embd
        self.head_dim = self.width // self.heads
        self.eps = config.layer_norm_epsilon
        self.act = _ACTIVATIONS[config.activation_function]
        if int8 is not None and t.wte.weight.dtype != torch.float32:
            raise ValueError("int8 weights go with an fp32 model (the kernels return fp32)")
        self.wte, self.wpe = t.wte.weight, t.wpe.weight
        self.ln_f = (t.ln_f.weight, t.ln_f.bias)
        head = model.lm_head.weight  # (V, E)
        self.lm_head = (int8.lm_head if int8 is not None else None) or (lambda x: F.linear(x, head))
        self.blocks = []
        for i, block in enumerate(t.h):
            scale = attention_scale(config, i)
            a, m = block.attn, block.mlp
            quantized = int8.blocks[i] if int8 is not None else (None,) * 4
            matmuls = tuple(q or _dense(c.weight, c.bias)
                            for q, c in zip(quantized, (a.c_attn, a.c_proj, m.c_fc, m.c_proj)))
            self.blocks.append((block.ln_1.weight, block.ln_1.bias, *matmuls, block.ln_2.weight, block.ln_2.bias,
                                scale))
        shape = (len(self.blocks), n, self.heads, max_len, self.head_dim)  # (L, n, H, T_max, D)
        self.keys = torch.empty(shape, dtype=self.wte.dtype)  # read only below each row's length
        self.values = torch.empty(shape, dtype=self.wte.dtype)
        self.length = 0

    @staticmethod
    def supports(model) -> bool:
        """Plain GPT-2 decoder in eval mode on the CPU, with the attention transformers uses."""
        if type(model).__name__ != "GPT2LMHeadModel" or model.training or model.device.type != "cpu":
            return False
        config = model.config
        return (getattr(config, "_attn_implementation", "sdpa") in ("sdpa", "eager")
                and not config.add_cross_attention and not config.reorder_and_upcast_attn
                and config.activation_function in _ACTIVATIONS
                and getattr(model.lm_head, "bias", None) is None)

    def prefill(self, prompt: torch.Tensor) -> torch.Tensor:
        """prompt (1, P) → next-token logits (n, V) in float32."""
        if self.graph is not None:
            P = prompt.shape[1]
            if self.length or P > self.max_len:
                raise ValueError(f"a prompt of {P} tokens, at the start, fits the cache of {self.max_len}")
            logits = self._prefill_graph(prompt, 0, self.n)
            self.length = P
            return logits
        return self._forward(prompt).repeat(self.n, 1)

    def _prefill_graph(self, prompt: torch.Tensor, first: int, n: int) -> torch.Tensor:
        """The prompt (1, P) through the ONNX graph into row `first`'s cache, copied to the next
        n - 1 rows (each starts from the prompt) → logits (n, V)."""
        P = prompt.shape[1]
        logits = self.graph.prefill(prompt, self.keys[:, first:first + 1], self.values[:, first:first + 1],
                                    self.graph_threads)
        self.keys[:, first + 1:first + n, :, :P] = self.keys[:, first:first + 1, :, :P]
        self.values[:, first + 1:first + n, :, :P] = self.values[:, first:first + 1, :, :P]
        return logits.repeat(n, 1)

    def step(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens (n,) → next-token logits (n, V) in float32."""
        if self.graph is not None:
            if self.length + 1 > self.max_len:
                raise ValueError(f"sequence of {self.length + 1} tokens exceeds the cache of {self.max_len}")
            positions = torch.full((tokens.shape[0],), self.length, dtype=torch.long)
            logits = self.graph.step(tokens, positions, self.keys, self.values, self.graph_threads)
            self.length += 1
            return logits
        return self._forward(tokens[:, None])

    def _forward(self, ids: torch.Tensor) -> torch.Tensor:
        rows, new = ids.shape  # prefill: (1, P); step: (n, 1)
        start, end = self.length, self.length + new
        if new > 1 and start:
            raise ValueError("only the prompt, at the start, may bring several tokens")
        if end > self.max_len:
            raise ValueError(f"sequence of {end} tokens exceeds the cache of {self.max_len}")
        H, D, E = self.heads, self.head_dim, self.width
        x = self.wte[ids] + self.wpe[start:end]  # (rows, new, E)
        for i, (w1, b1, qkv_proj, out_proj, fc, fc_out, w2, b2, scale) in enumerate(self.blocks):
            h = F.layer_norm(x, (E,), w1, b1, self.eps)
            qkv = qkv_proj(h.reshape(-1, E)).view(rows, new, 3, H, D)
            q, k, v = qkv.permute(2, 0, 3, 1, 4)  # each (rows, H, new, D)
            # a prompt (one row) is written into every row's cache
            self.keys[i, :, :, start:end] = k
            self.values[i, :, :, start:end] = v
            keys, values = self.keys[i, :rows, :, :end], self.values[i, :rows, :, :end]
            # causal within the prompt; a single new token sees everything before it
            att = F.scaled_dot_product_attention(q, keys, values, is_causal=new > 1, scale=scale)
            att = att.transpose(1, 2).reshape(-1, E)
            x = x + out_proj(att).view(rows, new, E)
            h = F.layer_norm(x, (E,), w2, b2, self.eps).reshape(-1, E)
            h = self.act(fc(h))
            x = x + fc_out(h).view(rows, new, E)
        self.length = end
        last = F.layer_norm(x[:, -1], (E,), *self.ln_f, self.eps)  # (rows, E)
        return self.lm_head(last).float()


def _dense(weight: torch.Tensor, bias: torch.Tensor):
    """x (rows, in) → x @ weight + bias, weight in Conv1D's (in, out) layout."""
    return lambda x: torch.addmm(bias, x, weight)


def stepper_for(model, n: int, max_len: int, path: DecodePath | None = None) -> HFStepper | GPT2Stepper:
    """The lean GPT-2 path where it applies (on `path`), else the model's own forward."""
    if GPT2Stepper.supports(model):
        return GPT2Stepper(model, n, max_len, path)
    return HFStepper(model, n)
