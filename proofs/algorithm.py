"""Obligations for the constructed models of lmstep.runtime.algorithms: their weights compute sort and reverse.

Two kinds of evidence (docs/algorithms.md):

* ``algorithm/<name>-every-input``, ``-robust`` (default suite, prompts of up to 6 and 5 symbols) and
  ``-every-input-robust`` (--long: up to max_len = 8): every prompt through the spec's batched unrolled form
  (proofs/exhaustive.py), in float32 and, for robustness, in rounding enclosures. The numbers
  come from numpy; Z3 only states the verdict: the goal is "the prompt (n, x_1..x_n) is not one that failed",
  so a failure comes back as a counterexample with the concrete prompt, like any other refuted law.
* ``algorithm/<name>-structure``: Z3 proves the mechanism layer by layer, on the spec's own layer functions
  (layer_norm, linear, gelu_tanh, attention) run over symbolic reals (proofs/saturation.py), for every index
  and every LayerNorm scale in an interval: which key each head attends to, what each MLP computes.

Every law has a mutant with one weight perturbed (or a near tie) that must come back refuted.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import numpy as np
import z3

from lmstep.runtime.algorithms import Algorithm, compile_algorithm, params_of
from lmstep.runtime.algorithms import sort as sort_construction
from lmstep.runtime.algorithms.kit import HARD, SWITCH
from lmstep.spec import layers

from .exhaustive import Report, check
from .obligations import Obligation, Query, register
from .saturation import SaturationOps

# The default suite keeps to seconds (it shares 2 cores with ~70 other obligations, some with heavy-tailed solver
# times): float32 for all prompts of 0..6 symbols (5461), enclosures for 0..5 (1365). --long covers the bound,
# max_len = 8: 87381 prompts, float32 and enclosures (~5 min each).
LAW = "compiled-algorithm"  # lmstep.spec.laws; SPEC.md §10
EVERY_BOUND = 6
ROBUST_BOUND = 5


@functools.cache
def default(name: str) -> Algorithm:
    """The model ``lmstep compile NAME`` writes with default options (4 symbols, max_len 8)."""
    return compile_algorithm(name)


def perturbed(name: str, param: str, index: tuple[int, ...], value: float) -> Algorithm:
    """``default(name)`` with one weight entry set to ``value``."""
    params = params_of(default(name))
    params[param][index] = value
    return default(name).with_params(params)


# -- exhaustive evaluation as a query -----------------------------------------------------------------------------
def verdict_query(algo: Algorithm, bound: int, robust: bool, stop_after: int | None = None) -> Query:
    """Run the exhaustive check and state its outcome: for all n <= bound and symbols x, (n, x) did not fail."""
    report = check(algo, bound, robust=robust, stop_after=stop_after)
    n = z3.Int("n")
    xs = [z3.Int(f"x{i}") for i in range(bound)]
    domain = [("n in [0, bound]", z3.And(n >= 0, n <= bound))]
    domain += [(f"x{i} a symbol", z3.And(x >= 0, x < algo.symbols)) for i, x in enumerate(xs)]
    failed = [z3.And(n == len(f.prompt), *[xs[i] == v for i, v in enumerate(f.prompt)]) for f in report.failures]
    goal = z3.Not(z3.Or(*failed)) if failed else z3.BoolVal(report.prompts > 0)
    return Query(goal, domain, inputs={"n": n, "x": xs}, label=report.summary())


def replay_prompt(algo: Algorithm) -> Callable[[dict[str, Any]], list[str]]:
    """A counterexample (n, x) replayed through Model.generate (prefill + recurrent steps)."""

    def replay(model: dict[str, Any]) -> list[str]:
        n = int(model["n"])
        xs = [int(v) for v in model["x"][:n]]
        got = algo.model.generate(algo.prompt(xs), len(algo.answer(xs)))
        return [f"prompt {algo.prompt(xs)}: greedy generate gives {got}, the algorithm needs {algo.answer(xs)}"]

    return replay


# -- Z3: the mechanism ------------------------------------------------------------------------------------------
def _residual(c: int, entries: dict[int, Any], fill: Any = 0.0) -> np.ndarray:
    x = np.empty((1, 1, c), dtype=object)
    x[...] = fill
    for d, v in entries.items():
        x[0, 0, d] = v
    return x


def _one(cond: Any) -> Any:
    return z3.If(cond, z3.RealVal(1), z3.RealVal(0))


def _near(a: Any, b: Any, tol: float) -> Any:
    return z3.And(a - b <= tol, b - a <= tol)


def _scores(o: Any, q: Any, k: Any, d: int) -> Any:
    """[1, 1, T, T] attention scores as ``layers.attention_unrolled`` computes them (one head of size d)."""
    q, k = layers.split_heads(o, q, 1, d), layers.split_heads(o, k, 1, d)
    return o.mul(o.matmul(q, o.transpose(k, (0, 1, 3, 2))), d**-0.5)


def _ln_scale(lam: Any, lo: float, hi: float) -> tuple[str, Any]:
    return (f"LayerNorm scale in [{lo}, {hi}]", z3.And(lam >= lo, lam <= hi))


NEAR_ONE = (1 - 2.0**-20, 1 + 2.0**-20)  # float32(sigma0) / sigma0 for a one-hot residual: within 2^-24 of 1


def sort_scale(algo: Algorithm) -> Query:
    """Layer 2's ln_2 on (three one-hot blocks + remaining counts a, 0 <= a_v, sum a <= 1): the LayerNorm output
    is lambda (x - mean) with lambda = w / sqrt(y) (SPEC §4; w the constant ln_2 weight, y = var + eps as the
    spec computes it). Proved: y lies in [(w / hi)^2, (w / lo)^2], i.e. lambda in sort.LAMBDA = [lo, hi]."""
    s, k, layer = algo.stream, algo.symbols, algo.model.weights.layers[1]
    w = np.asarray(layer.ln_2_weight, np.float64)
    if not (np.all(w == w[0]) and not np.any(layer.ln_2_bias)):
        raise ValueError("ln_2 must have one weight for every dimension and no bias for lambda to be a scale")
    o = SaturationOps()
    a = [z3.Real(f"a{v}") for v in range(k)]
    ones = {s.at("tok", 0): 1.0, s.at("flag", 0): 1.0, s.at("io", k): 1.0}
    x = _residual(s.width, ones | {s.at("rem", v): a[v] for v in range(k)})
    layers.layer_norm(o, x, layer.ln_2_weight, layer.ln_2_bias, algo.model.config.layer_norm_epsilon)
    (y, _), lo, hi = o.roots[0], *sort_construction.LAMBDA
    domain = [("0 <= a_v <= 1", z3.And(*[z3.And(v >= 0, v <= 1) for v in a])), ("sum a <= 1", z3.Sum(a) <= 1)]
    goal = z3.And(y >= (w[0] / hi) ** 2, y <= (w[0] / lo) ** 2)
    # The LayerNorm's only definedness check, sqrt(y) != 0, follows from the goal's y >= (w / hi)^2 > 0; the
    # sqrt's own facts (r * r = y) are left out: the goal is about y, and they would make the query nonlinear.
    return Query(goal, domain, inputs={"a": a}, label="ln_2 scale")


def sort_count(algo: Algorithm) -> Query:
    """Layer 2's head on any LayerNorm outputs m_j (symbolic): its output at position t is the mean over j <= t of
    m_j[in_v] - m_j[out_v] (all scores 0: uniform attention), written to rem_v."""
    s, k, cfg = algo.stream, algo.symbols, algo.model.config
    layer = algo.model.weights.layers[1]
    T, C = cfg.n_positions, s.width
    o = SaturationOps()
    m = o.var("m", (1, T, C))
    q, key, v = o.split(layers.linear(o, m, layer.c_attn_weight, layer.c_attn_bias), -1, (C, C, C))
    heads = [layers.split_heads(o, t, 1, C) for t in (q, key, v)]
    visible = layers.causal_mask(o, T, T)
    out = layers.attention_unrolled(o, *heads, visible, 1, 1, C)
    out = layers.linear(o, layers.merge_heads(o, out), layer.attn_c_proj_weight, layer.attn_c_proj_bias)
    goals = []
    for t in range(T):
        for sym in range(k):
            values = [m[0, j, s.at("io", sym)] - m[0, j, s.at("io", k + sym)] for j in range(t + 1)]
            goals.append(out[0, t, s.at("rem", sym)] * (t + 1) == z3.Sum(values))
    return Query(z3.And(*goals), o.facts, o.checks, label="uniform counting head")


def sort_readout(algo: Algorithm, token: int) -> Query:
    """Layer 2's MLP after LayerNorm (lambda x - nu, lambda in sort.LAMBDA, any nu) with the current ``token``
    and remaining counts r_v = lambda a_v, a_v = 0 or 1/(2 max_len + 2) <= a_v <= 1: the tok block it leaves
    scores the smallest v with a_v > 0 (EOS if none) at least 0.99 above every other token."""
    s, k, cfg = algo.stream, algo.symbols, algo.model.config
    layer = algo.model.weights.layers[1]
    o = SaturationOps()
    lam, nu = z3.Real("lambda"), z3.Real("nu")
    r = [z3.Real(f"r{v}") for v in range(k)]
    io = s.at("io", k + token) if token < k else s.at("io", 2 * k)
    ones = [s.at("tok", token), s.at("flag", 0), io]
    x = _residual(s.width, dict.fromkeys(ones, 1.0))
    m = _residual(s.width, {d: lam - nu for d in ones} | {s.at("rem", v): r[v] - nu for v in range(k)}, -nu)
    hidden = layers.gelu_tanh(o, layers.linear(o, m, layer.c_fc_weight, layer.c_fc_bias))
    after = o.add(x, layers.linear(o, hidden, layer.mlp_c_proj_weight, layer.mlp_c_proj_bias))[0, 0]
    score = [after[s.at("tok", u)] for u in range(cfg.vocab_size)]
    lo, hi = sort_construction.LAMBDA
    least = lo / (2 * algo.max_len + 2)
    domain = [_ln_scale(lam, lo, hi)]
    domain += [(f"r{v} = lambda a{v}", z3.Or(x == 0, z3.And(x >= least, x <= hi))) for v, x in enumerate(r)]
    goals = []
    for answer in [*range(k), algo.eos]:
        first = z3.And(*[r[u] == 0 for u in range(min(answer, k))], *([r[answer] > 0] if answer < k else []))
        wins = [score[answer] - score[u] >= 0.99 for u in range(cfg.vocab_size) if u != answer]
        goals.append(z3.Implies(first, z3.And(*wins)))
    return Query(z3.And(*goals), o.facts + domain, o.checks, {"lambda": lam, "r": r}, label=f"readout, token {token}")


def sort_structure(algo: Algorithm) -> list[Query]:
    return [sort_scale(algo), sort_count(algo), *[sort_readout(algo, t) for t in [*range(algo.symbols), algo.sep]]]


def reverse_find_sep(algo: Algorithm) -> Query:
    """Layer 1's head: a key with token tau at position j scores HARD (2 [tau = SEP] + [tau = BOS]) within 0.01,
    whatever the query, and its value is lambda * one-hot(j) in the sep block."""
    s, cfg, layer = algo.stream, algo.model.config, algo.model.weights.layers[0]
    C, V, P = s.width, cfg.vocab_size, cfg.n_positions
    o = SaturationOps()
    tau, j = z3.Int("tau"), z3.Int("j")
    lam, nu, lam_q, nu_q = z3.Reals("lambda nu lambda_q nu_q")
    key = {s.at("tok", u): lam * _one(tau == u) - nu for u in range(V)}
    key |= {s.at("pos", i): lam * _one(j == i) - nu for i in range(P)}
    query = {s.at("tok", 0): lam_q - nu_q, s.at("pos", 0): lam_q - nu_q}  # any query: q comes from the bias
    m = np.concatenate([_residual(C, query, -nu_q), _residual(C, key, -nu)], axis=1)
    q, k, v = o.split(layers.linear(o, m, layer.c_attn_weight, layer.c_attn_bias), -1, (C, C, C))
    score = _scores(o, q, k, C)[0, 0, 0, 1]  # query at row 0, key at row 1
    want = HARD * (2 * _one(tau == algo.sep) + _one(tau == algo.bos))
    goal = [_near(score, want, 0.01)]
    goal += [_near(v[0, 1, s.at("sep", i)], lam * _one(j == i), 1e-6) for i in range(algo.max_len + 2)]
    domain = [("tau a token", z3.And(tau >= 0, tau < V)), ("j a position", z3.And(j >= 0, j < P))]
    domain += [_ln_scale(lam, *NEAR_ONE), _ln_scale(lam_q, *NEAR_ONE)]
    return Query(z3.And(*goal), o.facts + domain, o.checks, {"tau": tau, "j": j}, label="layer 1 head")


def reverse_table(algo: Algorithm) -> Query:
    """Layer 1's MLP: from sep = one-hot(s) and pos = one-hot(t) it writes tgt = one-hot(2s - t - 1) when
    1 <= s <= t <= 2s - 1, else one-hot(none), within 1e-4."""
    s, cfg, layer = algo.stream, algo.model.config, algo.model.weights.layers[0]
    N, P = algo.max_len, cfg.n_positions
    o = SaturationOps()
    sep, t = z3.Int("s"), z3.Int("t")
    lam, nu = z3.Real("lambda"), z3.Real("nu")
    entries = {s.at("tok", 0): lam - nu}
    entries |= {s.at("pos", i): lam * _one(t == i) - nu for i in range(P)}
    entries |= {s.at("sep", i): lam * _one(sep == i) - nu for i in range(N + 2)}
    hidden = layers.gelu_tanh(o, layers.linear(o, _residual(s.width, entries, -nu), layer.c_fc_weight, layer.c_fc_bias))
    out = layers.linear(o, hidden, layer.mlp_c_proj_weight, layer.mlp_c_proj_bias)[0, 0]
    target = z3.And(sep >= 1, t >= sep, t <= 2 * sep - 1)
    goal = [_near(out[s.at("tgt", i)], _one(z3.And(target, 2 * sep - t - 1 == i)), 1e-4) for i in range(N + 1)]
    goal.append(_near(out[s.at("tgt", N + 1)], _one(z3.Not(target)), 1e-4))
    domain = [("s in [0, N+1]", z3.And(sep >= 0, sep <= N + 1)), ("t a position", z3.And(t >= 0, t < P))]
    domain.append(_ln_scale(lam, *NEAR_ONE))
    return Query(z3.And(*goal), o.facts + domain, o.checks, {"s": sep, "t": t}, label="target table")


def reverse_pattern(algo: Algorithm) -> Query:
    """Layer 2's head: a query whose tgt is one-hot(m) (within 1e-4) and a key at position j score HARD when
    j = m and 0 otherwise (within 0.1): softmax puts weight 1 on position m (exp(-128) underflows in float32)."""
    s, cfg, layer = algo.stream, algo.model.config, algo.model.weights.layers[1]
    N, P, C = algo.max_len, cfg.n_positions, s.width
    o = SaturationOps()
    mm, j = z3.Int("m"), z3.Int("j")
    lam_q, nu_q, lam_k, nu_k = z3.Reals("lambda_q nu_q lambda_k nu_k")
    eta = [z3.Real(f"eta{i}") for i in range(N + 2)]
    query = {s.at("tgt", i): lam_q * (_one(mm == i) + eta[i]) - nu_q for i in range(N + 2)}
    key = {s.at("pos", i): lam_k * _one(j == i) - nu_k for i in range(P)}
    m = np.concatenate([_residual(C, query, -nu_q), _residual(C, key, -nu_k)], axis=1)
    q, k, _ = o.split(layers.linear(o, m, layer.c_attn_weight, layer.c_attn_bias), -1, (C, C, C))
    score = _scores(o, q, k, C)[0, 0, 0, 1]  # query at row 0, key at row 1
    goal = z3.If(j == mm, score >= HARD - 0.1, _near(score, 0, 0.1))
    domain = [("m in [0, N]", z3.And(mm >= 0, mm <= N)), ("j a position", z3.And(j >= 0, j < P))]
    domain += [_ln_scale(lam_q, *NEAR_ONE), _ln_scale(lam_k, *NEAR_ONE)]
    domain += [(f"|eta{i}| <= 1e-4", _near(e, 0, 1e-4)) for i, e in enumerate(eta)]
    return Query(goal, o.facts + domain, o.checks, {"m": mm, "j": j}, label="layer 2 head")


def reverse_readout(algo: Algorithm) -> Query:
    """Layer 2: the head's value maps the token at m to its answer (symbols to themselves, BOS to EOS) in the out
    block, and the MLP leaves tok = one-hot(answer) within 1e-4, whatever the current token c."""
    s, cfg, layer = algo.stream, algo.model.config, algo.model.weights.layers[1]
    V, C = cfg.vocab_size, s.width
    o = SaturationOps()
    c, u = z3.Int("c"), z3.Int("u")
    lam, nu = z3.Real("lambda"), z3.Real("nu")
    key = _residual(C, {s.at("tok", w): lam * _one(u == w) - nu for w in range(V)}, -nu)
    _, _, v = o.split(layers.linear(o, key, layer.c_attn_weight, layer.c_attn_bias), -1, (C, C, C))
    out_block = layers.linear(o, v, layer.attn_c_proj_weight, layer.attn_c_proj_bias)[0, 0]
    answer = z3.If(u == algo.bos, z3.IntVal(algo.eos), u)
    goal = [_near(out_block[s.at("out", w)], lam * _one(answer == w), 1e-6) for w in range(V)]
    x = {s.at("tok", w): _one(c == w) for w in range(V)} | {s.at("out", w): _one(answer == w) for w in range(V)}
    m = _residual(C, {d: lam * e - nu for d, e in x.items()}, -nu)
    hidden = layers.gelu_tanh(o, layers.linear(o, m, layer.c_fc_weight, layer.c_fc_bias))
    after = o.add(_residual(C, x), layers.linear(o, hidden, layer.mlp_c_proj_weight, layer.mlp_c_proj_bias))[0, 0]
    goal += [_near(after[s.at("tok", w)], _one(answer == w), 1e-4) for w in range(V)]
    domain = [("c a token", z3.And(c >= 0, c < V)), ("u a symbol or BOS", z3.And(u >= 0, u <= algo.bos))]
    domain.append(_ln_scale(lam, *NEAR_ONE))
    return Query(z3.And(*goal), o.facts + domain, o.checks, {"c": c, "u": u}, label="layer 2 readout")


def reverse_structure(algo: Algorithm) -> list[Query]:
    return [reverse_find_sep(algo), reverse_table(algo), reverse_pattern(algo), reverse_readout(algo)]


# -- the registry ---------------------------------------------------------------------------------------------
STRUCTURE = {"sort": sort_structure, "reverse": reverse_structure}
# One entry each, chosen to break the mechanism the structure proof is about:
#   sort: the score g_0 gives symbol 1 flips from -2/K to +2/K, so "1" outranks "0" when both remain;
#   reverse: layer 2's output projection drops the copied symbol 1 (a matrix the zero-sum rule does not touch, so
#   the change is local: every other symbol is still copied).
PERTURB: dict[str, tuple[str, Callable[[Algorithm], tuple[int, ...]], float]] = {
    "sort": ("layers.1.mlp_c_proj_weight", lambda a: (0, a.stream.at("tok", 1)), 2.0 / SWITCH),
    "reverse": ("layers.1.attn_c_proj_weight", lambda a: (a.stream.at("out", 1), a.stream.at("out", 1)), 0.0),
}
# A near tie that float32 still decides correctly but no enclosure can: BOS scores 1 - 2^-14 instead of -1 (sort),
# and 1 - 2^-14 instead of 0 (reverse; BOS is never an answer).
NEAR_TIE: dict[str, tuple[str, Callable[[Algorithm], tuple[int, ...]], float]] = {
    "sort": ("layers.1.mlp_c_proj_bias", lambda a: (a.stream.at("tok", a.bos),), 1.0 - 2.0**-14),
    "reverse": ("layers.1.mlp_c_proj_bias", lambda a: (a.stream.at("tok", a.bos),), 1.0 - 2.0**-14),
}


def _mutant(name: str, table: dict) -> Algorithm:
    param, where, value = table[name]
    return perturbed(name, param, where(default(name)), value)


def _prompts(algo: Algorithm, bound: int) -> str:
    count = sum(algo.symbols**n for n in range(bound + 1))
    return f"all {count} prompts of 0..{bound} symbols over {algo.symbols} symbols (max_len {algo.max_len})"


VIA_EXHAUSTIVE = "spec: gpt2.forward (batched, unrolled) on every prompt; numpy float32"
VIA_ROBUST = VIA_EXHAUSTIVE + " and proofs/rounding.py enclosures"
VIA_STRUCTURE = "spec: layers.layer_norm, linear, gelu_tanh, attention_unrolled on the constructed weights"
ASSUMES_NUMERIC = "the spec's float32 semantics (SPEC.md); Z3 only records the verdict"
ASSUMES_ROBUST = "IEEE rounding per op, sums in any order, exp/tanh within 16 ulp (proofs/rounding.py)"
ASSUMES_STRUCTURE = "the reals; GELU and sqrt by true bounds (proofs/saturation.py); one-hot inputs per block"

for name in ("sort", "reverse"):
    law = f"algorithm/{name}-every-input"
    register(
        Obligation(
            law,
            "algorithm",
            f"greedy decoding of the compiled {name} model gives the algorithm's answer for every prompt",
            ASSUMES_NUMERIC,
            _prompts(default(name), EVERY_BOUND),
            VIA_EXHAUSTIVE,
            "proved",
            lambda name=name: verdict_query(default(name), EVERY_BOUND, robust=False),
            replay=lambda model, name=name: replay_prompt(default(name))(model),
            timeout_s=60,
            law=LAW,
        )
    )
    register(
        Obligation(
            f"{law}~perturbed-weight",
            "algorithm",
            f"mutant: {name} with one weight entry changed gives a wrong answer for some prompt",
            ASSUMES_NUMERIC,
            "the first failing prompt in length-then-lexicographic order",
            VIA_EXHAUSTIVE,
            "refuted",
            lambda name=name: verdict_query(_mutant(name, PERTURB), EVERY_BOUND, False, stop_after=1),
            mutant_of=law,
            replay=lambda model, name=name: replay_prompt(_mutant(name, PERTURB))(model),
        )
    )
    for robust_law, bound, long in (
        (f"algorithm/{name}-robust", ROBUST_BOUND, False),
        (f"algorithm/{name}-every-input-robust", default(name).max_len, True),  # the whole bound: both checks
    ):
        register(
            Obligation(
                robust_law,
                "algorithm",
                f"every greedy decision of {name} wins by more than any float32 evaluation's rounding error",
                ASSUMES_ROBUST,
                _prompts(default(name), bound),
                VIA_ROBUST,
                "proved",
                lambda name=name, bound=bound: verdict_query(default(name), bound, robust=True),
                long=long,
                law=LAW,
            )
        )
        register(
            Obligation(
                f"{robust_law}~near-tie",
                "algorithm",
                f"mutant: {name} with a near tie (float32 still right) is not robust",
                ASSUMES_ROBUST,
                "the first prompt with a decision that is not robust",
                VIA_ROBUST,
                "refuted",
                lambda name=name, bound=bound: verdict_query(_mutant(name, NEAR_TIE), bound, True, stop_after=1),
                mutant_of=robust_law,
            )
        )
    structure = f"algorithm/{name}-structure"
    register(
        Obligation(
            structure,
            "algorithm",
            f"{name}: each head attends where the construction says and each MLP computes its table",
            ASSUMES_STRUCTURE,
            "every index (token, position, SEP position, count vector) and LayerNorm scale in the stated interval",
            VIA_STRUCTURE,
            "proved",
            lambda name=name: STRUCTURE[name](default(name)),
            timeout_s=120,
            law=LAW,
        )
    )
    register(
        Obligation(
            f"{structure}~perturbed-weight",
            "algorithm",
            f"mutant: {name} with the perturbed weight breaks the mechanism",
            ASSUMES_STRUCTURE,
            "as the law",
            VIA_STRUCTURE,
            "refuted",
            lambda name=name: STRUCTURE[name](_mutant(name, PERTURB))[::-1],  # the readouts it breaks come last
            mutant_of=structure,
            timeout_s=120,
        )
    )


def report_of(name: str, bound: int | None = None, robust: bool = True) -> Report:
    """The exhaustive report for the default model (for docs and tests)."""
    return check(default(name), bound, robust=robust)
