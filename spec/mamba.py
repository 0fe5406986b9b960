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

The recurrent form applies the recurrence once per token. The unrolled form computes the whole sequence with
a work-efficient parallel scan (Ladner & Fischer 1980; Blelloch 1990) over the associative operator
    (a1, b1) . (a2, b2) = (a2 a1, a2 b1 + b2),
pairing neighbours level by level up and back down (Hillis & Steele 1986 rounds on the short top), and the
conv as W shifted multiply-adds. Its [B, T, N, E] elements are built only at the rows the scan reads, and y = C h
is taken block by block before the last merge.
"""

from __future__ import annotations

import functools
from typing import Any

import attrs
import numpy as np

from .arrays import any_field, frozen_array
from .config import bool_field, float_field, int_field, require
from .layers import linear, rms_norm, silu

# A graph does not know T; its scan is built for up to this many tokens (extra levels and rounds are exact no-ops).
MAX_UNROLLED_LEN = 1 << 16
# The scan pairs elements for this many levels (work-efficient, ~12 kernels per level and layer), then finishes
# the at most T / 32 rows left with Hillis-Steele rounds (~5 kernels each): a graph runs all 16 levels or rounds
# whatever T is, and for T = 256 this measured ~1.4x faster on onnxruntime than pairing all the way up.
PAIRING_LEVELS = 5


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


def _mixer_unrolled(o: Any, cfg: Config, layer: Layer, x: Any, conv_state: Any, h0: Any, plan: Any = None):
    """x: [B, T, C]; conv_state: [B, E, W-1]; h0: [B, E, N] -> out [B, T, C], conv_state', h_T. ``plan``:
    :func:`scan_plan` for this T, shared by the layers."""
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
    # The scan runs in layout [B, T, N, E] (state channels last): the same values as the step's [E, N], laid out
    # so that broadcasts run along the long E axis (onnxruntime: ~5x faster than spans of N = 16).
    a_neg = o.transpose(o.neg(o.exp(layer.A_log)), (1, 0))  # [N, E]
    # Row 0 is the scan's identity (1, 0), from a zero row of the small [B, T, .] inputs: exp(0 A) = 1 and
    # 0 * 0 = 0 exactly (A finite). The scan asks for rows by index, so the [B, T, N, E] decay and drive are
    # only ever built for the rows its first level reads.
    dtu_pad, dt_pad, b_pad = (o.pad_front(v, 1, 1, 0.0) for v in (o.mul(dt, u), dt, b))

    def elements(index: Any) -> tuple[Any, Any]:
        dtu_i, dt_i, b_i = (o.gather(v, index, axis=1) for v in (dtu_pad, dt_pad, b_pad))
        decay = o.exp(o.mul(a_neg, o.unsqueeze(dt_i, 2)))  # exp(A dt), as the step orders it: [B, rows, N, E]
        drive = o.mul(o.unsqueeze(dtu_i, 2), o.unsqueeze(b_i, -1))  # (dt u) B, as the step orders it
        return decay, drive  # [B, rows, N, E] each

    c_pad = o.pad_front(c, 1, 1, 0.0)

    def contract(index: Any, h: Any) -> Any:  # y = C_t h_t for the elements these rows of h end at
        return o.squeeze(
            o.matmul(o.unsqueeze(o.gather(c_pad, index, axis=1), 2), h), 2
        )  # [B, rows, 1, N] @ [B, rows, N, E]

    plan = plan if plan is not None else plan_for(o, x)
    y, h_last = _scan(o, None, None, o.transpose(h0, (0, 2, 1)), plan, rows=elements, reduce=contract)
    y = o.mul(o.add(y, o.mul(u, layer.D)), silu(o, z))
    h_last = o.transpose(o.squeeze(h_last, 1), (0, 2, 1))  # [B, E, N]
    return linear(o, y, layer.out_proj, layer.out_proj_bias), new_conv_state, h_last


def plan_for(o: Any, x: Any) -> tuple[list[tuple[Any, ...]], list[Any]]:
    """:func:`scan_plan` for the length of axis 1 of ``x`` (tokens or elements)."""
    return scan_plan(o, o.shape(x, 1), o.static_len(x, 1, MAX_UNROLLED_LEN))


def scan_plan(o: Any, n: Any, bound: int) -> tuple[list[tuple[Any, ...]], list[Any]]:
    """The index vectors of :func:`_scan` over n elements: per pairing level (first rows, second rows, shift
    rows, merge rows), then per Hillis-Steele round on the short top. They depend on n alone, so a forward
    computes them once for all its layers. ``bound`` >= n sets the static level and round counts."""
    levels = []
    d = 1
    while d < bound and len(levels) < PAIRING_LEVELS:
        half = o.int_div(o.add(n, 1), 2)  # pairs at this level: ceil(n / 2)
        j = o.arange(0, o.add(half, 1))
        twice = o.mul(j, 2)
        first_rows = o.max(o.sub(twice, 1), 0)  # 0, 1, 3, ..., 2 half - 1: identity, x_0, x_2, ...
        second_rows = o.where(o.less_equal(twice, n), twice, 0)  # 0, 2, 4, ..., 2 half: identity, x_1, x_3, ...
        shift_rows = o.max(o.sub(j, 1), 0)  # 0, 0, 1, ..., half - 1
        # Down-sweep output row r (element r - 1): even r is pair prefix r / 2; odd r is the even element's
        # row (r + 1) / 2 of the second block, after the half + 1 pair prefixes. The first level's output is
        # the result: rows 1..n alone.
        r = o.arange(1 if d == 1 else 0, o.add(n, 1))
        r_half = o.int_div(r, 2)
        merge_rows = o.add(r_half, o.mul(o.sub(r, o.mul(r_half, 2)), o.add(half, 2)))
        levels.append((first_rows, second_rows, shift_rows, merge_rows))
        n = half
        d *= 2
    rows, rounds, e = o.arange(0, o.add(n, 1)), [], 1
    while e < -(-bound // d):  # the top has at most ceil(bound / 2^levels) elements
        rounds.append(o.max(o.sub(rows, e), 0))  # row p reads row max(p - e, 0); row 0 is the identity
        e *= 2
    return levels, rounds


def _scan(o: Any, a: Any, b: Any, h0: Any = None, plan: Any = None, rows: Any = None, reduce: Any = None):
    """Inclusive scan along axis 1 of (a, b) under (a1, b1).(a2, b2) = (a2 a1, a2 b1 + b2): element t of the
    result is (prod_{s<=t} a_s, h_t) with h_t = a_t h_{t-1} + b_t and h_{-1} = h0 (zero when None).

    Work-efficient pairing scan (Ladner & Fischer 1980; Blelloch 1990, §1.2 "recursive doubling"): the up-sweep
    combines neighbours (x_0.x_1, x_2.x_3, ...) level by level, halving the length; the down-sweep turns the
    scan of the pairs back into the scan of the elements (odd positions are pair prefixes, even positions one
    more combine). After PAIRING_LEVELS levels the few rows left are scanned by Hillis-Steele rounds. All of
    it is Gathers with :func:`scan_plan`'s indices. Each working array has the identity (1, 0) as row 0: it pads
    an odd length, and id . id = id, so levels and rounds past the true length (a graph runs ``static_len``
    worth) are exact no-ops. Row 0 of the down-sweep is the prefix before x_0: the identity, or the state
    (1, h0), from which every later prefix is then built, so h0 costs one combine per top row.

    ``rows``, when given, replaces a and b: rows(indices) -> (a, b) at those rows of [identity, x_0, ...], so
    a caller can build the elements the first level reads without materialising all of them (``plan`` then
    gives the length). ``reduce``, when given, maps (rows of [identity, x_0, ...], h at those rows) to what the
    caller needs of h (Mamba's y = C h); the result is then (reduce of every h_t in order, h_{T-1} [B, 1, ...]),
    and the full h is never assembled.
    """

    def op(first: tuple[Any, Any], second: tuple[Any, Any]) -> tuple[Any, Any]:
        (a_prev, b_prev), (a, b) = first, second  # first is the earlier element
        return o.mul(a, a_prev), o.add(o.mul(a, b_prev), b)

    def take(pair: tuple[Any, Any], index: Any) -> tuple[Any, Any]:
        return tuple(o.gather(v, index, axis=1) for v in pair)

    if rows is None:
        rows = functools.partial(take, (o.pad_front(a, 1, 1, 1.0), o.pad_front(b, 1, 1, 0.0)))
        plan = plan if plan is not None else plan_for(o, a)
    levels, rounds = plan
    x = None if levels else rows(o.arange(0, 2))  # no levels: a single element
    pick, firsts_by_level = rows, []
    for first_rows, second_rows, _, _ in levels:  # up-sweep; the first level reads the elements themselves
        firsts = pick(first_rows)
        firsts_by_level.append(firsts)
        x = op(firsts, pick(second_rows))
        pick = functools.partial(take, x)
    for src in rounds:  # Hillis-Steele (1986) on the short top: after distance e, row p holds rows p-2e+1..p
        x = op(take(x, src), x)
    if h0 is not None:  # every top prefix p becomes (1, h0) . p; the identity row becomes (1, h0) itself
        x = (x[0], o.add(o.mul(x[0], o.unsqueeze(h0, 1)), x[1]))
    for i, ((first_rows, second_rows, shift_rows, merge_rows), firsts) in enumerate(
        zip(reversed(levels), reversed(firsts_by_level))
    ):
        # Down-sweep. x is the scan of this level's pairs (row i: pairs before i, which end at element 2i - 1,
        # row second_rows[i] of the elements); row i of evens is (row i - 1) . x_2i-2, which ends at element
        # 2i - 2 (row first_rows[i]).
        evens = op(take(x, shift_rows), firsts)
        if reduce is not None and i == len(levels) - 1:  # reduce both blocks, then merge the smaller results
            blocks = o.concat([reduce(second_rows, x[1]), reduce(first_rows, evens[1])], axis=1)
            odd = o.equal(o.slice(second_rows, 0, -1, None), 0)  # odd n: the last pair is padded
            return o.gather(blocks, merge_rows, axis=1), o.where(
                odd, o.slice(evens[1], 1, -1, None), o.slice(x[1], 1, -1, None)
            )
        x = tuple(o.gather(o.concat([p, e], axis=1), merge_rows, axis=1) for p, e in zip(x, evens))
    if reduce is not None:  # no levels: one element
        h = o.slice(x[1], 1, 1, None)
        return reduce(o.arange(1, 2), h), h
    return x if levels else tuple(o.slice(v, 1, 1, None) for v in x)  # the first level's merge drops row 0


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
    drive = o.mul(o.unsqueeze(o.mul(dt, u), -1), o.unsqueeze(b, 1))  # (dt u) B: [B, E, N]
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
    plan = plan_for(o, tokens)
    new_cache = []
    for layer, (conv_state, h) in zip(w.layers, cache):
        x_norm = rms_norm(o, x, layer.norm, cfg.layer_norm_epsilon)
        out, conv_state, h = _mixer_unrolled(o, cfg, layer, x_norm, conv_state, h, plan=plan)
        x = o.add(x, out)
        new_cache.append((conv_state, h))
    return _logits(o, cfg, w, x), tuple(new_cache)


def decode(o: Any, cfg: Config, w: Weights, token: Any, position: Any, cache: Any, key_mask: Any = None):
    """Recurrent form: one token [B] -> logits [B, V], the state advanced by one step of eq. 2."""
    require(key_mask is None, "Mamba has no attention mask: run padded sequences separately")
    x = o.gather(w.embeddings, token)  # [B, C]
    new_cache = []
    for layer, (conv_state, h) in zip(w.layers, cache):
        out, conv_state, h = _mixer_step(
            o, cfg, layer, rms_norm(o, x, layer.norm, cfg.layer_norm_epsilon), conv_state, h
        )
        x = o.add(x, out)
        new_cache.append((conv_state, h))
    return _logits(o, cfg, w, x), tuple(new_cache)
