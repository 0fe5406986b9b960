"""Mamba-2: the state space duality layer (SSD; Dao & Gu 2024, "Transformers are SSMs", §6-7). Field names follow
transformers' ``Mamba2Config``. H = num_heads, P = head_dim, N = state_size, G = n_groups (each group of R = H / G
heads shares B and C), E = expand * hidden_size = H P, W = conv_kernel, Q = chunk_size.

Per layer, with residual x <- x + Mixer(RMSNorm(x)):
    [z, xBC, dt_in] = x W_in                              widths E, E + 2GN, H
    [x, B, C]   = silu(conv(xBC))                         causal depthwise conv as Mamba's (layers.causal_conv)
    dt_h        = clamp(softplus(dt_in_h + dt_bias_h), time_step_limit)
    A_h         = -exp(A_log_h)                           one scalar decay rate per head (Mamba-1: [E, N])
    h_t[h]      = exp(dt_h A_h) h_{t-1}[h] + (x_t[h] dt_h) B_t[g]^T     [P, N] per head, g = h // R (§7.1 eq. 16)
    y_t[h]      = h_t[h] C_t[g] + D_h x_t[h]
    out_t       = GroupRMSNorm(y_t * silu(z_t)) W_out     gate, then RMSNorm over each of G groups of E / G channels
State carried between steps per layer: conv window [B, E + 2GN, W-1] and SSM state h [B, H, P, N].

The recurrent form applies the recurrence once per token. The unrolled form is the chunked SSD algorithm (§7,
Listing 1, ``ssd_minimal``): within each chunk of Q tokens a masked, decayed attention-like product (the
quadratic form); between chunks the recurrence over chunk states, itself written as one matrix product over
chunk boundaries. SPEC.md §11 states its float32 order.
"""

from __future__ import annotations

import math
from typing import Generic

import attrs
import numpy as np

from .arrays import WEIGHT, as_tuple, frozen_array
from .config import BOOLEAN, POSITIVE_FLOAT, POSITIVE_INT, require
from .layers import MASKED, causal_conv, causal_conv_step, linear, rms_norm, silu
from .mamba import SSMState, blocks
from .vocabulary import Ops, T


def _limit(value: object) -> tuple[float, float]:
    """time_step_limit as (low, high) floats: 0 <= low <= high, high may be inf."""
    pair = tuple(value) if isinstance(value, (list, tuple)) else ()
    ok = len(pair) == 2 and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in pair)
    lo, hi = (float(v) for v in pair) if ok else (math.nan, math.nan)
    require(
        ok and 0 <= lo <= hi and lo < math.inf, f"time_step_limit must be [low, high], 0 <= low <= high, got {value!r}"
    )
    return lo, hi


@attrs.frozen(kw_only=True)
class Config:
    vocab_size: int = attrs.field(**POSITIVE_INT)
    hidden_size: int = attrs.field(**POSITIVE_INT)
    state_size: int = attrs.field(**POSITIVE_INT)
    num_hidden_layers: int = attrs.field(**POSITIVE_INT)
    num_heads: int = attrs.field(**POSITIVE_INT)
    head_dim: int = attrs.field(**POSITIVE_INT)
    expand: int = attrs.field(default=2, **POSITIVE_INT)
    n_groups: int = attrs.field(default=1, **POSITIVE_INT)
    conv_kernel: int = attrs.field(default=4, **POSITIVE_INT)
    chunk_size: int = attrs.field(default=256, **POSITIVE_INT)
    time_step_limit: tuple[float, float] = attrs.field(default=(0.0, math.inf), converter=_limit)
    layer_norm_epsilon: float = attrs.field(default=1e-5, **POSITIVE_FLOAT)
    use_bias: bool = attrs.field(default=False, **BOOLEAN)
    use_conv_bias: bool = attrs.field(default=True, **BOOLEAN)
    tie_word_embeddings: bool = attrs.field(default=False, **BOOLEAN)

    def __attrs_post_init__(self) -> None:
        require(self.conv_kernel >= 2, f"conv_kernel must be at least 2, got {self.conv_kernel}")
        require(
            self.num_heads * self.head_dim == self.intermediate_size,
            f"num_heads * head_dim ({self.num_heads * self.head_dim}) must equal expand * hidden_size "
            f"({self.intermediate_size})",
        )
        require(
            self.num_heads % self.n_groups == 0,
            f"n_groups ({self.n_groups}) must divide num_heads ({self.num_heads})",
        )

    @property
    def intermediate_size(self) -> int:
        """E = expand * hidden_size = num_heads * head_dim."""
        return self.expand * self.hidden_size

    @property
    def conv_dim(self) -> int:
        """Channels of the conv: x, B and C, E + 2 G N."""
        return self.intermediate_size + 2 * self.n_groups * self.state_size

    @property
    def context_limit(self) -> int | None:
        return None  # a recurrent state has no position limit


@attrs.frozen
class Layer(Generic[T]):
    norm: T = attrs.field(**WEIGHT)  # [C]
    in_proj: T = attrs.field(**WEIGHT)  # [C, E + conv_dim + H]: z, xBC, dt
    conv1d_weight: T = attrs.field(**WEIGHT)  # [W, conv_dim]  (transformers stores [conv_dim, 1, W])
    dt_bias: T = attrs.field(**WEIGHT)  # [H]
    A_log: T = attrs.field(**WEIGHT)  # [H]
    D: T = attrs.field(**WEIGHT)  # [H]
    gated_norm: T = attrs.field(**WEIGHT)  # [E]  (transformers: mixer.norm.weight)
    out_proj: T = attrs.field(**WEIGHT)  # [E, C]
    conv1d_bias: T | None = attrs.field(default=None, **WEIGHT)  # [conv_dim] when use_conv_bias
    in_proj_bias: T | None = attrs.field(default=None, **WEIGHT)  # [E + conv_dim + H] when use_bias
    out_proj_bias: T | None = attrs.field(default=None, **WEIGHT)  # [C] when use_bias


@attrs.frozen
class Weights(Generic[T]):
    embeddings: T = attrs.field(**WEIGHT)  # [V, C]
    layers: tuple[Layer[T], ...] = attrs.field(converter=as_tuple)
    norm_f: T = attrs.field(**WEIGHT)  # [C]
    lm_head: T | None = attrs.field(default=None, **WEIGHT)  # [C, V]; None when tied


def param_shapes(cfg: Config) -> dict[str, tuple[int, ...]]:
    c, e, h, k = cfg.hidden_size, cfg.intermediate_size, cfg.num_heads, cfg.conv_kernel
    proj = e + cfg.conv_dim + h
    shapes: dict[str, tuple[int, ...]] = {"embeddings": (cfg.vocab_size, c)}
    for i in range(cfg.num_hidden_layers):
        p = f"layers.{i}."
        shapes |= {p + "norm": (c,), p + "in_proj": (c, proj), p + "conv1d_weight": (k, cfg.conv_dim)}
        shapes |= {p + "dt_bias": (h,), p + "A_log": (h,), p + "D": (h,), p + "gated_norm": (e,)}
        shapes |= {p + "out_proj": (e, c)}
        if cfg.use_conv_bias:
            shapes[p + "conv1d_bias"] = (cfg.conv_dim,)
        if cfg.use_bias:
            shapes |= {p + "in_proj_bias": (proj,), p + "out_proj_bias": (c,)}
    shapes["norm_f"] = (c,)
    if not cfg.tie_word_embeddings:
        shapes["lm_head"] = (c, cfg.vocab_size)
    return shapes


def weights_from_dict(cfg: Config, params: dict[str, T]) -> Weights[T]:
    layers = []
    for i in range(cfg.num_hidden_layers):
        p = f"layers.{i}."
        layers.append(Layer(**{k[len(p) :]: a for k, a in params.items() if k.startswith(p)}))
    return Weights(params["embeddings"], layers, params["norm_f"], params.get("lm_head"))


def empty_cache(cfg: Config, batch: int = 1) -> SSMState[np.ndarray]:
    """Numeric initial state per layer: conv window [B, conv_dim, W-1] and SSM state [B, H, P, N], all zeros."""
    conv = frozen_array(np.zeros((batch, cfg.conv_dim, cfg.conv_kernel - 1), np.float32))
    ssm = frozen_array(np.zeros((batch, cfg.num_heads, cfg.head_dim, cfg.state_size), np.float32))
    return tuple((conv, ssm) for _ in range(cfg.num_hidden_layers))


# -- the pieces both forms share ---------------------------------------------------------------------------------
def _inputs(o: Ops[T], cfg: Config, layer: Layer[T], x: T) -> list[T]:
    """x [.., C] -> the gate z [.., E], the conv input xBC [.., conv_dim] and dt before its bias [.., H]."""
    widths = (cfg.intermediate_size, cfg.conv_dim, cfg.num_heads)
    return o.split(linear(o, x, layer.in_proj, layer.in_proj_bias), -1, widths)


def _time_step(o: Ops[T], cfg: Config, layer: Layer[T], dt: T) -> T:
    """dt = softplus(dt + dt_bias) [.., H], clamped to time_step_limit. softplus is never negative, so a low limit
    of 0 and a high one of inf cannot bind and are not applied (the default limit (0, inf): no clamp at all)."""
    dt = o.softplus(o.add(dt, layer.dt_bias))
    low, high = cfg.time_step_limit
    if low > 0:
        dt = o.max(dt, o.const(low, np.float32))
    if high < math.inf:
        dt = o.min(dt, o.const(high, np.float32))
    return dt


def _conv_outputs(o: Ops[T], cfg: Config, v: T, lead: tuple[int, ...]) -> tuple[T, T, T]:
    """silu(conv) [*lead, conv_dim] -> x [*lead, H, P] and B, C per head [*lead, H, N] (``lead``: 0s, one per
    leading axis). Head h reads group h // R, as transformers' repeat_interleave: [G, N] -> [G, R, N] -> [H, N]."""
    g, n, r = cfg.n_groups, cfg.state_size, cfg.num_heads // cfg.n_groups
    x, b, c = o.split(v, -1, (cfg.intermediate_size, g * n, g * n))

    def per_head(w: T) -> T:
        grouped = o.unsqueeze(o.reshape(w, (*lead, g, n)), -2)  # [*lead, G, 1, N]
        return o.reshape(o.concat([grouped] * r, axis=-2), (*lead, cfg.num_heads, n))

    return o.reshape(x, (*lead, cfg.num_heads, cfg.head_dim)), per_head(b), per_head(c)


def _output(o: Ops[T], cfg: Config, layer: Layer[T], y: T, x: T, z: T, lead: tuple[int, ...]) -> T:
    """y, x [*lead, H, P] -> out [*lead, C]: the D skip y + D x, the gate, then RMSNorm over each of the G groups
    of E / G channels (transformers' Mamba2RMSNormGated: norm(y * silu(z)), the gate before the norm)."""
    y = o.reshape(o.add(y, o.mul(x, o.unsqueeze(layer.D, -1))), (*lead, -1))  # [*lead, E]
    gated = o.reshape(o.mul(y, silu(o, z)), (*lead, cfg.n_groups, -1))  # [*lead, G, E / G]
    weight = o.reshape(layer.gated_norm, (cfg.n_groups, -1))
    normed = o.reshape(rms_norm(o, gated, weight, cfg.layer_norm_epsilon), (*lead, -1))
    return linear(o, normed, layer.out_proj, layer.out_proj_bias)


# -- the recurrent form ------------------------------------------------------------------------------------------
def ssm_step(o: Ops[T], h: T, x: T, dt: T, A: T, B: T, C: T) -> tuple[T, T]:
    """One step of the recurrence (§7.1; transformers' ``mamba2_selective_state_update``): h [b, H, P, N];
    x [b, H, P]; dt [b, H]; A [H]; B, C [b, H, N] -> (y = h' C [b, H, P], h' = exp(dt A) h + (x dt) B^T)."""
    decay = o.unsqueeze(o.unsqueeze(o.exp(o.mul(dt, A)), -1), -1)  # [b, H, 1, 1]
    drive = o.mul(o.unsqueeze(o.mul(x, o.unsqueeze(dt, -1)), -1), o.unsqueeze(B, 2))  # (x dt)_p B_n: [b, H, P, N]
    h = o.add(o.mul(decay, h), drive)
    return o.squeeze(o.matmul(h, o.unsqueeze(C, -1)), -1), h


def _mixer_step(o: Ops[T], cfg: Config, layer: Layer[T], x: T, conv_state: T, h: T) -> tuple[T, T, T]:
    """x: [b, C] one token; conv_state [b, conv_dim, W-1]; h [b, H, P, N] -> out [b, C], conv_state', h'."""
    z, xbc, dt = _inputs(o, cfg, layer, x)
    conv, new_conv_state = causal_conv_step(o, xbc, conv_state, layer.conv1d_weight, layer.conv1d_bias)
    xs, b, c = _conv_outputs(o, cfg, silu(o, conv), (0,))  # [b, H, P], [b, H, N], [b, H, N]
    y, h = ssm_step(o, h, xs, _time_step(o, cfg, layer, dt), o.neg(o.exp(layer.A_log)), b, c)
    return _output(o, cfg, layer, y, xs, z, (0,)), new_conv_state, h


# -- the unrolled form -------------------------------------------------------------------------------------------
def segsum(o: Ops[T], a: T) -> T:
    """Segment sums of a [.., n]: S[.., i, j] = a_{j+1} + ... + a_i for j <= i (0 on the diagonal) and MASKED above
    it, so exp(S) is the decay from step j to step i, and 0 for j > i (§7, Listing 1's ``segsum``). Each entry
    is a sequential sum of its own terms (a masked cumsum: the stable form), never a difference of cumsums."""
    i = o.arange(0, o.shape(a, -1))
    later = o.less(o.unsqueeze(i, 0), o.unsqueeze(i, -1))  # [k, j]: j < k
    sums = o.cumsum(o.where(later, o.unsqueeze(a, -1), 0.0), axis=-2)  # [.., i, j]: a_k summed over j < k <= i
    return o.where(o.less_equal(o.unsqueeze(i, 0), o.unsqueeze(i, -1)), sums, o.const(MASKED, np.float32))


def ssd(o: Ops[T], x: T, dt: T, A: T, B: T, C: T, h0: T, chunk: int) -> tuple[T, T]:
    """The chunked SSD algorithm (Dao & Gu 2024, §7 and Listing 1, steps 1-4): x [b, T, H, P]; dt [b, T, H]; A [H];
    B, C [b, T, H, N] (per head); h0 [b, H, P, N] the carried state -> y [b, T, H, P] with y_t = h_t C_t (the
    D skip is the caller's) and h_{T-1} [b, H, P, N]. Over the reals it equals T steps of :func:`ssm_step` from
    h0 (proofs/ssd.py); SPEC.md §11 states its float32 order. Inside: c chunks of Q = ``chunk`` steps."""
    length = o.shape(x, 1)
    rows = o.arange(0, o.mul(o.int_div(o.add(length, chunk - 1), chunk), chunk))  # T rounded up to whole chunks
    # Padding steps leave everything as it is: dt = 0 decays by exp(0) = 1 and drives x dt = 0.
    source = o.where(o.less(rows, length), o.add(rows, 1), 0)  # row 0 of the front-padded input is the zero step

    def chunked(v: T) -> T:  # [b, T, H, K] -> [b, c, H, Q, K]
        v = o.gather(o.pad_front(v, 1, 1, 0.0), source, axis=1)
        return o.transpose(o.reshape(o.transpose(v, (0, 2, 3, 1)), (0, 0, 0, -1, chunk)), (0, 3, 1, 4, 2))

    a = o.squeeze(chunked(o.unsqueeze(o.mul(dt, A), -1)), -1)  # dt A, the log-decay of each step: [b, c, H, Q]
    xdt, b, c = chunked(o.mul(x, o.unsqueeze(dt, -1))), chunked(B), chunked(C)  # [b, c, H, Q, P | N | N]
    # 1. Within each chunk (the diagonal blocks): y_l = sum_{s <= l} (C_l . B_s) exp(a_{s+1} + ... + a_l) x_s dt_s.
    decay = o.exp(segsum(o, a))  # [b, c, H, Q, Q]
    y = o.matmul(o.mul(o.matmul(c, o.transpose(b, (0, 1, 2, 4, 3))), decay), xdt)  # [b, c, H, Q, P]
    # 2. Each chunk's own state at its end, from zero: sum_s (x_s dt_s) (exp(a_{s+1} + ... + a_{Q-1}) B_s)^T.
    to_end = o.transpose(o.slice(decay, -2, -1, None), (0, 1, 2, 4, 3))  # the last row of decay: [b, c, H, Q, 1]
    states = o.matmul(o.transpose(xdt, (0, 1, 2, 4, 3)), o.mul(b, to_end))  # [b, c, H, P, N]
    # 3. Between chunks: the state entering chunk k is h0 and every earlier chunk's end state, each decayed
    #    through the chunks in between: the same segment sums, over [0, sum of a in chunk 0, ..., in chunk c-1].
    cumulative = o.cumsum(a, axis=-1)  # a_0 + ... + a_l within each chunk: [b, c, H, Q]
    totals = o.transpose(o.squeeze(o.slice(cumulative, -1, -1, None), -1), (0, 2, 1))  # [b, H, c]
    between = o.unsqueeze(o.exp(segsum(o, o.pad_front(totals, -1, 1, 0.0))), 2)  # [b, H, 1, c+1, c+1]
    carried = o.transpose(o.concat([o.unsqueeze(h0, 1), states], axis=1), (0, 2, 3, 1, 4))  # [b, H, P, c+1, N]
    entering = o.matmul(between, carried)  # [b, H, P, c+1, N]: row k is the state after chunk k-1 (row 0: h0)
    h_last = o.squeeze(o.slice(entering, 3, -1, None), 3)  # [b, H, P, N]
    start = o.transpose(o.slice(entering, 3, 0, -1), (0, 3, 1, 4, 2))  # each chunk's entering state: [b, c, H, N, P]
    # 4. The entering state's share of each output: y_l += (C_l h_start) exp(a_0 + ... + a_l).
    y = o.add(y, o.mul(o.matmul(c, start), o.unsqueeze(o.exp(cumulative), -1)))
    y = o.reshape(o.transpose(y, (0, 2, 4, 1, 3)), (0, 0, 0, -1))  # [b, H, P, c Q]
    return o.transpose(o.gather(y, o.arange(0, length), axis=3), (0, 3, 1, 2)), h_last


def _mixer_unrolled(o: Ops[T], cfg: Config, layer: Layer[T], x: T, conv_state: T, h0: T) -> tuple[T, T, T]:
    """x: [b, T, C]; conv_state [b, conv_dim, W-1]; h0 [b, H, P, N] -> out [b, T, C], conv_state', h_{T-1}."""
    z, xbc, dt = _inputs(o, cfg, layer, x)
    conv, new_conv_state = causal_conv(o, xbc, conv_state, layer.conv1d_weight, layer.conv1d_bias, cfg.conv_kernel)
    xs, b, c = _conv_outputs(o, cfg, silu(o, conv), (0, 0))  # [b, T, H, P], [b, T, H, N], [b, T, H, N]
    dt = _time_step(o, cfg, layer, dt)
    y, h = ssd(o, xs, dt, o.neg(o.exp(layer.A_log)), b, c, h0, cfg.chunk_size)
    return _output(o, cfg, layer, y, xs, z, (0, 0)), new_conv_state, h


def forward(
    o: Ops[T],
    cfg: Config,
    w: Weights[T],
    tokens: T,
    positions: T,
    cache: SSMState[T],
    key_mask: T | None = None,
) -> tuple[T, SSMState[T]]:
    """Unrolled form: tokens [b, T] -> logits [b, T, V], new per-layer (conv_state, ssm_state). ``positions`` is
    accepted for a uniform signature and unused; ``key_mask`` must be None (a recurrent state has no padding)."""
    require(key_mask is None, "Mamba-2 has no attention mask: run padded sequences separately")
    return blocks(o, cfg, w, o.gather(w.embeddings, tokens), cache, lambda *a: _mixer_unrolled(o, cfg, *a))


def decode(
    o: Ops[T], cfg: Config, w: Weights[T], token: T, position: T, cache: SSMState[T], key_mask: T | None = None
) -> tuple[T, SSMState[T]]:
    """Recurrent form: one token [b] -> logits [b, V], the state advanced by one step."""
    require(key_mask is None, "Mamba-2 has no attention mask: run padded sequences separately")
    return blocks(o, cfg, w, o.gather(w.embeddings, token), cache, lambda *a: _mixer_step(o, cfg, *a))
