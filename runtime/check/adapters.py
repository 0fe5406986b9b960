"""Adapters from what the user names with ``--impl`` to the protocol in protocol.py.

spec                    the spec itself (a self-check: everything L0)
onnx                    the --model exported to ONNX and run by onnxruntime (lmstep.runtime)
onnx:DIR                an exported ONNX folder following lmstep's IO contract
cmd:"program args"      any program speaking the JSON-lines protocol (external.py)
python:module:factory   factory(model) -> an object with init/run/decode (+ optional fork/state/run_batch/release);
                        the module is imported with the current folder on the import path
mutant:NAME             a mutant of the catalogue (lmstep/mutants.py) in its engine (engines.py)
hf / hf:FOLDER          transformers on a checkpoint folder (the --model folder by default; the hf extra)
llamacpp:[FILE.gguf]    llama.cpp in process (llamacpp_impl.py; the llamacpp extra), options after the file
genai:[DIR]             onnxruntime-genai's generator API on an exported folder (genai_impl.py; the genai extra)
openai:URL              an OpenAI-compatible /v1/completions server (openai_impl.py): top-N log-probabilities
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Sequence
from typing import Any

import numpy as np

from lmstep.spec import Model, Sampler
from lmstep.spec.errors import InputError

from .protocol import CAPABILITIES, ImplementationError


class ModelImpl:
    """Any model with the spec's API (``init_state / prefill / step``, states with ``.arrays()``, ``with_sampler``)
    as an implementation: the spec itself, or the onnxruntime backend. Its states are values, so "immutable".
    Protocol 2: each decode samples with the settings it is given (the model with those settings, kept per
    setting)."""

    capabilities = frozenset({"fork", "state", "immutable"})

    def __init__(self, model: Any, name: str):
        self.model, self.name, self.vocab_size = model, name, model.vocab_size
        self._samplers: dict[Sampler, Any] = {}

    def sampling(self, sampler: Sampler | None) -> Any:
        """The model with ``sampler``'s settings (the model itself for None or its own settings)."""
        if sampler is None or sampler == self.model.sampler:
            return self.model
        if sampler not in self._samplers:
            if len(self._samplers) > 64:
                self._samplers.clear()
            self._samplers[sampler] = self.model.with_sampler(
                temperature=sampler.temperature, top_k=sampler.top_k, top_p=sampler.top_p
            )
        return self._samplers[sampler]

    def init(self) -> Any:
        return self.model.init_state()

    def run(self, handle: Any, tokens: Sequence[int]) -> tuple[Any, np.ndarray]:
        return self.model.prefill(handle, list(tokens))

    def decode(
        self, handle: Any, token: int, rand: float, sampler: Sampler | None = None
    ) -> tuple[Any, np.ndarray, int]:
        state, out = self.sampling(sampler).step(handle, token, rand)
        return state, out.logits, out.token

    def fork(self, handle: Any) -> Any:
        return handle

    def state(self, handle: Any) -> dict[str, np.ndarray]:
        return handle.arrays()

    def close(self) -> None:
        pass


def SpecImpl(model: Model, name: str = "spec") -> ModelImpl:  # noqa: N802 - reads like the class it returns
    return ModelImpl(model, name)


def model_info(model: Model) -> dict[str, Any]:
    """What an external implementation is told about the model it is checked on."""
    return {
        "name": model.name,
        "arch": model.arch,
        "vocab_size": model.vocab_size,
        "weights_digest": model.weights_digest(),
    }


def open_impl(spec: str, model: Model, timeout: float = 30.0, provider: str = "auto") -> Any:
    """Parse an --impl value into an implementation object (see the module docstring)."""
    kind, _, arg = spec.partition(":")
    if kind == "spec" and not arg:
        return SpecImpl(model)
    if kind == "mutant":
        from .engines import mutant_impl

        return mutant_impl(arg, model)
    if kind == "cmd":
        from .external import CommandImpl

        return CommandImpl(arg.strip().strip('"').strip("'"), model_info(model), timeout=timeout, sampler=model.sampler)
    if kind == "python":
        return _python_impl(arg, model)
    if kind == "onnx":
        return _onnx_impl(arg, model, provider)
    if kind == "hf":
        from .hf_impl import HfImpl

        return HfImpl.open(model, arg or None)
    if kind == "llamacpp":
        from .llamacpp_impl import LlamaCppImpl

        return LlamaCppImpl.open(arg, model)
    if kind == "genai":
        from .genai_impl import GenaiImpl

        return GenaiImpl.open(arg, model)
    if kind == "openai":
        from .openai_impl import OpenAIImpl

        return OpenAIImpl.open(arg, model)
    raise InputError(
        f'unknown implementation {spec!r}; use spec, onnx, onnx:DIR, cmd:"program args", python:module:factory, '
        "hf[:FOLDER], llamacpp[:FILE.gguf], genai[:DIR], openai:URL or mutant:NAME"
    )


def _python_impl(target: str, model: Model) -> Any:
    module_name, _, factory_name = target.partition(":")
    if not module_name or not factory_name:
        raise InputError(f"python:{target}: use python:module:factory, e.g. python:my_engine.lmstep:build")
    here = os.getcwd()
    if here not in sys.path and "" not in sys.path:  # like `python -m`: a module in the current folder imports
        sys.path.insert(0, here)
    try:
        factory = getattr(importlib.import_module(module_name), factory_name)
    except ImportError as err:
        raise InputError(f"python:{target}: cannot import {module_name!r} ({err})") from None
    except AttributeError:
        raise InputError(f"python:{target}: module {module_name!r} has no {factory_name!r}") from None
    except Exception as err:  # the module itself fails while importing: its error, in one line
        raise InputError(f"python:{target}: importing {module_name!r} raised {_one_line(err)}") from None
    if not callable(factory):
        raise InputError(f"python:{target}: {factory_name!r} is not callable; name a factory(model) function")
    try:
        impl = factory(model)
    except Exception as err:  # the user's factory: report it as theirs, in one line, not as an lmstep traceback
        raise InputError(f"python:{target}: the factory raised {_one_line(err)}") from None
    try:
        validate(impl, f"python:{target}")
    except TypeError:  # e.g. capabilities that are not a collection of names
        raise InputError(
            f"python:{target}: capabilities must be a collection of names (see docs/checking.md)"
        ) from None
    return impl


def _one_line(err: BaseException) -> str:
    text = " ".join(str(err).split())
    return f"{type(err).__name__}: {text[:300]}" if text else type(err).__name__


def _onnx_impl(folder: str, model: Model, provider: str) -> Any:
    from lmstep.runtime.onnx_impl import open_onnx_impl

    return open_onnx_impl(model, folder or None, provider)


def validate(impl: Any, what: str) -> None:
    """A one-line error naming what a user-supplied implementation object is missing."""
    missing = [n for n in ("name", "vocab_size", "capabilities", "init", "run", "decode") if not hasattr(impl, n)]
    if missing:
        raise InputError(f"{what}: the implementation lacks {', '.join(missing)} (see docs/checking.md)")
    unknown = set(impl.capabilities) - set(CAPABILITIES)
    if unknown:
        raise InputError(f"{what}: unknown capabilities {sorted(unknown)}; known: {list(CAPABILITIES)}")
    for cap, method in (("fork", "fork"), ("state", "state"), ("batch", "run_batch"), ("release", "release")):
        if cap in impl.capabilities and not hasattr(impl, method):
            raise InputError(f"{what}: announces {cap!r} but has no {method}()")


__all__ = ["ImplementationError", "SpecImpl", "model_info", "open_impl", "validate"]
