"""The laws the spec must obey, as plain functions returning a measured error (or a verdict), so the same
function runs on the correct spec in the property tests and on each deliberately broken variant in the
negative controls."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from tolerances import rel_err, state_err

from lmstep.spec import NP, Model, State, rand_for


def step_all(model: Model, tokens: Sequence[int], state=None, rand: float = 0.5):
    """Recurrent form: feed tokens one by one -> (state, logits [T, V])."""
    state = model.init_state() if state is None else state
    rows = []
    for t in tokens:
        state, out = model.step(state, t, rand)
        rows.append(out.logits)
    return state, np.stack(rows) if rows else np.zeros((0, model.vocab_size), np.float32)


def unrolled_vs_recurrent(model: Model, tokens: Sequence[int]) -> float:
    """Law 2: logits of the unrolled form vs stepping, and the final states."""
    s_rec, rec = step_all(model, tokens)
    s_unr, unr = model.prefill(model.init_state(), tokens)
    return max(rel_err(unr, rec), state_err(s_unr, s_rec))


def run_chunks(model: Model, tokens: Sequence[int], cuts: Sequence[int], modes: Sequence[bool]):
    """Law 3 driver: split ``tokens`` at ``cuts``; chunk i is prefilled if modes[i] else stepped."""
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
    """Law 3: any partition into chunks gives the logits and final state of one whole prefill."""
    s_ref, ref = model.prefill(model.init_state(), tokens)
    s_split, split = run_chunks(model, tokens, cuts, modes)
    return max(rel_err(split, ref), state_err(s_split, s_ref))


def causality(model: Model, tokens: Sequence[int], extra: Sequence[int]) -> float:
    """Law 4: appending tokens never changes earlier positions' logits."""
    short = model.unrolled(tokens)
    longer = model.unrolled(list(tokens) + list(extra))
    return rel_err(longer[: len(tokens)], short)


def trajectory(model: Model, prompt: Sequence[int], steps: int, seed: int) -> tuple[list[int], str]:
    """Law 1 driver: generated tokens plus a digest of every step's logits and state bits."""
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
    return tokens, h.hexdigest()


def generation_split_invariance(model: Model, prompt: Sequence[int], steps: int, seed: int, cut: int) -> bool:
    """The sampled continuation does not depend on how the prompt was consumed (rand is keyed by position)."""
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
    """Law 5: two continuations from one state each equal a fresh computation, and the shared state is unchanged."""
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
