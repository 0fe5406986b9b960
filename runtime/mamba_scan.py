"""The Mamba scan schedule of the exported unrolled graph (model.onnx): the spec's selective scan
(spec/mamba.py ``selective_scan``, SPEC.md §7) computed in a different order, tuned for onnxruntime's CPU kernels.

Same operator, (a1, b1) . (a2, b2) = (a2 a1, a2 b1 + b2), same elements a_t = exp(A dt_t), b_t = (dt_t u_t) B_t,
different bracketing: a work-efficient pairing scan (Ladner & Fischer 1980; Blelloch 1990, §1.2) for
PAIRING_LEVELS levels, then Hillis & Steele (1986) rounds on the short top, with the carried state entering at the
top of the down-sweep. Over the reals it equals the recurrence (proofs/scan.py proves it for T up to 128); in
float32 it differs from the spec's reference by rounding only (tests/test_mamba_scan.py measures how much).
docs/runtime.md says why each choice is faster on onnxruntime and what it measured.

Written in the spec's op vocabulary, like the models, so the same code runs on numpy (the tests), on the graph
builder (the export) and on Z3 terms (the proofs). It imports the spec only: lmstep.proofs imports it without
onnxruntime.
"""

from __future__ import annotations

import functools
from typing import Any

from lmstep.spec import mamba

# A graph does not know T; its scan is built for up to this many tokens (extra levels and rounds are exact no-ops).
# runtime/onnx_model.py prefills longer prompts in chunks of this size, carrying the state.
MAX_UNROLLED_LEN = 1 << 16
# The scan pairs elements for this many levels (work-efficient, ~12 kernels per level and layer), then finishes
# the at most T / 32 rows left with Hillis-Steele rounds (~5 kernels each): a graph runs all 16 levels or rounds
# whatever T is, and for T = 256 this measured ~1.4x faster on onnxruntime than pairing all the way up.
PAIRING_LEVELS = 5


def forward(
    o: Any, cfg: mamba.Config, w: mamba.Weights, tokens: Any, positions: Any, cache: Any, key_mask: Any = None
) -> tuple[Any, Any]:
    """``mamba.forward`` with this schedule's selective scan: what the exported model.onnx computes."""
    return mamba.forward(o, cfg, w, tokens, positions, cache, key_mask, scan=selective_scan_for(o, tokens))


def selective_scan_for(o: Any, tokens: Any) -> Any:
    """A function with the signature of ``mamba.selective_scan`` that runs this schedule; its index plan depends
    on the length of ``tokens`` [B, T] alone, so it is computed once here for all layers."""
    plan = plan_for(o, tokens)

    def selective_scan(o: Any, u: Any, dt: Any, A: Any, B: Any, C: Any, h0: Any) -> tuple[Any, Any]:
        # The scan runs in layout [B, T, N, E] (state channels last): the same values as the step's [E, N], laid
        # out so that broadcasts run along the long E axis (onnxruntime: ~5x faster than spans of N = 16).
        a_neg = o.transpose(A, (1, 0))  # [N, E]
        # Row 0 is the scan's identity (1, 0), from a zero row of the small [B, T, .] inputs: exp(0 A) = 1 and
        # 0 * 0 = 0 exactly (A finite). The scan asks for rows by index, so the [B, T, N, E] decay and drive are
        # only ever built for the rows its first level reads.
        dtu_pad, dt_pad, b_pad = (o.pad_front(v, 1, 1, 0.0) for v in (o.mul(dt, u), dt, B))

        def elements(index: Any) -> tuple[Any, Any]:
            dtu_i, dt_i, b_i = (o.gather(v, index, axis=1) for v in (dtu_pad, dt_pad, b_pad))
            decay = o.exp(o.mul(a_neg, o.unsqueeze(dt_i, 2)))  # exp(A dt), as the step orders it: [B, rows, N, E]
            drive = o.mul(o.unsqueeze(dtu_i, 2), o.unsqueeze(b_i, -1))  # (dt u) B, as the step orders it
            return decay, drive  # [B, rows, N, E] each

        c_pad = o.pad_front(C, 1, 1, 0.0)

        def contract(index: Any, h: Any) -> Any:  # y = C_t h_t for the elements these rows of h end at
            return o.squeeze(
                o.matmul(o.unsqueeze(o.gather(c_pad, index, axis=1), 2), h), 2
            )  # [B, rows, 1, N] @ [B, rows, N, E]

        y, h_last = scan(o, None, None, o.transpose(h0, (0, 2, 1)), plan, rows=elements, reduce=contract)
        return y, o.transpose(o.squeeze(h_last, 1), (0, 2, 1))  # h_{T-1} as [B, E, N]

    return selective_scan


def plan_for(o: Any, x: Any) -> tuple[list[tuple[Any, ...]], list[Any]]:
    """:func:`scan_plan` for the length of axis 1 of ``x`` (tokens or elements)."""
    return scan_plan(o, o.shape(x, 1), o.static_len(x, 1, MAX_UNROLLED_LEN))


def scan_plan(o: Any, n: Any, bound: int) -> tuple[list[tuple[Any, ...]], list[Any]]:
    """The index vectors of :func:`scan` over n elements: per pairing level (first rows, second rows, shift
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


def scan(o: Any, a: Any, b: Any, h0: Any = None, plan: Any = None, rows: Any = None, reduce: Any = None):
    """Inclusive scan along axis 1 of (a, b) under (a1, b1).(a2, b2) = (a2 a1, a2 b1 + b2): element t of the
    result is (prod_{s<=t} a_s, h_t) with h_t = a_t h_{t-1} + b_t and h_{-1} = h0 (zero when None) - the same
    result as ``mamba._scan`` over the reals, another bracketing in float32.

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
