"""CUDA vs CPU onnxruntime errors on the built-in models, with TF32 off (as lmstep pins it) and on.

    python benchmarks/measure_cuda.py          (needs onnxruntime-gpu and a CUDA GPU)

For each built-in model, 4 random byte prompts: prefill 300 tokens, then 64 steps, on both providers; relative
error of logits and state (tests/runtime_helpers.py's metrics), and whether greedy tokens agree. TF32 on shows
what the pinned setting protects against. Also prints the unrolled-vs-steps prefill ratio on CUDA.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
import lmstep.runtime.loading as loading  # noqa: E402
import lmstep.runtime.session as session  # noqa: E402
from lmstep.runtime.loading import load as load_onnx  # noqa: E402
from runtime_helpers import LOGITS_RTOL, STATE_RTOL, rel_err, state_err  # noqa: E402


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


def prefill_ratio(name: str, n: int = 256) -> str:
    om = load_onnx(name, provider="cuda")
    tokens = np.random.default_rng(0).integers(32, 127, n).tolist()

    def steps():
        s = om.init_state()
        for t in tokens:
            s, _ = om.step(s, t, 0.5)

    best = {"unrolled": 1e9, "steps": 1e9}
    for _ in range(7):
        for k, fn in (("unrolled", lambda: om.prefill(om.init_state(), tokens)), ("steps", steps)):
            t0 = time.perf_counter()
            fn()
            best[k] = min(best[k], time.perf_counter() - t0)
    return f"unrolled {best['unrolled'] * 1e3:.2f} ms | {n} steps {best['steps'] * 1e3:.1f} ms | {best['steps'] / best['unrolled']:.1f}x"


if __name__ == "__main__":
    import onnxruntime

    print(f"onnxruntime {onnxruntime.__version__}, providers {onnxruntime.get_available_providers()}")
    for tf32 in ("0", "1"):
        session.CUDA_OPTIONS["use_tf32"] = tf32
        loading._SESSIONS.clear()  # sessions are shared per folder and provider: open new ones with this option
        print(f"CUDA vs CPU, TF32 {'on' if tf32 == '1' else 'off (pinned)'}: worst relative error over 4 x (prefill 300 + 64 steps)")
        for name in ("tiny-llama", "tiny-gpt2", "tiny-mamba"):
            w = errors(name)
            arch = name.split("-")[1]
            print(f"  {name:11} logits {w['logits']:.1e} (tol {LOGITS_RTOL[arch]:.0e}) | state {w['state']:.1e} "
                  f"(tol {STATE_RTOL[arch]:.0e}) | greedy differs at {int(w['greedy differs'])} of 256 steps", flush=True)
    session.CUDA_OPTIONS["use_tf32"] = "0"
    loading._SESSIONS.clear()
    print("prefill 256 tokens on CUDA: unrolled graph vs 256 step calls")
    for name in ("tiny-llama", "tiny-gpt2", "tiny-mamba"):
        print(f"  {name:11} {prefill_ratio(name)}", flush=True)
