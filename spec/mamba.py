"""Mamba-style selective state-space model (Gu & Dao 2023, "Mamba", Algorithm 2 and §3.5). Field names follow
transformers' ``MambaConfig``. E = intermediate_size (expand * hidden_size), N = state_size, R = time_step_rank,
W = conv_kernel.

Per layer, with residual x <- x + Mixer(RMSNorm(x)):
    [u, z]  = x W_in                                   split into two halves of width E
    u'_t    = silu(sum_k w_k * u_{t-W+1+k} + b_conv)   causal depthwise conv; state = last W-1 inputs u
    [dt_in, B_t, C_t] = u'_t W_x
    dt_t    = softplus(dt_in W_dt + b_dt)              [E]
    A       = -exp(A_log)                              [E, N], diagonal per channel
    h_t     = exp(dt_t A) * h_{t-1} + (dt_t B_t) * u'_t      (eq. 2a with zero-order-hold, eq. 4)
    y_t     = h_t C_t + D * u'_t                       (eq. 2b plus skip)
    out_t   = (y_t * silu(z_t)) W_out
State carried between steps per layer: conv window [B, E, W-1] and SSM state h [B, E, N].

The recurrent form applies the recurrence once per token. The unrolled form computes the whole sequence with
a Hillis-Steele parallel scan (Hillis & Steele 1986; Blelloch 1990) over the associative operator
    (a1, b1) . (a2, b2) = (a2 a1, a2 b1 + b2),
in ceil(log2 T) rounds of elementwise work on all positions, and the conv as W shifted multiply-adds.
"""

from __future__ import annotations

from typing import Any

import attrs
import numpy as np

from .arrays import any_field, frozen_array
from .config import bool_field, float_field, int_field, require
from .layers import linear, rms_norm, silu

# A graph does not know T; its scan runs enough rounds for this many tokens (extra rounds are exact no-ops).
MAX_UNROLLED_LEN = 1 << 16


@attrs.frozen(kw_only=True)
class Config:
    vocab_size: int = int_field()
    hidden_size: int = int_field()
    state_size: int = int_field()
    num_hidden_layers: int = int_field()
    intermediate_size: int = int_field()
    time_step_rank: int = int_field()
    conv_kernel: int = int_field(4)
    layer_norm_epsilon: float = float_field(1e-5)
    use_bias: bool = bool_field(False)
    use_conv_bias: bool = bool_field(True)
    tie_word_embeddings: bool = bool_field(True)

    def __attrs_post_init__(self) -> None:
        require(self.conv_kernel >= 2, f"conv_kernel must be at least 2, got {self.conv_kernel}")

    @property
    def context_limit(self) -> int | None:
        return None  # a recurrent state has no position limit


@attrs.frozen
class Layer:
    norm: Any = any_field()  # [C]
    in_proj: Any = any_field()  # [C, 2E]
    conv1d_weight: Any = any_field()  # [W, E]  (transformers stores [E, 1, W])
    x_proj: Any = any_field()  # [E, R + 2N]
    dt_proj: Any = any_field()  # [R, E]
    dt_proj_bias: Any = any_field()  # [E]
    A_log: Any = any_field()  # [E, N]
    D: Any = any_field()  # [E]
    out_proj: Any = any_field()  # [E, C]
    conv1d_bias: Any = any_field(default=None)  # [E] when use_conv_bias
    in_proj_bias: Any = any_field(default=None)  # [2E] when use_bias
    out_proj_bias: Any = any_field(default=None)  # [C] when use_bias


@attrs.frozen
class Weights:
    embeddings: Any = any_field()  # [V, C]
    layers: tuple[Layer, ...] = attrs.field(converter=tuple)
    norm_f: Any = any_field()  # [C]
    lm_head: Any = any_field(default=None)  # [C, V]; None when tied


def param_shapes(cfg: Config) -> dict[str, tuple[int, ...]]:
    c, e, n, r, k = cfg.hidden_size, cfg.intermediate_size, cfg.state_size, cfg.time_step_rank, cfg.conv_kernel
    shapes: dict[str, tuple[int, ...]] = {"embeddings": (cfg.vocab_size, c)}
    for i in range(cfg.num_hidden_layers):
        p = f"layers.{i}."
        shapes |= {p + "norm": (c,), p + "in_proj": (c, 2 * e), p + "conv1d_weight": (k, e)}
        shapes |= {p + "x_proj": (e, r + 2 * n), p + "dt_proj": (r, e), p + "dt_proj_bias": (e,)}
        shapes |= {p + "A_log": (e, n), p + "D": (e,), p + "out_proj": (e, c)}
        if cfg.use_conv_bias:
            shapes[p + "conv1d_bias"] = (e,)
        if cfg.use_bias:
            shapes |= {p + "in_proj_bias": (2 * e,), p + "out_proj_bias": (c,)}
    shapes["norm_f"] = (c,)
    if not cfg.tie_word_embeddings:
        shapes["lm_head"] = (c, cfg.vocab_size)
    return shapes


def weights_from_dict(cfg: Config, params: dict[str, np.ndarray]) -> Weights:
    layers = []
    for i in range(cfg.num_hidden_layers):
        p = f"layers.{i}."
        layers.append(Layer(**{k[len(p) :]: a for k, a in params.items() if k.startswith(p)}))
    return Weights(params["embeddings"], layers, params["norm_f"], params.get("lm_head"))


def empty_cache(cfg: Config, batch: int = 1) -> tuple[tuple[np.ndarray, np.ndarray], ...]:
    """Numeric initial state per layer: conv window [B, E, W-1] and SSM state [B, E, N], all zeros."""
    e = cfg.intermediate_size
    conv = frozen_array(np.zeros((batch, e, cfg.conv_kernel - 1), np.float32))
    ssm = frozen_array(np.zeros((batch, e, cfg.state_size), np.float32))
    return tuple((conv, ssm) for _ in range(cfg.num_hidden_layers))


def _ssm_inputs(o: Any, cfg: Config, layer: Layer, u: Any):
    """dt [.., E], B [.., N], C [.., N] from the conv output u [.., E] (Algorithm 2, lines 3-5)."""
    n, r = cfg.state_size, cfg.time_step_rank
    dt_in, b, c = o.split(o.matmul(u, layer.x_proj), -1, (r, n, n))
    dt = o.softplus(linear(o, dt_in, layer.dt_proj, layer.dt_proj_bias))
    return dt, b, c


def _mixer_unrolled(o: Any, cfg: Config, layer: Layer, x: Any, conv_state: Any, h0: Any):
    """x: [B, T, C]; conv_state: [B, E, W-1]; h0: [B, E, N] -> out [B, T, C], conv_state', h_T."""
    e, w = cfg.intermediate_size, cfg.conv_kernel
    u, z = o.split(linear(o, x, layer.in_proj, layer.in_proj_bias), -1, (e, e))  # [B, T, E] each
    # Causal depthwise conv as W shifted multiply-adds over [past W-1 inputs; u].
    full = o.concat([o.transpose(conv_state, (0, 2, 1)), u], axis=1)  # [B, W-1+T, E]
    conv = None
    for k in range(w):
        tap = o.mul(o.slice(full, 1, k, k - (w - 1) if k < w - 1 else None), o.slice(layer.conv1d_weight, 0, k, k + 1))
        conv = tap if conv is None else o.add(conv, tap)
    if layer.conv1d_bias is not None:
        conv = o.add(conv, layer.conv1d_bias)
    new_conv_state = o.transpose(o.slice(full, 1, -(w - 1), None), (0, 2, 1))
    u = silu(o, conv)
    dt, b, c = _ssm_inputs(o, cfg, layer, u)  # [B,T,E], [B,T,N], [B,T,N]
    a_neg = o.neg(o.exp(layer.A_log))  # [E, N]
    decay = o.exp(o.mul(a_neg, o.unsqueeze(dt, -1)))  # [B, T, E, N]
    drive = o.mul(o.mul(o.unsqueeze(dt, -1), o.unsqueeze(b, 2)), o.unsqueeze(u, -1))  # (dt B) u: [B, T, E, N]
    decay_cum, h = _scan(o, decay, drive)
    h = o.add(h, o.mul(decay_cum, o.unsqueeze(h0, 1)))  # h_t = H_t + (prod_{s<=t} a_s) h0
    y = o.squeeze(o.matmul(h, o.unsqueeze(c, -1)), -1)  # [B, T, E]
    y = o.mul(o.add(y, o.mul(u, layer.D)), silu(o, z))
    h_last = o.squeeze(o.slice(h, 1, -1, None), 1)
    return linear(o, y, layer.out_proj, layer.out_proj_bias), new_conv_state, h_last


def _scan(o: Any, a: Any, b: Any):
    """Inclusive Hillis-Steele scan along axis 1 of (a, b) under (a1, b1).(a2, b2) = (a2 a1, a2 b1 + b2).

    After the round with distance d, element t holds the combination of elements max(0, t-2d+1)..t. Rounds with
    d >= T combine every element with the identity (a * 1, a * 0 + b), so any bound >= T gives the same values.
    """
    bound = o.static_len(a, 1, MAX_UNROLLED_LEN)
    # Row 0 of the working arrays is the identity element (a = 1, b = 0): row p's predecessor at distance d is
    # row max(p - d, 0), so rows with no predecessor combine with the identity and no select is needed; row 0
    # combines with itself and stays the identity.
    a, b = o.pad_front(a, 1, 1, 1.0), o.pad_front(b, 1, 1, 0.0)
    rows = o.arange(0, o.shape(a, 1))
    d = 1
    while d < bound:
        # A Gather costs O(T) whatever d is (padding by d would cost O(T + d): up to 2^15 rows per round in a graph).
        src = o.max(o.sub(rows, d), 0)
        a_prev, b_prev = o.gather(a, src, axis=1), o.gather(b, src, axis=1)
        b = o.add(o.mul(a, b_prev), b)
        a = o.mul(a, a_prev)
        d *= 2
    a, b = o.slice(a, 1, 1, None), o.slice(b, 1, 1, None)
    return a, b


def _mixer_step(o: Any, cfg: Config, layer: Layer, x: Any, conv_state: Any, h: Any):
    """x: [B, C] one token; conv_state [B, E, W-1]; h [B, E, N] -> out [B, C], conv_state', h'."""
    e = cfg.intermediate_size
    u, z = o.split(linear(o, x, layer.in_proj, layer.in_proj_bias), -1, (e, e))  # [B, E]
    window = o.concat([conv_state, o.unsqueeze(u, -1)], axis=2)  # [B, E, W]
    conv = o.reduce_sum(o.mul(window, o.transpose(layer.conv1d_weight, (1, 0))), axis=-1, keepdims=False)
    if layer.conv1d_bias is not None:
        conv = o.add(conv, layer.conv1d_bias)
    u = silu(o, conv)
    dt, b, c = _ssm_inputs(o, cfg, layer, u)  # [B, E], [B, N], [B, N]
    decay = o.exp(o.mul(o.neg(o.exp(layer.A_log)), o.unsqueeze(dt, -1)))  # [B, E, N]
    drive = o.mul(o.mul(o.unsqueeze(dt, -1), o.unsqueeze(b, 1)), o.unsqueeze(u, -1))
    h = o.add(o.mul(decay, h), drive)
    y = o.squeeze(o.matmul(h, o.unsqueeze(c, -1)), -1)  # [B, E]
    y = o.mul(o.add(y, o.mul(u, layer.D)), silu(o, z))
    return linear(o, y, layer.out_proj, layer.out_proj_bias), o.slice(window, 2, 1, None), h


def _logits(o: Any, cfg: Config, w: Weights, x: Any) -> Any:
    x = rms_norm(o, x, w.norm_f, cfg.layer_norm_epsilon)
    return o.matmul(x, w.lm_head if w.lm_head is not None else o.transpose(w.embeddings, (1, 0)))


def forward(o: Any, cfg: Config, w: Weights, tokens: Any, positions: Any, cache: Any, key_mask: Any = None):
    """Unrolled form: tokens [B, T] -> logits [B, T, V], new per-layer (conv_state, ssm_state).

    ``positions`` is accepted for a uniform signature and unused: an SSM has no position input. Padding
    (``key_mask``) is not supported by a recurrent state and must be None.
    """
    require(key_mask is None, "Mamba has no attention mask: run padded sequences separately")
    x = o.gather(w.embeddings, tokens)
    new_cache = []
    for layer, (conv_state, h) in zip(w.layers, cache):
        out, conv_state, h = _mixer_unrolled(o, cfg, layer, rms_norm(o, x, layer.norm, cfg.layer_norm_epsilon), conv_state, h)
        x = o.add(x, out)
        new_cache.append((conv_state, h))
    return _logits(o, cfg, w, x), tuple(new_cache)


def decode(o: Any, cfg: Config, w: Weights, token: Any, position: Any, cache: Any, key_mask: Any = None):
    """Recurrent form: one token [B] -> logits [B, V], the state advanced by one step of eq. 2."""
    require(key_mask is None, "Mamba has no attention mask: run padded sequences separately")
    x = o.gather(w.embeddings, token)  # [B, C]
    new_cache = []
    for layer, (conv_state, h) in zip(w.layers, cache):
        out, conv_state, h = _mixer_step(o, cfg, layer, rms_norm(o, x, layer.norm, cfg.layer_norm_epsilon), conv_state, h)
        x = o.add(x, out)
        new_cache.append((conv_state, h))
    return _logits(o, cfg, w, x), tuple(new_cache)
