"""The checker's teeth, measured: for every mutant of the catalogue the checker runs (lmstep/mutants.py CHECKED),
whether the default quick check (`lmstep check --impl mutant:NAME`: default greedy sampler, 30 runs, coverage run
to position 512) catches it at the mutant's level, the checker law that did and the law it checks
(lmstep.spec.laws), the time to the first failure, and the length of the shrunk counterexample. The positive
control (a float16 KV cache) must pass --level L2 and fail L1; the correct implementations (the spec, the
JSON-lines example tests/external_impl.py) must pass. Exit status 1 if any mutant is missed or a correct
implementation fails. tests/test_check_catalogue.py asserts the same, this prints the numbers (docs/checking.md).

Usage: python benchmarks/mutant_catalogue.py [--examples 30] [--markdown] [--only NAME ...]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from lmstep.mutants import CHECKED
from lmstep.runtime.check import Level, check, open_impl, parse_level
from lmstep.runtime.check.engines import mutant_impl
from lmstep.runtime.check.lockstep import LAWS
from lmstep.runtime.threads import apply_policy
from lmstep.spec import load

EXTERNAL = f"cmd:{sys.executable} {Path(__file__).resolve().parent.parent / 'tests' / 'external_impl.py'}"


def _law(report, breaks) -> str:
    ids = LAWS[report.failed_law][0] if report.failed_law in LAWS else ()  # the laws that checker law checks
    return f"{report.failed_law} ({next((i for i in ids if i in breaks), ids[0])})" if ids else str(report.failed_law)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--examples", type=int, default=30, help="exploration runs (default 30: the quick profile)")
    ap.add_argument("--markdown", action="store_true", help="print a markdown table (docs/checking.md)")
    ap.add_argument("--only", nargs="*", default=None, help="these mutants only")
    args = ap.parse_args()
    apply_policy()  # one BLAS thread, as `lmstep check` runs the spec (runtime/threads.py)
    rows, bad = [], 0
    names = [n for n in CHECKED if args.only is None or n in args.only]
    for name in names:
        mutant = CHECKED[name]
        model = load(mutant.model)  # the default, greedy sampler: the check varies the settings itself
        if mutant.conforms_at is not None:  # a positive control: passes its level, fails the one above
            level = parse_level(mutant.conforms_at)
            at = check(model, mutant_impl(name, model), required=level, skip_laws=["batch"], max_examples=args.examples)
            r = check(model, mutant_impl(name, model), required=Level(level + 1), max_examples=args.examples)
            ok = at.passed and not r.passed
            above = Level(level + 1).name
            result = f"control: {'passes' if at.passed else 'FAILS'} {level.name}, "
            result += f"{'fails' if not r.passed else 'PASSES'} {above}"
        else:
            level = parse_level(mutant.level)
            r = check(model, mutant_impl(name, model), required=level, max_examples=args.examples)
            ok = not r.passed and bool(r.counterexample)
            result = "caught" if ok else "MISSED"
        bad += not ok
        rows.append(
            (
                name,
                mutant.kind,
                mutant.model,
                level.name,
                result,
                _law(r, mutant.breaks),
                r.seconds_to_find,
                r.examples,
                len(r.counterexample or []),
                r.seconds,
                mutant.bug,
            )
        )
        print(
            f"{name:<34} {mutant.kind:<15} {mutant.model:<12} {level.name} {result:<8} {_law(r, mutant.breaks):<40} "
            f"first {'-' if r.seconds_to_find is None else f'{r.seconds_to_find:.2f}s':<7} "
            f"run {r.examples:<3} ops {len(r.counterexample or []):<3} total {r.seconds:.1f}s",
            file=sys.stderr,
            flush=True,
        )
    if args.only is None:
        for model_name, impl_spec in (("tiny-llama", "spec"), ("tiny-gpt2", EXTERNAL)):
            model = load(model_name)
            impl = open_impl(impl_spec, model)
            t0 = time.perf_counter()
            skip = [] if "batch" in impl.capabilities else ["batch"]  # an engine without run_batch drops it
            r = check(model, impl, skip_laws=skip, max_examples=args.examples)
            getattr(impl, "close", lambda: None)()
            if not r.passed:
                print(f"{model_name} {impl_spec}: {r.message}", file=sys.stderr)
            bad += not r.passed
            label = "(correct) " + ("spec" if impl_spec == "spec" else "external JSON-lines")
            rows.append(
                (
                    label,
                    "",
                    model_name,
                    "L1",
                    "passes" if r.passed else "FAILS",
                    "",
                    None,
                    r.examples,
                    0,
                    time.perf_counter() - t0,
                    "must pass",
                )
            )
    if args.markdown:
        print(
            "| mutant | class | model | level | result | caught by checker law (law) | time to catch (s) | in run "
            "| counterexample ops | total (s) |"
        )
        print("|---|---|---|---|---|---|---|---|---|---|")
        for n, kind, m, lvl, res, law, first, run, ops, total, _bug in rows:
            first_s = "" if first is None else f"{first:.2f}"
            print(f"| {n} | {kind} | {m} | {lvl} | {res} | {law} | {first_s} | {run} | {ops} | {total:.1f} |")
    # without --markdown the per-mutant lines above (stderr) are the table
    caught = [r for r in rows if r[4] == "caught"]
    if caught:
        slow = max(caught, key=lambda r: r[6] or 0)
        long = max(caught, key=lambda r: r[8])
        print(
            f"\n{len(caught)} of {sum(1 for n in names if CHECKED[n].conforms_at is None)} mutants caught; "
            f"slowest catch {slow[0]} {slow[6]:.2f} s; longest counterexample {long[0]} {long[8]} ops; "
            f"latest run {max(r[7] for r in caught)} (1 = the coverage run)"
        )
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
