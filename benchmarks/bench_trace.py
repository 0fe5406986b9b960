"""`lmstep trace` against `lmstep replay` of the same trace: recording should cost about what checking costs.

    python benchmarks/bench_trace.py [--tokens N] [--model NAME]

Both hash every state tensor after every op (the KV cache grows, so both are O(tokens^2) in bytes hashed);
replay also re-runs the model, trace also writes the file. Timed in this process through the CLI's entry point,
interleaved over 2 rounds, minimum of each; prints the trace / replay ratio.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import tempfile
import time
from pathlib import Path

from lmstep.runtime.cli import main


def timed(argv: list[str]) -> float:
    start = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        code = main(argv)
    if code != 0:
        raise SystemExit(f"lmstep {' '.join(argv)} exited {code}")
    return time.perf_counter() - start


def run() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("--tokens", type=int, default=2000, help="tokens generated into the trace [2000]")
    ap.add_argument("--model", default="tiny-llama", help="built-in model [tiny-llama]")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "t.jsonl"
        trace = ["trace", "-m", args.model, "-n", str(args.tokens), "-o", str(path), "--force"]
        times: dict[str, list[float]] = {"trace": [], "replay": []}
        for _ in range(2):
            times["trace"].append(timed(trace))
            times["replay"].append(timed(["replay", str(path)]))
    t, r = min(times["trace"]), min(times["replay"])
    print(f"{args.model}, {args.tokens} tokens: trace {t:.2f} s, replay {r:.2f} s, trace / replay {t / r:.2f}x")


if __name__ == "__main__":
    run()
