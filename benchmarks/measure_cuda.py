"""CUDA vs CPU onnxruntime errors on the built-in models, with TF32 off (as lmstep pins it) and on.

    python benchmarks/measure_cuda.py          (needs onnxruntime-gpu and a CUDA GPU)

For each built-in model, 4 random byte prompts: prefill 300 tokens, then 64 steps, on both providers; relative
error of logits and state (tests/runtime_helpers.py's metrics), and whether greedy tokens agree. TF32 on shows
what the pinned setting protects against. Speed on CUDA: ``python benchmarks/bench_runtime.py --provider cuda``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from runtime_helpers import LOGITS_RTOL, STATE_RTOL, rel_err, state_err  # noqa: E402

import lmstep.runtime.loading as loading  # noqa: E402
import lmstep.runtime.session as session  # noqa: E402
from lmstep.runtime.loading import load as load_onnx  # noqa: E402


def errors(name: str) -> dict[str, float]:
    cpu, cuda = load_onnx(name, provider="cpu"), load_onnx(name, provider="cuda")
    rng, worst = np.random.default_rng(0), {"logits": 0.0, "state": 0.0, "greedy differs": 0.0}
    for _ in range(4):
        prompt = rng.integers(32, 127, 300).tolist()
        sc, lc = cpu.prefill(cpu.init_state(), prompt)
        sg, lg = cuda.prefill(cuda.init_state(), prompt)
        worst["logits"] = max(worst["logits"], rel_err(lg, lc))
        for t in rng.integers(32, 127, 64).tolist():
            sc, oc = cpu.step(sc, t, 0.5)
            sg, og = cuda.step(sg, t, 0.5)
            worst["logits"] = max(worst["logits"], rel_err(og.logits, oc.logits))
            worst["greedy differs"] += int(np.argmax(og.logits) != np.argmax(oc.logits))
        worst["state"] = max(worst["state"], state_err(sg, sc))
    return worst


if __name__ == "__main__":
    import argparse

    argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1]).parse_args()
    import onnxruntime

    print(f"onnxruntime {onnxruntime.__version__}, providers {onnxruntime.get_available_providers()}")
    for tf32 in ("0", "1"):
        session.CUDA_OPTIONS["use_tf32"] = tf32
        loading._SESSIONS.clear()  # sessions are shared per folder and provider: open new ones with this option
        print(
            f"CUDA vs CPU, TF32 {'on' if tf32 == '1' else 'off (pinned)'}: "
            "worst relative error over 4 x (prefill 300 + 64 steps)"
        )
        for name in ("tiny-llama", "tiny-gpt2", "tiny-mamba", "tiny-mamba2"):
            w = errors(name)
            arch = name.split("-")[1]
            print(
                f"  {name:11} logits {w['logits']:.1e} (tol {LOGITS_RTOL[arch]:.0e}) | state {w['state']:.1e} "
                f"(tol {STATE_RTOL[arch]:.0e}) | greedy differs at {int(w['greedy differs'])} of 256 steps",
                flush=True,
            )
