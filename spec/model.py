"""The public value types: ``Model``, ``State``, ``StepOutput``; step / prefill / unrolled for one sequence.

    state, out    = model.step(state, token, rand)   # recurrent form: arch.decode, then the sampler
    state, logits = model.prefill(state, tokens)     # unrolled form: arch.forward over the new tokens
    logits        = model.unrolled(tokens)           # prefill from init_state, logits only
    tokens        = model.generate(prompt, n, seed)  # interface.generate, shared with the onnxruntime model

``Model`` implements interface.LanguageModel, as runtime/onnx_model.py's OnnxModel does.

Nothing here mutates an argument: states are immutable values (see arrays.SeqBuffer for how the KV cache
grows in amortized O(1) without copying), so any state can be stepped again, forked, compared or stored.
"""

from __future__ import annotations

import functools
import hashlib
import weakref
from collections.abc import Callable, Iterable, Sequence
from types import ModuleType
from typing import TYPE_CHECKING, Any, TypeAlias

import attrs
import numpy as np

from . import gpt2, llama, mamba, mamba2
from .arrays import SeqBuffer, array_options, frozen_array, tree_leaves
from .errors import InputError
from .interface import LanguageModel, check_tokens, generate, step_loop
from .ops import NP
from .sampler import Sampler, check_rand, sample_one

ARCHITECTURES: dict[str, ModuleType] = {"llama": llama, "gpt2": gpt2, "mamba": mamba, "mamba2": mamba2}
_DIGESTS: dict[int, tuple[weakref.ref[Any], str]] = {}  # id(weights) -> (weak reference to them, digest)


def _forget(key: int) -> Callable[[weakref.ref[Any]], None]:
    """The callback that drops a digest when its weights are collected (so an id reused later cannot hit it)."""

    def forget(_: weakref.ref[Any]) -> None:
        _DIGESTS.pop(key, None)

    return forget


STATE_KINDS = {
    "llama": ("key", "value"),
    "gpt2": ("key", "value"),
    "mamba": ("conv_state", "recurrent_state"),
    "mamba2": ("conv_state", "recurrent_state"),
}
Config: TypeAlias = llama.Config | gpt2.Config | mamba.Config | mamba2.Config
Weights: TypeAlias = (
    llama.Weights[np.ndarray] | gpt2.Weights[np.ndarray] | mamba.Weights[np.ndarray] | mamba2.Weights[np.ndarray]
)
StateTensor: TypeAlias = SeqBuffer | np.ndarray  # a KV buffer (transformers) or a read-only array (Mamba)


@attrs.frozen(eq=False)
class State:
    """What carries over between steps: ``pos`` tokens consumed, and per layer two tensors with batch dim 1.

    Transformers: (key, value) SeqBuffers, [1, K, pos, D] each (with a sliding window W, Mistral:
    [1, K, min(pos, W - 1), D], the keys of positions pos - min(pos, W - 1) .. pos - 1, oldest first).
    Mamba: (conv_state [1, E, W-1], recurrent_state [1, E, N]) read-only arrays. ``arrays()`` names them as the
    ONNX contract does.
    """

    arch: str
    pos: int
    cache: tuple[tuple[StateTensor, StateTensor], ...]

    def arrays(self) -> dict[str, np.ndarray]:
        names = STATE_KINDS[self.arch]
        out = {}
        for i, pair in enumerate(self.cache):
            for name, t in zip(names, pair):
                out[f"past_key_values.{i}.{name}"] = t if isinstance(t, np.ndarray) else t.view()
        return out

    def digest(self) -> str:
        """A short hash of pos and every state tensor's name, shape, dtype and bytes (for comparing by eye)."""
        h = hashlib.sha256(f"{self.arch}:{self.pos}".encode())
        for name, a in self.arrays().items():
            h.update(f"{name}{a.shape}{a.dtype}".encode())
            h.update(np.ascontiguousarray(a).tobytes())
        return h.hexdigest()[:16]

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, State) or (self.arch, self.pos) != (other.arch, other.pos):
            return False
        a, b = self.arrays(), other.arrays()
        return a.keys() == b.keys() and all(
            a[k].shape == b[k].shape and a[k].dtype == b[k].dtype and np.array_equal(a[k], b[k]) for k in a
        )

    def __repr__(self) -> str:
        return f"State(arch={self.arch!r}, pos={self.pos}, digest={self.digest()})"


@attrs.frozen
class StepOutput:
    logits: np.ndarray = attrs.field(**array_options(np.float32))  # [V] float32: the distribution at pos + 1
    token: int = attrs.field(converter=int)  # sampled with the step's rand


@attrs.frozen
class Model:
    """A model value: architecture, config, weights and sampler settings. Build one with ``lmstep.spec.load``."""

    arch: str = attrs.field(validator=attrs.validators.in_(ARCHITECTURES))
    config: Config
    weights: Weights = attrs.field(repr=False)
    sampler: Sampler = Sampler()
    name: str = ""

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        # For pretty printers (IPython's, Hypothesis'; printer is theirs, so Any): no weights.
        printer.text(f"Model(arch={self.arch!r}, name={self.name!r}, config={self.config!r}, sampler={self.sampler!r})")

    @property
    def module(self) -> ModuleType:
        return ARCHITECTURES[self.arch]

    @property
    def vocab_size(self) -> int:
        return self.config.vocab_size

    @property
    def context_limit(self) -> int | None:
        return self.config.context_limit

    def named_weights(self) -> dict[str, Any]:
        """Every parameter by its dotted name, in the architecture's ``param_shapes`` order: read-only float32
        arrays, or StoredArrays (a checkpoint's bf16 / f16 / f64 tensors, widened to float32 on use)."""
        leaves = dict(tree_leaves(self.weights))
        return {name: leaves[name] for name in self.module.param_shapes(self.config)}

    def weights_digest(self) -> str:
        """sha256 over (name, shape, float32 little-endian bytes) of every parameter in ``param_shapes`` order.

        Computed once per weights value (weights are immutable; hashing a 1B-parameter model takes seconds)."""
        key = id(self.weights)
        known = _DIGESTS.get(key)
        if known is not None and known[0]() is self.weights:
            return known[1]
        h = hashlib.sha256()
        for name, a in self.named_weights().items():  # one tensor widened at a time, hashed without a bytes copy
            h.update(f"{name}{tuple(a.shape)}".encode())
            h.update(np.ascontiguousarray(a, "<f4").data)
        digest = h.hexdigest()
        _DIGESTS[key] = (weakref.ref(self.weights, _forget(key)), digest)
        return digest

    def with_sampler(self, **settings: float) -> Model:
        return attrs.evolve(self, sampler=attrs.evolve(self.sampler, **settings))

    def init_state(self) -> State:
        return State(self.arch, 0, self.module.empty_cache(self.config, 1))

    def step(self, state: State, token: int, rand: float) -> tuple[State, StepOutput]:
        """Consume ``token`` at position ``state.pos``; sample the next token with ``rand`` (recurrent form)."""
        self._check_state(state)
        token = self._check_tokens([token], state.pos)[0]
        rand = check_rand(rand)
        logits, cache = self.module.decode(
            NP, self.config, self.weights, np.array([token], np.int64), np.array([state.pos], np.int64), state.cache
        )
        logits = logits[0]
        return State(self.arch, state.pos + 1, freeze_cache(cache)), StepOutput(
            logits, sample_one(logits, rand, self.sampler)
        )

    def prefill(self, state: State, tokens: Sequence[int]) -> tuple[State, np.ndarray]:
        """Consume ``tokens`` after ``state`` all at once (unrolled form) -> (state', logits [len, V] float32)."""
        self._check_state(state)
        toks = np.array(self._check_tokens(tokens, state.pos), np.int64)[None, :]
        positions = np.arange(state.pos, state.pos + toks.shape[1], dtype=np.int64)[None, :]
        logits, cache = self.module.forward(NP, self.config, self.weights, toks, positions, state.cache)
        return State(self.arch, state.pos + toks.shape[1], freeze_cache(cache)), frozen_array(logits[0], np.float32)

    def unrolled(self, tokens: Sequence[int]) -> np.ndarray:
        """Logits [len(tokens), V] for a whole sequence from the initial state."""
        return self.prefill(self.init_state(), tokens)[1]

    def sample(self, logits: np.ndarray, rand: float) -> int:
        """The sampler alone: logits [V] and a rand in [0, 1) -> token id."""
        return sample_one(np.asarray(logits, np.float32), rand, self.sampler)

    def generate(self, prompt: Sequence[int], steps: int, seed: int = 0) -> list[int]:
        """``steps`` new tokens after ``prompt``; the token at position p uses ``rand_for(seed, p)``
        (:func:`lmstep.spec.interface.generate`)."""
        return generate(self, prompt, steps, seed)

    def generate_from(self, state: State, token: int, steps: int, seed: int) -> list[int]:
        """The ``steps`` tokens after consuming ``token`` at ``state.pos``: repeated :meth:`step`."""
        return step_loop(self, state, token, steps, seed)

    # -- input checks: one clear line each ---------------------------------------------------------------
    def _check_state(self, state: object) -> None:
        if not isinstance(state, State) or state.arch != self.arch:
            raise InputError(f"state must be a State of this {self.arch} model; get one from model.init_state()")
        if len(state.cache) != len(self.weights.layers):
            raise InputError("state has a different number of layers than the model; use model.init_state()")
        if _layout(state.cache) != _empty_layout(self.module, self.config):
            # e.g. a full-attention state given to a sliding-window model, whose decode would then see every key
            raise InputError(
                "state has other tensor shapes or another window than this model's; use model.init_state()"
            )

    def _check_tokens(self, tokens: Sequence[int], pos: int) -> list[int]:
        return check_tokens(tokens, pos, self.vocab_size, self.context_limit)


def _layout(cache: Iterable[tuple[StateTensor, StateTensor]]) -> tuple[tuple[object, ...], ...]:
    """Per state tensor, what a model fixes: a KV buffer's shape without its sequence axis and its window (keep),
    or an array's whole shape."""
    return tuple(
        (t.shape[: t.axis] + t.shape[t.axis + 1 :], t.keep) if isinstance(t, SeqBuffer) else (t.shape,)
        for pair in cache
        for t in pair
    )


@functools.cache
def _empty_layout(module: ModuleType, config: Config) -> tuple[tuple[object, ...], ...]:
    return _layout(module.empty_cache(config, 1))


def freeze_cache(cache: Iterable[tuple[StateTensor, StateTensor]]) -> tuple[tuple[StateTensor, StateTensor], ...]:
    """A cache that an architecture's forward/decode returned, as a State's immutable value: arrays (Mamba's
    conv and SSM states) become read-only copies; SeqBuffers (KV caches) already are values."""

    def freeze(t: StateTensor) -> StateTensor:
        return frozen_array(t) if isinstance(t, np.ndarray) else t

    return tuple((freeze(a), freeze(b)) for a, b in cache)


if TYPE_CHECKING:

    def _spec_model_is_a_language_model(model: Model) -> LanguageModel[State]:
        return model  # mypy checks Model against the Protocol (tests/test_types.py)
