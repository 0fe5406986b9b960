"""The checker's teeth, measured: for every mutant of the catalogue the checker runs (lmstep/mutants.py CHECKED),
whether `lmstep check` catches it, the checker law that did and the law it checks (lmstep.spec.laws), the length of
the shrunk counterexample, and the time to the first failure and in total. Also the two correct implementations.

Usage: python benchmarks/mutant_catalogue.py [--examples 60] [--markdown]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from lmstep.mutants import CHECKED
from lmstep.runtime.check import check, open_impl, parse_level
from lmstep.runtime.check.engines import mutant_impl
from lmstep.runtime.check.lockstep import LAWS
from lmstep.spec import load


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--examples", type=int, default=60)
    ap.add_argument("--markdown", action="store_true")
    args = ap.parse_args()
    rows = []
    for name, mutant in CHECKED.items():
        model = load(mutant.model, **mutant.sampler)
        # at the mutant's level (L0 for bugs within float32 rounding), as tests/test_check_catalogue.py runs it
        r = check(model, mutant_impl(name, model), required=parse_level(mutant.level), max_examples=args.examples)
        ids = LAWS[r.failed_law][0] if r.failed_law in LAWS else ()  # the laws that checker law checks
        law = f"{r.failed_law} ({next((i for i in ids if i in mutant.breaks), ids[0])})" if ids else r.failed_law
        rows.append(
            (
                name,
                mutant.model,
                "caught" if r.counterexample else "MISSED",  # a comparison failed (not a law left unexercised)
                law,
                len(r.counterexample or []),
                r.seconds_to_find,
                r.seconds,
                mutant.bug,
            )
        )
    external = f"cmd:{sys.executable} {Path(__file__).resolve().parent.parent / 'tests' / 'external_impl.py'}"
    for name, impl_spec in (("tiny-llama", "spec"), ("tiny-gpt2", external)):
        model = load(name)
        impl = open_impl(impl_spec, model)
        skip = () if "batch" in impl.capabilities else ("batch",)  # a law it cannot offer, dropped on purpose
        r = check(model, impl, skip_laws=skip, max_examples=args.examples)
        getattr(impl, "close", lambda: None)()
        rows.append(
            (
                "(correct) " + ("spec" if impl_spec == "spec" else "external JSON-lines"),
                name,
                "passes" if r.passed else "FAILS",
                "",
                0,
                None,
                r.seconds,
                "must pass",
            )
        )
    if args.markdown:
        print("| mutant | model | result | caught by (law) | counterexample ops | first caught (s) | total (s) | bug |")
        print("|---|---|---|---|---|---|---|---|")
        for n, m, res, law, ops, first, total, bug in rows:
            print(
                f"| {n} | {m} | {res} | {law} | {ops} | "
                f"{'' if first is None else f'{first:.2f}'} | {total:.2f} | {bug} |"
            )
    else:
        for n, m, res, law, ops, first, total, _bug in rows:
            print(
                f"{n:<30} {m:<11} {res:<7} {law:<36} ops {ops:<3} first "
                f"{'-' if first is None else f'{first:.2f}s':<7} total {total:.2f}s"
            )


if __name__ == "__main__":
    main()
