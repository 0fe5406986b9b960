"""The checker's teeth, measured: for every injected bug, whether `lmstep check` catches it, the length of the
shrunk counterexample, and the time to the first failure and in total. Also the two correct implementations.

Usage: python benchmarks/mutant_catalogue.py [--examples 60] [--markdown]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from lmstep.runtime.check import check, open_impl
from lmstep.runtime.check.mutants import MUTANTS
from lmstep.spec import load


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--examples", type=int, default=60)
    ap.add_argument("--markdown", action="store_true")
    args = ap.parse_args()
    rows = []
    for name, mutant in MUTANTS.items():
        s = mutant.sampler
        model = load(mutant.model, temperature=s.temperature, top_k=s.top_k, top_p=s.top_p)
        r = check(model, mutant.build(model), max_examples=args.examples)
        rows.append(
            (
                name,
                mutant.model,
                "caught" if not r.passed else "MISSED",
                r.failed_law,
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
        r = check(model, impl, max_examples=args.examples)
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
        print("| mutant | model | result | law | counterexample ops | first caught (s) | total (s) | bug |")
        print("|---|---|---|---|---|---|---|---|")
        for n, m, res, law, ops, first, total, bug in rows:
            print(
                f"| {n} | {m} | {res} | {law} | {ops} | "
                f"{'' if first is None else f'{first:.2f}'} | {total:.2f} | {bug} |"
            )
    else:
        for n, m, res, law, ops, first, total, _bug in rows:
            print(
                f"{n:<30} {m:<11} {res:<7} {law:<10} ops {ops:<3} first "
                f"{'-' if first is None else f'{first:.2f}s':<7} total {total:.2f}s"
            )


if __name__ == "__main__":
    main()
