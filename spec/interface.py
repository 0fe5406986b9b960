"""The model interface every implementation offers, and the one ``generate`` over it (SPEC.md §1).

Two classes implement :class:`LanguageModel`: ``lmstep.spec.Model`` (numpy, the reference) and
``lmstep.runtime.onnx_model.OnnxModel`` (the exported graphs on onnxruntime). Both get ``generate`` from
:func:`generate` below, so they take the same decisions by construction; they differ only in how they compute
logits and states (and there within the tolerances of SPEC.md §8).

    generate(prompt, n, seed):  state, z = prefill(init_state(), prompt)
                                token at position p = len(prompt): sample(z[-1], rand_for(seed, p))
                                then generate_from(state, token, n - 1, seed): one step per token, the token at
                                position p drawn with rand_for(seed, p)

``generate_from`` is the decode loop: :func:`step_loop` (repeated ``step``) is its definition, which the spec
uses; an implementation may run a faster loop (OnnxModel binds private buffers) that must equal it
(tests/test_runtime_ort.py checks).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol, Self, TypeVar, runtime_checkable

import numpy as np

from .errors import InputError
from .rand import check_seed, rand_for
from .sampler import Sampler

if TYPE_CHECKING:
    from .model import StepOutput


@runtime_checkable
class ModelState(Protocol):
    """A state value: ``pos`` tokens consumed; ``arrays()`` names its tensors as the ONNX contract does."""

    @property
    def arch(self) -> str: ...

    @property
    def pos(self) -> int: ...

    def arrays(self) -> dict[str, np.ndarray]: ...

    def digest(self) -> str: ...


S = TypeVar("S", bound=ModelState)


@runtime_checkable
class LanguageModel(Protocol[S]):
    """step / prefill / unrolled / sample / generate over immutable states of type ``S`` (SPEC.md §1)."""

    @property
    def arch(self) -> str: ...

    @property
    def name(self) -> str: ...

    @property
    def sampler(self) -> Sampler: ...

    @property
    def vocab_size(self) -> int: ...

    @property
    def context_limit(self) -> int | None: ...

    def weights_digest(self) -> str:
        """sha256 of the weights (SPEC.md §9): equal for a spec model and its export."""
        ...

    def with_sampler(self, **settings: float) -> Self:
        """The same model with other sampler settings (temperature, top_k, top_p)."""
        ...

    def init_state(self) -> S:
        """The state before any token."""
        ...

    def step(self, state: S, token: int, rand: float) -> tuple[S, StepOutput]:
        """Consume ``token`` at ``state.pos``; sample the next token with ``rand`` (recurrent form)."""
        ...

    def prefill(self, state: S, tokens: Sequence[int]) -> tuple[S, np.ndarray]:
        """Consume ``tokens`` after ``state`` at once (unrolled form) -> (state', logits [len, V] float32)."""
        ...

    def unrolled(self, tokens: Sequence[int]) -> np.ndarray:
        """Logits [len(tokens), V] from the initial state: ``prefill(init_state(), tokens)[1]``."""
        ...

    def sample(self, logits: np.ndarray, rand: float) -> int:
        """The sampler alone (SPEC.md §3): logits [V] and a rand in [0, 1) -> token id."""
        ...

    def generate(self, prompt: Sequence[int], steps: int, seed: int = 0) -> list[int]:
        """``steps`` new tokens after ``prompt``: :func:`generate`."""
        ...

    def generate_from(self, state: S, token: int, steps: int, seed: int) -> list[int]:
        """The ``steps`` tokens after consuming ``token`` at ``state.pos``: :func:`step_loop`, or a loop equal to it."""
        ...


def check_tokens(tokens: Sequence[int] | np.ndarray, pos: int, vocab_size: int, context_limit: int | None) -> list[int]:
    """``tokens`` as a list of ints, or a one-line InputError: non-empty, 1-D integers in [0, vocab_size), and
    positions pos .. pos + len - 1 within the context (SPEC.md §1, input validation)."""
    if isinstance(tokens, np.ndarray):
        if tokens.ndim != 1 or not np.issubdtype(tokens.dtype, np.integer):
            raise InputError(f"tokens must be a 1-D sequence of integers, got array {tokens.dtype}{tokens.shape}")
        tokens = tokens.tolist()
    tokens = list(tokens)
    if not tokens:
        raise InputError("tokens is empty: give at least one token id")
    for t in tokens:
        if isinstance(t, bool) or not isinstance(t, (int, np.integer)):
            raise InputError(f"token ids must be integers, got {t!r}")
        if not 0 <= t < vocab_size:
            raise InputError(f"token id {t} is outside the vocabulary [0, {vocab_size}); use ids below {vocab_size}")
    if context_limit is not None and pos + len(tokens) > context_limit:
        raise InputError(
            f"position {pos + len(tokens) - 1} is beyond the model's context of {context_limit} tokens; "
            "use a shorter prompt or fewer steps"
        )
    return [int(t) for t in tokens]


def check_steps(steps: object) -> int:
    """The number of tokens to generate: an int >= 0, or a one-line InputError."""
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
        raise InputError(f"steps must be an integer >= 0, got {steps!r}")
    return steps


def generate(model: LanguageModel[S], prompt: Sequence[int], steps: int, seed: int = 0) -> list[int]:
    """``steps`` new tokens after ``prompt``; the token at position p uses ``rand_for(seed, p)`` (SPEC.md §1).

    Everything is checked before any computation: ``steps``, the prompt, and that the whole run fits the context
    (the last generated token is sampled but never consumed, so positions up to len(prompt) + steps - 2 are)."""
    check_steps(steps)
    prompt = check_tokens(prompt, 0, model.vocab_size, model.context_limit)
    check_tokens(prompt + [0] * max(steps - 1, 0), 0, model.vocab_size, model.context_limit)
    check_seed(seed)
    if steps == 0:
        return []
    state, logits = model.prefill(model.init_state(), prompt)
    first = model.sample(logits[-1], rand_for(seed, state.pos))
    return [first] + model.generate_from(state, first, steps - 1, seed)


def step_loop(model: LanguageModel[S], state: S, token: int, steps: int, seed: int) -> list[int]:
    """The definition of ``generate_from``: ``steps`` calls of ``step``, each consuming the previous token (all of
    them checked to fit the context first)."""
    check_steps(steps)
    if steps:
        check_tokens([token] * steps, state.pos, model.vocab_size, model.context_limit)
    out: list[int] = []
    while len(out) < steps:
        state, step_out = model.step(state, token, rand_for(seed, state.pos + 1))
        token = step_out.token
        out.append(token)
    return out
