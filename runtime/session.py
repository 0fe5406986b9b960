"""onnxruntime sessions with pinned options, provider choice, and one IO-bound graph call.

Pinned for reproducibility (docs/design.md §7): graph optimization level (fusions change bits), intra/inter-op
thread counts, sequential execution, deterministic compute; on CUDA, TF32 off (it is on by default there and
changes matmul bits far beyond our tolerances). Prepacking is off so that both graphs of an export can share
one copy of the weights (weights.py): a prepacked matrix is a private copy per session.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from lmstep.spec.errors import LmstepError

PROVIDERS = ("cpu", "cuda", "auto")
EP = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider"}
DEVICE = {"cpu": "cpu", "cuda": "cuda"}
# Basic = constant folding and redundant-node removal only: exact rewrites, no fused kernels. Measured on the
# tiny models, the extended/all levels were not faster for them and fusions change bits between ORT versions.
OPT_LEVEL = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
CUDA_OPTIONS = {"use_tf32": "0", "cudnn_conv_algo_search": "DEFAULT"}


class ProviderError(LmstepError):
    """The requested execution provider is not available here."""


def resolve_provider(provider: str) -> tuple[str, str]:
    """'cpu' | 'cuda' | 'auto' -> (the provider that runs, a one-line note saying which and why)."""
    if provider not in PROVIDERS:
        raise ProviderError(f"unknown provider {provider!r}; use one of: {', '.join(PROVIDERS)}")
    have_cuda = EP["cuda"] in ort.get_available_providers()
    if provider == "cuda" and not have_cuda:
        raise ProviderError(
            "provider cuda is not available: this onnxruntime has no CUDAExecutionProvider "
            "(install onnxruntime-gpu with a CUDA GPU, or use --provider cpu / auto)"
        )
    if provider == "auto":
        chosen = "cuda" if have_cuda else "cpu"
        why = "CUDA provider available" if have_cuda else "no CUDA provider in this onnxruntime"
        return chosen, f"provider auto -> {chosen} ({why})"
    return provider, f"provider {provider}"


def session_options(threads: int = 1) -> ort.SessionOptions:
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise LmstepError(f"threads must be an integer >= 1, got {threads!r}")
    so = ort.SessionOptions()
    so.graph_optimization_level = OPT_LEVEL
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.use_deterministic_compute = True
    so.log_severity_level = 3  # errors only: shape-inference warnings about symbolic dims are expected
    so.add_session_config_entry("session.disable_prepacking", "1")
    return so


def make_session(
    path: str | os.PathLike,
    provider: str,
    threads: int = 1,
    initializers: dict[str, ort.OrtValue] | None = None,
    graph: bytes | None = None,
) -> ort.InferenceSession:
    """A session for the graph at ``path`` (or for ``graph``, a serialized variant of it whose external data lies
    beside ``path``); ``initializers`` (name -> OrtValue, which the caller keeps alive) replace the graph's
    initializers of those names instead of being read from the file."""
    providers: list[Any] = [(EP["cuda"], CUDA_OPTIONS), EP["cpu"]] if provider == "cuda" else [EP["cpu"]]
    so = session_options(threads)
    for name, value in (initializers or {}).items():
        so.add_initializer(name, value)
    if graph is not None:
        so.add_session_config_entry("session.model_external_initializers_file_folder_path", str(Path(path).parent))
    try:
        return ort.InferenceSession(graph if graph is not None else str(path), sess_options=so, providers=providers)
    except (
        ort.capi.onnxruntime_pybind11_state.Fail,
        ort.capi.onnxruntime_pybind11_state.InvalidGraph,
        ort.capi.onnxruntime_pybind11_state.InvalidProtobuf,
        ort.capi.onnxruntime_pybind11_state.NoSuchFile,
    ) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise LmstepError(f"onnxruntime cannot load {path}: {first[:200]}; export the model again") from None


class GraphRunner:
    """One graph behind IO binding: small inputs from numpy, state inputs as OrtValues that stay on the device,
    outputs allocated by onnxruntime or written into caller-given buffers (never one that is also an input)."""

    def __init__(self, session: ort.InferenceSession, provider: str, bound: dict[str, ort.OrtValue] | None = None):
        self.session = session
        self.bound = bound or {}  # inputs bound on every call (shared read-only weights; see weights.py)
        self.device = DEVICE[provider]
        self.output_names = [o.name for o in session.get_outputs()]

    def run(
        self,
        arrays: dict[str, np.ndarray],
        values: dict[str, ort.OrtValue],
        into: dict[str, ort.OrtValue] | None = None,
        host_outputs: tuple[str, ...] = (),
    ) -> dict[str, ort.OrtValue]:
        binding = self.session.io_binding()
        for name, arr in arrays.items():
            binding.bind_cpu_input(name, arr)
        for name, value in (values | self.bound).items():
            binding.bind_ortvalue_input(name, value)
        into = into or {}
        check_no_alias(values, into)
        for name in self.output_names:
            if name in into:
                binding.bind_ortvalue_output(name, into[name])
            else:
                binding.bind_output(name, "cpu" if name in host_outputs else self.device)
        self.session.run_with_iobinding(binding)
        return dict(zip(self.output_names, binding.get_outputs()))


def check_no_alias(inputs: dict[str, ort.OrtValue], outputs: dict[str, ort.OrtValue]) -> None:
    """Refuse to bind one buffer as both an input and an output: no op here is in place by definition, so the
    graph could overwrite a value it has yet to read."""
    taken = {v.data_ptr() for v in inputs.values() if _nbytes(v)}
    for name, v in outputs.items():
        if _nbytes(v) and v.data_ptr() in taken:
            raise AssertionError(f"output {name} is bound to the buffer of an input; use a second buffer")


def _nbytes(v: ort.OrtValue) -> int:
    return int(np.prod(v.shape())) * 4
