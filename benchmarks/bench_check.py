"""Wall time of the quick check (`lmstep check MODEL --impl spec|onnx`, the defaults: 30 explored runs of 10
operations after the coverage run to position 512) per built-in model, and the coverage it reached: the deepest
position compared, the longest chunk, forks, batches and sampled draws. The issue's target is ~10 s per built-in
model (docs/checking.md records the numbers; README.md the summary). The spec engine is the peer measured in the
same run: an onnx check costs the spec's side plus onnxruntime's, so the ratio onnx/spec is the engine's share.
Opening the onnx engine (export + session) is timed apart from the check. Neither engine declares `batch`, so
each check drops that law as a user must (`--skip-law batch`).

Usage: python benchmarks/bench_check.py [--models tiny-llama ...] [--impls spec onnx] [--repeat 1] [--markdown]
"""

from __future__ import annotations

import argparse
import os
import time

from lmstep.runtime.check import check, open_impl
from lmstep.runtime.commands.check import PROFILES
from lmstep.runtime.threads import apply_policy
from lmstep.spec import load

MODELS = ("tiny-llama", "tiny-gpt2", "tiny-mamba", "tiny-mistral")


def measure(model_name: str, impl_name: str, repeat: int) -> dict:
    model = load(model_name)
    examples, steps, depth = PROFILES["quick"]
    t0 = time.perf_counter()
    impl = open_impl(impl_name, model)
    opened = time.perf_counter() - t0
    skip = [] if "batch" in impl.capabilities else ["batch"]  # what `lmstep check` needs: --skip-law batch
    best, report = float("inf"), None
    try:
        for _ in range(repeat):
            t0 = time.perf_counter()
            report = check(model, impl, max_examples=examples, steps=steps, depth=depth, skip_laws=skip)
            best = min(best, time.perf_counter() - t0)
    finally:
        getattr(impl, "close", lambda: None)()
    cov = report.coverage.values()
    return {
        "model": model_name,
        "impl": impl_name,
        "open_s": opened,
        "check_s": best,
        "passed": report.passed,
        "message": "" if report.passed else report.message.splitlines()[0],
        "runs": report.examples,
        "deepest": max(c["deepest"] for c in cov),
        "longest": max(c["longest"] for c in cov),
        "forks": max(c["forks"] for c in cov),
        "batches": max(c["batches"] for c in cov),
        "draws": max(c["draws"] for c in cov),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="*", default=list(MODELS))
    ap.add_argument("--impls", nargs="*", default=["spec", "onnx"])
    ap.add_argument("--repeat", type=int, default=1, help="report the fastest of this many checks")
    ap.add_argument("--markdown", action="store_true")
    args = ap.parse_args()
    apply_policy()  # one BLAS thread, as `lmstep check` runs the spec (runtime/threads.py)
    print(f"# load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores (the machine may be shared)")
    rows = [measure(m, i, args.repeat) for m in args.models for i in args.impls]
    spec = {r["model"]: r["check_s"] for r in rows if r["impl"] == "spec"}
    if args.markdown:
        print(
            "| model | impl | quick check (s) | vs spec | open (s) | runs | deepest position | longest chunk "
            "| forks | batches | draws | result |"
        )
        print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        ratio = f"{r['check_s'] / spec[r['model']]:.2f}x" if r["model"] in spec else "-"
        result = "pass" if r["passed"] else f"FAIL: {r['message']}"
        if args.markdown:
            print(
                f"| {r['model']} | {r['impl']} | {r['check_s']:.1f} | {ratio} | {r['open_s']:.1f} | {r['runs']} | "
                f"{r['deepest']} | {r['longest']} | {r['forks']} | {r['batches']} | {r['draws']} | {result} |"
            )
        else:
            print(
                f"{r['model']:<13} {r['impl']:<5} check {r['check_s']:6.1f} s ({ratio}) open {r['open_s']:5.1f} s "
                f"runs {r['runs']:<3} deepest {r['deepest']:<5} longest chunk {r['longest']:<5} forks {r['forks']:<3} "
                f"batches {r['batches']:<3} draws {r['draws']:<4} {result}"
            )


if __name__ == "__main__":
    main()
