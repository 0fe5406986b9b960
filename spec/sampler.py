"""The sampler, specified to the bit: logits z (float32 [V]) and one rand u in [0, 1) -> a token id.

Written against the ops vocabulary so the ONNX step graph contains exactly this computation (docs/design.md §4).
Every step is float32; ``T``, ``top_p`` are float32, ``top_k`` int64.

    0. T == 0 (greedy): return argmax(z), the lowest index among maxima. u is ignored. Also greedy when step 1
       overflows, i.e. max(z / T) = +inf or -inf (a tiny T with a large logit, or every logit so negative that
       z / T overflows): the T -> 0 limit.
    1. y = z / T                                           (elementwise float32 division)
    2. (s, idx) = y sorted descending; equal values keep ascending index order (stable; = ONNX TopK sorted=1)
    3. k = V if top_k == 0 else min(top_k, V);   e_r = exp(s_r - s_0) for ranks r < k, e_r = 0 for r >= k
    4. c_r = e_0 + e_1 + ... + e_r                        (sequential float32 cumulative sum, left to right)
       total = c_{V-1}
    5. top-p (Holtzman et al. 2020): if top_p < 1, rank r is kept iff r < k and c_{r-1} < top_p * total
       (strict; c_{-1} = 0, so rank 0 is always kept); if top_p == 1, ranks r < k are kept.
       The kept ranks are a prefix 0..m-1 because c is nondecreasing.
    6. target = u * c_{m-1};  r* = number of kept ranks with c_r <= target, i.e. the first kept rank with
       c_r > target (strict). A rank with e_r = 0 has c_r = c_{r-1}, so it is never the first to exceed target.
    7. fallback: if r* = m (rounding put target at or past c_{m-1}), r* = the last kept rank with e_r > 0.
    8. return idx[r*].
"""

from __future__ import annotations

import math

import attrs
import numpy as np

from .errors import InputError
from .vocabulary import Operand, Ops, T


def _check_temperature(inst: object, attr: object, value: float) -> None:
    if not math.isfinite(value) or value < 0:
        raise InputError(f"temperature must be a finite number >= 0 (0 = greedy), got {value!r}")


def _check_top_k(inst: object, attr: object, value: int) -> None:
    if value < 0:
        raise InputError(f"top_k must be an integer >= 0 (0 = keep all tokens), got {value!r}")


def _check_top_p(inst: object, attr: object, value: float) -> None:
    if not (0.0 < value <= 1.0):
        raise InputError(f"top_p must be in (0, 1] (1 = keep all tokens), got {value!r}")


def _to_float32_value(v: object) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float, np.floating, np.integer)):
        raise InputError(f"sampler settings must be numbers, got {v!r}")
    return float(np.float32(v))  # the value the float32 computation actually uses


def _to_int(v: object) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
        raise InputError(f"top_k must be an integer >= 0 (0 = keep all tokens), got {v!r}")
    return int(v)


@attrs.frozen
class Sampler:
    """Sampler settings; part of the model value. Defaults: greedy."""

    temperature: float = attrs.field(default=0.0, converter=_to_float32_value, validator=_check_temperature)
    top_k: int = attrs.field(default=0, converter=_to_int, validator=_check_top_k)
    top_p: float = attrs.field(default=1.0, converter=_to_float32_value, validator=_check_top_p)


def sample(o: Ops[T], logits: T, u: T, temperature: Operand[T], top_k: Operand[T], top_p: Operand[T]) -> T:
    """logits [B, V] float32, u [B] float32 -> tokens [B] int64 (the algorithm in the module docstring).

    ``temperature``/``top_p`` are float32 scalars and ``top_k`` an int64 scalar: numbers in the numeric spec,
    graph inputs in the ONNX step graph (where both branches are computed and ``where`` selects).
    """
    greedy = o.argmax(logits, axis=-1)
    if isinstance(temperature, (int, float)) and temperature == 0:
        return greedy  # numeric fast path; the graph takes the same decision in the final where()
    vocab = o.shape(logits, -1)
    t_safe = o.where(o.equal(temperature, 0.0), o.const(1.0, np.float32), o.const(temperature, np.float32))
    s, idx = o.topk(o.div(logits, t_safe), vocab)  # [B, V] each
    rank = o.unsqueeze(o.arange(0, vocab), 0)  # [1, V]
    k = o.where(o.equal(top_k, 0), vocab, o.min(o.const(top_k, np.int64), vocab))
    in_top_k = o.less(rank, k)
    top = o.slice(s, -1, 0, 1)  # s_0 [B, 1]
    e = o.where(in_top_k, o.exp(o.sub(s, top)), o.const(0.0, np.float32))
    c = o.cumsum(e, axis=-1)
    c_prev = o.slice(o.pad_front(c, -1, 1, 0.0), -1, 0, -1)  # c_{r-1}, with c_{-1} = 0
    total = o.slice(c, -1, -1, None)  # [B, 1]
    # top_p == 1 keeps every rank: its threshold is 2 * total, above every c_{r-1} <= total (total >= e_0 = 1;
    # doubling is exact), so no boolean-valued Where is needed (onnxruntime has no CPU kernel for Where over bool).
    p_threshold = o.where(
        o.less(o.const(top_p, np.float32), 1.0), o.mul(total, o.const(top_p, np.float32)), o.mul(total, 2.0)
    )
    keep = o.logical_and(in_top_k, o.less(c_prev, p_threshold))
    kept_total = o.reduce_max(o.where(keep, c, o.const(0.0, np.float32)), axis=-1)  # c_{m-1}, [B, 1]
    target = o.mul(o.unsqueeze(o.const(u, np.float32), -1), kept_total)
    m = o.reduce_sum(o.cast(keep, np.int64), axis=-1, keepdims=False)
    first_above = o.reduce_sum(o.cast(o.logical_and(keep, o.less_equal(c, target)), np.int64), axis=-1, keepdims=False)
    positive = o.logical_and(keep, o.greater(e, 0.0))
    last_positive = o.reduce_max(o.where(positive, rank, o.const(-1, np.int64)), axis=-1, keepdims=False)
    chosen = o.where(o.less(first_above, m), first_above, last_positive)  # [B]
    token = o.squeeze(o.gather_last(idx, o.unsqueeze(chosen, -1)), -1)
    # Step 0': when the largest z / T overflows to +inf or -inf, every e_r is NaN; the draw is then greedy, the
    # T -> 0 limit. s_0 - s_0 == 0 exactly when s_0 is finite (inf - inf is NaN).
    token = o.where(o.squeeze(o.equal(o.sub(top, top), 0.0), -1), token, greedy)
    return o.where(o.equal(temperature, 0.0), greedy, token)


def check_logits(logits: np.ndarray) -> None:
    """The numeric spec refuses logits the sampler has no defined answer for."""
    if np.isnan(logits).any():
        raise InputError("logits contain NaN: the model produced invalid values (check the weights for NaN/Inf)")
    if np.isposinf(logits).any():
        raise InputError("logits contain +inf: the model overflowed (check the weights and inputs)")
    if not np.isfinite(logits).any(axis=-1).all():
        raise InputError("all logits are -inf: no token can be sampled")


def sample_one(logits: np.ndarray, u: float, sampler: Sampler) -> int:
    """The numeric sampler for one sequence: logits [V] float32, u a float in [0, 1)."""
    from .ops import NP

    check_logits(logits)
    check_rand(u)
    with np.errstate(over="ignore", invalid="ignore"):  # z / T may overflow: step 0 then decides (greedy)
        token = sample(
            NP,
            np.asarray(logits, np.float32)[None, :],
            np.array([u], np.float32),
            sampler.temperature,
            sampler.top_k,
            sampler.top_p,
        )
    return int(token[0])


def check_rand(u: object) -> float:
    if isinstance(u, bool) or not isinstance(u, (int, float, np.floating)) or not (0.0 <= float(u) < 1.0):
        raise InputError(f"rand must be a float in [0, 1), got {u!r}; use lmstep.spec.rand_for(seed, position)")
    if float(np.float32(u)) >= 1.0:
        raise InputError(f"rand {u!r} rounds to 1.0 in float32; use a value below 1 - 2**-24")
    return float(u)
