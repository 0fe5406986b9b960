"""Building blocks shared by the architectures, written against the op vocabulary ``o: Ops[T]`` (vocabulary.py).

Shapes use B = batch, T = new tokens, S = all keys (cache + new), H = query heads, K = key/value heads,
G = H // K (queries per key/value head), D = head_dim, C = model width.
"""

from __future__ import annotations

import math

import numpy as np

from .vocabulary import Operand, Ops, T

# The mask value for hidden keys: the lowest finite float32, as Hugging Face uses. Whenever a row has one
# visible key, exp(MASKED - max) underflows to exactly 0, the same as -inf; a row with no visible key (a
# padding query) stays finite instead of turning into NaN that a later layer's 0 * NaN would spread.
MASKED = float(np.finfo(np.float32).min)


def rms_norm(o: Ops[T], x: T, weight: T, eps: float, unit_offset: bool = False) -> T:
    """RMSNorm (Zhang & Sennrich 2019, eq. 4): x / sqrt(mean(x^2) + eps) * weight; with ``unit_offset`` the scale
    is (1 + weight), one float32 addition, as Gemma stores its norm weights (around 0 rather than 1)."""
    var = o.reduce_mean(o.mul(x, x), axis=-1)
    scale = o.add(weight, 1.0) if unit_offset else weight
    return o.mul(o.mul(x, o.reciprocal(o.sqrt(o.add(var, eps)))), scale)


def layer_norm(o: Ops[T], x: T, weight: T, bias: T, eps: float) -> T:
    """LayerNorm (Ba et al. 2016, eq. 4), biased variance: (x - mean) / sqrt(var + eps) * weight + bias."""
    centered = o.sub(x, o.reduce_mean(x, axis=-1))
    var = o.reduce_mean(o.mul(centered, centered), axis=-1)
    return o.add(o.mul(o.div(centered, o.sqrt(o.add(var, eps))), weight), bias)


def silu(o: Ops[T], x: T) -> T:
    """SiLU / swish (Elfwing et al. 2017): x * sigmoid(x)."""
    return o.mul(x, o.sigmoid(x))


_GELU_C = math.sqrt(2.0 / math.pi)


def gelu_tanh(o: Ops[T], x: T) -> T:
    """GELU, tanh approximation (Hendrycks & Gimpel 2016, §2): 0.5 x (1 + tanh(sqrt(2/pi)(x + 0.044715 x^3)))."""
    inner = o.mul(o.add(x, o.mul(o.mul(o.mul(x, x), x), 0.044715)), _GELU_C)
    return o.mul(o.mul(x, 0.5), o.add(o.tanh(inner), 1.0))


def softmax(o: Ops[T], scores: T) -> T:
    """Softmax over the last axis, shifted by the row max (shift invariance makes this exact over the reals)."""
    e = o.exp(o.sub(scores, o.reduce_max(scores, axis=-1)))
    return o.div(e, o.reduce_sum(e, axis=-1))


def causal_conv(o: Ops[T], u: T, conv_state: T, weight: T, bias: T | None, width: int) -> tuple[T, T]:
    """Causal depthwise convolution over time, unrolled (Mamba's conv1d, Gu & Dao 2023, §3.4): u [B, T, D] after
    conv_state [B, D, W-1] (the last W-1 inputs, oldest first); weight [W, D] -> (conv [B, T, D], conv_state').

    W shifted multiply-adds over [past W-1 inputs; u], summed in tap order (SPEC.md §7)."""
    full = o.concat([o.transpose(conv_state, (0, 2, 1)), u], axis=1)  # [B, W-1+T, D]
    conv = o.mul(o.slice(full, 1, 0, 1 - width), o.slice(weight, 0, 0, 1))  # tap 0 (width >= 2)
    for k in range(1, width):
        end = k - (width - 1) if k < width - 1 else None
        conv = o.add(conv, o.mul(o.slice(full, 1, k, end), o.slice(weight, 0, k, k + 1)))
    if bias is not None:
        conv = o.add(conv, bias)
    return conv, o.transpose(o.slice(full, 1, -(width - 1), None), (0, 2, 1))


def causal_conv_step(o: Ops[T], u: T, conv_state: T, weight: T, bias: T | None) -> tuple[T, T]:
    """The same convolution for one new input u [B, D]: one reduction over the window [conv_state | u]
    [B, D, W] -> (conv [B, D], conv_state' = the window without its oldest column)."""
    window = o.concat([conv_state, o.unsqueeze(u, -1)], axis=2)  # [B, D, W]
    conv = o.reduce_sum(o.mul(window, o.transpose(weight, (1, 0))), axis=-1, keepdims=False)
    if bias is not None:
        conv = o.add(conv, bias)
    return conv, o.slice(window, 2, 1, None)


def linear(o: Ops[T], x: T, w: T, b: T | None = None) -> T:
    """x @ w (+ b); weights are stored [in, out]."""
    y = o.matmul(x, w)
    return y if b is None else o.add(y, b)


def split_heads(o: Ops[T], x: T, n_heads: int, head_dim: int) -> T:
    """[B, T, n*D] -> [B, n, T, D]."""
    return o.transpose(o.reshape(x, (0, 0, n_heads, head_dim)), (0, 2, 1, 3))


def merge_heads(o: Ops[T], x: T) -> T:
    """[B, n, T, D] -> [B, T, n*D]."""
    return o.reshape(o.transpose(x, (0, 2, 1, 3)), (0, 0, -1))


def rope_cos_sin(o: Ops[T], positions: T, inv_freq: T) -> tuple[T, T]:
    """cos and sin of position * frequency, duplicated to [B, 1, T, R] (the 'rotate half' layout); inv_freq is
    [R/2] (spec/rope.py), R the rotated dims of a head."""
    angles = o.mul(o.unsqueeze(o.cast(positions, np.float32), -1), inv_freq)  # [B, T, R/2]
    angles = o.unsqueeze(o.concat([angles, angles], axis=-1), 1)  # [B, 1, T, R]
    return o.cos(angles), o.sin(angles)


def apply_rope(o: Ops[T], x: T, cos: T, sin: T, head_dim: int, rotary_dim: int | None = None) -> T:
    """x * cos + rotate_half(x) * sin, where rotate_half([a, b]) = [-b, a] (GPT-NeoX / Llama layout), on the first
    ``rotary_dim`` dims of each head (all of them by default); the rest pass unchanged (partial RoPE, Phi-3)."""
    rot = head_dim if rotary_dim is None else rotary_dim
    if rot < head_dim:
        rotated = apply_rope(o, o.slice(x, -1, 0, rot), cos, sin, rot)
        return o.concat([rotated, o.slice(x, -1, rot, None)], axis=-1)
    half = head_dim // 2
    first, second = o.slice(x, -1, 0, half), o.slice(x, -1, half, None)
    rotated = o.concat([o.neg(second), first], axis=-1)
    return o.add(o.mul(x, cos), o.mul(rotated, sin))


def causal_mask(o: Ops[T], n_new: Operand[T], n_all: Operand[T], key_mask: T | None = None) -> T:
    """[B|1, 1, T, S] bool: new token i (cache slot S - T + i) sees key j iff j <= S - T + i and key j is real."""
    query_slot = o.add(o.arange(0, n_new), o.sub(n_all, n_new))  # [T]
    visible = o.less_equal(o.unsqueeze(o.arange(0, n_all), 0), o.unsqueeze(query_slot, -1))  # [T, S]
    visible = o.unsqueeze(o.unsqueeze(visible, 0), 0)
    if key_mask is not None:
        visible = o.logical_and(visible, o.unsqueeze(o.unsqueeze(key_mask, 1), 1))
    return visible


def window_mask(o: Ops[T], n_new: Operand[T], n_all: Operand[T], window: int, key_mask: T | None = None) -> T:
    """:func:`causal_mask` and the sliding window (Beltagy et al. 2020, Longformer §3.1; Jiang et al. 2023,
    Mistral 7B §2): each query sees only the ``window`` most recent keys of its sequence, its own included.

    Keys are ranked by position: their slot, or with a key mask the count of real keys up to their slot, so
    padding anywhere in the row never takes a place in the window. Query i (slot S - T + i) sees key j iff it
    is causally visible and rank_j > rank_query - window: with every key real, j > S - T + i - window, keys
    S - T + i - window + 1 .. S - T + i, as transformers' ``sliding_window_overlay`` (kv_idx > q_idx - window).
    """
    visible = causal_mask(o, n_new, n_all, key_mask)  # [B|1, 1, T, S]
    if key_mask is None:
        rank = o.unsqueeze(o.arange(0, n_all), 0)  # [1, S]
    else:
        rank = o.cumsum(o.cast(key_mask, np.int64), axis=1)  # [B, S]: real keys in slots 0..j
    query_rank = o.gather(rank, o.add(o.arange(0, n_new), o.sub(n_all, n_new)), axis=1)  # [B|1, T]
    band = o.greater(o.unsqueeze(rank, 1), o.sub(o.unsqueeze(query_rank, -1), window))  # [B|1, T, S]
    return o.logical_and(visible, o.unsqueeze(band, 1))


def recent_keys(o: Ops[T], key_mask: T, n_all: Operand[T]) -> T:
    """The last ``n_all`` columns of a key mask [B, total] that covers the whole sequence (onnxruntime-genai's
    ``attention_mask``): those of the keys a sliding-window cache still holds, then the new ones."""
    total = o.shape(key_mask, 1)
    return o.gather(key_mask, o.arange(o.sub(total, n_all), total), axis=1)


def attention_unrolled(o: Ops[T], q: T, k_all: T, v_all: T, visible: T, n_heads: int, n_kv: int, head_dim: int) -> T:
    """Causal-masked attention for all new queries at once (Vaswani et al. 2017, eq. 1).

    q: [B, H, T, D]; k_all, v_all: [B, K, S, D]; visible: [B|1, 1, T, S]. Grouped-query attention (Ainslie et
    al. 2023) by repeating each key/value head for its G = H/K query heads: query head h uses kv head h // G.
    """
    group = n_heads // n_kv
    if group > 1:  # [B, K, S, D] -> [B, K, G, S, D] -> [B, H, S, D]
        k_all = o.reshape(o.concat([o.unsqueeze(k_all, 2)] * group, axis=2), (0, n_heads, -1, head_dim))
        v_all = o.reshape(o.concat([o.unsqueeze(v_all, 2)] * group, axis=2), (0, n_heads, -1, head_dim))
    scores = o.mul(o.matmul(q, o.transpose(k_all, (0, 1, 3, 2))), head_dim**-0.5)  # [B, H, T, S]
    scores = o.where(visible, scores, o.const(MASKED, np.float32))
    return o.matmul(softmax(o, scores), v_all)  # [B, H, T, D]


def attention_decode(
    o: Ops[T], q: T, k_all: T, v_all: T, key_mask: T | None, n_heads: int, n_kv: int, head_dim: int
) -> T:
    """One new query per sequence against its whole cache: no causal mask is needed, every cached key is past.

    q: [B, H, 1, D]; k_all, v_all: [B, K, S, D]; key_mask: [B, S] bool or None. Grouped-query attention by
    folding the G query heads of each kv head into the query axis ([B, K, G, D]) instead of repeating keys, a
    different computation from :func:`attention_unrolled` with the same head mapping (h -> h // G).
    """
    group = n_heads // n_kv
    d = head_dim
    qg = o.reshape(q, (0, n_kv, group, d))  # [B, K, G, D]: query head h = kv * G + g
    scores = o.mul(o.matmul(qg, o.transpose(k_all, (0, 1, 3, 2))), d**-0.5)  # [B, K, G, S]
    if key_mask is not None:
        scores = o.where(o.unsqueeze(o.unsqueeze(key_mask, 1), 1), scores, o.const(MASKED, np.float32))
    out = o.matmul(softmax(o, scores), v_all)  # [B, K, G, D]
    return o.reshape(out, (0, n_heads, 1, d))
