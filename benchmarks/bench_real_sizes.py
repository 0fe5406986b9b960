"""The spec, the onnx runtime and transformers at real sizes, side by side in one run, against the roofline.

    pip install -e '.[hf]'
    python benchmarks/bench_real_sizes.py                         # 124M (GPT-2 small, float32) and 1.1B (bf16)
    python benchmarks/bench_real_sizes.py --sizes 124M --threads 2 --cache /tmp/lmstep-bench

Checkpoints are random (tools/hf_random.py), built once by this script with transformers' save_pretrained
into --cache (never downloaded, never in the repository):
    124M  GPT2LMHeadModel, GPT-2 small's shape (12 layers, 768 wide, vocab 50257), float32, one file
    1.1B  LlamaForCausalLM, TinyLlama-1.1B's shape (22 layers, hidden 2048, intermediate 5632, GQA 32:4,
          vocab 32000), bfloat16, sharded
Every contender runs in its own child process, one after another (so each peak RSS is its own and only one
large model is in memory at a time), with the same number of threads (numpy's BLAS and onnxruntime's
intra-op pool, torch.set_num_threads):
    spec          lmstep.spec.load(folder): weights memory-mapped, bf16 widened per use (spec/stored.py)
    onnx (first)  lmstep.runtime.load(folder) with an empty export cache: export, then the first run
    onnx          the same with the export cached (what every later run pays)
    onnx-plain    the cached export opened the plain way, for comparison: each session reads its own copy of the
                  weights and prepacks its matrices (faster MatMul kernels, 2-3 copies of the weights); not run
                  by default at 1.1B, where it needs ~13 GB
    transformers  AutoModelForCausalLM.from_pretrained(folder, dtype=float32)
Each reports load time, decode ms/token (greedy: [generate(prompt, 1 + N) - generate(prompt, 1)] / N after one
warm-up call, so the prompt's prefill cancels), prefill of --prefill tokens from the empty state, peak RSS
(VmHWM: everything the process touched, mapped files included) and its greedy tokens; all greedy tokens
must be equal (else the row says so).

Roofline: decode must read every weight matrix once per token, so a float32 engine can go no faster than
(float32 bytes read per token) / (memory bandwidth), the bandwidth measured in this run by a numpy streaming
read (np.sum over a 1 GiB buffer, split over the same number of threads), before every contender, the best
of all (the machine may be shared: the best is the least disturbed). Bytes read per token: every
parameter except the rows of embedding tables that a token does not gather (a tied output projection reads
the whole embedding).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
SIZES: dict[str, dict[str, Any]] = {
    "124M": {
        "arch": "gpt2",
        "dtype": "float32",
        "config": dict(vocab_size=50257, n_embd=768, n_layer=12, n_head=12, n_positions=1024),
        "gathered": ["transformer.wpe.weight"],  # wte is also the (tied) output projection: read in full
    },
    "1.1B": {
        "arch": "llama",
        "dtype": "bfloat16",
        "config": dict(
            vocab_size=32000,
            hidden_size=2048,
            intermediate_size=5632,
            num_hidden_layers=22,
            num_attention_heads=32,
            num_key_value_heads=4,
            max_position_embeddings=2048,
            rms_norm_eps=1e-5,
            tie_word_embeddings=False,
        ),
        "gathered": ["model.embed_tokens.weight"],
    },
}
PROMPT_LEN = 8


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--sizes", nargs="+", default=list(SIZES), choices=list(SIZES))
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--steps", type=int, default=16, help="decode steps timed (after one untimed)")
    p.add_argument("--prefill", type=int, default=256, help="prompt length for the prefill timing")
    p.add_argument("--only", nargs="+", help="contenders (default: all; onnx-plain only below 1B parameters)")
    p.add_argument("--cache", default=os.path.join(tempfile.gettempdir(), "lmstep-bench"), help="checkpoints here")
    p.add_argument("--child", help=argparse.SUPPRESS)
    p.add_argument("--folder", help=argparse.SUPPRESS)
    return p.parse_args()


# -- children: one contender each, printing one JSON line -----------------------------------------------------
def child(args: argparse.Namespace) -> None:
    kind, folder = args.child, args.folder
    if kind == "build":
        return build(args.sizes[0], folder)
    if kind == "bandwidth":
        return emit(bandwidth(args.threads))
    prompt, long_prompt = prompts(folder, args.prefill)
    t0 = time.perf_counter()
    if kind == "spec":
        from lmstep.spec import load

        model = load(folder)
        gen, prefill = model.generate, lambda: model.prefill(model.init_state(), long_prompt)
    elif kind in ("onnx", "onnx-first", "onnx-plain"):
        from lmstep.runtime.loading import load as load_onnx

        if kind == "onnx-plain":
            plain_sessions()
        model = load_onnx(folder, provider="cpu", threads=args.threads)
        gen, prefill = model.generate, lambda: model.prefill(model.init_state(), long_prompt)
    else:
        gen, prefill = transformers_model(folder, args.threads, long_prompt)
    loaded = time.perf_counter() - t0
    rss_loaded = current_rss()
    gen(prompt, 1)  # warm-up: the first touch of every mapped weight page, lazy allocations
    times = {}
    for n in (1, 1 + args.steps):
        t = time.perf_counter()
        tokens = gen(prompt, n)
        times[n] = time.perf_counter() - t
    t = time.perf_counter()
    prefill()
    prefill_s = time.perf_counter() - t
    emit(
        {
            "load_s": loaded,
            "rss_loaded": rss_loaded,
            "ms_per_token": 1e3 * (times[1 + args.steps] - times[1]) / args.steps,
            "prefill_s": prefill_s,
            "peak_rss": peak_rss(),
            "tokens": tokens,
        }
    )


def plain_sessions() -> None:
    """Open graphs the way onnxruntime does by default: each session its own weights, prepacked."""
    from lmstep.runtime import session, weights

    def own_copy(self, proto, path, changed=False):
        return (proto.SerializeToString() if changed else str(path)), {}, {}

    weights.SharedWeights.session_graph = own_copy
    shared_options = session.session_options

    def options(threads: int = 1):
        so = shared_options(threads)
        so.add_session_config_entry("session.disable_prepacking", "0")
        return so

    session.session_options = options


def transformers_model(folder: str, threads: int, long_prompt: list[int]):
    import torch
    import transformers

    torch.set_num_threads(threads)
    hf = transformers.AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()

    def gen(prompt: list[int], n: int) -> list[int]:
        with torch.no_grad():
            out = hf.generate(
                torch.tensor([prompt]),
                attention_mask=torch.ones(1, len(prompt), dtype=torch.long),
                max_new_tokens=n,
                min_new_tokens=n,
                do_sample=False,
                eos_token_id=None,
                pad_token_id=0,
            )
        return out[0, len(prompt) :].tolist()

    def prefill() -> None:
        with torch.no_grad():
            hf(torch.tensor([long_prompt]), use_cache=True)

    return gen, prefill


def prompts(folder: str, n: int) -> tuple[list[int], list[int]]:
    import numpy as np

    vocab = json.loads(Path(folder, "config.json").read_text())["vocab_size"]
    rng = np.random.default_rng(0)
    return rng.integers(0, vocab, PROMPT_LEN).tolist(), rng.integers(0, vocab, n).tolist()


def bandwidth(threads: int, gib: int = 1, repeats: int = 5) -> dict[str, float]:
    """Bytes per second of a streaming read: np.sum over ``gib`` GiB of float32, split over ``threads`` threads
    (np.sum releases the GIL), best of ``repeats`` after the buffer is touched once."""
    from concurrent.futures import ThreadPoolExecutor

    import numpy as np

    buf = np.ones((gib << 30) // 4, np.float32)
    parts = np.array_split(buf, threads)
    best = 0.0
    with ThreadPoolExecutor(threads) as pool:
        for _ in range(repeats):
            t = time.perf_counter()
            list(pool.map(np.sum, parts))
            best = max(best, buf.nbytes / (time.perf_counter() - t))
    return {"bytes_per_s": best}


def build(size: str, folder: str) -> None:
    import torch

    sys.path.insert(0, str(HERE.parent / "tools"))
    from hf_random import build as random_model

    spec = SIZES[size]
    model = random_model(spec["arch"], 0, **spec["config"], bos_token_id=None, eos_token_id=None, pad_token_id=None)
    model = model.to(getattr(torch, spec["dtype"]))
    tmp = folder + ".partial"
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp, max_shard_size="1GB")
    os.rename(tmp, folder)
    emit({"built": folder})


def emit(result: dict[str, Any]) -> None:
    print("RESULT " + json.dumps(result), flush=True)


def peak_rss() -> int:
    """This process image's high-water RSS (VmHWM). Not getrusage's ru_maxrss: Linux carries that across exec, so
    a child forked from this (large) parent would report at least the parent's size."""
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmHWM:"))


def current_rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


# -- the parent: build, run each child, print the table -------------------------------------------------------
def run_child(kind: str, folder: str, args: argparse.Namespace, size: str, env: dict[str, str]) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--child", kind, "--folder", folder, "--sizes", size]
    cmd += ["--threads", str(args.threads), "--steps", str(args.steps), "--prefill", str(args.prefill)]
    t = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    if proc.returncode or not lines:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        return {"error": f"exit {proc.returncode}: " + " | ".join(tail)}
    return json.loads(lines[-1][len("RESULT ") :]) | {"wall_s": wall}


def weight_bytes_read(folder: str, gathered: list[str]) -> tuple[int, int]:
    """(float32 bytes of all parameters, float32 bytes decode reads per token) from the checkpoint's headers."""
    from lmstep.spec.safetensors_io import SafetensorsFile

    total = skipped = 0
    for path in sorted(Path(folder).glob("*.safetensors")):
        for name, info in SafetensorsFile(path).tensors.items():
            n = 4 * _prod(info.shape)
            total += n
            if name in gathered:
                skipped += n - n // info.shape[0]  # one row per token
    return total, total - skipped


def _prod(shape: tuple[int, ...]) -> int:
    out = 1
    for d in shape:
        out *= d
    return out


def main() -> None:
    args = parse()
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(args.threads)  # before numpy (children inherit it)
    if args.child:
        return child(args)
    cache = Path(args.cache)
    cache.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    import onnxruntime
    import torch
    import transformers

    print(
        f"# {args.threads} thread(s); onnxruntime {onnxruntime.__version__}, torch {torch.__version__}, "
        f"transformers {transformers.__version__}; greedy decode of {args.steps} tokens after {PROMPT_LEN}, "
        f"prefill {args.prefill}"
    )
    rows = []
    for size in args.sizes:
        spec = SIZES[size]
        folder = str(cache / f"{size}-{spec['arch']}-{spec['dtype']}")
        if not Path(folder).is_dir():
            print(f"# building {folder}", flush=True)
            r = run_child("build", folder, args, size, env)
            if "error" in r:
                sys.exit(f"building the {size} checkpoint failed: {r['error']}")
        disk = sum(p.stat().st_size for p in Path(folder).glob("*.safetensors"))
        f32, read = weight_bytes_read(folder, spec["gathered"])
        print(
            f"# {size}: {disk / 1e9:.2f} GB on disk ({spec['dtype']}), {f32 / 1e9:.2f} GB as float32; decode reads "
            f"{read / 1e9:.2f} GB/token",
            flush=True,
        )
        export_cache = tempfile.mkdtemp(prefix="lmstep-bench-export-", dir=cache)
        results, bandwidths = {}, []
        kinds = args.only or ["spec", "onnx-first", "onnx"] + (["onnx-plain"] if f32 < 2e9 else []) + ["transformers"]
        try:
            for kind in kinds:
                bandwidths.append(run_child("bandwidth", folder, args, size, env)["bytes_per_s"])
                child_env = env | {"LMSTEP_CACHE": export_cache}
                results[kind] = r = run_child(kind, folder, args, size, child_env)
                print(f"#   {kind}: {json.dumps({k: v for k, v in r.items() if k != 'tokens'})}", flush=True)
        finally:
            shutil.rmtree(export_cache, ignore_errors=True)
        bw = max(bandwidths)
        roofline_ms = 1e3 * read / bw
        print(
            f"# {size}: bandwidth {' '.join(f'{b / 1e9:.1f}' for b in bandwidths)} GB/s, best {bw / 1e9:.1f} -> "
            f"roofline {roofline_ms:.1f} ms/token",
            flush=True,
        )
        rows.append((size, disk, f32, roofline_ms, results))
    table(rows, args)


def table(rows: list, args: argparse.Namespace) -> None:
    print()
    print(
        "| size | contender | load s | decode ms/token | x roofline | prefill "
        f"{args.prefill} s | peak RSS GB | RSS / disk | RSS / f32 | tokens |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---|")
    for size, disk, f32, roofline_ms, results in rows:
        ref = results.get("transformers", {}).get("tokens")
        for kind, r in results.items():
            if "error" in r:
                print(f"| {size} | {kind} | {r['error'][:150]} |")
                continue
            same = (
                "reference"
                if kind == "transformers"
                else "(no reference)"
                if ref is None
                else ("= transformers" if r["tokens"] == ref else "DIFFER")
            )
            print(
                f"| {size} | {kind} | {r['load_s']:.1f} | {r['ms_per_token']:.1f} | "
                f"{r['ms_per_token'] / roofline_ms:.2f} | {r['prefill_s']:.2f} | {r['peak_rss'] / 1e9:.2f} | "
                f"{r['peak_rss'] / disk:.2f} | {r['peak_rss'] / f32:.2f} | {same} |"
            )
        print(f"| {size} | roofline | | {roofline_ms:.1f} | 1.00 | | | | | |")


if __name__ == "__main__":
    main()
