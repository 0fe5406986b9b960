"""Measure onnxruntime CPU vs numpy spec errors over random models (the numbers behind the tests' tolerances).

    python benchmarks/measure_ort_tolerances.py [examples per arch, default 100] [arch ...]

For each random model (tests/strategies.py) and random token sequence: prefill through model.onnx, then 6
steps through step.onnx; the spec's error metric rel_err(ort, spec) = max|ort - spec| / max(1, max|spec|)
(lmstep.spec.conformance, SPEC.md §8) of logits and of every state tensor.
Also ORT's own unrolled-vs-steps difference. Prints the maxima and 99th percentiles per architecture.
"""

from __future__ import annotations

import sys
import warnings
from collections import defaultdict
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from runtime_helpers import onnx_model, rel_err, state_err  # noqa: E402
from strategies import models  # noqa: E402

warnings.filterwarnings("ignore")
N = 100  # examples per architecture; set from the command line in main()
errors: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))


@st.composite
def cases(draw, arch):
    model = draw(models((arch,)))
    longest = 40 if arch == "mistral" else 24  # Mistral (the llama arch with a window): past windows of up to 16
    tokens = draw(st.lists(st.integers(0, model.vocab_size - 1), min_size=1, max_size=longest))
    steps = draw(st.lists(st.integers(0, model.vocab_size - 1), min_size=6, max_size=6))
    return model, tokens, steps


def measure(arch: str) -> None:
    @settings(max_examples=N, deadline=None, database=None, derandomize=True, suppress_health_check=list(HealthCheck))
    @given(cases(arch))
    def run(case):
        model, tokens, steps = case
        om = onnx_model(model)
        e = errors[arch]
        s, logits = model.prefill(model.init_state(), tokens)
        os_, ologits = om.prefill(om.init_state(), tokens)
        e["prefill logits"].append(rel_err(ologits, logits))
        e["prefill state"].append(state_err(os_, s))
        u = om.init_state()
        for t in steps:
            s, out = model.step(s, t, 0.5)
            os_, oout = om.step(os_, t, 0.5)
            e["step logits"].append(rel_err(oout.logits, out.logits))
        e["step state"].append(state_err(os_, s))
        # ORT unrolled vs ORT repeated steps on the same tokens
        seq = tokens + steps
        _, unrolled = om.prefill(om.init_state(), seq)
        for t in seq:
            u, out = om.step(u, t, 0.5)
        e["ort unrolled vs steps (last logits)"].append(rel_err(out.logits, unrolled[-1]))

    run()


def measure_builtin(name: str) -> None:
    """The built-in models over a long run: errors compound with length (prefill 256 bytes, then 64 steps)."""
    from lmstep.runtime.loading import load as load_onnx
    from lmstep.spec import load

    model, om = load(name), load_onnx(name, provider="cpu")
    rng = np.random.default_rng(0)
    e = errors[name]
    for _ in range(4):
        tokens = rng.integers(32, 127, 256).tolist()
        s, logits = model.prefill(model.init_state(), tokens)
        o, ologits = om.prefill(om.init_state(), tokens)
        e["prefill logits"].append(rel_err(ologits, logits))
        e["prefill state"].append(state_err(o, s))
        for t in rng.integers(32, 127, 64).tolist():
            s, out = model.step(s, t, 0.5)
            o, oout = om.step(o, t, 0.5)
            e["step logits"].append(rel_err(oout.logits, out.logits))
        e["step state"].append(state_err(o, s))


def report(key: str) -> None:
    for what, vals in errors[key].items():
        v = np.array(vals)
        print(f"{key:10} {what:38} max {v.max():.2e}  p99 {np.percentile(v, 99):.2e}  n={len(v)}", flush=True)


def main() -> None:
    import argparse

    global N
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1])
    ap.add_argument("examples", nargs="?", type=int, default=100, help="random models per architecture [100]")
    ap.add_argument(
        "archs",
        nargs="*",
        default=["llama", "gpt2", "mamba", "mistral"],
        help="architectures, and mistral: Llama configs with a sliding window (tests/strategies.py) [all four]",
    )
    args = ap.parse_args()
    N = args.examples
    for arch in args.archs:
        measure(arch)
        report(arch)
    for arch in args.archs:
        measure_builtin(f"tiny-{arch}")
        report(f"tiny-{arch}")


if __name__ == "__main__":
    main()
