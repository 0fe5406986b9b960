"""Re-measure the unrolled-vs-recurrent error behind tests/tolerances.py::FORMS over random configs.

Usage: python benchmarks/measure_tolerances.py [--examples 400] [--max-len 129] [--arch mamba] [--long]

For Mamba it also measures, on the same draws, the runtime's scan schedule (lmstep.runtime.mamba_scan, what
model.onnx computes) against the recurrence and against the spec's reference scan. --long adds sequences of
1024 tokens on the built-in models.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
import laws  # noqa: E402
from strategies import ARCHS, LONGEST, models, token_lists  # noqa: E402
from tolerances import FORMS, rel_err, state_err  # noqa: E402

from lmstep.runtime import mamba_scan  # noqa: E402
from lmstep.spec import NP, State, load  # noqa: E402


def schedule_prefill(model, tokens):
    """Model.prefill from the initial state with the runtime's scan schedule instead of the spec's reference."""
    toks = np.array([tokens], np.int64)
    logits, cache = mamba_scan.forward(NP, model.config, model.weights, toks, None, model.init_state().cache)
    return State(model.arch, len(tokens), cache), logits[0]


def mamba_errors(model, tokens) -> dict[str, float]:
    s_rec, rec = laws.step_all(model, tokens)
    s_ref, ref = model.prefill(model.init_state(), tokens)
    s_run, run = schedule_prefill(model, tokens)
    return {
        "mamba": max(rel_err(ref, rec), state_err(s_ref, s_rec)),
        "mamba runtime schedule vs recurrent": max(rel_err(run, rec), state_err(s_run, s_rec)),
        "mamba runtime schedule vs reference": max(rel_err(run, ref), state_err(s_run, s_ref)),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--examples", type=int, default=400)
    ap.add_argument("--max-len", type=int, default=LONGEST)
    ap.add_argument("--arch", action="append", help="only this architecture (repeatable; default all)")
    ap.add_argument("--long", action="store_true", help="also 1024-token sequences on the built-in models")
    args = ap.parse_args()
    errors: dict[str, list[float]] = {}

    @settings(max_examples=args.examples, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(st.data())
    def measure(data):
        model = data.draw(models(tuple(args.arch or ARCHS)))
        tokens = data.draw(token_lists(model.vocab_size, 1, args.max_len))
        found = mamba_errors(model, tokens) if model.arch == "mamba" else {}
        windowed = getattr(model.config, "sliding_window", None) is not None  # Mistral (--arch mistral)
        found.setdefault(
            model.arch + (" with a sliding window" if windowed else ""), laws.unrolled_vs_recurrent(model, tokens)
        )
        for k, v in found.items():
            errors.setdefault(k, []).append(v)

    measure()
    print(f"{'form':<38} {'n':>4} {'max rel err':>12} {'p99':>10} {'median':>10} {'tolerance':>10} {'margin':>7}")
    for name, errs in sorted(errors.items()):
        e, tol = np.array(errs), FORMS[name.split()[0]]
        print(
            f"{name:<38} {len(e):>4} {e.max():>12.2e} {np.quantile(e, 0.99):>10.2e} {np.median(e):>10.2e} "
            f"{tol:>10.0e} {tol / e.max():>6.1f}x"
        )
    if args.long:
        tokens = np.random.default_rng(0).integers(0, 256, 1024).tolist()
        for name in ("tiny-llama", "tiny-gpt2", "tiny-mamba", "tiny-mistral", "tiny-mamba2"):
            model = load(name)
            found = (
                mamba_errors(model, tokens)
                if model.arch == "mamba"
                else {name: laws.unrolled_vs_recurrent(model, tokens)}
            )
            print("1024 tokens: " + ", ".join(f"{k} {v:.2e}" for k, v in found.items()))


if __name__ == "__main__":
    main()
