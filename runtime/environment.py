"""The numeric environment a result was computed in, recorded in traces and counterexamples (SPEC.md §8).

Bitwise identity of float32 results holds only for the same computation on the same kernels: the spec's matmuls
run in numpy's BLAS, whose kernel (OpenBLAS picks one per CPU, or OPENBLAS_CORETYPE forces one) sums in its own
order; numpy's own loops (exp, tanh, ...) dispatch on the CPU's SIMD features; onnxruntime's MLAS kernels do
both. Measured: a tiny-llama trace recorded with OpenBLAS' SkylakeX kernel diverged on 8 of 8 ops when replayed
with the Haswell kernel, same machine, same venv. So a record names what decides the bits (:func:`bits`) and,
for people, what else helps explain a difference (CPU model, Python, thread settings from the environment).
"""

from __future__ import annotations

import os
import platform
from typing import Any

import numpy as np

# Environment variables that change which kernels run or how many threads they use.
THREAD_VARIABLES = ("LMSTEP_BLAS_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
KERNEL_VARIABLES = (
    "OPENBLAS_CORETYPE",
    "OPENBLAS_VERBOSE",
    "MKL_CBWR",
    "MKL_ENABLE_INSTRUCTIONS",
    "NPY_DISABLE_CPU_FEATURES",
)


def cpu_features() -> list[str]:
    """The SIMD features numpy found on this CPU (its dispatch, and MLAS', choose kernels by them)."""
    try:
        from numpy._core._multiarray_umath import __cpu_features__ as found
    except ImportError:  # numpy < 2
        try:
            from numpy.core._multiarray_umath import __cpu_features__ as found  # type: ignore[no-redef]
        except ImportError:
            return []
    return sorted(name for name, on in found.items() if on)


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith(("model name", "Processor", "CPU part")):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def blas() -> list[dict[str, Any]]:
    """numpy's BLAS libraries as threadpoolctl sees them: library, version, kernel, threads."""
    from threadpoolctl import threadpool_info

    return [
        {
            "library": str(lib.get("internal_api")),
            "version": str(lib.get("version")),
            "kernel": str(lib.get("architecture")),
            "threads": int(lib.get("num_threads") or 0),
        }
        for lib in threadpool_info()
        if lib.get("user_api") == "blas"
    ]


def record(model: Any) -> dict[str, Any]:
    """Where ``model`` (the spec's Model or an OnnxModel) computes: runtime, provider and the numeric environment."""
    onnx = hasattr(model, "provider")
    env: dict[str, Any] = {
        "runtime": "onnx" if onnx else "spec",
        "provider": model.provider if onnx else None,
        "numpy": np.__version__,
        "blas": blas(),
        "cpu": {
            "model": cpu_model(),
            "machine": platform.machine(),
            "cores": os.cpu_count(),
            "features": cpu_features(),
        },
        "python": platform.python_version(),
        "variables": {k: os.environ[k] for k in THREAD_VARIABLES + KERNEL_VARIABLES if k in os.environ},
    }
    if onnx:
        import onnxruntime

        env["onnxruntime"] = onnxruntime.__version__
        env["onnxruntime_threads"] = int(getattr(model, "threads", 1))
    return env


def bits(env: Any) -> dict[str, Any]:
    """The part of a record that decides the bits of a result: two runs with equal ``bits`` compute bitwise
    equal float32 results. The spec runs in numpy and its BLAS; the onnx runtime in onnxruntime's own kernels
    (numpy only moves its inputs and outputs), on a provider; both dispatch on the CPU's features."""
    if not isinstance(env, dict):
        return {}
    cpu = env.get("cpu") if isinstance(env.get("cpu"), dict) else {}
    key: dict[str, Any] = {
        "runtime": env.get("runtime"),
        "machine": cpu.get("machine"),
        "CPU features": _hashable(cpu.get("features")),
    }
    if env.get("runtime") == "onnx":
        key |= {
            "provider": env.get("provider"),
            "onnxruntime": env.get("onnxruntime"),
            "onnxruntime threads": env.get("onnxruntime_threads"),
        }
    else:
        libs = env.get("blas") if isinstance(env.get("blas"), list) else []
        key |= {
            "numpy": env.get("numpy"),
            "BLAS": _hashable([(b.get("library"), b.get("version")) for b in libs if isinstance(b, dict)]),
            "BLAS kernel": _hashable([b.get("kernel") for b in libs if isinstance(b, dict)]),
            "BLAS threads": _hashable([b.get("threads") for b in libs if isinstance(b, dict)]),
        }
    return key


def differences(recorded: Any, here: dict[str, Any]) -> list[str]:
    """What differs between a recorded environment and this one, as 'name recorded -> here' (empty: the same)."""
    a, b = bits(recorded), bits(here)
    return [f"{k} {_show(a.get(k))} -> {_show(b.get(k))}" for k in b if a.get(k) != b.get(k)]


def _hashable(v: Any) -> Any:
    if isinstance(v, list):
        return tuple(_hashable(x) for x in v)
    return v if isinstance(v, (str, int, float, bool, type(None), tuple)) else repr(v)


def _show(v: Any) -> str:
    if isinstance(v, tuple):
        if len(v) > 4:
            return f"[{len(v)} items]"
        return "/".join(_show(x) for x in v) if v else "none"
    return str(v)
