"""The laws the spec must obey (lmstep.spec.laws; SPEC.md §1), as plain functions returning a measured error (or a
verdict), so the same function runs on the correct spec in the property tests and on each mutant of the
catalogue (lmstep/mutants.py) in the negative controls. Each function names the law id it checks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from reference_sampler import reference_sample
from tolerances import rel_err, state_err

from lmstep.spec import NP, Model, Sampler, State, rand_for

F32 = np.float32


def step_all(model: Model, tokens: Sequence[int], state=None, rand: float = 0.5):
    """Recurrent form: feed tokens one by one -> (state, logits [T, V])."""
    state = model.init_state() if state is None else state
    rows = []
    for t in tokens:
        state, out = model.step(state, t, rand)
        rows.append(out.logits)
    return state, np.stack(rows) if rows else np.zeros((0, model.vocab_size), np.float32)


def unrolled_vs_recurrent(model: Model, tokens: Sequence[int]) -> float:
    """unrolled-eq-recurrent: logits of the unrolled form vs stepping, and the final states."""
    s_rec, rec = step_all(model, tokens)
    s_unr, unr = model.prefill(model.init_state(), tokens)
    return max(rel_err(unr, rec), state_err(s_unr, s_rec))


def run_chunks(model: Model, tokens: Sequence[int], cuts: Sequence[int], modes: Sequence[bool]):
    """split-invariance driver: split ``tokens`` at ``cuts``; chunk i is prefilled if modes[i] else stepped."""
    bounds = [0, *cuts, len(tokens)]
    state, rows = model.init_state(), []
    for i, (a, b) in enumerate(zip(bounds, bounds[1:])):
        if modes[i % len(modes)]:
            state, logits = model.prefill(state, tokens[a:b])
        else:
            state, logits = step_all(model, tokens[a:b], state)
        rows.append(logits)
    return state, np.concatenate(rows)


def split_invariance(model: Model, tokens: Sequence[int], cuts: Sequence[int], modes: Sequence[bool]) -> float:
    """split-invariance: any partition into chunks gives the logits and final state of one whole prefill."""
    s_ref, ref = model.prefill(model.init_state(), tokens)
    s_split, split = run_chunks(model, tokens, cuts, modes)
    return max(rel_err(split, ref), state_err(s_split, s_ref))


def causality(model: Model, tokens: Sequence[int], extra: Sequence[int]) -> float:
    """causality: appending tokens never changes earlier positions' logits."""
    short = model.unrolled(tokens)
    longer = model.unrolled(list(tokens) + list(extra))
    return rel_err(longer[: len(tokens)], short)


def sliding_window(model: Model, tokens: Sequence[int]) -> list[str]:
    """sliding-window: what breaks the law on ``tokens``, in both forms: a state (after each step, and after one
    prefill) holding other than min(pos, W - 1) keys per layer; the last position's logits changing when every
    token before p - L (W - 1) is replaced (the receptive field of L banded layers), unrolled or stepped."""
    cfg, bad = model.config, []
    keep, reach = cfg.sliding_window - 1, cfg.num_hidden_layers * (cfg.sliding_window - 1)
    state = model.init_state()
    for t in tokens:
        state, _ = model.step(state, t, 0.5)
        if {a.shape[2] for a in state.arrays().values()} != {min(state.pos, keep)}:
            bad.append(f"stepped state at pos {state.pos} holds {state.arrays()['past_key_values.0.key'].shape[2]}")
            break
    if {a.shape[2] for a in model.prefill(model.init_state(), tokens)[0].arrays().values()} != {min(len(tokens), keep)}:
        bad.append("prefilled state is not min(pos, W - 1) keys")
    cut = len(tokens) - 1 - reach  # tokens[:cut] lie outside the last position's receptive field
    if cut > 0:
        altered = [(t + 1) % model.vocab_size for t in tokens[:cut]] + list(tokens[cut:])
        if rel_err(model.unrolled(altered)[-1], model.unrolled(tokens)[-1]) > 0:
            bad.append(f"unrolled logits depend on tokens before position {cut}")
        if rel_err(step_all(model, altered)[1][-1], step_all(model, tokens)[1][-1]) > 0:
            bad.append(f"stepped logits depend on tokens before position {cut}")
    return bad


def trajectory(model: Model, prompt: Sequence[int], steps: int, seed: int) -> tuple[list[int], str, list[int]]:
    """determinism driver: stepped tokens, a digest of every step's logits and state bits, and generate()'s
    tokens (which draw their rands through the model's own rand_for)."""
    import hashlib

    h = hashlib.sha256()
    state, logits = model.prefill(model.init_state(), prompt)
    h.update(logits.tobytes())
    tokens = [model.sample(logits[-1], rand_for(seed, state.pos))]
    for _ in range(steps - 1):
        state, out = model.step(state, tokens[-1], rand_for(seed, state.pos + 1))
        h.update(out.logits.tobytes())
        h.update(state.digest().encode())
        tokens.append(out.token)
    return tokens, h.hexdigest(), model.generate(prompt, steps, seed)


FRESH_PROCESS_CODE = (
    "import json, sys; sys.path.insert(0, 'tests'); import laws; from lmstep.spec import load\n"
    "from lmstep.mutants import MUTANTS\n"
    "mutate = MUTANTS[sys.argv[1]].apply if sys.argv[1] else (lambda m: m)\n"
    "print(json.dumps([laws.trajectory(mutate(load(n, temperature=0.9, top_k=20)), [72, 105, 33], 12, 2**63 + 5)"
    " for n in sys.argv[2:]]))"
)
BUILTINS = ("tiny-llama", "tiny-gpt2", "tiny-mamba", "tiny-mamba2")


def fresh_process_trajectories(hash_seed: str, mutant: str = "", models: Sequence[str] = BUILTINS) -> list:
    """determinism across processes: :func:`trajectory` of built-in models in a fresh interpreter with
    PYTHONHASHSEED set, on the spec or on the catalogue's ``mutant``. The environment is inherited: the machine's
    BLAS settings (OPENBLAS_CORETYPE, thread counts) decide which kernel computes, and bitwise equality holds for
    the same kernel only (SPEC.md §8)."""
    out = subprocess.run(
        [sys.executable, "-c", FRESH_PROCESS_CODE, mutant, *models],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONHASHSEED": hash_seed},
        cwd=Path(__file__).parent.parent,
    )
    return json.loads(out.stdout)


def generation_split_invariance(model: Model, prompt: Sequence[int], steps: int, seed: int, cut: int) -> bool:
    """rand-by-position: the sampled continuation does not depend on how the prompt was consumed."""
    whole = model.generate(prompt, steps, seed)
    state, _ = model.prefill(model.init_state(), prompt[:cut])
    state, _ = step_all(model, prompt[cut:-1], state)
    tok, out = prompt[-1], []
    for _ in range(steps):
        state, step_out = model.step(state, tok, rand_for(seed, state.pos + 1))
        tok = step_out.token
        out.append(tok)
    return out == whole


def fork_law(model: Model, prefix: Sequence[int], a: Sequence[int], b: Sequence[int]) -> bool:
    """states-are-values: two continuations from one state each equal a fresh computation, and the shared state
    is unchanged."""
    base, _ = model.prefill(model.init_state(), prefix)
    snapshot = {k: v.copy() for k, v in base.arrays().items()}
    sa, la = step_all(model, a, base)
    sb, lb = step_all(model, b, base)
    fresh_a, ref_a = step_all(model, list(a), model.prefill(model.init_state(), prefix)[0])
    fresh_b, ref_b = step_all(model, list(b), model.prefill(model.init_state(), prefix)[0])
    unchanged = all(np.array_equal(snapshot[k], v) for k, v in base.arrays().items()) and base.pos == len(prefix)
    return unchanged and sa == fresh_a and sb == fresh_b and np.array_equal(la, ref_a) and np.array_equal(lb, ref_b)


def batched_vs_single(model: Model, tokens: np.ndarray, cuts: Sequence[int]) -> float:
    """The batched model functions on B sequences at once equal each sequence alone: tokens [B, T] consumed as a
    batch by ``forward`` up to cuts[0], ``forward`` again from the carried batched state up to cuts[1], then
    ``decode`` one column at a time; every row's logits and final state vs ``model.prefill`` of that row."""
    m, cfg, w = model.module, model.config, model.weights
    b, t = tokens.shape
    positions = np.broadcast_to(np.arange(t, dtype=np.int64), (b, t))
    cache, rows = m.empty_cache(cfg, b), []
    for lo, hi in zip([0, *cuts], [*cuts, t]):
        if lo < hi and hi <= cuts[-1]:
            logits, cache = m.forward(NP, cfg, w, tokens[:, lo:hi], positions[:, lo:hi], cache)
            rows.append(logits)
    for i in range(cuts[-1], t):
        logits, cache = m.decode(NP, cfg, w, tokens[:, i], positions[:, i], cache)
        rows.append(logits[:, None])
    batched, states = np.concatenate(rows, axis=1), State(model.arch, t, cache).arrays()
    worst = 0.0
    for i in range(b):
        s, single = model.prefill(model.init_state(), tokens[i].tolist())
        worst = max(
            worst, rel_err(batched[i], single), *(rel_err(states[k][i : i + 1], v) for k, v in s.arrays().items())
        )
    return worst


def batch_invariance(model: Model, seqs: Sequence[Sequence[int]]) -> float:
    """batch-invariance: sequences of different lengths, left-padded into one batch and run by one forward call
    with a key mask hiding the padding (SPEC.md §4), against each sequence alone (attention models)."""
    T = max(len(s) for s in seqs)
    toks = np.array([[0] * (T - len(s)) + list(s) for s in seqs], np.int64)
    positions = np.array([[0] * (T - len(s)) + list(range(len(s))) for s in seqs], np.int64)
    real = np.array([[False] * (T - len(s)) + [True] * len(s) for s in seqs])
    cache = model.module.empty_cache(model.config, len(seqs))
    logits, _ = model.module.forward(NP, model.config, model.weights, toks, positions, cache, real)
    return max(rel_err(logits[i, T - len(s) :], model.unrolled(s)) for i, s in enumerate(seqs))


def sampler_agreement(model: Model, prompt: Sequence[int], steps: int, seed: int) -> bool:
    """sampler: every token step() samples is the independent reference's token for its logits and rand."""
    state, _ = model.prefill(model.init_state(), prompt)
    token, s = prompt[-1], model.sampler
    for _ in range(steps):
        rand = rand_for(seed, state.pos + 1)
        state, out = model.step(state, token, rand)
        if out.token != reference_sample(out.logits, rand, s.temperature, s.top_k, s.top_p):
            return False
        token = out.token
    return True


# -- the sampler laws of SPEC.md §3 on one draw ------------------------------------------------------------
def ranks(z, s: Sampler):
    """Descending order of z / T with ties by lower index, the kept-prefix size m, e and c (float32)."""
    y = z / F32(s.temperature if s.temperature else 1.0)
    order = sorted(range(len(z)), key=lambda i: (-float(y[i]), i))
    ys = np.array([y[i] for i in order], np.float32)
    k = len(z) if s.top_k == 0 else min(s.top_k, len(z))
    e = np.where(np.arange(len(z)) < k, np.exp(ys - ys[0]), F32(0)).astype(np.float32)
    return order, k, e, np.cumsum(e, dtype=np.float32)


# A violation message of check_laws -> the law it breaks.
VIOLATED = {
    "greedy chose": "sampler-greedy",
    "outside the kept set": "sampler-keep-set",
    "zero-probability": "sampler-no-zero-prob",
    "does not contain target": "sampler-bracket",
}


def check_laws(z, u, s: Sampler, token: int) -> list[str]:
    """Every law of SPEC.md's sampler section that the chosen token must satisfy; returns the violations.
    ``u`` may be 1 (a target at the end of the CDF, where only step 7 decides): then the bracket, which is
    stated for u < 1, is not checked, and the other laws must still hold."""
    if not 0 <= token < len(z):
        return [f"token {token} outside vocabulary"]
    with np.errstate(over="ignore"):
        overflow = s.temperature > 0 and np.isinf((z / F32(s.temperature)).max())  # +inf, or -inf everywhere
    if s.temperature == 0 or overflow:
        top = int(np.flatnonzero(z == z.max())[0])
        return [] if token == top else [f"greedy chose {token}, lowest argmax is {top}"]
    order, k, e, c = ranks(z, s)
    threshold = F32(c[-1] * F32(s.top_p))
    m = k if s.top_p >= 1 else sum(1 for i in range(k) if (c[i - 1] if i else F32(0)) < threshold)
    r, bad = order.index(token), []
    if r >= m:
        bad.append(f"rank {r} outside the kept set (top-k {k}, top-p prefix {m})")
    if e[r] == 0:
        bad.append(f"zero-probability token {token} (rank {r})")
    prev, target = (c[r - 1] if r else F32(0)), F32(F32(u) * c[m - 1])
    if u < 1 and not prev <= target < c[r]:
        bad.append(f"rank {r} bucket [{prev}, {c[r]}) does not contain target {target}")
    return bad


# Draws at the edges the sampler laws are about; the spec passes all of them (test_spec_sampler.py) and every
# sampling mutant of the catalogue fails one for the reason its law names (test_spec_mutants.py).
HARD_CASES = [
    (np.array([1.0, 3.0, 3.0], np.float32), 0.0, Sampler()),  # a tie for the largest logit, greedy
    (np.array([3e38, 1, 0, -1], np.float32), 0.5, Sampler(temperature=1e-30, top_p=0.9)),  # z / T overflows
    (np.array([0.0, 0.0], np.float32), 0.5, Sampler(temperature=1.0)),  # the target exactly on c_0
    (np.array([0.0] * 4, np.float32), 0.9, Sampler(temperature=1.0, top_p=0.5)),  # c_1 exactly on the threshold
    (np.array([3.0, 2.0, 1.0, 0.0], np.float32), 0.99, Sampler(temperature=1.0, top_k=2)),  # a draw near rank k
    (np.array([0.0, -0.5, -1.0, -1.5], np.float32), 0.99, Sampler(temperature=0.5, top_p=0.6)),  # T shrinks top-p
    (np.array([0.0, -200.0], np.float32), 1.0, Sampler(temperature=1.0)),  # u = 1: only step 7 decides
    (np.array([0.0] * 12 + [-200.0], np.float32), 1 - 2**-24, Sampler(temperature=1.0)),  # 12 fl(1/12) < u
]


def sampler_violations(sample, cases=HARD_CASES) -> set[str]:
    """The sampler laws a ``sample`` function (spec/sampler.py's, or a mutant's) breaks on ``cases``: those
    check_laws reports, and "sampler" when the token differs from the independent reference."""
    broken = set()
    for z, u, s in cases:
        with np.errstate(all="ignore"):  # z / T may overflow; the sampler handles it
            token = int(sample(NP, z[None], np.array([u], np.float32), s.temperature, s.top_k, s.top_p)[0])
        broken |= {law for msg in check_laws(z, u, s, token) for key, law in VIOLATED.items() if key in msg}
        if token != reference_sample(z, u, s.temperature, s.top_k, s.top_p):
            broken.add("sampler")
    return broken
