"""The engine conformance matrix: every engine lmstep can drive, per model family and setting, checked law by law
against the spec; regenerates docs/engines.md (``--write``) with every finding located (its first divergent
operation and state tensor, from a replay of the shrunk counterexample) and explained.

Rows: onnxruntime (lmstep's export), onnxruntime-genai (its generator API), llama.cpp in process (KV cache f32/f16 x
flash attention off/on, lmstep's sampler or llama.cpp's own chain), llama-cpp-python's OpenAI-compatible server,
transformers (on the committed checkpoint of each family; needs torch) and an independent JSON-lines engine
(tests/external_impl.py, through cmd:). Each row is two checks with the requirement at L3, so every law reports the
level it reaches instead of the run stopping at the first shortfall: a greedy one (all laws), and one sampling at
T=0.8, top-k 40, top-p 0.9 (the sampler). Rows whose engine is not installed are listed as such.

Usage: python benchmarks/engine_matrix.py [--examples 30] [--only ENGINE] [--write docs/engines.md]
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import os
import platform
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import attrs

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures" / "hf"
MODELS = {"llama": "tiny-llama", "gpt2": "tiny-gpt2", "mamba": "tiny-mamba"}
HF_MODELS = {
    "llama": FIXTURES / "llama-gqa-theta-sharded",
    "gpt2": FIXTURES / "gpt2-base",
    "mamba": FIXTURES / "mamba-base",
}
LOGIT_LAWS = ("unrolled", "split", "recurrent", "state", "fork", "batch", "determinism", "causality")
SAMPLING = {"temperature": 0.8, "top_k": 40, "top_p": 0.9}


@attrs.frozen
class Row:
    engine: str
    family: str
    setting: str
    impl: str  # the --impl value; {server} is replaced by the running server's URL
    needs: tuple[str, ...] = ()
    hf: bool = False  # the model is the family's committed checkpoint (transformers needs a folder)
    na: str = ""  # why the engine cannot run this family at all
    sampling: bool = True  # False: the engine samples greedily only (a protocol-1 program gets no settings)


def rows() -> list[Row]:
    out: list[Row] = []
    for fam in MODELS:
        out.append(Row("onnxruntime", fam, "CPU provider", "onnx"))
    for fam in MODELS:
        na = "onnxruntime-genai has no model type for a plain Mamba" if fam == "mamba" else ""
        out.append(Row("onnxruntime-genai", fam, "generator API", "genai:", ("onnxruntime_genai",), na=na))
    for fam in MODELS:
        kvs = ("f32", "f16") if fam != "mamba" else ("f32",)  # a recurrent state has no KV cache to round
        for kv in kvs:
            for fa in ("off", "on") if fam != "mamba" else ("off",):
                out.append(Row("llama.cpp", fam, f"kv={kv} fa={fa}", f"llamacpp: kv={kv} fa={fa}", ("llama_cpp",)))
        out.append(Row("llama.cpp", fam, "sampler=native", "llamacpp: sampler=native", ("llama_cpp",)))
    for fam in MODELS:
        out.append(
            Row("llama-cpp-python server", fam, "/v1/completions", "openai:{server} vocab=spelled", ("uvicorn",))
        )
    for fam in MODELS:
        out.append(Row("transformers", fam, "own cache, float32", "hf", ("torch", "transformers"), hf=True))
    ext = f"cmd:{sys.executable} {ROOT / 'tests' / 'external_impl.py'}"
    out.append(Row("JSON-lines (tests/external_impl.py)", "gpt2", "cmd:", ext, sampling=False))
    return out


def run_row(row: Row, examples: int, servers: dict[str, str]) -> dict[str, Any]:
    from lmstep.spec import load

    name = HF_MODELS[row.family] if row.hf else MODELS[row.family]
    spec = row.impl.replace("{server}", servers.get(row.family, ""))
    result: dict[str, Any] = {"row": row, "model": Path(str(name)).name, "laws": {}, "err": 0.0, "seconds": 0.0}
    # the checker's own sampler settings per decode (protocol 2: greedy, top-k, top-p, tiny temperatures, ...); a
    # law that fails even L3 stops the run. Where it is one whose operations leave no session behind (the sampled
    # token is never fed back: the checker picks the next token), it is recorded and the others are measured in a
    # run without it; a failing logits or state law leaves the sessions after it wrong, so the laws the run did not
    # reach stay "not reached" rather than failing as its consequences.
    failed: list[str] = []
    finite: list[dict[str, Any]] = []
    for _ in range(3):
        r = timed(result, spec, load(name), examples, failed)
        for law, s in r.laws.items():
            if law not in failed:
                result["laws"][law] = s["level"] if s["level"] is not None else "not reached"
        finite += [s for s in r.laws.values() if s.get("n") and s["worst_err"] != float("inf")]
        if r.passed or r.failed_law not in RERUN or r.laws.get(r.failed_law, {}).get("level") is None:
            if not r.passed:  # a protocol failure, or a failure that did not recur
                result.setdefault("failures", []).append(("checker's settings", r.failed_law, r.message))
            break
        result.setdefault("failures", []).append(("checker's settings", r.failed_law, r.message))
        result["laws"][r.failed_law] = 0  # fail
        failed.append(r.failed_law)
    result["err"] = max([s["worst_err"] for s in finite] + [0.0])
    result["ratio"] = max([s["worst_ratio"] for s in finite] + [0.0])
    if row.sampling:  # one setting alone, as --model's (protocol 1): T=0.8, top-k 40, top-p 0.9
        r = timed(result, spec, load(name, **SAMPLING), max(examples // 3, 2), one_setting=True)
        result["sampler sampling"] = r.laws.get("sampler", {}).get("level")
        if not r.passed:
            result.setdefault("failures", []).append(("T=0.8 top-k 40 top-p 0.9", r.failed_law, r.message))
    else:
        result["sampler sampling"] = "greedy only"
    if "{server}" not in row.impl:  # a server would answer a 2048-token chunk with 2048 requests
        from lmstep.runtime.check import open_impl

        model = load(name)
        impl = open_impl(spec, model)
        try:
            t0 = time.perf_counter()
            result["deep"] = deep_chunk(model, impl)
            result["seconds"] += time.perf_counter() - t0
        finally:
            getattr(impl, "close", lambda: None)()
    result["findings"] = locate(row, name, spec, result)
    return result


RERUN = ("sampler", "determinism", "causality")  # failing laws whose operations leave no session behind
DEEP = 2048  # one chunk this long (or the context, if shorter): the thorough profile's depth in one call
NEEDS = {"state": "state", "fork": "fork", "batch": "batch"}  # laws an engine cannot be compared on without these


def skips(impl: Any) -> list[str]:
    """The laws the engine's API gives no way to compare (dropped on purpose; the table shows them as —)."""
    return [law for law, cap in NEEDS.items() if cap not in impl.capabilities]


def timed(
    result: dict[str, Any], spec: str, model: Any, examples: int, without: list[str] = (), one_setting: bool = False
) -> Any:
    from lmstep.runtime.check import Level, check, open_impl

    impl = open_impl(spec, model)
    if one_setting:
        impl.protocol = 1  # protocol.speaks_v2: every decode samples with --model's settings
    try:
        t0 = time.perf_counter()
        skip = skips(impl) + list(without)
        report = check(model, impl, required=Level.L3, max_examples=examples, skip_laws=skip)
        result["seconds"] += time.perf_counter() - t0
        return report
    finally:
        getattr(impl, "close", lambda: None)()


def deep_chunk(model: Any, impl: Any) -> dict[str, Any]:
    """One chunk of DEEP random tokens from the initial state, graded as the checker grades a chunk (the bound from
    the spec's own float32 error against its float64 twin), and the first block of 256 positions above it."""
    import numpy as np

    from lmstep.runtime.check.lockstep import grade_output, wide_of
    from lmstep.spec.conformance import bound, rel_err

    n = min(DEEP, model.context_limit or DEEP)
    tokens = np.random.default_rng(0).integers(0, model.vocab_size, n).tolist()
    _, got = impl.run(impl.init(), tokens)
    want = model.unrolled(tokens)
    wide = wide_of(model)
    twin = wide.prefill(wide.init_state(), tokens)[1]
    g = grade_output(got, want, twin)
    first = next(
        (
            i
            for i in range(0, n, 256)
            if rel_err(got[i : i + 256], want[i : i + 256]) > bound(want[i : i + 256], twin[i : i + 256])
        ),
        None,
    )
    return {"n": n, "level": g.level, "err": g.err, "ratio": g.err / g.bound if g.bound else 0.0, "first": first}


def locate(row: Row, name: Any, spec: str, result: dict[str, Any]) -> list[tuple[str, str]]:
    """For a row below L1 on a logits law: the shrunk L1 counterexample, replayed to its first divergent operation
    and state tensor."""
    from lmstep.runtime.check import Level, check, open_impl
    from lmstep.runtime.check.cetrace import replay, to_json
    from lmstep.spec import load

    out = []
    levels = [v for law, v in result["laws"].items() if law != "sampler" and not isinstance(v, (str, type(None)))]
    if any(level < Level.L1 for level in levels):
        model = load(name)
        impl = open_impl(spec, model)
        try:
            r = check(model, impl, required=Level.L1, max_examples=30, skip_laws=skips(impl) + ["sampler"])
            if not r.passed and r.counterexample:
                steps = replay(to_json(model, spec, r), model, impl)
                bad = next((s for s in steps if s.status != "ok" and s.status != "skipped"), None)
                ops = ", ".join(_op_text(op) for op in r.counterexample)
                where = f"op {bad.index} ({bad.op}): {bad.layer or bad.detail}" if bad else "not reproduced by replay"
                text = f"L1 counterexample [{ops}]; {r.failed_law}: {r.message.split(': ', 1)[-1]}; first "
                out.append(("checks", text + f"divergence at {where}"))
        finally:
            getattr(impl, "close", lambda: None)()
    deep = result.get("deep")
    if deep and deep["first"] is not None:
        text = f"a {deep['n']}-token chunk: rows beyond their L1 bound from position {deep['first']} on "
        kind = "deep" if deep["first"] > 0 else "checks"  # off from the start: the row's own cause
        out.append((kind, text + f"(worst {deep['err']:.2g}, {deep['ratio']:.3g} x the bound, {label(deep['level'])})"))
    for key, law, message in result.get("failures", []):
        if not law:  # Hypothesis saw the failure vanish when it re-ran the same operations
            text = f"{key} check: a failure that did not recur when the same operations were run again"
            out.append(("checks", text + " (the result depends on more than the operations)"))
            continue
        out.append(("checks", f"{key}: fails even L3 on {law}: {message.split(': ', 1)[-1][:260]}"))
    return out


def _op_text(op: dict[str, Any]) -> str:
    if op["op"] == "run":
        return f"run {len(op['tokens'])} tokens"
    if op["op"] == "distribution":
        return f"distribution ({len(op['rands'])} draws)"
    return op["op"]


# Why each finding happens, by (engine, family, setting, kind: "checks" or "deep"); the matrix flags any finding
# without one.
EXPLANATIONS = {
    ("llama.cpp", "llama", "*", "deep"): (
        "Past position ~1000 the rows drift above the L1 bound, already in layer 0's keys (RoPE applied to a "
        "position-independent projection): llama.cpp builds the angles p * base^(-2i/D) by repeated float32 "
        "multiplication (ggml-cpu's rope cache: `theta *= theta_scale`), the spec as p * inv_freq_i with "
        "transformers' float32 inv_freq. At p = 2047 the two differ by up to 7.6e-6 rad, the same order as either's "
        "distance from the exact angle (3.1e-6 and 4.6e-6 rad): two float32 roundings of one function, which a bound "
        "derived from the spec's own float32-vs-float64 error (issue 14) tells apart from a bug."
    ),
    ("llama.cpp", "gpt2", "*", "checks"): (
        "llama.cpp's CPU backend evaluates GELU through a 64 Ki-entry float16 lookup table (ggml-cpu, "
        "`GGML_GELU_FP16`): the MLP activations of every layer are rounded to float16, ~2e-4 of the logit scale. "
        "The first state tensor to differ is layer 1's keys: layer 0's attention matches, its MLP output does not. "
        "The table also makes GELU a step function of its input's float16 rounding, so two computations whose "
        "inputs differ by one float32 ulp (a one-token batch takes ggml's vector-dot path, a longer one its "
        "matrix path) can land a float16 step apart: causality is broken at 1.2e-4 (shrunk to a one-token prefix, "
        "token 187, against the same token followed by one more), L2 at best."
    ),
    ("llama.cpp", "*", "kv=f16*", "checks"): (
        "An F16 KV cache stores every key and value rounded to float16 (11-bit mantissa), ~4e-4 relative: the state "
        "falls to L2 at once, and logits after a cached step follow; every token decision still agrees. With an F16 "
        "cache the attention product also rounds its other operand (the queries, the softmax weights) to float16, "
        "so float32 differences of one ulp (from a different batch shape, or from where the sequence's cells sit "
        "in the cache, which changes the SIMD lanes each term is summed in) can cross a float16 rounding boundary: "
        "causality fails at ~1e-4, and some failures do not recur when the same operations run on a cache laid "
        "out differently."
    ),
    ("llama.cpp", "*", "*fa=on", "checks"): (
        "Flash attention casts an F32 cache's K and V to F16 before the kernel (llama-graph.cpp, build_attn_mha), "
        "so the keys and values are rounded as in an F16 cache: L2. And determinism fails: ggml-cpu's flash "
        "attention accumulates the V-weighted sum in an F16 accumulator, stored back after every cell, in the order "
        "the cells sit in the KV cache; a fork's new cells land in whatever cells are free (freed sequences leave "
        "holes), so two forks of one state decoding the same token sum in different orders and differ by ~6e-4 "
        "(shrunk to: a few decodes and forks, then the same decode on two forks). A server with several slots and "
        "flash attention on gives a prompt different logits depending on what ran before (tests/test_check_llamacpp.py "
        "reproduces it; a matrix run finds it only when its operations reuse freed cells that way)."
    ),
    ("llama.cpp", "*", "sampler=native", "checks"): (
        "llama.cpp's own chain (common/sampling.cpp order: top-k, top-p, min-p, then temperature, then the draw) "
        "selects the top-p set on the untempered distribution; SPEC.md §3 applies temperature first. With top-p "
        "0.9 at T=0.8 it draws tokens the spec gives probability 0: a failure even at L3. Its draws use its own "
        "RNG seeded from the rand's bits, so even where the sets agree it reaches L3, not L2. The checker's own "
        "settings (probes.SETTINGS) find another difference first: at T=1e-40 z / T overflows, where SPEC.md §3 "
        "step 1 samples greedily; llama.cpp's temp sampler goes greedy only for T <= 0, divides anyway and draws "
        "from infinities (token V-1 = 255, whatever the logits): a greedy token that is not the argmax."
    ),
    ("llama-cpp-python server", "gpt2", "*", "checks"): (
        "The same fp16 GELU table as llama.cpp in process (it is llama.cpp), seen through the log-probabilities: "
        "L2. And the sampler: llama-cpp-python adds top-k, typical-p, top-p and min-p before temperature, so with "
        "top-p 0.9 it draws tokens the spec gives probability 0; at T=1e-40 (z / T overflows: greedy in SPEC.md §3) "
        "its temperature sampler divides anyway and draws token V-1 = 255 from infinities, as llama.cpp's chain does."
    ),
    ("llama-cpp-python server", "*", "*", "checks"): (
        "llama-cpp-python's sampler adds top-k, typical-p, top-p and min-p before temperature (as llama.cpp's): the "
        "same top-p-before-temperature order, found through the API. At T=1e-40 (z / T overflows: greedy in "
        "SPEC.md §3) its temperature sampler divides anyway and draws token V-1 = 255 from infinities, as llama.cpp's "
        "chain does. The log-probabilities it returns are its float32 log-softmax of llama.cpp's logits, within L1 "
        "of the spec's."
    ),
    ("transformers", "mamba", "*", "checks"): (
        "transformers' Mamba takes its one-token decode path for any forward with a cache, so a chunk of several "
        "tokens after a cache computes wrong logits and state (docs/checking.md); single steps and whole prefills "
        "agree at L1."
    ),
}


def explain(row: Row, kind: str) -> str:
    import fnmatch

    for (engine, fam, setting, k), text in EXPLANATIONS.items():
        if (
            (engine, k) == (row.engine, kind)
            and fnmatch.fnmatch(row.family, fam)
            and fnmatch.fnmatch(row.setting, setting)
        ):
            return text
    return "(no explanation recorded: investigate)"


def label(level: Any) -> str:
    if level is None:
        return "—"
    if isinstance(level, str):
        return level
    return {0: "fail", 1: "L3", 2: "L2", 3: "L1", 4: "L0"}[int(level)]


def environment() -> str:
    parts = [f"Python {platform.python_version()}", f"{platform.machine()}"]
    for mod, dist in (
        ("onnxruntime", "onnxruntime"),
        ("onnxruntime_genai", "onnxruntime-genai"),
        ("llama_cpp", "llama-cpp-python"),
        ("torch", "torch"),
        ("transformers", "transformers"),
    ):
        if importlib.util.find_spec(mod) is not None:
            from importlib.metadata import version

            parts.append(f"{dist} {version(dist)}")
    return ", ".join(parts)


def render(results: list[dict[str, Any]], skipped: list[tuple[Row, str]], examples: int) -> str:
    head = ["engine", "model", "setting", *LOGIT_LAWS, "sampler", "sampler T=0.8 alone", "worst rel err"]
    head += ["worst err / bound", f"{DEEP}-token chunk", "time (s)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in results:
        row = r["row"]
        cells = [row.engine, r["model"], f"`{row.setting}`"]
        cells += [label(r["laws"].get(law)) for law in LOGIT_LAWS]
        deep = r.get("deep")
        cells += [
            label(r["laws"].get("sampler")),
            label(r.get("sampler sampling")),
            f"{r['err']:.2g}",
            f"{r['ratio']:.3g}",
            f"{label(deep['level'])} ({deep['err']:.2g})" if deep else "—",
            f"{r['seconds']:.1f}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    for row, why in skipped:
        cells = [row.engine, MODELS[row.family], f"`{row.setting}`", why] + [""] * (len(head) - 4)
        lines.append("| " + " | ".join(cells) + " |")
    findings = []
    for r in results:
        if r["findings"]:
            row = r["row"]
            findings.append(f"### {row.engine}, {r['model']}, `{row.setting}`\n")
            for kind in dict.fromkeys(k for k, _ in r["findings"]):
                findings += [f"- {text}" for k, text in r["findings"] if k == kind]
                findings.append(f"\n{explain(row, kind)}\n")
    return TEMPLATE.format(
        date=datetime.date.today().isoformat(),
        env=environment(),
        examples=examples,
        deep=DEEP,
        table="\n".join(lines),
        findings="\n".join(findings) or "None.",
    )


TEMPLATE = """# Engines checked against the spec

Regenerated by `python benchmarks/engine_matrix.py --write docs/engines.md` ({date}; {env}; {examples} explored
runs per check after the coverage run to position 512). Each cell is the conformance level a law reached
([checking.md](checking.md)): L0 bitwise, L1 within the comparison's bound (the spec's own float32 error against
its float64 twin, x 10), L2 within 1% of the logit scale with every token decision agreeing up to near ties, L3
the sampled tokens follow the spec's distribution, fail, or — where the engine's API offers no way to compare it
(no fork, batch or state: dropped with --skip-law), or "not reached" where a law failing before it left the
sessions wrong. Every check runs with the requirement at L3, so a law below
L1 shows how far it falls instead of stopping the run. "sampler": the checker's own settings per decode (protocol
2: greedy, top-k, top-p, a temperature so small that z / T overflows, ...); "sampler T=0.8 alone": every decode
with T=0.8, top-k 40, top-p 0.9 (the engine as a protocol-1 implementation). An engine that draws with its own RNG
reaches L3 at best. "worst err / bound": the largest ratio of a comparison's error to its L1 bound (above 1: below
L1). The {deep}-token chunk: one prefill that deep, graded like a chunk of the check.

How each engine is driven: [checking.md](checking.md#engines) (`--impl onnx`, `genai:`, `llamacpp:`, `openai:`,
`hf`, `cmd:`). Models: the built-ins (vocabulary 256, context 4096), and for transformers the committed checkpoint
of each family (tests/fixtures/hf).

{table}

## Findings

Every row below L1 on some law, or failing even L3, with its shrunk L1 counterexample replayed to the first
operation and state tensor that diverge, and why.

{findings}

## Not reachable here

- **vLLM, SGLang, TGI**: they need a GPU (none on this machine). The `openai:` adapter is written against the
  contract they implement (token-id prompts; top-N log-probabilities named by id: vLLM's
  `return_tokens_as_token_ids`, llama.cpp server's `logprobs.content[].id`), see checking.md.
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--examples", type=int, default=30)
    ap.add_argument("--only", default="", help="only rows whose engine contains this text")
    ap.add_argument("--write", default="", help="write the markdown here (docs/engines.md)")
    args = ap.parse_args()
    from lmstep.runtime.threads import apply_policy
    from lmstep.spec.errors import LmstepError

    apply_policy()
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")  # no progress bars from transformers' loader
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    results, skipped = [], []
    todo = [r for r in rows() if args.only.lower() in r.engine.lower()]
    with tempfile.TemporaryDirectory() as tmp, ExitStack() as stack:
        servers: dict[str, str] = {}
        for row in todo:
            missing = [m for m in row.needs if importlib.util.find_spec(m) is None]
            if row.na or missing:
                skipped.append((row, row.na or f"not installed: {', '.join(missing)}"))
                continue
            if "{server}" in row.impl and row.family not in servers:
                from lmstep.runtime.check.llamacpp_server import serve
                from lmstep.spec import load

                servers[row.family] = stack.enter_context(serve(load(MODELS[row.family]), Path(tmp)))
            print(f"{row.engine} / {row.family} / {row.setting} ...", file=sys.stderr, flush=True)
            try:
                results.append(run_row(row, args.examples, servers))
            except LmstepError as err:  # an engine that cannot be opened here: listed with the reason
                skipped.append((row, f"could not run: {err}"))
    text = render(results, skipped, args.examples)
    if args.write:
        Path(args.write).write_text(text)
        print(f"wrote {args.write}", file=sys.stderr)
    else:
        print(text)


if __name__ == "__main__":
    main()
