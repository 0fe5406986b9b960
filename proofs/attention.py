"""Attention laws (Vaswani et al. 2017, eq. 1), run through layers.py on symbolic q, k, v over the reals.

- KV-cache decode (``attention_decode``: one query against the cache, grouped-query by folding heads) equals row
  t of causal-masked full attention (``attention_unrolled``: keys repeated per head), with padding.
- Sliding window (Mistral): decode against the bounded cache (arrays.SeqBuffer keeping W - 1 rows) equals row t
  of attention under the banded mask (``window_mask``), for every window up to 4 and positions past it.
- Appending a token never changes earlier rows (causality).
- ``softmax`` is shift invariant; for all n by induction.
- The online (streaming) softmax of Milakov & Gimelshein 2018 / FlashAttention (Dao et al. 2022, Alg. 1) equals
  the full softmax-weighted sum, for every length, as an inductive invariant (docs/design.md §8).
exp is uninterpreted with positivity and exp(a+b) = exp(a) exp(b) instances; see symbolic.py.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import z3

from lmstep.spec import layers
from lmstep.spec.arrays import SeqBuffer

from .domains import Real
from .obligations import Obligation, Query, catalogue, register
from .symbolic import Z3Ops, all_equal


def _qkv(o: Z3Ops, b: int, h: int, k: int, t: int, d: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return o.var("q", (b, h, t, d)), o.var("k", (b, k, t, d)), o.var("v", (b, k, t, d))


def decode_query(
    b: int,
    h: int,
    kv: int,
    t: int,
    d: int,
    key_mask: list[list[bool]] | None = None,
    unrolled: Callable[..., Any] | None = None,
) -> Query:
    """decode(query s, cache [0..s]) == unrolled(all queries)[s] for every real (non-padding) slot s."""
    unrolled = unrolled or layers.attention_unrolled
    o = Z3Ops(Real())
    q, k, v = _qkv(o, b, h, kv, t, d)
    mask = None if key_mask is None else np.asarray(key_mask, dtype=bool)
    visible = layers.causal_mask(o, o.shape(q, 2), o.shape(k, 2), mask)
    full = unrolled(o, q, k, v, visible, h, kv, d)
    goals = []
    for s in range(t):
        step_mask = None if mask is None else mask[:, : s + 1]
        out = layers.attention_decode(o, q[:, :, s : s + 1], k[:, :, : s + 1], v[:, :, : s + 1], step_mask, h, kv, d)
        for row in range(b):
            if mask is None or mask[row, s]:  # a padding query's output is never used (and differs by design)
                goals.append(all_equal(o, out[row, :, 0], full[row, :, s]))
    return Query(z3.And(*goals), o.facts, o.checks, {"q": q, "k": k, "v": v})


def window_query(
    b: int,
    h: int,
    kv: int,
    t: int,
    d: int,
    window: int,
    key_mask: list[list[bool]] | None = None,
    mask_fn: Callable[..., Any] | None = None,
) -> Query:
    """Sliding-window decode = banded attention: the query at slot s, by ``attention_decode``, against what the
    spec's bounded buffer (``SeqBuffer`` with ``keep = W - 1``, appended one token at a time) returns - its W - 1
    newest keys and the query's own - equals row s of ``attention_unrolled`` under ``window_mask``, for every
    real query (a left-padded row included: padding is at the front, as genai and transformers pad)."""
    mask_fn = mask_fn or layers.window_mask
    o = Z3Ops(Real())
    q, k, v = _qkv(o, b, h, kv, t, d)
    mask = None if key_mask is None else np.asarray(key_mask, dtype=bool)
    full = layers.attention_unrolled(o, q, k, v, mask_fn(o, o.shape(q, 2), o.shape(k, 2), window, mask), h, kv, d)
    k_buf, v_buf = (SeqBuffer.empty((b, kv, d), axis=2, dtype=object, keep=window - 1) for _ in range(2))
    goals = []
    for s in range(t):
        k_all, k_buf = k_buf.append(k[:, :, s : s + 1])
        v_all, v_buf = v_buf.append(v[:, :, s : s + 1])
        held = k_all.shape[2]  # min(s + 1, W): the bounded state and the new key
        step_mask = None if mask is None else mask[:, s + 1 - held : s + 1]
        out = layers.attention_decode(o, q[:, :, s : s + 1], k_all, v_all, step_mask, h, kv, d)
        for row in range(b):
            if mask is None or mask[row, s]:
                goals.append(all_equal(o, out[row, :, 0], full[row, :, s]))
    return Query(z3.And(*goals), o.facts, o.checks, {"q": q, "k": k, "v": v}, label=f"W={window}")


def window_queries(max_window: int, t: int, mask_fn: Callable[..., Any] | None = None) -> list[Query]:
    """:func:`window_query` for every window 1..max_window over ``t`` tokens (t > max_window: past every window),
    GQA (H=2, K=1, D=1), batch row 2 left-padded by 2."""
    pad = [[True] * t, [False, False] + [True] * (t - 2)]
    return [window_query(2, 2, 1, t, 1, w, pad, mask_fn) for w in range(1, max_window + 1)]


def append_query(h: int, kv: int, t: int, d: int, mask_fn: Callable[..., Any] | None = None) -> Query:
    """Rows 0..t-1 of attention over t tokens equal those rows over t + 1 tokens (the same first t tokens)."""
    mask_fn = mask_fn or layers.causal_mask
    o = Z3Ops(Real())
    q, k, v = _qkv(o, 1, h, kv, t + 1, d)

    def attend(n: int) -> Any:
        qs, ks, vs = q[:, :, :n], k[:, :, :n], v[:, :, :n]
        return layers.attention_unrolled(o, qs, ks, vs, mask_fn(o, o.shape(qs, 2), o.shape(ks, 2)), h, kv, d)

    return Query(all_equal(o, attend(t), attend(t + 1)[:, :, :t]), o.facts, o.checks, {"q": q, "k": k, "v": v})


def shift_query(n: int, exp: str = "field") -> Query:
    o = Z3Ops(Real(), exp=exp)
    x, c = o.var("x", (1, n)), o.var("c")
    goal = all_equal(o, layers.softmax(o, o.add(x, c)), layers.softmax(o, x))
    return Query(goal, o.facts, o.checks, {"x": x, "c": c})


# -- all n, by induction (restated: a sum over a symbolic length cannot run through the spec) ------------------
_R = z3.RealSort()


def _exp() -> z3.FuncDeclRef:
    return z3.Function("exp_real", _R, _R)  # not "exp": cvc5 reserves it (transcendentals)


def _lemma(E: z3.FuncDeclRef, a: Any, c: Any) -> Any:
    """exp(a - c) exp(c) = exp(a), and positivity: the instances of exp(x + y) = exp(x) exp(y) used here."""
    return z3.And(E(a - c) * E(c) == E(a), E(a - c) > 0, E(c) > 0, E(a) > 0)


def shift_all_n_queries(lemma: bool = True) -> list[Query]:
    """exp(c) S_c(n) = Z(n) for every n and c, where S_c(n) = sum_{i<n} exp(x_i - c) and Z(n) = sum_{i<n} exp(x_i).
    With exp(x_i - c) exp(c) = exp(x_i), it gives softmax(x - c)_i = exp(x_i) / Z(n) = softmax(x)_i for all n."""
    E, I = _exp(), z3.IntSort()
    S, Z, x = z3.Function("S_c", I, _R), z3.Function("Z", I, _R), z3.Function("x", I, _R)
    n, c = z3.Int("n"), z3.Real("c")
    base = Query(E(c) * S(0) == Z(0), [("empty sums", z3.And(S(0) == 0, Z(0) == 0))], label="base n=0")
    step = Query(
        E(c) * S(n + 1) == Z(n + 1),
        [
            ("induction hypothesis", E(c) * S(n) == Z(n)),
            ("def sums at n+1", z3.And(S(n + 1) == S(n) + E(x(n) - c), Z(n + 1) == Z(n) + E(x(n)))),
            *([("exp lemma", _lemma(E, x(n), c))] if lemma else []),
        ],
        inputs={"n": n, "c": c},
        label="step n -> n+1",
    )
    return [base, step] if lemma else [step]


def online_queries(rescale: bool = True) -> list[Query]:
    """Online softmax state (m, l, acc) after n scores s_i with values v_i. Invariant, for all n:
        l exp(m) = S(n) = sum_i exp(s_i),   acc exp(m) = V(n) = sum_i exp(s_i) v_i.
    Update with score s, value v and any new running shift m' (the max in practice):
        l' = l exp(m - m') + exp(s - m'),   acc' = acc exp(m - m') + exp(s - m') v.
    Conclusion: acc / l = V(n) / S(n), the full softmax-weighted sum."""
    E = _exp()
    s0, v0, m1 = z3.Reals("s0 v0 m1")
    l1, acc1 = E(s0 - m1), E(s0 - m1) * v0  # the first update, from the empty state (l = acc = 0)
    base = Query(
        z3.And(l1 * E(m1) == E(s0), acc1 * E(m1) == E(s0) * v0),
        [("exp lemma", _lemma(E, s0, m1))],
        inputs={"s0": s0, "v0": v0, "m1": m1},
        label="base n=1",
    )
    m, m2, l, acc, s, v, S, V = z3.Reals("m m2 l acc s v S V")
    rescale_by = E(m - m2) if rescale else z3.RealVal(1)
    l2 = l * rescale_by + E(s - m2)
    acc2 = acc * rescale_by + E(s - m2) * v
    step = Query(
        z3.And(l2 * E(m2) == S + E(s), acc2 * E(m2) == V + E(s) * v),
        [
            ("invariant at n", z3.And(l * E(m) == S, acc * E(m) == V)),
            ("exp lemmas", z3.And(_lemma(E, m, m2), _lemma(E, s, m2))),
        ],
        inputs={"m": m, "m'": m2, "l": l, "acc": acc, "s": s, "v": v},
        label="step n -> n+1",
    )
    conclusion = Query(
        acc * S == V * l,  # acc / l = V / S, cross-multiplied (l, S > 0)
        [("invariant", z3.And(l * E(m) == S, acc * E(m) == V)), ("exp(m) > 0", E(m) > 0)],
        label="conclusion: acc / l = V / S",
    )
    return [base, step, conclusion] if rescale else [step]


# -- the registry -----------------------------------------------------------------------------------------
REAL = "the reals; exp uninterpreted, positive, exp(a+b) = exp(a) exp(b) instances; MASKED read as -inf"
register(
    Obligation(
        "attention/decode-eq-unrolled",
        "attention",
        "attention_decode for the query at s (cache = keys 0..s) equals row s of attention_unrolled, every real query",
        REAL,
        "B=2, H=4, K=2 (GQA), D=2, T=4; batch row 2 left-padded",
        "spec: layers.attention_decode, attention_unrolled, causal_mask",
        "proved",
        lambda: decode_query(2, 4, 2, 4, 2, [[True] * 4, [False, True, True, True]]),
        law="unrolled-eq-recurrent",
    )
)
register(
    Obligation(
        "attention/decode-eq-unrolled~additive-mask",
        "attention",
        "mutant: a finite additive mask (-1e4) leaks future keys",
        REAL,
        "B=1, H=1, K=1, D=1, T=2",
        "spec: mutated layers.attention_unrolled",
        "refuted",
        lambda: decode_query(1, 1, 1, 2, 1, unrolled=catalogue("additive-mask", "layers.attention_unrolled")),
        mutant_of="attention/decode-eq-unrolled",
        mutant="additive-mask",
    )
)
register(
    Obligation(
        "attention/window-decode-eq-unrolled",
        "attention",
        "sliding window: decode against the cache that keeps the W - 1 newest keys equals row s of attention under "
        "the banded mask (keys s - W + 1 .. s), every real query",
        REAL,
        "W = 1..4, T=7 (3 to 6 positions past the window), B=2 (row 2 left-padded by 2), H=2, K=1 (GQA), D=1",
        "spec: arrays.SeqBuffer (keep = W - 1), layers.attention_decode, attention_unrolled, window_mask",
        "proved",
        lambda: window_queries(4, 7),
        law="sliding-window",
    )
)
register(
    Obligation(
        "attention/window-decode-eq-unrolled~band-off-by-one",
        "attention",
        "mutant: a band that lets each query see W + 1 keys differs from the bounded decode",
        REAL,
        "W = 1..2, T=4",
        "spec: mutated layers.window_mask",
        "refuted",
        lambda: window_queries(2, 4, catalogue("window-band-off-by-one", "layers.window_mask")),
        mutant_of="attention/window-decode-eq-unrolled",
        mutant="window-band-off-by-one",
    )
)
register(
    Obligation(
        "attention/append-keeps-prefix",
        "attention",
        "appending a token never changes the outputs of earlier tokens",
        REAL,
        "H=2, K=1, D=2, T=3 -> 4",
        "spec: layers.attention_unrolled, causal_mask",
        "proved",
        lambda: append_query(2, 1, 3, 2),
        law="causality",
    )
)
register(
    Obligation(
        "attention/append-keeps-prefix~mask-off-by-one",
        "attention",
        "mutant: a causal mask that lets token t see t+1",
        REAL,
        "H=1, K=1, D=1, T=1 -> 2",
        "spec: mutated layers.causal_mask",
        "refuted",
        lambda: append_query(1, 1, 1, 1, catalogue("causal-mask-off-by-one", "layers.causal_mask")),
        mutant_of="attention/append-keeps-prefix",
        mutant="causal-mask-off-by-one",
    )
)
register(
    Obligation(
        "attention/softmax-shift",
        "attention",
        "softmax(x + c) = softmax(x) for every c",
        REAL,
        "n=8",
        "spec: layers.softmax",
        "proved",
        lambda: shift_query(8),
        law="softmax-shift",
    )
)
register(
    Obligation(
        "attention/softmax-shift~dropped-lemma",
        "attention",
        "mutant: without the exp(a+b) lemma, shift invariance is unprovable",
        "the reals; exp uninterpreted and positive only",
        "n=2",
        "spec: layers.softmax",
        "refuted",
        lambda: shift_query(2, exp="positive"),
        mutant_of="attention/softmax-shift",
    )
)
register(
    Obligation(
        "attention/softmax-shift-all-n",
        "attention",
        "exp(c) sum_i exp(x_i - c) = sum_i exp(x_i): softmax shift invariance for all n",
        REAL,
        "all n (induction)",
        "algebra: a sum over a symbolic length",
        "proved",
        shift_all_n_queries,
        law="softmax-shift",
    )
)
register(
    Obligation(
        "attention/softmax-shift-all-n~dropped-lemma",
        "attention",
        "mutant: the step without exp(x - c) exp(c) = exp(x) fails",
        "the reals; exp uninterpreted",
        "all n (step)",
        "algebra",
        "refuted",
        lambda: shift_all_n_queries(lemma=False),
        mutant_of="attention/softmax-shift-all-n",
    )
)
register(
    Obligation(
        "attention/online-softmax",
        "attention",
        "the online softmax update keeps l e^m = sum e^s, acc e^m = sum e^s v, so acc/l is softmax-weighted",
        REAL,
        "all n (induction: base, step, conclusion)",
        "algebra: the spec computes full softmax, the streaming form is a kernel's",
        "proved",
        online_queries,
        law="softmax-shift",
    )
)
register(
    Obligation(
        "attention/online-softmax~no-rescale",
        "attention",
        "mutant: an update that does not rescale by exp(m - m') breaks the invariant",
        REAL,
        "all n (step)",
        "algebra",
        "refuted",
        lambda: online_queries(rescale=False),
        mutant_of="attention/online-softmax",
    )
)
