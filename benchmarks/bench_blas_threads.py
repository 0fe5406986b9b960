"""BLAS threads and the spec's decode speed, on a quiet machine and beside a busy process (runtime/threads.py).

    python benchmarks/bench_blas_threads.py [--quick] [--tokens N] [--rounds R]

The spec's decode (numpy, greedy) of a GPT-2 of the 124M shape (12 layers, width 768, vocabulary 50257; random
weights from the built-in generator, SPEC.md §9) with OpenBLAS' default thread count (one per core) and with one
thread, lmstep's policy. "Loaded" runs one busy process (a Python spin loop) per core but one, as when checks run
beside other work or pytest-xdist workers. The contenders run interleaved, round after round; each number is the
median over the rounds, and every ratio is between numbers of this run.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

from threadpoolctl import threadpool_info, threadpool_limits

from lmstep.spec import builtin, gpt2
from lmstep.spec.model import Model

BUSY = "while True: pass"


def build(quick: bool) -> Model:
    layers, width = (4, 512) if quick else (12, 768)
    cfg = gpt2.Config(
        vocab_size=50257, n_embd=width, n_layer=layers, n_head=width // 64, n_positions=1024, n_inner=4 * width
    )
    return Model("gpt2", cfg, builtin.init_weights("gpt2", cfg, 0), name=f"gpt2-{layers}x{width}")


def ms_per_token(model: Model, state, tokens: int, threads: int) -> float:
    with threadpool_limits(limits=threads, user_api="blas"):
        token, start = 5, time.perf_counter()
        for _ in range(tokens):
            state, out = model.step(state, token, 0.0)
            token = out.token
        return (time.perf_counter() - start) / tokens * 1e3


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("--quick", action="store_true", help="a 4-layer, width-512 model instead of the 124M shape")
    ap.add_argument("--tokens", type=int, default=16, help="decode steps per measurement [16]")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds [3]")
    args = ap.parse_args()

    cores = os.cpu_count() or 1
    default = max((lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"), default=1)
    blas = ", ".join(f"{lib['internal_api']} {lib['version']} ({lib.get('architecture')})" for lib in threadpool_info())
    print(f"{cores} CPUs, load average {os.getloadavg()[0]:.2f}; {blas}; default BLAS threads {default}")
    model = build(args.quick)
    state, _ = model.prefill(model.init_state(), list(range(1, 9)))
    print(f"{model.name}, {args.tokens} greedy decode steps after an 8-token prompt, {args.rounds} rounds")
    contenders = {f"default ({default} threads)": default, "1 thread (lmstep)": 1}
    times: dict[tuple[str, str], list[float]] = {}
    for _ in range(args.rounds):
        for condition in ("quiet", "loaded"):
            busy = [
                subprocess.Popen([sys.executable, "-c", BUSY])
                for _ in range(max(cores - 1, 1) if condition == "loaded" else 0)
            ]
            try:
                time.sleep(0.2 if busy else 0)  # let the busy processes get going
                for name, threads in contenders.items():
                    times.setdefault((condition, name), []).append(ms_per_token(model, state, args.tokens, threads))
            finally:
                for p in busy:
                    p.kill()
                    p.wait()
    med = {k: statistics.median(v) for k, v in times.items()}
    for condition in ("quiet", "loaded"):
        row = " | ".join(f"{name}: {med[(condition, name)]:7.1f} ms/token" for name in contenders)
        print(f"  {condition:6}  {row}")
    d, one = contenders
    print(
        f"default threads / 1 thread: quiet {med[('quiet', d)] / med[('quiet', one)]:.2f}x, "
        f"loaded {med[('loaded', d)] / med[('loaded', one)]:.2f}x (above 1: one thread is faster)"
    )
    print(
        f"loaded / quiet: default threads {med[('loaded', d)] / med[('quiet', d)]:.2f}x, "
        f"1 thread {med[('loaded', one)] / med[('quiet', one)]:.2f}x"
    )


if __name__ == "__main__":
    main()
