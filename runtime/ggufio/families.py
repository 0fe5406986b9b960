"""How each architecture of lmstep.spec is written as a llama.cpp GGUF: the GGUF architecture name, its metadata
keys, and one row per tensor (our parameter name -> GGUF tensor name, and how the array is laid out there).

Layout conventions (llama.cpp's, read from gguf-py's constants and its converter, re-derived here):

- ggml stores a matrix ``[out, in]`` in numpy order (ggml's ne0 = in is the fast axis), as PyTorch's nn.Linear
  does; the spec stores ``[in, out]`` (x @ W), so every matrix is transposed (``"T"``).
- llama.cpp's ``llama`` architecture rotates adjacent pairs (2i, 2i+1) with RoPE (its "normal" rope type), where
  the spec and transformers rotate halves (i, i + D/2) (Su et al. 2021; GPT-NeoX layout). Rows of Wq and Wk (and
  their biases) are therefore permuted within each head, h*D/2 + j -> 2j + h (``"rope_q"``, ``"rope_k"``): the
  model computes the same function, and the keys llama.cpp caches come out in that interleaved order
  (:func:`keys_to_spec` undoes it when the checker compares states).
- Mamba stores ``A = -exp(A_log)`` (``"neg_exp"``, computed in float32 as the spec computes it), and its conv
  weight as ``[E, W]``.

A new family is one :class:`Family` entry: its metadata keys and its tensor rows.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import attrs
import numpy as np

from lmstep.spec.errors import InputError

# Tensor transforms by name; ``heads`` is the number of heads the rows of a rope matrix are grouped in.
Transform = Callable[[np.ndarray, Any], np.ndarray]


def _interleave_rows(a: np.ndarray, heads: int) -> np.ndarray:
    """Rows of a [heads*D, ...] array from rotate-half order (h*D/2 + j) to adjacent pairs (2j + h) per head."""
    d = a.shape[0] // heads
    return a.reshape(heads, 2, d // 2, *a.shape[1:]).swapaxes(1, 2).reshape(a.shape)


def keys_to_spec(k: np.ndarray) -> np.ndarray:
    """Inverse of the Wk row permutation on cached keys [..., D]: adjacent pairs (2j + h) -> halves (h*D/2 + j)."""
    d = k.shape[-1]
    return k.reshape(*k.shape[:-1], d // 2, 2).swapaxes(-1, -2).reshape(k.shape)


TRANSFORMS: dict[str, Callable[[np.ndarray, Any], np.ndarray]] = {
    "as_is": lambda a, cfg: a,
    "T": lambda a, cfg: a.T,
    "rope_q": lambda a, cfg: _interleave_rows(a.T if a.ndim == 2 else a, cfg.num_attention_heads),
    "rope_k": lambda a, cfg: _interleave_rows(a.T if a.ndim == 2 else a, cfg.num_key_value_heads),
    "neg_exp": lambda a, cfg: np.negative(np.exp(a.astype(np.float32))),
}


@attrs.frozen
class Family:
    gguf_arch: str  # general.architecture, and the prefix of the architecture's own keys
    metadata: Callable[[Any], dict[str, Any]]  # config -> {key without the arch prefix: value}
    # (our parameter name with {i} for the layer, GGUF tensor name with {i}, transform); missing optional
    # parameters (biases, an untied lm_head) are skipped, so one row serves both cases.
    tensors: tuple[tuple[str, str, str], ...]
    rope_interleaved: bool = False  # keys are cached in llama.cpp's adjacent-pairs order
    refuse: Callable[[Any], str | None] = lambda cfg: None  # a config llama.cpp cannot run: the reason


def _llama_meta(c: Any) -> dict[str, Any]:
    return {
        "context_length": c.max_position_embeddings,
        "embedding_length": c.hidden_size,
        "feed_forward_length": c.intermediate_size,
        "block_count": c.num_hidden_layers,
        "attention.head_count": c.num_attention_heads,
        "attention.head_count_kv": c.num_key_value_heads,
        "attention.key_length": c.head_dim,
        "attention.value_length": c.head_dim,
        "rope.dimension_count": c.head_dim,
        "rope.freq_base": float(c.rope_theta),
        "attention.layer_norm_rms_epsilon": float(c.rms_norm_eps),
        "vocab_size": c.vocab_size,
    }


def _gpt2_meta(c: Any) -> dict[str, Any]:
    return {
        "context_length": c.n_positions,
        "embedding_length": c.n_embd,
        "feed_forward_length": c.n_inner,
        "block_count": c.n_layer,
        "attention.head_count": c.n_head,
        "attention.layer_norm_epsilon": float(c.layer_norm_epsilon),
        "vocab_size": c.vocab_size,
    }


# A recurrent model has no position limit; llama.cpp still wants a context length (its converter writes 2^20).
MAMBA_CONTEXT = 1 << 20


def _mamba_meta(c: Any) -> dict[str, Any]:
    return {
        "context_length": MAMBA_CONTEXT,
        "embedding_length": c.hidden_size,
        "feed_forward_length": 0,  # unused by Mamba, required by llama.cpp's loader
        "attention.head_count": 0,
        "block_count": c.num_hidden_layers,
        "ssm.conv_kernel": c.conv_kernel,
        "ssm.inner_size": c.intermediate_size,
        "ssm.state_size": c.state_size,
        "ssm.time_step_rank": c.time_step_rank,
        "ssm.dt_b_c_rms": False,
        "attention.layer_norm_rms_epsilon": float(c.layer_norm_epsilon),
        "vocab_size": c.vocab_size,
    }


def _mamba_refuse(c: Any) -> str | None:
    if c.use_bias:
        return "llama.cpp's mamba has no in_proj/out_proj bias (use_bias=true)"
    return None


L = "layers.{i}."
B = "blk.{i}."

FAMILIES: dict[str, Family] = {
    "llama": Family(
        "llama",
        _llama_meta,
        (
            ("embed_tokens", "token_embd.weight", "as_is"),
            (L + "input_layernorm", B + "attn_norm.weight", "as_is"),
            (L + "q_proj", B + "attn_q.weight", "rope_q"),
            (L + "q_bias", B + "attn_q.bias", "rope_q"),
            (L + "k_proj", B + "attn_k.weight", "rope_k"),
            (L + "k_bias", B + "attn_k.bias", "rope_k"),
            (L + "v_proj", B + "attn_v.weight", "T"),
            (L + "v_bias", B + "attn_v.bias", "as_is"),
            (L + "o_proj", B + "attn_output.weight", "T"),
            (L + "o_bias", B + "attn_output.bias", "as_is"),
            (L + "post_attention_layernorm", B + "ffn_norm.weight", "as_is"),
            (L + "gate_proj", B + "ffn_gate.weight", "T"),
            (L + "gate_bias", B + "ffn_gate.bias", "as_is"),
            (L + "up_proj", B + "ffn_up.weight", "T"),
            (L + "up_bias", B + "ffn_up.bias", "as_is"),
            (L + "down_proj", B + "ffn_down.weight", "T"),
            (L + "down_bias", B + "ffn_down.bias", "as_is"),
            ("norm", "output_norm.weight", "as_is"),
            ("lm_head", "output.weight", "T"),  # absent when tied: llama.cpp then uses token_embd
        ),
        rope_interleaved=True,
    ),
    "gpt2": Family(
        "gpt2",
        _gpt2_meta,
        (
            ("wte", "token_embd.weight", "as_is"),  # also the output projection (tied), as llama.cpp does
            ("wpe", "position_embd.weight", "as_is"),
            (L + "ln_1_weight", B + "attn_norm.weight", "as_is"),
            (L + "ln_1_bias", B + "attn_norm.bias", "as_is"),
            (L + "c_attn_weight", B + "attn_qkv.weight", "T"),  # rows q | k | v
            (L + "c_attn_bias", B + "attn_qkv.bias", "as_is"),
            (L + "attn_c_proj_weight", B + "attn_output.weight", "T"),
            (L + "attn_c_proj_bias", B + "attn_output.bias", "as_is"),
            (L + "ln_2_weight", B + "ffn_norm.weight", "as_is"),
            (L + "ln_2_bias", B + "ffn_norm.bias", "as_is"),
            (L + "c_fc_weight", B + "ffn_up.weight", "T"),
            (L + "c_fc_bias", B + "ffn_up.bias", "as_is"),
            (L + "mlp_c_proj_weight", B + "ffn_down.weight", "T"),
            (L + "mlp_c_proj_bias", B + "ffn_down.bias", "as_is"),
            ("ln_f_weight", "output_norm.weight", "as_is"),
            ("ln_f_bias", "output_norm.bias", "as_is"),
        ),
    ),
    "mamba": Family(
        "mamba",
        _mamba_meta,
        (
            ("embeddings", "token_embd.weight", "as_is"),
            (L + "norm", B + "attn_norm.weight", "as_is"),
            (L + "in_proj", B + "ssm_in.weight", "T"),
            (L + "conv1d_weight", B + "ssm_conv1d.weight", "T"),  # [W, E] -> [E, W]
            (L + "conv1d_bias", B + "ssm_conv1d.bias", "as_is"),
            (L + "x_proj", B + "ssm_x.weight", "T"),
            (L + "dt_proj", B + "ssm_dt.weight", "T"),
            (L + "dt_proj_bias", B + "ssm_dt.bias", "as_is"),
            (L + "A_log", B + "ssm_a", "neg_exp"),  # llama.cpp stores A itself, under a name without ".weight"
            (L + "D", B + "ssm_d", "as_is"),
            (L + "out_proj", B + "ssm_out.weight", "T"),
            ("norm_f", "output_norm.weight", "as_is"),
            ("lm_head", "output.weight", "T"),
        ),
        refuse=_mamba_refuse,
    ),
}


def family_key(model: Any) -> str:
    """The FAMILIES entry of a model: its architecture, or for a Llama-style decoder the transformers model type
    its config names (a family of the llama architecture maps to its own llama.cpp architecture)."""
    return str(getattr(model.config, "model_type", None) or model.arch) if model.arch == "llama" else model.arch


def family(key: str) -> Family:
    if key not in FAMILIES:
        raise InputError(f"no GGUF mapping for the {key} family; lmstep writes {', '.join(FAMILIES)}")
    return FAMILIES[key]


def gguf_tensors(key: str, cfg: Any, params: dict[str, np.ndarray]) -> Iterator[tuple[str, np.ndarray]]:
    """(GGUF name, float32 C-contiguous array) for every parameter, in the family's row order, layer by layer.

    Every parameter must be claimed by a row: a parameter without one would be dropped silently, so it is an
    error (a family table that lags behind its architecture)."""
    fam = family(key)
    layers = sorted({int(n.split(".")[1]) for n in params if n.startswith("layers.")})
    first = next(k for k, row in enumerate(fam.tensors) if "{i}" in row[0])
    per_layer = [row for row in fam.tensors if "{i}" in row[0]]
    head = [row for row in fam.tensors[:first] if "{i}" not in row[0]]
    tail = [row for row in fam.tensors[first:] if "{i}" not in row[0]]
    order = (
        [(row, None) for row in head] + [(row, i) for i in layers for row in per_layer] + [(row, None) for row in tail]
    )
    claimed: set[str] = set()
    for (ours, theirs, how), i in order:
        name = ours.format(i=i)
        if name in params:
            claimed.add(name)
            a = TRANSFORMS[how](np.asarray(params[name], np.float32), cfg)
            yield theirs.format(i=i), np.ascontiguousarray(a, np.float32)
    left = sorted(set(params) - claimed)
    if left:
        raise InputError(f"the {key} GGUF mapping has no row for parameter {left[0]}; it cannot be exported")
