"""The minimum an implementation offers to be checked against the spec (documented in docs/checking.md).

    init()                        -> handle              an empty state (no tokens consumed)
    run(handle, tokens)           -> (handle', logits)   consume a chunk of >= 1 tokens with the cache in handle;
                                                         logits float32 [len(tokens), V], row i predicts the
                                                         token after tokens[i]
    decode(handle, token, rand, sampler)                 one step with an explicit rand and sampler settings
                                  -> (handle', logits [V], sampled token)
                                                         (protocol 2; an implementation whose decode takes no
                                                         ``sampler`` is protocol 1 and samples with --model's)

Optional, announced in ``capabilities``:
    "fork"     fork(handle) -> an independent copy (a snapshot to resume from later)
    "state"    state(handle) -> {name: array}, named like the spec's State.arrays() (full-state comparison)
    "batch"    run_batch([handle, ...], [tokens, ...]) -> [(handle', logits), ...] in one batched call
    "immutable" handles stay valid after use (like the spec's states), so old ones may be stepped again
    "release"  release(handle): the checker will not use this handle again (an engine with a fixed number of
               sequence slots frees one); the checker releases every handle it holds when a run ends

Handles are opaque. Without "immutable", the checker never reuses a handle after passing it to run/decode.
An engine that shows only its top-N log-probabilities (an OpenAI-compatible server) returns a
logprobs.TopLogprobs where the logits go; the checker grades it against the spec's log-softmax (L1 at best).
:class:`Guarded` wraps every implementation the checker drives: an exception inside it becomes an
:class:`ImplementationError` carrying its traceback tail, and every reply is validated.
"""

from __future__ import annotations

import inspect
import traceback
from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np

from lmstep.spec import Sampler
from lmstep.spec.errors import LmstepError

CAPABILITIES = ("fork", "state", "batch", "immutable", "release")


class ImplementationError(LmstepError):
    """The implementation under check crashed, hung, raised, or answered something malformed.

    This is a finding about that implementation, not an lmstep crash: the checker reports it as a failure.
    ``alive``: the implementation can still be called (an exception in a Python implementation, an error reply of
    a program), so the operations that led to it can be replayed and shrunk; a program that died or garbled its
    output cannot. ``tail``/``tail_kind``: the last lines of its stderr or of the traceback."""

    def __init__(self, message: str, *, alive: bool = False, tail: str = "", tail_kind: str = "stderr"):
        super().__init__(message)
        self.alive, self.tail, self.tail_kind = alive, tail, tail_kind

    @property
    def stderr_tail(self) -> str:  # the name reports and older callers use
        return self.tail


@runtime_checkable
class Implementation(Protocol):
    name: str
    vocab_size: int
    capabilities: frozenset[str]

    def init(self) -> Any: ...

    def run(self, handle: Any, tokens: Sequence[int]) -> tuple[Any, np.ndarray]: ...

    def decode(self, handle: Any, token: int, rand: float, sampler: Sampler) -> tuple[Any, np.ndarray, int]: ...


def check_logits(logits: Any, rows: int | None, vocab: int, what: str) -> Any:
    """Validate what an implementation returned: a float array of the right shape, else ImplementationError.
    A TopLogprobs (an engine that shows only log-probabilities) needs one row per position."""
    from .logprobs import TopLogprobs

    if isinstance(logits, TopLogprobs):
        if len(logits) != (1 if rows is None else rows):
            raise ImplementationError(
                f"{what}: {len(logits)} rows of log-probabilities, expected {1 if rows is None else rows}", alive=True
            )
        return logits
    try:
        arr = np.asarray(logits, dtype=np.float32)
    except (TypeError, ValueError) as err:
        raise ImplementationError(f"{what}: logits are not numeric ({err})", alive=True) from None
    want = (vocab,) if rows is None else (rows, vocab)
    if arr.shape != want:
        raise ImplementationError(f"{what}: logits have shape {list(arr.shape)}, expected {list(want)}", alive=True)
    return arr


def check_token(token: Any, vocab: int, what: str) -> int:
    if isinstance(token, bool) or not isinstance(token, (int, np.integer)) or not 0 <= int(token) < vocab:
        raise ImplementationError(f"{what}: sampled token {token!r} is not an id in [0, {vocab})", alive=True)
    return int(token)


def speaks_v2(impl: Any) -> bool:
    """Does ``impl.decode`` take sampler settings (protocol 2)? A program says so in its hello reply; a Python
    object by accepting a fourth argument."""
    declared = getattr(impl, "protocol", None)
    if declared is not None:
        return declared >= 2
    try:
        params = list(inspect.signature(impl.decode).parameters.values())
    except (TypeError, ValueError):
        return False
    if any(p.kind == p.VAR_POSITIONAL for p in params) or any(p.name == "sampler" for p in params):
        return True
    return len([p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]) >= 4


def _traceback_tail(err: BaseException, lines: int = 12) -> str:
    """The traceback from the implementation's own frames on (the checker's call into it left out)."""
    tb = err.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_filename == __file__:
        tb = tb.tb_next
    text = "".join(traceback.format_exception(type(err), err, tb)).rstrip().splitlines()
    return "\n".join(text[-lines:])


class Guarded:
    """The implementation as the checker sees it: the same operations, but an exception raised inside becomes an
    ImplementationError (alive, with the traceback tail), replies are validated, protocol-1 implementations get
    no sampler argument, and handles are counted (to explain an engine that refuses new sessions)."""

    def __init__(self, impl: Any):
        self.inner = impl
        self.name = str(getattr(impl, "name", type(impl).__name__))
        self.vocab_size = int(impl.vocab_size)
        self.capabilities = frozenset(impl.capabilities)
        self.v2 = speaks_v2(impl)
        self.created = self.released = 0

    @property
    def live(self) -> int:
        return self.created - self.released

    def _call(self, what: str, fn: Any, *args: Any) -> Any:
        try:
            return fn(*args)
        except ImplementationError:
            raise
        except Exception as err:  # the implementation's own code raised: its failure, with where it happened
            text = " ".join(str(err).split())[:300]
            raise ImplementationError(
                f"{what} raised {type(err).__name__}" + (f": {text}" if text else ""),
                alive=True,
                tail=_traceback_tail(err),
                tail_kind="traceback",
            ) from None

    def _new(self, what: str, fn: Any, *args: Any) -> Any:
        try:
            handle = self._call(what, fn, *args)
        except ImplementationError as err:
            if "release" in self.capabilities:
                hint = f"raise its session limit to at least {self.live + 1}"
            else:
                hint = "declare the capability 'release' (release(handle) frees a session) or raise its session limit"
            err.args = (
                f"{err.args[0]} (the checker held {self.live} handles; if the engine has a fixed number of "
                f"sessions: {hint})",
            )
            err.alive = False  # a refused session may depend on every earlier run: replaying one run proves nothing
            raise
        self.created += 1
        return handle

    def init(self) -> Any:
        return self._new("init", self.inner.init)

    def fork(self, handle: Any) -> Any:
        return self._new("fork", self.inner.fork, handle)

    def run(self, handle: Any, tokens: Sequence[int]) -> tuple[Any, np.ndarray]:
        out = self._call("run", self.inner.run, handle, list(tokens))
        new, logits = _pair(out, "run")
        return new, check_logits(logits, len(tokens), self.vocab_size, "run")

    def decode(self, handle: Any, token: int, rand: float, sampler: Sampler | None) -> tuple[Any, np.ndarray, int]:
        args = (handle, token, rand) if not self.v2 or sampler is None else (handle, token, rand, sampler)
        out = self._call("decode", self.inner.decode, *args)
        if not isinstance(out, (tuple, list)) or len(out) != 3:
            raise ImplementationError("decode must return (handle, logits [V], token)", alive=True)
        logits = check_logits(out[1], None, self.vocab_size, "decode")
        return out[0], logits, check_token(out[2], self.vocab_size, "decode")

    def state(self, handle: Any) -> dict[str, np.ndarray]:
        arrays = self._call("state", self.inner.state, handle)
        if not isinstance(arrays, dict):
            raise ImplementationError("state must return {name: array}", alive=True)
        return arrays

    def run_batch(self, handles: Sequence[Any], chunks: Sequence[Sequence[int]]) -> list[tuple[Any, np.ndarray]]:
        out = self._call("run_batch", self.inner.run_batch, list(handles), [list(c) for c in chunks])
        if not isinstance(out, (tuple, list)) or len(out) != len(chunks):
            raise ImplementationError(
                f"run_batch must return one (handle, logits) per sequence ({len(chunks)})", alive=True
            )
        pairs = [_pair(r, "run_batch") for r in out]
        return [(h, check_logits(z, len(c), self.vocab_size, "run_batch")) for (h, z), c in zip(pairs, chunks)]

    def release(self, handle: Any) -> None:
        self._call("release", self.inner.release, handle)
        self.released += 1

    def close(self) -> None:
        getattr(self.inner, "close", lambda: None)()


def _pair(out: Any, what: str) -> tuple[Any, Any]:
    if not isinstance(out, (tuple, list)) or len(out) != 2:
        raise ImplementationError(f"{what} must return (handle, logits)", alive=True)
    return out[0], out[1]


def guard(impl: Any) -> Guarded:
    return impl if isinstance(impl, Guarded) else Guarded(impl)
