"""Llama-style decoder (Touvron et al. 2023): RMSNorm, RoPE, SwiGLU MLP, grouped-query attention, KV cache; and the
families that are this decoder with a few switches (SPEC.md §5): Llama 3.x (RoPE scaling), Qwen2 (q/k/v biases),
Qwen3 (RMSNorm on each head's q and k), Gemma (scaled embeddings, (1 + w) norms, GeGLU), Phi-3 (partial RoPE;
its fused qkv / gate_up weights are split when the checkpoint is read, spec/hf_names.py) and Mistral (a sliding
window, below).

State carried between steps: for every layer the keys and values of all past tokens, [B, K, S, D] each (rotated
keys, as Hugging Face caches them). Field names follow transformers' ``LlamaConfig`` so checkpoints map 1:1.

    x_0     = E[token]  (* sqrt(C) when scale_embeddings)                   embedding
    a_l     = RMSNorm(x_l) ;  q, k, v = a_l Wq, a_l Wk, a_l Wv              per head, k/v shared by G heads
    q, k    = RMSNorm_D(q), RMSNorm_D(k)                                    only when qk_norm (per head, over D)
    q, k    = RoPE(q, pos), RoPE(k, pos)                                    the first rotary_dim dims of each head
    x_l'    = x_l + Attn(q, [K_cache; k], [V_cache; v]) Wo
    x_{l+1} = x_l' + (act(m Wgate) * (m Wup)) Wdown,  m = RMSNorm(x_l')      (Shazeer 2020: SwiGLU, GeGLU)
    logits  = RMSNorm(x_L) W_lm         (W_lm = E^T when tie_word_embeddings)

RMSNorm multiplies by w, or by (1 + w) when norm_unit_offset (Gemma).

Mistral (Jiang et al. 2023) is this decoder with ``sliding_window = W``: every query sees only the W most recent
keys, its own included. The recurrent form keeps the last W - 1 keys and values (a bounded state, SPEC.md §5)
and attends to all of them; the unrolled form attends to [cache; new] under a banded mask (layers.window_mask).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic

import attrs
import numpy as np

from . import rope
from .arrays import WEIGHT, SeqBuffer, as_tuple
from .config import BOOLEAN, OPTIONAL_POSITIVE_FLOAT, OPTIONAL_POSITIVE_INT, POSITIVE_FLOAT, POSITIVE_INT, require
from .layers import (
    apply_rope,
    attention_decode,
    attention_unrolled,
    causal_mask,
    gelu_tanh,
    linear,
    merge_heads,
    recent_keys,
    rms_norm,
    rope_cos_sin,
    silu,
    split_heads,
    window_mask,
)
from .vocabulary import Appendable, KVCache, Ops, T

# The transformers model types this decoder runs (Config.model_type): a label that names the family, for the
# checkpoint's tensor names (spec/hf_names.py) and onnxruntime-genai's model type; the math is in the switches.
FAMILIES = ("llama", "qwen2", "qwen3", "gemma", "phi3", "mistral")
ACTIVATIONS = {"silu": silu, "gelu_pytorch_tanh": gelu_tanh}  # the MLP gate: SwiGLU or GeGLU (tanh GELU)


@attrs.frozen(kw_only=True)
class Config:
    vocab_size: int = attrs.field(**POSITIVE_INT)
    hidden_size: int = attrs.field(**POSITIVE_INT)
    intermediate_size: int = attrs.field(**POSITIVE_INT)
    num_hidden_layers: int = attrs.field(**POSITIVE_INT)
    num_attention_heads: int = attrs.field(**POSITIVE_INT)
    num_key_value_heads: int = attrs.field(**POSITIVE_INT)
    head_dim: int = attrs.field(**POSITIVE_INT)
    max_position_embeddings: int = attrs.field(default=2048, **POSITIVE_INT)
    rms_norm_eps: float = attrs.field(default=1e-6, **POSITIVE_FLOAT)
    rope_theta: float = attrs.field(default=10000.0, **POSITIVE_FLOAT)
    attention_bias: bool = attrs.field(default=False, **BOOLEAN)
    mlp_bias: bool = attrs.field(default=False, **BOOLEAN)
    tie_word_embeddings: bool = attrs.field(default=False, **BOOLEAN)
    # -- family switches (SPEC.md §5); all off is Llama. transformers' names where transformers has a field ----
    model_type: str = attrs.field(default="llama", validator=attrs.validators.in_(FAMILIES))  # a label, no math
    hidden_act: str = attrs.field(default="silu", validator=attrs.validators.in_(tuple(ACTIVATIONS)))
    qkv_bias: bool = attrs.field(default=False, **BOOLEAN)  # biases on q, k, v and not on o (Qwen2)
    qk_norm: bool = attrs.field(default=False, **BOOLEAN)  # RMSNorm over each head's q and k before RoPE (Qwen3)
    norm_unit_offset: bool = attrs.field(default=False, **BOOLEAN)  # every RMSNorm scales by (1 + w) (Gemma)
    scale_embeddings: bool = attrs.field(default=False, **BOOLEAN)  # E[token] * sqrt(hidden_size) (Gemma)
    partial_rotary_factor: float = attrs.field(default=1.0, **POSITIVE_FLOAT)  # RoPE on part of each head (Phi-3)
    sliding_window: int | None = attrs.field(default=None, **OPTIONAL_POSITIVE_INT)  # Mistral; None: full attention
    # -- RoPE scaling: transformers' rope_parameters (SPEC.md §4); the numbers only for the rope_type using them --
    rope_type: str = attrs.field(default="default", validator=attrs.validators.in_(rope.ROPE_TYPES))
    factor: float | None = attrs.field(default=None, **OPTIONAL_POSITIVE_FLOAT)  # linear, llama3
    low_freq_factor: float | None = attrs.field(default=None, **OPTIONAL_POSITIVE_FLOAT)  # llama3
    high_freq_factor: float | None = attrs.field(default=None, **OPTIONAL_POSITIVE_FLOAT)  # llama3
    original_max_position_embeddings: int | None = attrs.field(default=None, **OPTIONAL_POSITIVE_INT)  # llama3

    def __attrs_post_init__(self) -> None:
        require(
            self.num_attention_heads % self.num_key_value_heads == 0,
            f"num_attention_heads ({self.num_attention_heads}) must be a multiple of num_key_value_heads "
            f"({self.num_key_value_heads})",
        )
        rot = self.rotary_dim
        require(
            self.partial_rotary_factor <= 1 and rot >= 2 and rot % 2 == 0,
            f"RoPE needs an even number of rotated dims in (0, head_dim], got int(head_dim * partial_rotary_factor) "
            f"= {rot} (head_dim {self.head_dim}, partial_rotary_factor {self.partial_rotary_factor})",
        )
        require(not (self.attention_bias and self.qkv_bias), "attention_bias and qkv_bias exclude each other")
        used = {"default": (), "linear": ("factor",), "llama3": rope.LLAMA3_KEYS}[self.rope_type]
        for key in rope.LLAMA3_KEYS:
            given = getattr(self, key) is not None
            require(
                given == (key in used),
                f"rope_type {self.rope_type!r} {'needs' if key in used else 'does not use'} {key}",
            )
        if self.rope_type == "llama3":
            require(
                self.high_freq_factor > self.low_freq_factor,  # type: ignore[operator]
                f"llama3 RoPE needs high_freq_factor > low_freq_factor, got {self.high_freq_factor} and "
                f"{self.low_freq_factor}",
            )

    @property
    def context_limit(self) -> int:
        return self.max_position_embeddings

    @property
    def rotary_dim(self) -> int:
        return rope.rotary_dim(self.head_dim, self.partial_rotary_factor)

    @property
    def embedding_scale(self) -> float:
        """Gemma's sqrt(hidden_size): the float64 power rounded once to float32 (SPEC.md §5), as transformers
        keeps it (``torch.tensor(hidden_size**0.5)``, a float32 buffer when the model computes in float32)."""
        return float(np.float32(self.hidden_size**0.5))

    @property
    def kept_keys(self) -> int | None:
        """Keys per layer a state keeps: the W - 1 a next query can see besides its own (None: all of them)."""
        return None if self.sliding_window is None else self.sliding_window - 1


@attrs.frozen
class Layer(Generic[T]):
    input_layernorm: T = attrs.field(**WEIGHT)  # [C]
    q_proj: T = attrs.field(**WEIGHT)  # [C, H*D]
    k_proj: T = attrs.field(**WEIGHT)  # [C, K*D]
    v_proj: T = attrs.field(**WEIGHT)  # [C, K*D]
    o_proj: T = attrs.field(**WEIGHT)  # [H*D, C]
    post_attention_layernorm: T = attrs.field(**WEIGHT)  # [C]
    gate_proj: T = attrs.field(**WEIGHT)  # [C, F]
    up_proj: T = attrs.field(**WEIGHT)  # [C, F]
    down_proj: T = attrs.field(**WEIGHT)  # [F, C]
    q_bias: T | None = attrs.field(default=None, **WEIGHT)  # [H*D] when attention_bias
    k_bias: T | None = attrs.field(default=None, **WEIGHT)  # [K*D]
    v_bias: T | None = attrs.field(default=None, **WEIGHT)  # [K*D]
    o_bias: T | None = attrs.field(default=None, **WEIGHT)  # [C]
    gate_bias: T | None = attrs.field(default=None, **WEIGHT)  # [F] when mlp_bias
    up_bias: T | None = attrs.field(default=None, **WEIGHT)  # [F]
    down_bias: T | None = attrs.field(default=None, **WEIGHT)  # [C]
    q_norm: T | None = attrs.field(default=None, **WEIGHT)  # [D] when qk_norm, shared by the heads
    k_norm: T | None = attrs.field(default=None, **WEIGHT)  # [D]


@attrs.frozen
class Weights(Generic[T]):
    embed_tokens: T = attrs.field(**WEIGHT)  # [V, C]
    layers: tuple[Layer[T], ...] = attrs.field(converter=as_tuple)
    norm: T = attrs.field(**WEIGHT)  # [C]
    lm_head: T | None = attrs.field(default=None, **WEIGHT)  # [C, V]; None when tied to embed_tokens


def param_shapes(cfg: Config) -> dict[str, tuple[int, ...]]:
    """Every parameter's name (as in :class:`Weights`, dotted) and shape, in a fixed order."""
    c, v, f = cfg.hidden_size, cfg.vocab_size, cfg.intermediate_size
    hd, kd = cfg.num_attention_heads * cfg.head_dim, cfg.num_key_value_heads * cfg.head_dim
    shapes: dict[str, tuple[int, ...]] = {"embed_tokens": (v, c)}
    for i in range(cfg.num_hidden_layers):
        p = f"layers.{i}."
        shapes |= {p + "input_layernorm": (c,), p + "q_proj": (c, hd), p + "k_proj": (c, kd)}
        shapes |= {p + "v_proj": (c, kd), p + "o_proj": (hd, c), p + "post_attention_layernorm": (c,)}
        shapes |= {p + "gate_proj": (c, f), p + "up_proj": (c, f), p + "down_proj": (f, c)}
        if cfg.attention_bias or cfg.qkv_bias:
            shapes |= {p + "q_bias": (hd,), p + "k_bias": (kd,), p + "v_bias": (kd,)}
        if cfg.attention_bias:
            shapes[p + "o_bias"] = (c,)
        if cfg.mlp_bias:
            shapes |= {p + "gate_bias": (f,), p + "up_bias": (f,), p + "down_bias": (c,)}
        if cfg.qk_norm:
            shapes |= {p + "q_norm": (cfg.head_dim,), p + "k_norm": (cfg.head_dim,)}
    shapes["norm"] = (c,)
    if not cfg.tie_word_embeddings:
        shapes["lm_head"] = (c, v)
    return shapes


def weights_from_dict(cfg: Config, params: dict[str, T]) -> Weights[T]:
    layers = []
    for i in range(cfg.num_hidden_layers):
        p = f"layers.{i}."
        layers.append(Layer(**{k[len(p) :]: a for k, a in params.items() if k.startswith(p)}))
    return Weights(params["embed_tokens"], layers, params["norm"], params.get("lm_head"))


def empty_cache(cfg: Config, batch: int = 1) -> tuple[tuple[SeqBuffer, SeqBuffer], ...]:
    """Numeric initial state: an empty [B, K, 0, D] key and value buffer per layer; with a sliding window each
    keeps only its newest W - 1 rows (arrays.SeqBuffer ``keep``), [B, K, min(pos, W - 1), D]."""
    shape, keep = (batch, cfg.num_key_value_heads, cfg.head_dim), cfg.kept_keys
    return tuple(
        (SeqBuffer.empty(shape, axis=2, keep=keep), SeqBuffer.empty(shape, axis=2, keep=keep))
        for _ in range(cfg.num_hidden_layers)
    )


Attend = Callable[[T, T, T], T]  # (q [B,H,T,D], k_all, v_all) -> [B,H,T,D]


def _decoder(
    o: Ops[T], cfg: Config, w: Weights[T], tokens: T, positions: T, cache: KVCache[T], attend: Attend[T]
) -> tuple[T, KVCache[T]]:
    """The blocks shared by both forms; only ``attend`` (how queries meet the cache) differs between them."""
    H, K, D = cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim

    def norm(x: T, weight: T) -> T:  # RMSNorm over the last axis, by w or by (1 + w)
        return rms_norm(o, x, weight, cfg.rms_norm_eps, cfg.norm_unit_offset)

    act = ACTIVATIONS[cfg.hidden_act]
    x = o.gather(w.embed_tokens, tokens)  # [B, T, C]
    if cfg.scale_embeddings:
        x = o.mul(x, cfg.embedding_scale)  # Gemma: the embedding times sqrt(C), a float32 multiply
    cos, sin = rope_cos_sin(o, positions, o.const(rope.inv_freq(cfg)))  # [B, 1, T, rotary_dim]
    new_cache: list[tuple[Appendable[T], Appendable[T]]] = []
    for layer, (k_cache, v_cache) in zip(w.layers, cache):
        a = norm(x, layer.input_layernorm)
        q = split_heads(o, linear(o, a, layer.q_proj, layer.q_bias), H, D)  # [B, H, T, D]
        k = split_heads(o, linear(o, a, layer.k_proj, layer.k_bias), K, D)  # [B, K, T, D]
        v = split_heads(o, linear(o, a, layer.v_proj, layer.v_bias), K, D)
        if layer.q_norm is not None and layer.k_norm is not None:  # qk_norm (Qwen3): each head over its D
            q, k = norm(q, layer.q_norm), norm(k, layer.k_norm)
        q, k = apply_rope(o, q, cos, sin, D, cfg.rotary_dim), apply_rope(o, k, cos, sin, D, cfg.rotary_dim)
        k_all, k_cache = k_cache.append(k)  # [B, K, S, D]; a windowed cache then keeps only its last W - 1 rows
        v_all, v_cache = v_cache.append(v)
        new_cache.append((k_cache, v_cache))
        x = o.add(x, linear(o, merge_heads(o, attend(q, k_all, v_all)), layer.o_proj, layer.o_bias))
        m = norm(x, layer.post_attention_layernorm)
        gate = act(o, linear(o, m, layer.gate_proj, layer.gate_bias))
        x = o.add(
            x, linear(o, o.mul(gate, linear(o, m, layer.up_proj, layer.up_bias)), layer.down_proj, layer.down_bias)
        )
    x = norm(x, w.norm)
    lm_head = w.lm_head if w.lm_head is not None else o.transpose(w.embed_tokens, (1, 0))
    return o.matmul(x, lm_head), tuple(new_cache)


def forward(
    o: Ops[T], cfg: Config, w: Weights[T], tokens: T, positions: T, cache: KVCache[T], key_mask: T | None = None
) -> tuple[T, KVCache[T]]:
    """Unrolled form: T new tokens [B, T] at ``positions`` [B, T] after the cache -> logits [B, T, V], new cache.

    Causal-masked attention over [cache; new] for all T queries at once (banded by the sliding window, if any).
    ``key_mask`` [B, S] marks real (non-padding) cache slots; None means all are real. With a sliding window it
    may cover the whole sequence, [B, pos + T]: its last S columns are those of the keys the cache holds.
    """

    def attend(q: T, k_all: T, v_all: T) -> T:
        n_new, n_all = o.shape(q, 2), o.shape(k_all, 2)
        if cfg.sliding_window is None:
            visible = causal_mask(o, n_new, n_all, key_mask)
        else:
            mask = None if key_mask is None else recent_keys(o, key_mask, n_all)
            visible = window_mask(o, n_new, n_all, cfg.sliding_window, mask)
        return attention_unrolled(
            o, q, k_all, v_all, visible, cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim
        )

    return _decoder(o, cfg, w, tokens, positions, cache, attend)


def decode(
    o: Ops[T], cfg: Config, w: Weights[T], token: T, position: T, cache: KVCache[T], key_mask: T | None = None
) -> tuple[T, KVCache[T]]:
    """Recurrent form: one token [B] at ``position`` [B] -> logits [B, V], cache grown by one slot.

    The query attends to every key the cache holds: with a sliding window the cache holds W - 1 keys at most,
    so nothing needs masking but padding (a whole-sequence ``key_mask`` is cut to its last S columns)."""

    def attend(q: T, k_all: T, v_all: T) -> T:
        mask = key_mask
        if key_mask is not None and cfg.sliding_window is not None:
            mask = recent_keys(o, key_mask, o.shape(k_all, 2))
        return attention_decode(
            o, q, k_all, v_all, mask, cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim
        )

    logits, cache = _decoder(o, cfg, w, o.unsqueeze(token, 1), o.unsqueeze(position, 1), cache, attend)
    return o.squeeze(logits, 1), cache
