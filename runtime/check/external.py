"""An implementation in any language, checked over a JSON-lines protocol on its stdin/stdout (docs/checking.md).

lmstep writes one JSON request per line and reads one JSON response per line. A crash, a hang (no answer within
``timeout`` seconds), output that is not JSON, or a malformed answer becomes an ``ImplementationError`` that
carries the tail of the program's stderr: a failure of that implementation, never a crash of lmstep.

Protocol versions: lmstep's hello names "lmstep-impl/2" (and the model's sampler settings); a program that answers
with "protocol": "lmstep-impl/2" gets the sampler settings with every decode, one that does not is spoken to in
"lmstep-impl/1" (no settings: it samples with --model's, which the hello announces).
"""

from __future__ import annotations

import collections
import json
import os
import selectors
import shlex
import subprocess
import threading
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from lmstep.spec import Sampler

from ..codec import CodecError, brief, decode_array, f32_hex
from .protocol import CAPABILITIES, ImplementationError, check_logits, check_token

PROTOCOL = "lmstep-impl/2"
PROTOCOLS = ("lmstep-impl/1", "lmstep-impl/2")
MAX_LINE = 256 * 1024 * 1024  # a reply larger than this is refused, not buffered forever


class CommandImpl:
    """Runs ``command`` once and keeps talking to it; ``close()`` asks it to exit, then kills it."""

    def __init__(self, command: str, model_info: dict[str, Any], timeout: float = 30.0, sampler: Sampler | None = None):
        try:
            argv = shlex.split(command)
        except ValueError as err:  # an unbalanced quote
            raise ImplementationError(f"cmd: cannot split {command[:80]!r} into arguments ({err})") from None
        if not argv:
            raise ImplementationError('cmd: the command is empty; use --impl cmd:"program args"')
        self.command, self.timeout = command, timeout
        try:
            self.proc = subprocess.Popen(
                argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, bufsize=0
            )
        except OSError as err:
            raise ImplementationError(f"cmd: cannot start {argv[0]!r}: {err.strerror}") from None
        self._stderr: collections.deque[str] = collections.deque(maxlen=40)
        threading.Thread(target=self._drain_stderr, daemon=True).start()
        self._buf = b""
        self._next_id = 0
        self._selector = selectors.DefaultSelector()
        self._selector.register(self.proc.stdout, selectors.EVENT_READ)
        s = sampler or Sampler()
        hello = self._call(
            {
                "op": "hello",
                "protocol": PROTOCOL,
                "protocols": list(PROTOCOLS),
                "model": model_info,
                "sampler": _settings(s),
            }
        )
        vocab, caps = hello.get("vocab_size"), hello.get("capabilities", [])
        spoken = hello.get("protocol", PROTOCOLS[0])
        if spoken not in PROTOCOLS:
            raise self._error(f"hello: protocol {brief(spoken)} is not one of {list(PROTOCOLS)}")
        self.protocol = PROTOCOLS.index(spoken) + 1
        if isinstance(vocab, bool) or not isinstance(vocab, int) or vocab < 1:
            raise self._error(f"hello: the reply needs vocab_size (an integer >= 1), got {brief(vocab)}")
        if not isinstance(caps, list) or not all(isinstance(c, str) for c in caps):
            raise self._error(f"hello: capabilities must be a list of names, got {brief(caps)}")
        self.vocab_size = vocab
        unknown = sorted(set(caps) - set(CAPABILITIES))
        if unknown:
            raise self._error(f"hello: unknown capabilities {unknown}; known: {list(CAPABILITIES)}")
        if self.vocab_size != model_info.get("vocab_size", self.vocab_size):
            raise self._error(
                f"hello: vocab_size {self.vocab_size} differs from the model's {model_info['vocab_size']}"
            )
        self.capabilities = frozenset(caps)
        self.name = str(hello.get("name", f"cmd:{command}"))

    # -- the protocol operations -------------------------------------------------------------------------
    def init(self) -> Any:
        return self._handle(self._call({"op": "init"}), "init")

    def run(self, handle: Any, tokens: Sequence[int]) -> tuple[Any, np.ndarray]:
        reply = self._call({"op": "run", "handle": handle, "tokens": [int(t) for t in tokens]})
        return self._handle(reply, "run"), check_logits(self._array(reply, "run"), len(tokens), self.vocab_size, "run")

    def decode(
        self, handle: Any, token: int, rand: float, sampler: Sampler | None = None
    ) -> tuple[Any, np.ndarray, int]:
        request = {"op": "decode", "handle": handle, "token": int(token), "rand": f32_hex(rand)}
        if sampler is not None and self.protocol >= 2:
            request["sampler"] = _settings(sampler)
        reply = self._call(request)
        logits = check_logits(self._array(reply, "decode"), None, self.vocab_size, "decode")
        return self._handle(reply, "decode"), logits, check_token(reply.get("token"), self.vocab_size, "decode")

    def fork(self, handle: Any) -> Any:
        return self._handle(self._call({"op": "fork", "handle": handle}), "fork")

    def state(self, handle: Any) -> dict[str, np.ndarray]:
        reply = self._call({"op": "state", "handle": handle})
        arrays = reply.get("arrays")
        if not isinstance(arrays, dict):
            raise self._error("state: the reply needs arrays: {name: array}")
        try:
            return {str(k): decode_array(v) for k, v in arrays.items()}
        except CodecError as err:
            raise self._error(f"state: {err}") from None

    def run_batch(self, handles: Sequence[Any], chunks: Sequence[Sequence[int]]) -> list[tuple[Any, np.ndarray]]:
        reply = self._call(
            {"op": "run_batch", "handles": list(handles), "tokens": [[int(t) for t in c] for c in chunks]}
        )
        results = reply.get("results")
        if not isinstance(results, list) or len(results) != len(chunks):
            raise self._error(f"run_batch: expected results for {len(chunks)} sequences")
        return [
            (
                self._handle(r, "run_batch"),
                check_logits(self._array(r, "run_batch"), len(c), self.vocab_size, "run_batch"),
            )
            for r, c in zip(results, chunks)
        ]

    def release(self, handle: Any) -> None:
        self._call({"op": "release", "handle": handle})

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self._send({"op": "bye"})
                self.proc.wait(timeout=2)
            except (ImplementationError, subprocess.TimeoutExpired, OSError):
                self.proc.kill()
                self.proc.wait()

    # -- transport ---------------------------------------------------------------------------------------
    def _call(self, request: dict[str, Any]) -> dict[str, Any]:
        self._next_id += 1
        request = {"id": self._next_id, **request}
        self._send(request)
        line = self._read_line(request["op"])
        try:
            reply = json.loads(line)
        except (ValueError, UnicodeDecodeError, RecursionError):  # not JSON, not UTF-8, too deep, a huge number
            raise self._error(f"{request['op']}: the reply is not JSON: {line[:80]!r}") from None
        if not isinstance(reply, dict):
            raise self._error(f"{request['op']}: the reply is not a JSON object")
        if reply.get("ok") is False:  # the program is alive and answered: its operations can be replayed
            raise self._error(
                f"{request['op']}: the implementation reported: {brief(reply.get('error'), 200)}", alive=True
            )
        if reply.get("id", request["id"]) != request["id"]:
            raise self._error(
                f"{request['op']}: reply id {brief(reply.get('id'))} does not answer request {request['id']}"
            )
        return reply

    def _send(self, request: dict[str, Any]) -> None:
        try:
            self.proc.stdin.write((json.dumps(request) + "\n").encode())
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            raise self._error(f"{request['op']}: the program is not reading its input (exited?)") from None

    def _read_line(self, op: str) -> bytes:
        deadline = time.monotonic() + self.timeout
        while b"\n" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0:
                self.proc.kill()
                raise self._error(f"{op}: no reply within {self.timeout:g} s (hung?); it was stopped")
            if not self._selector.select(timeout=left):
                continue
            chunk = os.read(self.proc.stdout.fileno(), 1 << 16)
            if not chunk:
                self.proc.wait()
                raise self._error(f"{op}: the program exited with status {self.proc.returncode} before replying")
            self._buf += chunk
            if len(self._buf) > MAX_LINE:
                self.proc.kill()
                raise self._error(f"{op}: a reply longer than {MAX_LINE >> 20} MiB without a newline")
        line, self._buf = self._buf.split(b"\n", 1)
        return line

    def _handle(self, reply: Any, op: str) -> Any:
        if not isinstance(reply, dict) or not isinstance(reply.get("handle"), (str, int)):
            raise self._error(f"{op}: the reply needs a handle (a string or integer)")
        return reply["handle"]

    def _array(self, reply: Any, op: str) -> np.ndarray:
        try:
            return decode_array(reply["logits"])
        except (KeyError, TypeError):  # no logits, or a reply that is not an object
            raise self._error(f"{op}: the reply has no logits") from None
        except CodecError as err:
            raise self._error(f"{op}: logits: {err}") from None

    def _drain_stderr(self) -> None:
        for raw in iter(self.proc.stderr.readline, b""):
            self._stderr.append(raw.decode("utf-8", "replace").rstrip())

    def stderr_tail(self, lines: int = 10) -> str:
        time.sleep(0.05)  # let the drain thread catch up with a program that just died
        return "\n".join(list(self._stderr)[-lines:])

    def _error(self, message: str, alive: bool = False) -> ImplementationError:
        # the stderr tail is shown by the report under the one-line message
        return ImplementationError(f"cmd:{self.command}: {message}", alive=alive, tail=self.stderr_tail())


def _settings(s: Sampler) -> dict[str, Any]:
    """Sampler settings as the protocol sends them: float32 bit patterns and an integer."""
    return {"temperature": f32_hex(s.temperature), "top_k": int(s.top_k), "top_p": f32_hex(s.top_p)}
