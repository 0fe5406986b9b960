"""Step cost vs context length: the spec's append-only KV cache against a copy-on-every-step peer.

The peer is the naive immutable state (``np.concatenate`` of the whole cache per step, docs/design.md §2), run in
the same process on the same model. Attention itself is O(context) per step for both, so the table also
isolates the cache update alone.

Second table, a sliding window (tiny-mistral's weights, window --window): the bounded buffer (arrays.SeqBuffer
with keep = W - 1) at position 4096 vs 64, against a windowed peer that copies its W - 1 rows every step and
against the same weights with full attention (whose cache and attention grow with the position); and the memory
the state's stores hold at 4096. Usage: python benchmarks/bench_state.py [--model tiny-llama] [--steps 200]
[--window 64]
"""

from __future__ import annotations

import argparse
import time

import attrs
import numpy as np

from lmstep.spec import load
from lmstep.spec.arrays import SeqBuffer
from lmstep.spec.model import State


@attrs.frozen(eq=False)
class CopyingCache:
    """The peer: an immutable cache that copies everything on every append."""

    data: np.ndarray

    def append(self, rows):
        data = np.concatenate([self.data, rows], axis=2)
        return data, CopyingCache(data)

    def view(self):
        return self.data


@attrs.frozen(eq=False)
class CopyingWindow:
    """The windowed peer: immutable, keeps the last ``keep`` rows by copying them on every append."""

    data: np.ndarray
    keep: int

    def append(self, rows):
        seen = np.concatenate([self.data, rows], axis=2)
        return seen, CopyingWindow(seen[:, :, max(0, seen.shape[2] - self.keep) :].copy(), self.keep)

    def view(self):
        return self.data


def with_copying_cache(state: State) -> State:
    return State(
        state.arch,
        state.pos,
        tuple((CopyingCache(k.view().copy()), CopyingCache(v.view().copy())) for k, v in state.cache),
    )


def time_steps(model, state, steps: int) -> float:
    t0 = time.perf_counter()
    for i in range(steps):
        state, _ = model.step(state, i % 256, 0.5)
    return (time.perf_counter() - t0) / steps


def best_of(n: int, fn, *args) -> float:
    """The fastest of ``n`` runs: on a shared machine the minimum is the least disturbed measurement."""
    return min(fn(*args) for _ in range(n))


def time_appends(buf, rows, steps: int) -> float:
    t0 = time.perf_counter()
    for _ in range(steps):
        _, buf = buf.append(rows)
    return (time.perf_counter() - t0) / steps


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="tiny-llama")
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--window", type=int, default=64, help="the sliding window of the second table [64]")
    args = ap.parse_args()
    model = load(args.model)
    rng = np.random.default_rng(0)
    print(f"model {args.model}, {args.steps} steps per cell, numpy {np.__version__}")
    print(
        f"{'context':>8} {'spec ms/step':>13} {'copying ms/step':>16} {'spec append us':>15} {'copying append us':>18}"
    )
    results = {}
    for ctx in (64, 2048):
        state, _ = model.prefill(model.init_state(), rng.integers(0, model.vocab_size, ctx).tolist())
        spec = time_steps(model, state, args.steps)
        copying = time_steps(model, with_copying_cache(state), args.steps)
        k = state.cache[0][0]
        rows = np.ones(k.shape[:2] + (1,) + k.shape[3:], np.float32)
        fresh = SeqBuffer.from_array(k.view(), axis=2)  # a private buffer so appends stay in place
        app_spec = time_appends(fresh, rows, args.steps)
        app_copy = time_appends(CopyingCache(k.view().copy()), rows, args.steps)
        results[ctx] = (spec, copying, app_spec, app_copy)
        print(f"{ctx:>8} {spec * 1e3:>13.3f} {copying * 1e3:>16.3f} {app_spec * 1e6:>15.2f} {app_copy * 1e6:>18.2f}")
    s64, s2k = results[64], results[2048]
    print(f"step time 2048/64: spec {s2k[0] / s64[0]:.2f}x, copying {s2k[1] / s64[1]:.2f}x")
    print(f"cache append 2048/64: spec {s2k[2] / s64[2]:.2f}x, copying {s2k[3] / s64[3]:.2f}x")
    print(f"at 2048: copying peer / spec = {s2k[1] / s2k[0]:.2f}x per step, {s2k[3] / s2k[2]:.1f}x per append")
    window_table(args.window, args.steps)


def window_table(window: int, steps: int) -> None:
    base = load("tiny-mistral")
    room = attrs.evolve(base.config, max_position_embeddings=8192)  # room for the steps after position 4096
    model = attrs.evolve(base, config=attrs.evolve(room, sliding_window=window))
    full = attrs.evolve(base, arch="llama", config=attrs.evolve(room, sliding_window=None))
    keep, rng = window - 1, np.random.default_rng(1)
    print(
        f"\nsliding window {window} (tiny-mistral's weights; state keeps {keep} keys per layer), {steps} steps per cell"
    )
    head = ("position", "spec ms/step", "copying-window", "full attention", "spec append us", "copying append us")
    print(f"{head[0]:>8} {head[1]:>13} {head[2]:>15} {head[3]:>15} {head[4]:>15} {head[5]:>18}")
    results = {}
    for pos in (64, 4096):
        tokens = rng.integers(0, 256, pos).tolist()
        state, _ = model.prefill(model.init_state(), tokens)
        spec = best_of(5, time_steps, model, state, steps)
        peer = State(
            state.arch, state.pos, tuple(tuple(CopyingWindow(t.view().copy(), keep) for t in p) for p in state.cache)
        )
        copying = best_of(5, time_steps, model, peer, steps)
        grown = best_of(5, time_steps, full, full.prefill(full.init_state(), tokens)[0], steps)
        k = state.cache[0][0]
        rows = np.ones(k.shape[:2] + (1,) + k.shape[3:], np.float32)
        fresh = SeqBuffer.from_array(k.view(), axis=2, keep=keep)
        app_spec = best_of(5, time_appends, fresh, rows, 20 * steps)
        app_copy = best_of(5, time_appends, CopyingWindow(k.view().copy(), keep), rows, 20 * steps)
        results[pos] = (spec, copying, grown, app_spec, app_copy)
        print(
            f"{pos:>8} {spec * 1e3:>13.3f} {copying * 1e3:>15.3f} {grown * 1e3:>15.3f} {app_spec * 1e6:>15.2f} "
            f"{app_copy * 1e6:>18.2f}"
        )
        if pos == 4096:
            held = sum(t.store.data.nbytes for p in state.cache for t in p)
            whole = sum(t.view().nbytes for p in full.prefill(full.init_state(), tokens)[0].cache for t in p)
            print(f"state memory at 4096: {held} bytes in the bounded stores (full attention's cache: {whole} bytes)")
    a, b = results[64], results[4096]
    print(
        f"step time 4096/64: spec {b[0] / a[0]:.2f}x, copying-window {b[1] / a[1]:.2f}x, full attention "
        f"{b[2] / a[2]:.2f}x; append 4096/64: spec {b[3] / a[3]:.2f}x, copying-window {b[4] / a[4]:.2f}x"
    )


if __name__ == "__main__":
    main()
