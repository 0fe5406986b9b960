"""Measure the checker's per-comparison bound (spec/conformance.py FACTOR, FLOOR; SPEC.md §8) against every correct
implementation we have and against the bug classes it must catch.

For every comparison a quick check makes (the coverage run to position 512 and the explored runs), the checker
knows the spec's own float32 error on that quantity, e64 = rel_err(spec float32, spec float64), and its bound,
max(FLOOR, FACTOR * e64). This prints, per architecture and checker law:

- the spec's e64 distribution (median, p99, max): what float32 rounding alone costs the spec;
- per correct implementation (onnxruntime CPU, tests/external_impl.py over JSON lines, the batched engine with
  immutable and with mutable sessions, transformers on the checkpoint fixtures when torch is installed):
  its error / bound, median and worst over every comparison of several seeds (worst < 1 passes; 1 / worst is
  the margin);
- per numeric bug class of the catalogue (eps placement, a constant wrong in its third digit, on each
  architecture): error / bound over the comparisons of one coverage run, the worst and the share above 1.

Usage: python benchmarks/measure_bounds.py [--seeds 3] [--quick] [--markdown]
"""

from __future__ import annotations

import argparse
import collections
import sys
from pathlib import Path

import numpy as np

from lmstep.mutants import MUTANTS
from lmstep.runtime.check import check, coverage, open_impl
from lmstep.runtime.check.driver import Driver
from lmstep.runtime.check.engines import ENGINES, mutant_impl
from lmstep.runtime.check.levels import Level
from lmstep.runtime.check.lockstep import Executor
from lmstep.runtime.check.recorder import Recorder
from lmstep.runtime.threads import apply_policy
from lmstep.spec import load
from lmstep.spec.conformance import CEILING, FACTOR, FLOOR, STATE_FACTOR

ROOT = Path(__file__).resolve().parent.parent
EXTERNAL = f"cmd:{sys.executable} {ROOT / 'tests' / 'external_impl.py'}"
NUMERIC_BUGS = [n for n, m in MUTANTS.items() if m.kind == "numerics" and m.checked and m.conforms_at is None]
LOGITS = ("unrolled", "split", "recurrent", "fork", "batch")


class Collect:
    """Every numeric grade (law, err, bound, e64) a check makes, through Recorder.grade."""

    def __init__(self, raising: bool = True):
        self.rows: list[tuple[str, float, float, float]] = []
        self.raising = raising

    def __enter__(self) -> Collect:
        self.original = Recorder.grade
        collect = self

        def grade(rec, law, g, where, seen):
            if law in LOGITS + ("state",) and g.bound > 0 and np.isfinite(g.err):
                collect.rows.append((law, g.err, g.bound, g.wide_err))
            if collect.raising:
                collect.original(rec, law, g, where, seen)

        Recorder.grade = grade
        return self

    def __exit__(self, *exc) -> None:
        Recorder.grade = self.original


def implementations(quick: bool) -> list[tuple[str, str, object]]:
    """(label, model name or folder, impl factory(model)) for every correct implementation available."""
    out: list[tuple[str, str, object]] = []
    for name in ("tiny-llama", "tiny-gpt2", "tiny-mamba", "tiny-mistral"):
        out.append(("onnxruntime CPU", name, lambda m: open_impl("onnx", m, provider="cpu")))
        if name != "tiny-mistral":  # the external example implements the three architectures without a window
            out.append(("external JSON-lines", name, lambda m: open_impl(EXTERNAL, m)))
        if name != "tiny-mamba":
            out.append(("batched (immutable)", name, lambda m: ENGINES["batched"](m, "batched")))
            out.append(("batched (mutable)", name, lambda m: ENGINES["mutable-batched"](m, "batched")))
    try:
        import torch  # noqa: F401
        import transformers  # noqa: F401
    except ImportError:
        print("(transformers rows skipped: pip install -e '.[hf]')", file=sys.stderr)
        return out
    fixtures = ROOT / "tests" / "fixtures" / "hf"
    names = (
        ["llama-gqa-theta-sharded", "gpt2-base"]
        if quick
        else [
            "llama-gqa-theta-sharded",
            "llama-mqa-headdim-bias-bf16",
            "llama-mha-tied",
            "gpt2-base",
            "gpt2-ninner-bf16",
        ]
    )
    for name in names:
        out.append(("transformers", str(fixtures / name), lambda m: open_impl("hf", m)))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="one seed, fewer fixtures")
    ap.add_argument("--markdown", action="store_true")
    args = ap.parse_args()
    apply_policy()  # one BLAS thread, as `lmstep check` runs the spec (runtime/threads.py)
    seeds = 1 if args.quick else args.seeds
    print(
        f"FACTOR = {FACTOR:g} (state {STATE_FACTOR:g}), FLOOR = {FLOOR:.3g}, CEILING = {CEILING:g}; "
        "ratio = error / min(CEILING, max(FLOOR, factor * e64))\n"
    )
    e64: dict[tuple[str, str], list[float]] = collections.defaultdict(list)
    impl_rows = []
    for label, name, factory in implementations(args.quick):
        model = load(name)
        rows, ok = [], True
        for seed in range(seeds):
            impl = factory(model)
            try:
                with Collect() as c:
                    skip = [] if "batch" in impl.capabilities else ["batch"]
                    r = check(model, impl, skip_laws=skip, seed=seed)
            finally:
                getattr(impl, "close", lambda: None)()
            ok = ok and r.passed
            rows += c.rows
            if not r.passed:
                print(f"  {label} on {name} seed {seed}: {r.message}", file=sys.stderr)
        arch = Path(name).name if name.startswith("tiny-") else model.arch
        for law, _, _, w in rows:
            e64[(arch, law)].append(w)
        ratios = np.array([err / b for _, err, b, _ in rows])
        impl_rows.append((label, Path(name).name, len(rows), ok, float(np.median(ratios)), float(ratios.max())))
        print(
            f"{label:22} {Path(name).name:28} n={len(rows):5} {'pass' if ok else 'FAIL'} "
            f"ratio median {np.median(ratios):.3f} max {ratios.max():.3f}",
            flush=True,
        )
    print()
    e64_rows = []
    for (arch, law), ws in sorted(e64.items()):
        w = np.array(ws)
        factor = STATE_FACTOR if law == "state" else FACTOR
        row = (arch, law, len(w), np.median(w), np.quantile(w, 0.99), w.max(), factor, np.mean(w * factor < FLOOR))
        e64_rows.append(row)
        print(
            f"spec e64 {arch:12} {law:9} n={len(w):6} median {row[3]:.2g} p99 {row[4]:.2g} max {row[5]:.2g}; "
            f"factor {factor:g}, at the FLOOR {row[7]:.0%}"
        )
    print()
    bug_rows = []
    for name in NUMERIC_BUGS:
        mutant = MUTANTS[name]
        model = load(mutant.model)
        with Collect(raising=False) as c:
            rec = Recorder(Level.L1)
            rec.new_run()
            coverage.run(Driver(Executor(model, mutant_impl(name, model), rec.grade), rec), coverage.DEPTH["quick"])
        ratios = np.array([err / b for _, err, b, _ in c.rows])
        bug_rows.append((name, mutant.model, float(ratios.max()), float(np.mean(ratios > 1)), float(np.median(ratios))))
        print(
            f"bug {name:28} {mutant.model:10} ratio max {ratios.max():9.3g} median {np.median(ratios):7.3g} "
            f"above 1: {np.mean(ratios > 1):.0%} of {len(ratios)}",
            flush=True,
        )
    if args.markdown:
        print("\n| model | law | comparisons | spec e64 median | p99 | max | factor | bound at the FLOOR |")
        print("|---|---|---|---|---|---|---|---|")
        for arch, law, n, med, p99, mx, factor, floor in e64_rows:
            print(f"| {arch} | {law} | {n} | {med:.2g} | {p99:.2g} | {mx:.2g} | {factor:g} | {floor:.0%} |")
        print("\n| implementation | model | comparisons | result | error / bound, median | worst | margin |")
        print("|---|---|---|---|---|---|---|")
        for label, name, n, ok, med, worst in impl_rows:
            verdict = "passes" if ok else "FAILS"
            print(f"| {label} | {name} | {n} | {verdict} | {med:.3f} | {worst:.3f} | {1 / worst:.1f}x |")
        print("\n| bug | model | worst error / bound | comparisons above the bound | median |")
        print("|---|---|---|---|---|")
        for name, m, worst, share, med in bug_rows:
            print(f"| {name} | {m} | {worst:.3g} | {share:.0%} | {med:.3g} |")


if __name__ == "__main__":
    main()
