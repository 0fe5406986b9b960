"""Step cost vs context length: the spec's append-only KV cache against a copy-on-every-step peer.

The peer is the naive immutable state (``np.concatenate`` of the whole cache per step, docs/design.md §2), run in
the same process on the same model. Attention itself is O(context) per step for both, so the table also
isolates the cache update alone. Usage: python benchmarks/bench_state.py [--model tiny-llama] [--steps 200]
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


def time_appends(buf, rows, steps: int) -> float:
    t0 = time.perf_counter()
    for _ in range(steps):
        _, buf = buf.append(rows)
    return (time.perf_counter() - t0) / steps


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="tiny-llama")
    ap.add_argument("--steps", type=int, default=200)
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


if __name__ == "__main__":
    main()
