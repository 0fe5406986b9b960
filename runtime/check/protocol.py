"""The minimum an implementation offers to be checked against the spec (documented in docs/checking.md).

    init()                        -> handle              an empty state (no tokens consumed)
    run(handle, tokens)           -> (handle', logits)   consume a chunk of >= 1 tokens with the cache in handle;
                                                         logits float32 [len(tokens), V], row i predicts the
                                                         token after tokens[i]
    decode(handle, token, rand)   -> (handle', logits [V], sampled token)    one step with an explicit rand

Optional, announced in ``capabilities``:
    "fork"     fork(handle) -> an independent copy (a snapshot to resume from later)
    "state"    state(handle) -> {name: array}, named like the spec's State.arrays() (full-state comparison)
    "batch"    run_batch([handle, ...], [tokens, ...]) -> [(handle', logits), ...] in one batched call
    "immutable" handles stay valid after use (like the spec's states), so old ones may be stepped again

Handles are opaque. Without "immutable", the checker never reuses a handle after passing it to run/decode.
An engine that shows only its top-N log-probabilities (an OpenAI-compatible server) returns a
logprobs.TopLogprobs where the logits go; the checker grades it against the spec's log-softmax (L1 at best).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np

from lmstep.spec.errors import LmstepError

CAPABILITIES = ("fork", "state", "batch", "immutable")


class ImplementationError(LmstepError):
    """The implementation under check crashed, hung, or answered something malformed.

    This is a finding about that implementation, not an lmstep crash: the checker reports it as a failure.
    """


@runtime_checkable
class Implementation(Protocol):
    name: str
    vocab_size: int
    capabilities: frozenset[str]

    def init(self) -> Any: ...

    def run(self, handle: Any, tokens: Sequence[int]) -> tuple[Any, np.ndarray]: ...

    def decode(self, handle: Any, token: int, rand: float) -> tuple[Any, np.ndarray, int]: ...


def check_logits(logits: Any, rows: int | None, vocab: int, what: str) -> np.ndarray:
    """Validate what an implementation returned: a float array of the right shape, else ImplementationError."""
    try:
        arr = np.asarray(logits, dtype=np.float32)
    except (TypeError, ValueError) as err:
        raise ImplementationError(f"{what}: logits are not numeric ({err})") from None
    want = (vocab,) if rows is None else (rows, vocab)
    if arr.shape != want:
        raise ImplementationError(f"{what}: logits have shape {list(arr.shape)}, expected {list(want)}")
    return arr


def check_token(token: Any, vocab: int, what: str) -> int:
    if isinstance(token, bool) or not isinstance(token, (int, np.integer)) or not 0 <= int(token) < vocab:
        raise ImplementationError(f"{what}: sampled token {token!r} is not an id in [0, {vocab})")
    return int(token)
