"""Re-measure the unrolled-vs-recurrent error behind tests/tolerances.py::FORMS over random configs.

Usage: python benchmarks/measure_tolerances.py [--examples 400] [--max-len 40]
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
from strategies import models, token_lists  # noqa: E402
from tolerances import FORMS  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--examples", type=int, default=400)
    ap.add_argument("--max-len", type=int, default=40)
    args = ap.parse_args()
    errors: dict[str, list[float]] = {"llama": [], "gpt2": [], "mamba": []}

    @settings(max_examples=args.examples, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(st.data())
    def measure(data):
        model = data.draw(models())
        tokens = data.draw(token_lists(model.vocab_size, 1, args.max_len))
        errors[model.arch].append(laws.unrolled_vs_recurrent(model, tokens))

    measure()
    print(f"{'arch':<6} {'n':>4} {'max rel err':>12} {'p99':>10} {'tolerance':>10} {'margin':>7}")
    for arch, errs in errors.items():
        e = np.array(errs)
        print(
            f"{arch:<6} {len(e):>4} {e.max():>12.2e} {np.quantile(e, 0.99):>10.2e} "
            f"{FORMS[arch]:>10.0e} {FORMS[arch] / e.max():>6.1f}x"
        )


if __name__ == "__main__":
    main()
