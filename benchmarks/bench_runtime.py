"""Runtime benchmarks, every ratio measured side by side in this one run (CPU, 1 thread everywhere).

    python benchmarks/bench_runtime.py [--quick] [--provider cpu|cuda]

1. decode tokens/s, greedy, 128 new tokens after a 16-byte prompt: onnxruntime step graph vs the numpy spec
   vs transformers' generate on the same weights (optional peer: needs the `hf` extra; goal >= 3x transformers);
2. prefill of 256 tokens: one call of the unrolled graph vs 256 calls of the step graph (goal >= 10x);
3. per-step time at context 64 vs 2048 (state is never copied on the host; what grows is attention itself and
   the graph's Concat of the cache).
The contenders of each comparison run interleaved, round after round, and each time is the minimum over the
rounds: the machine is shared, and interleaving makes a disturbance hit all contenders alike.
"""

from __future__ import annotations

import os
import sys
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
warnings.filterwarnings("ignore")
os.environ.setdefault("OMP_NUM_THREADS", "1")

from lmstep.runtime.loading import load as load_onnx  # noqa: E402
from lmstep.spec import load  # noqa: E402

QUICK, PROVIDER, REPEATS, NEW = False, "cpu", 7, 128  # set from the command line in main()
PROMPT = list(b"The quick brown ")


def compare(fns: dict, repeats: int = REPEATS) -> dict[str, float]:
    """Minimum seconds per contender over ``repeats`` interleaved rounds."""
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return {k: min(v) for k, v in times.items()}


def transformers_peer(model):
    try:
        import torch
        from hf_peer import to_transformers
    except ImportError as err:
        print(f"  transformers peer skipped: {err} (pip install -e '.[hf]')")
        return None
    torch.set_num_threads(1)
    hf = to_transformers(model)
    ids = torch.tensor([PROMPT])

    def generate():
        with torch.no_grad():
            out = hf.generate(
                ids, max_new_tokens=NEW, min_new_tokens=NEW, do_sample=False, pad_token_id=0, eos_token_id=None
            )
        return out[0, len(PROMPT) :].tolist()

    return generate


def decode(name: str) -> None:
    spec, om = load(name), load_onnx(name, provider=PROVIDER, threads=1)
    tokens = om.generate(PROMPT, NEW)
    assert tokens == spec.generate(PROMPT, NEW), "onnx and spec greedy tokens differ"
    fns = {"onnx": lambda: om.generate(PROMPT, NEW), "spec": lambda: spec.generate(PROMPT, NEW)}
    if PROVIDER != "cpu":  # the same graphs on the CPU provider, for the ratio
        cpu = load_onnx(name, provider="cpu", threads=1)
        assert cpu.generate(PROMPT, NEW) == tokens, f"onnx {PROVIDER} and cpu greedy tokens differ"
        fns["onnx-cpu"] = lambda: cpu.generate(PROMPT, NEW)
    peer = transformers_peer(spec) if PROVIDER == "cpu" else None
    if peer is not None:
        same = peer() == tokens
        fns["transformers"] = peer
    t = compare(fns)
    line = (
        f"  {name:11} onnx {NEW / t['onnx']:6.0f} tok/s | spec "
        f"{NEW / t['spec']:6.0f} tok/s (onnx {t['spec'] / t['onnx']:4.1f}x)"
    )
    if "onnx-cpu" in t:
        line += f" | onnx-cpu {NEW / t['onnx-cpu']:6.0f} tok/s"
    if peer is not None:
        line += (
            f" | transformers {NEW / t['transformers']:5.0f} tok/s (onnx "
            f"{t['transformers'] / t['onnx']:4.1f}x; same tokens: {same})"
        )
    print(line, flush=True)


def prefill(name: str, n: int = 256) -> None:
    om = load_onnx(name, provider=PROVIDER, threads=1)
    tokens = np.random.default_rng(0).integers(32, 127, n).tolist()

    def steps():
        s = om.init_state()
        for t in tokens:
            s, _ = om.step(s, t, 0.5)

    t = compare({"unrolled": lambda: om.prefill(om.init_state(), tokens), "steps": steps})
    t_unrolled, t_steps = t["unrolled"], t["steps"]
    print(
        f"  {name:11} unrolled {t_unrolled * 1e3:7.2f} ms | {n} steps {t_steps * 1e3:7.1f} ms"
        f" | {t_steps / t_unrolled:5.1f}x",
        flush=True,
    )


def per_step(name: str, contexts=(64, 2048), n: int = 64) -> None:
    om = load_onnx(name, provider=PROVIDER, threads=1)
    rng = np.random.default_rng(0)
    fns = {}
    for ctx in contexts:
        state, _ = om.prefill(om.init_state(), rng.integers(32, 127, ctx).tolist())

        def run(state=state):
            s = state
            for t in range(n):
                s, _ = om.step(s, 40 + t, 0.5)

        fns[ctx] = run
    t = compare(fns)
    out = [t[ctx] / n for ctx in contexts]
    ratio = out[1] / out[0]
    print(
        f"  {name:11} per step at context {contexts[0]}: {out[0] * 1e6:6.0f} us"
        f" | {contexts[1]}: {out[1] * 1e6:6.0f} us | {ratio:4.2f}x",
        flush=True,
    )


def parse_args() -> None:
    import argparse

    global QUICK, PROVIDER, REPEATS, NEW
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    ap.add_argument("--quick", action="store_true", help="2 rounds and 32 new tokens instead of 7 and 128")
    ap.add_argument("--provider", choices=["cpu", "cuda"], default="cpu", help="onnxruntime provider [cpu]")
    args = ap.parse_args()
    QUICK, PROVIDER = args.quick, args.provider
    REPEATS, NEW = (2, 32) if QUICK else (7, 128)


if __name__ == "__main__":
    parse_args()
    import onnxruntime

    print(
        f"onnxruntime {onnxruntime.__version__}, provider {PROVIDER}, {os.cpu_count()} CPUs,"
        f" {'quick' if QUICK else 'full'} run"
    )
    print(f"1. decode, greedy, {NEW} new tokens after {len(PROMPT)} prompt tokens")
    for name in ("tiny-llama", "tiny-gpt2", "tiny-mamba", "tiny-mamba2"):
        decode(name)
    print("2. prefill 256 tokens: unrolled graph vs 256 step calls")
    for name in ("tiny-llama", "tiny-gpt2", "tiny-mamba", "tiny-mamba2"):
        prefill(name)
    print("3. per-step time vs context")
    for name in ("tiny-llama", "tiny-gpt2", "tiny-mamba", "tiny-mamba2"):
        per_step(name)
