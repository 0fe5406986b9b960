"""Our parameter names <-> Hugging Face tensor names, and the layout change between them.

Ours are the dotted names of ``<arch>.param_shapes(cfg)``; matrices are stored [in, out] so a layer is
``x @ W``. transformers' ``nn.Linear`` stores [out, in] (``x @ W.T``), so those are transposed ("linear");
GPT-2's ``Conv1D`` is already [in, out] ("copy"); Mamba's (and Mamba-2's) depthwise ``nn.Conv1d`` weight is
[E, 1, W] and ours is [W, E] ("conv").

The names depend on the family (transformers' model_type), which for the Llama-style decoder is its config's
``model_type``. Phi-3 fuses q, k, v into one ``qkv_proj`` [(H + 2K) D, C] and gate, up into ``gate_up_proj``
[2F, C]; each of our matrices is a block of its rows ("rows", then transposed). Splitting when the checkpoint is
read, rather than in the forward, keeps one weight layout (and one exported graph) for every family, and is
exact: each output column of ``x @ W`` is the dot product of x with that column alone, whichever other columns
are computed beside it (transformers slices the fused output at the same boundaries, modeling_phi3.py).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

import numpy as np

# transformers' base_model_prefix per architecture: the backbone's tensors live under it.
PREFIX = {"gpt2": "transformer.", "llama": "model.", "mamba": "backbone.", "mamba2": "backbone."}
LAYER = {
    "gpt2": "transformer.h.{i}.",
    "llama": "model.layers.{i}.",
    "mamba": "backbone.layers.{i}.",
    "mamba2": "backbone.layers.{i}.",
}
DECODER_FAMILIES = (
    "qwen2",
    "qwen3",
    "gemma",
    "phi3",
    "mistral",
)  # named like Llama (but for Phi-3's fused projections)
PREFIX |= dict.fromkeys(DECODER_FAMILIES, PREFIX["llama"])
LAYER |= dict.fromkeys(DECODER_FAMILIES, LAYER["llama"])

# Per-layer leaves: our leaf -> (HF suffix after the layer prefix, layout).
LAYER_LEAVES: dict[str, dict[str, tuple[str, str]]] = {
    "llama": {
        "input_layernorm": ("input_layernorm.weight", "copy"),
        "post_attention_layernorm": ("post_attention_layernorm.weight", "copy"),
        **{f"{p}_proj": (f"self_attn.{p}_proj.weight", "linear") for p in "qkvo"},
        **{f"{p}_bias": (f"self_attn.{p}_proj.bias", "copy") for p in "qkvo"},
        **{f"{p}_proj": (f"mlp.{p}_proj.weight", "linear") for p in ("gate", "up", "down")},
        **{f"{p}_bias": (f"mlp.{p}_proj.bias", "copy") for p in ("gate", "up", "down")},
        **{f"{p}_norm": (f"self_attn.{p}_norm.weight", "copy") for p in "qk"},  # Qwen3
    },
    "gpt2": {  # Conv1D weights are already [in, out]
        **{f"{ln}_{p}": (f"{ln}.{p}", "copy") for ln in ("ln_1", "ln_2") for p in ("weight", "bias")},
        **{f"c_attn_{p}": (f"attn.c_attn.{p}", "copy") for p in ("weight", "bias")},
        **{f"attn_c_proj_{p}": (f"attn.c_proj.{p}", "copy") for p in ("weight", "bias")},
        **{f"c_fc_{p}": (f"mlp.c_fc.{p}", "copy") for p in ("weight", "bias")},
        **{f"mlp_c_proj_{p}": (f"mlp.c_proj.{p}", "copy") for p in ("weight", "bias")},
    },
    "mamba": {
        "norm": ("norm.weight", "copy"),
        "in_proj": ("mixer.in_proj.weight", "linear"),
        "in_proj_bias": ("mixer.in_proj.bias", "copy"),
        "conv1d_weight": ("mixer.conv1d.weight", "conv"),
        "conv1d_bias": ("mixer.conv1d.bias", "copy"),
        "x_proj": ("mixer.x_proj.weight", "linear"),
        "dt_proj": ("mixer.dt_proj.weight", "linear"),
        "dt_proj_bias": ("mixer.dt_proj.bias", "copy"),
        "A_log": ("mixer.A_log", "copy"),
        "D": ("mixer.D", "copy"),
        "out_proj": ("mixer.out_proj.weight", "linear"),
        "out_proj_bias": ("mixer.out_proj.bias", "copy"),
    },
    "mamba2": {
        "norm": ("norm.weight", "copy"),
        "in_proj": ("mixer.in_proj.weight", "linear"),
        "in_proj_bias": ("mixer.in_proj.bias", "copy"),
        "conv1d_weight": ("mixer.conv1d.weight", "conv"),
        "conv1d_bias": ("mixer.conv1d.bias", "copy"),
        "dt_bias": ("mixer.dt_bias", "copy"),
        "A_log": ("mixer.A_log", "copy"),
        "D": ("mixer.D", "copy"),
        "gated_norm": ("mixer.norm.weight", "copy"),
        "out_proj": ("mixer.out_proj.weight", "linear"),
        "out_proj_bias": ("mixer.out_proj.bias", "copy"),
    },
}

LAYER_LEAVES |= dict.fromkeys(("qwen2", "qwen3", "gemma", "mistral"), LAYER_LEAVES["llama"])
LAYER_LEAVES["phi3"] = LAYER_LEAVES["llama"] | {  # the layout "rows" of these is set by fused_rows()
    **{f"{p}_proj": ("self_attn.qkv_proj.weight", "rows") for p in "qkv"},
    **{f"{p}_proj": ("mlp.gate_up_proj.weight", "rows") for p in ("gate", "up")},
}

# Top-level parameters: our name -> (HF name, layout).
TOP: dict[str, dict[str, tuple[str, str]]] = {
    "llama": {
        "embed_tokens": ("model.embed_tokens.weight", "copy"),
        "norm": ("model.norm.weight", "copy"),
        "lm_head": ("lm_head.weight", "linear"),
    },
    "gpt2": {
        "wte": ("transformer.wte.weight", "copy"),
        "wpe": ("transformer.wpe.weight", "copy"),
        "ln_f_weight": ("transformer.ln_f.weight", "copy"),
        "ln_f_bias": ("transformer.ln_f.bias", "copy"),
    },
    "mamba": {
        "embeddings": ("backbone.embeddings.weight", "copy"),
        "norm_f": ("backbone.norm_f.weight", "copy"),
        "lm_head": ("lm_head.weight", "linear"),
    },
    "mamba2": {
        "embeddings": ("backbone.embeddings.weight", "copy"),
        "norm_f": ("backbone.norm_f.weight", "copy"),
        "lm_head": ("lm_head.weight", "linear"),
    },
}
TOP |= dict.fromkeys(DECODER_FAMILIES, TOP["llama"])
# The input embedding, which a tied output projection reuses.
EMBEDDING = {
    "llama": "model.embed_tokens.weight",
    "gpt2": "transformer.wte.weight",
    "mamba": "backbone.embeddings.weight",
    "mamba2": "backbone.embeddings.weight",
}
EMBEDDING |= dict.fromkeys(DECODER_FAMILIES, EMBEDDING["llama"])
LM_HEAD = "lm_head.weight"

# Tensors some checkpoints carry that transformers recomputes and never reads: GPT-2's causal-mask buffers
# (attn.bias, attn.masked_bias) and Llama's RoPE frequencies (rotary_emb.inv_freq). They cannot change the math.
IGNORED = {
    "gpt2": re.compile(r"transformer\.h\.\d+\.attn\.(bias|masked_bias)"),
    "llama": re.compile(r"model\.(layers\.\d+\.self_attn\.)?rotary_emb\.inv_freq"),
    "mamba": re.compile(r"(?!)"),  # none
    "mamba2": re.compile(r"(?!)"),  # none
}
IGNORED |= dict.fromkeys(DECODER_FAMILIES, IGNORED["llama"])

_LAYER_NAME = re.compile(r"layers\.(\d+)\.(\w+)")


def family(arch: str, cfg: Any) -> str:
    """The naming scheme of a model: its architecture, or for the Llama-style decoder its config's model_type."""
    return cfg.model_type if arch == "llama" else arch


def hf_name(family: str, ours: str, cfg: Any = None) -> tuple[str, Layout]:
    """Our dotted parameter name -> (HF tensor name, layout: "copy" | "linear" | "conv" | a block of rows)."""
    m = _LAYER_NAME.fullmatch(ours)
    if m:
        suffix, named = LAYER_LEAVES[family][m.group(2)]
        layout: Layout = fused_rows(m.group(2), cfg) if named == "rows" else named
        return LAYER[family].format(i=m.group(1)) + suffix, layout
    return TOP[family][ours]


Layout = str | tuple[int, int, int]  # a named layout, or rows [start, stop) of a fused [total, in] nn.Linear


def fused_rows(leaf: str, cfg: Any) -> tuple[int, int, int]:
    """Phi-3: (start, stop, total) rows of ``leaf`` in qkv_proj = [q; k; v] or gate_up_proj = [gate; up]."""
    hd, kd, f = cfg.num_attention_heads * cfg.head_dim, cfg.num_key_value_heads * cfg.head_dim, cfg.intermediate_size
    blocks = {"q_proj": (0, hd), "k_proj": (hd, hd + kd), "v_proj": (hd + kd, hd + 2 * kd)}
    blocks |= {"gate_proj": (0, f), "up_proj": (f, 2 * f)}  # modeling_phi3: gate, up = chunk(2)
    start, stop = blocks[leaf]
    return start, stop, hd + 2 * kd if leaf in ("q_proj", "k_proj", "v_proj") else 2 * f


def hf_shape(shape: tuple[int, ...], layout: Layout) -> tuple[int, ...]:
    """The shape transformers stores for one of our parameters of ``shape`` (the whole fused tensor for rows)."""
    if isinstance(layout, tuple):
        return (layout[2], shape[0])
    if layout == "linear":
        return shape[::-1]
    if layout == "conv":
        return (shape[1], 1, shape[0])  # ours [W, E] -> nn.Conv1d [E, 1, W]
    return shape


def to_ours(a: np.ndarray, layout: Layout) -> np.ndarray:
    """An HF tensor in our layout, C-contiguous, in its own dtype (a fresh array unless ``layout`` is "copy" and
    ``a`` is already contiguous)."""
    if isinstance(layout, tuple):
        return transposed(a[layout[0] : layout[1]])
    if layout == "linear":
        return transposed(a)
    if layout == "conv":
        a = a[:, 0, :].T
    return np.ascontiguousarray(a)


# Rows of the source moved per block by :func:`transposed`: each block's columns land as runs of this many
# contiguous values, which keeps both sides in cache. Measured on a 5632 x 2048 bf16 matrix: 30 ms with 16 rows
# per block vs 177 ms for ``np.ascontiguousarray(a.T)`` (8 rows: 39 ms, 64 rows: 75 ms).
TRANSPOSE_ROWS = 16


def transposed(a: np.ndarray) -> np.ndarray:
    """``np.ascontiguousarray(a.T)`` for a matrix, block by block (same values, ~6x faster for large ones)."""
    out = np.empty(a.shape[::-1], a.dtype)
    for i in range(0, a.shape[0], TRANSPOSE_ROWS):
        out[:, i : i + TRANSPOSE_ROWS] = a[i : i + TRANSPOSE_ROWS].T
    return out


def with_base_prefix(family: str, names: Iterable[str]) -> dict[str, str]:
    """{canonical HF name: name in the file}. Checkpoints saved from the bare backbone (GPT2Model, or OpenAI's
    original ``gpt2`` upload) lack the ``transformer.`` prefix; transformers adds it when loading, and so do we."""
    names = list(names)
    prefix = PREFIX[family]
    if any(n.startswith(prefix) for n in names):
        return {n: n for n in names}
    return {(n if n == LM_HEAD else prefix + n): n for n in names}
