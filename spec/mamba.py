"""Mamba-style selective state-space model (Gu & Dao 2023, "Mamba", Algorithm 2 and §3.5). Field names follow
transformers' ``MambaConfig``. E = intermediate_size (expand * hidden_size), N = state_size, R = time_step_rank,
W = conv_kernel.

Per layer, with residual x <- x + Mixer(RMSNorm(x)):
    [u, z]  = x W_in                                   split into two halves of width E
    u'_t    = silu(sum_k w_k * u_{t-W+1+k} + b_conv)   causal depthwise conv; state = last W-1 inputs u
    [dt_in, B_t, C_t] = u'_t W_x
    dt_t    = softplus(dt_in W_dt + b_dt)              [E]
    A       = -exp(A_log)                              [E, N], diagonal per channel
    h_t     = exp(dt_t A) * h_{t-1} + (dt_t u'_t) B_t      (eq. 2a with zero-order-hold, eq. 4)
    y_t     = h_t C_t + D * u'_t                       (eq. 2b plus skip)
    out_t   = (y_t * silu(z_t)) W_out
State carried between steps per layer: conv window [B, E, W-1] and SSM state h [B, E, N].

The recurrent form applies the recurrence once per token. The unrolled form computes the whole sequence at once:
the conv as W shifted multiply-adds, and the recurrence as an inclusive parallel scan (Gu & Dao 2023, §3.3;
Blelloch 1990) over the associative operator
    (a1, b1) . (a2, b2) = (a2 a1, a2 b1 + b2)
in ceil(log2 T) Hillis & Steele (1986) rounds (SPEC.md §7 states its float32 bracketing). lmstep.runtime exports
a faster schedule of the same scan (runtime/mamba_scan.py), proved equal to the recurrence over the reals.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Generic, TypeAlias

import attrs
import numpy as np

from .arrays import WEIGHT, as_tuple, frozen_array
from .config import BOOLEAN, POSITIVE_FLOAT, POSITIVE_INT, require
from .layers import causal_conv, causal_conv_step, linear, rms_norm, silu
from .vocabulary import Ops, T

# A graph does not know T: the scan's rounds are unrolled for up to this many tokens (rounds with a distance of T
# or more keep every element, so they change nothing).
SCAN_BOUND = 1 << 16


@attrs.frozen(kw_only=True)
class Config:
    vocab_size: int = attrs.field(**POSITIVE_INT)
    hidden_size: int = attrs.field(**POSITIVE_INT)
    state_size: int = attrs.field(**POSITIVE_INT)
    num_hidden_layers: int = attrs.field(**POSITIVE_INT)
    intermediate_size: int = attrs.field(**POSITIVE_INT)
    time_step_rank: int = attrs.field(**POSITIVE_INT)
    conv_kernel: int = attrs.field(default=4, **POSITIVE_INT)
    layer_norm_epsilon: float = attrs.field(default=1e-5, **POSITIVE_FLOAT)
    use_bias: bool = attrs.field(default=False, **BOOLEAN)
    use_conv_bias: bool = attrs.field(default=True, **BOOLEAN)
    tie_word_embeddings: bool = attrs.field(default=True, **BOOLEAN)

    def __attrs_post_init__(self) -> None:
        require(self.conv_kernel >= 2, f"conv_kernel must be at least 2, got {self.conv_kernel}")

    @property
    def context_limit(self) -> int | None:
        return None  # a recurrent state has no position limit


@attrs.frozen
class Layer(Generic[T]):
    norm: T = attrs.field(**WEIGHT)  # [C]
    in_proj: T = attrs.field(**WEIGHT)  # [C, 2E]
    conv1d_weight: T = attrs.field(**WEIGHT)  # [W, E]  (transformers stores [E, 1, W])
    x_proj: T = attrs.field(**WEIGHT)  # [E, R + 2N]
    dt_proj: T = attrs.field(**WEIGHT)  # [R, E]
    dt_proj_bias: T = attrs.field(**WEIGHT)  # [E]
    A_log: T = attrs.field(**WEIGHT)  # [E, N]
    D: T = attrs.field(**WEIGHT)  # [E]
    out_proj: T = attrs.field(**WEIGHT)  # [E, C]
    conv1d_bias: T | None = attrs.field(default=None, **WEIGHT)  # [E] when use_conv_bias
    in_proj_bias: T | None = attrs.field(default=None, **WEIGHT)  # [2E] when use_bias
    out_proj_bias: T | None = attrs.field(default=None, **WEIGHT)  # [C] when use_bias


@attrs.frozen
class Weights(Generic[T]):
    embeddings: T = attrs.field(**WEIGHT)  # [V, C]
    layers: tuple[Layer[T], ...] = attrs.field(converter=as_tuple)
    norm_f: T = attrs.field(**WEIGHT)  # [C]
    lm_head: T | None = attrs.field(default=None, **WEIGHT)  # [C, V]; None when tied


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


def weights_from_dict(cfg: Config, params: dict[str, T]) -> Weights[T]:
    layers = []
    for i in range(cfg.num_hidden_layers):
        p = f"layers.{i}."
        layers.append(Layer(**{k[len(p) :]: a for k, a in params.items() if k.startswith(p)}))
    return Weights(params["embeddings"], layers, params["norm_f"], params.get("lm_head"))


SSMState: TypeAlias = tuple[tuple[T, T], ...]
"""Mamba's state: per layer, the conv window [B, E, W-1] and the SSM state h [B, E, N]."""
SelectiveScan: TypeAlias = Callable[[Ops[T], T, T, T, T, T, T], tuple[T, T]]
Mixer: TypeAlias = Callable[[Any, T, T, T], tuple[T, T, T]]
"""(layer, normed x, conv window, SSM state) -> (mixer output, conv window', SSM state'): one form's mixer."""
"""(o, u, dt, A, B, C, h0) -> (y, h_{T-1}): :func:`selective_scan`, or another schedule of it (runtime/)."""


def empty_cache(cfg: Config, batch: int = 1) -> SSMState[np.ndarray]:
    """Numeric initial state per layer: conv window [B, E, W-1] and SSM state [B, E, N], all zeros."""
    e = cfg.intermediate_size
    conv = frozen_array(np.zeros((batch, e, cfg.conv_kernel - 1), np.float32))
    ssm = frozen_array(np.zeros((batch, e, cfg.state_size), np.float32))
    return tuple((conv, ssm) for _ in range(cfg.num_hidden_layers))


def _ssm_inputs(o: Ops[T], cfg: Config, layer: Layer[T], u: T) -> tuple[T, T, T]:
    """dt [.., E], B [.., N], C [.., N] from the conv output u [.., E] (Algorithm 2, lines 3-5)."""
    n, r = cfg.state_size, cfg.time_step_rank
    dt_in, b, c = o.split(o.matmul(u, layer.x_proj), -1, (r, n, n))
    dt = o.softplus(linear(o, dt_in, layer.dt_proj, layer.dt_proj_bias))
    return dt, b, c


def _mixer_unrolled(
    o: Ops[T], cfg: Config, layer: Layer[T], x: T, conv_state: T, h0: T, scan: SelectiveScan[T] | None = None
) -> tuple[T, T, T]:
    """x: [B, T, C]; conv_state: [B, E, W-1]; h0: [B, E, N] -> out [B, T, C], conv_state', h_{T-1} [B, E, N].
    ``scan``: a function with the signature of :func:`selective_scan` (the default); lmstep.runtime passes
    another schedule of the same scan."""
    e = cfg.intermediate_size
    u, z = o.split(linear(o, x, layer.in_proj, layer.in_proj_bias), -1, (e, e))  # [B, T, E] each
    conv, new_conv_state = causal_conv(o, u, conv_state, layer.conv1d_weight, layer.conv1d_bias, cfg.conv_kernel)
    u = silu(o, conv)
    dt, b, c = _ssm_inputs(o, cfg, layer, u)  # [B,T,E], [B,T,N], [B,T,N]
    y, h_last = (scan or selective_scan)(o, u, dt, o.neg(o.exp(layer.A_log)), b, c, h0)
    y = o.mul(o.add(y, o.mul(u, layer.D)), silu(o, z))
    return linear(o, y, layer.out_proj, layer.out_proj_bias), new_conv_state, h_last


def selective_scan(o: Ops[T], u: T, dt: T, A: T, B: T, C: T, h0: T) -> tuple[T, T]:
    """The state-space part over a whole sequence (Algorithm 2, lines 5-6; mamba-ssm's ``selective_scan_ref``):
    u, dt [B, T, E]; A [E, N]; B, C [B, T, N]; h0 [B, E, N] -> y [B, T, E] with y_t = h_t C_t (the D skip is
    added by the caller) and h_{T-1} [B, E, N]. The elements are computed as the step computes them."""
    decay = o.exp(o.mul(A, o.unsqueeze(dt, -1)))  # a_t = exp(A dt_t): [B, T, E, N]
    drive = o.mul(o.unsqueeze(o.mul(dt, u), -1), o.unsqueeze(B, 2))  # b_t = (dt_t u_t) B_t: [B, T, E, N]
    _, h = _scan(o, decay, drive, h0)
    y = o.squeeze(o.matmul(h, o.unsqueeze(C, -1)), -1)  # [B, T, E, N] @ [B, T, N, 1]
    return y, o.squeeze(o.slice(h, 1, -1, None), 1)


def _scan(o: Ops[T], a: T, b: T, h0: T | None = None) -> tuple[T, T]:
    """Inclusive scan along axis 1 of (a, b) [B, T, E, N] under (a1, b1) . (a2, b2) = (a2 a1, a2 b1 + b2): element
    t of the result is (a_t ... a_0, h_t) with h_t = a_t h_{t-1} + b_t and h_{-1} = h0 [B, E, N] (zero when None).

    SPEC.md §7, whose float32 bracketing this is: h0 enters the first element, b_0 <- a_0 h0 + b_0 (the
    recurrence's own first step); then Hillis & Steele (1986) rounds with distance d = 1, 2, 4, ... while d < T:
    every element t >= d becomes x_{t-d} . x_t, all at once from the previous round's values, and elements t < d
    are kept. After the round with distance d, element t combines elements max(t - 2d + 1, 0) .. t.
    """

    def combine(first: tuple[T, T], second: tuple[T, T]) -> tuple[T, T]:
        (a_prev, b_prev), (a, b) = first, second  # first is the earlier element
        return o.mul(a, a_prev), o.add(o.mul(a, b_prev), b)

    if h0 is not None:  # b_0 <- a_0 h0 + b_0
        first = o.add(o.mul(o.slice(a, 1, 0, 1), o.unsqueeze(h0, 1)), o.slice(b, 1, 0, 1))
        b = o.concat([first, o.slice(b, 1, 1, None)], axis=1)
    d = 1
    while d < o.static_len(a, 1, SCAN_BOUND):  # on a graph also rounds with d >= T: empty slices, all kept
        earlier = (o.slice(a, 1, 0, -d), o.slice(b, 1, 0, -d))  # x_{t-d} for t = d .. T-1
        later = (o.slice(a, 1, d, None), o.slice(b, 1, d, None))  # x_t for t = d .. T-1
        a, b = (o.concat([o.slice(v, 1, 0, d), new], axis=1) for v, new in zip((a, b), combine(earlier, later)))
        d *= 2
    return a, b


def _mixer_step(o: Ops[T], cfg: Config, layer: Layer[T], x: T, conv_state: T, h: T) -> tuple[T, T, T]:
    """x: [B, C] one token; conv_state [B, E, W-1]; h [B, E, N] -> out [B, C], conv_state', h'."""
    e = cfg.intermediate_size
    u, z = o.split(linear(o, x, layer.in_proj, layer.in_proj_bias), -1, (e, e))  # [B, E]
    conv, new_conv_state = causal_conv_step(o, u, conv_state, layer.conv1d_weight, layer.conv1d_bias)
    u = silu(o, conv)
    dt, b, c = _ssm_inputs(o, cfg, layer, u)  # [B, E], [B, N], [B, N]
    decay = o.exp(o.mul(o.neg(o.exp(layer.A_log)), o.unsqueeze(dt, -1)))  # [B, E, N]
    drive = o.mul(o.unsqueeze(o.mul(dt, u), -1), o.unsqueeze(b, 1))  # (dt u) B: [B, E, N]
    h = o.add(o.mul(decay, h), drive)
    y = o.squeeze(o.matmul(h, o.unsqueeze(c, -1)), -1)  # [B, E]
    y = o.mul(o.add(y, o.mul(u, layer.D)), silu(o, z))
    return linear(o, y, layer.out_proj, layer.out_proj_bias), new_conv_state, h


def blocks(o: Ops[T], cfg: Any, w: Any, x: T, cache: SSMState[T], mixer: Mixer[T]) -> tuple[T, SSMState[T]]:
    """The residual stack of both Mamba generations (mamba2.py too), for either form: per layer
    x <- x + Mixer(RMSNorm(x; norm)) with that layer's (conv window, SSM state) -> state', then the logits
    RMSNorm(x; norm_f) (lm_head, or embeddings^T when tied). ``cfg``/``w``: either generation's Config/Weights."""
    new_cache: list[tuple[T, T]] = []
    for layer, (conv_state, h) in zip(w.layers, cache):
        out, conv_state, h = mixer(layer, rms_norm(o, x, layer.norm, cfg.layer_norm_epsilon), conv_state, h)
        x = o.add(x, out)
        new_cache.append((conv_state, h))
    x = rms_norm(o, x, w.norm_f, cfg.layer_norm_epsilon)
    head = w.lm_head if w.lm_head is not None else o.transpose(w.embeddings, (1, 0))
    return o.matmul(x, head), tuple(new_cache)


def forward(
    o: Ops[T],
    cfg: Config,
    w: Weights[T],
    tokens: T,
    positions: T,
    cache: SSMState[T],
    key_mask: T | None = None,
    scan: SelectiveScan[T] | None = None,
) -> tuple[T, SSMState[T]]:
    """Unrolled form: tokens [B, T] -> logits [B, T, V], new per-layer (conv_state, ssm_state).

    ``positions`` is accepted for a uniform signature and unused: an SSM has no position input. Padding
    (``key_mask``) is not supported by a recurrent state and must be None. ``scan``: see :func:`_mixer_unrolled`.
    """
    require(key_mask is None, "Mamba has no attention mask: run padded sequences separately")

    def mixer(layer: Layer[T], x: T, conv_state: T, h: T) -> tuple[T, T, T]:
        return _mixer_unrolled(o, cfg, layer, x, conv_state, h, scan=scan)

    return blocks(o, cfg, w, o.gather(w.embeddings, tokens), cache, mixer)


def decode(
    o: Ops[T], cfg: Config, w: Weights[T], token: T, position: T, cache: SSMState[T], key_mask: T | None = None
) -> tuple[T, SSMState[T]]:
    """Recurrent form: one token [B] -> logits [B, V], the state advanced by one step of eq. 2."""
    require(key_mask is None, "Mamba has no attention mask: run padded sequences separately")
    return blocks(o, cfg, w, o.gather(w.embeddings, token), cache, lambda *a: _mixer_step(o, cfg, *a))
