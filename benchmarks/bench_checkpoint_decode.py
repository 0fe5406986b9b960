"""Greedy decode speed of the spec (``Model.generate``: one prefill, then ``Model.step`` per token) beside
transformers' ``generate`` on the same weights, loaded by each from the same checkpoint folder, in one run.

    pip install -e '.[hf]'
    python benchmarks/bench_checkpoint_decode.py                 # llama + gpt2, ~1M and ~27M parameters
    python benchmarks/bench_checkpoint_decode.py --threads 2 --steps 128 --arch llama

The models are random (tools/hf_random.py), saved with save_pretrained to a temporary folder. Both sides run
float32 on the CPU with the same number of threads: numpy's BLAS through the *_NUM_THREADS variables (set
before numpy is imported), torch through torch.set_num_threads. Each measurement is the best of --repeat runs
(the two sides taking turns) after one warm-up, and both sides must produce the same greedy tokens (else the
comparison is void and the row says so).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

SIZES = {  # name -> per-architecture config
    "~1M": {
        "llama": dict(
            vocab_size=1024,
            hidden_size=128,
            intermediate_size=344,
            num_hidden_layers=4,
            num_attention_heads=4,
            num_key_value_heads=2,
            max_position_embeddings=1024,
        ),
        "gpt2": dict(vocab_size=1024, n_embd=128, n_layer=4, n_head=4, n_positions=1024),
        "mamba": dict(vocab_size=1024, hidden_size=128, state_size=16, num_hidden_layers=4),
    },
    "~27M": {
        "llama": dict(
            vocab_size=8192,
            hidden_size=512,
            intermediate_size=1376,
            num_hidden_layers=6,
            num_attention_heads=8,
            num_key_value_heads=4,
            max_position_embeddings=1024,
        ),
        "gpt2": dict(vocab_size=8192, n_embd=512, n_layer=8, n_head=8, n_positions=1024),
        "mamba": dict(vocab_size=8192, hidden_size=512, state_size=16, num_hidden_layers=12),
    },
}


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--arch", nargs="+", default=["llama", "gpt2"], choices=["llama", "gpt2", "mamba"])
    p.add_argument("--steps", type=int, default=64, help="new tokens per generation")
    p.add_argument("--prompt-len", type=int, default=8)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeat", type=int, default=5)
    return p.parse_args()


def main() -> None:
    args = parse()
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(args.threads)
    import numpy as np
    import torch
    import transformers

    sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tools"))
    from hf_random import build

    from lmstep.spec import load

    torch.set_num_threads(args.threads)
    print(
        f"# torch {torch.__version__}, transformers {transformers.__version__}, numpy {np.__version__}, "
        f"{args.threads} thread(s), greedy, prompt {args.prompt_len} tokens + {args.steps} new, best of {args.repeat}"
    )
    print("| arch | size | params | spec tok/s | transformers tok/s | spec / transformers |")
    print("|---|---|---:|---:|---:|---:|")
    for size, by_arch in SIZES.items():
        for arch in args.arch:
            with tempfile.TemporaryDirectory() as tmp:
                model = build(arch, 0, **by_arch[arch], bos_token_id=None, eos_token_id=None, pad_token_id=None)
                n_params = sum(p.numel() for p in model.parameters())
                model.save_pretrained(tmp)
                del model
                ours = load(tmp)
                ref = transformers.AutoModelForCausalLM.from_pretrained(tmp, dtype=torch.float32).eval()
                prompt = np.random.default_rng(0).integers(0, ours.vocab_size, args.prompt_len).tolist()

                def run_spec(ours=ours, prompt=prompt) -> list[int]:
                    return ours.generate(prompt, args.steps)

                def run_hf(ref=ref, prompt=prompt) -> list[int]:
                    with torch.no_grad():
                        out = ref.generate(
                            torch.tensor([prompt]),
                            attention_mask=torch.ones(1, len(prompt), dtype=torch.long),
                            max_new_tokens=args.steps,
                            min_new_tokens=args.steps,
                            do_sample=False,
                            eos_token_id=None,
                            pad_token_id=0,
                        )
                    return out[0, len(prompt) :].tolist()

                (t_spec, tokens_spec), (t_hf, tokens_hf) = best_of_interleaved([run_spec, run_hf], args.repeat)
                same = "" if tokens_spec == tokens_hf else "  (greedy tokens DIFFER: comparison void)"
                spec_rate, hf_rate = args.steps / t_spec, args.steps / t_hf
                print(
                    f"| {arch} | {size} | {n_params / 1e6:.2f}M | {spec_rate:.0f} | {hf_rate:.0f} | "
                    f"{spec_rate / hf_rate:.2f} |{same}",
                    flush=True,
                )


def best_of_interleaved(fns, repeat: int) -> list[tuple[float, list[int]]]:
    """(best time, result) per function. The functions take turns, so on a shared machine both sides see the
    same background load; the minimum is the run least disturbed by it."""
    results = [fn() for fn in fns]  # warm-up: first-call allocations, lazy imports, caches
    best = [float("inf")] * len(fns)
    for _ in range(repeat):
        for i, fn in enumerate(fns):
            t0 = time.perf_counter()
            results[i] = fn()
            best[i] = min(best[i], time.perf_counter() - t0)
    return list(zip(best, results))


if __name__ == "__main__":
    main()
