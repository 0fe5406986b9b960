"""An OpenAI-compatible completions server as an implementation under check (``--impl openai:URL [options]``).

Such a server is stateless per request and shows only the top-N log-probabilities of a position, so a handle is
the token sequence itself (an immutable value) and every operation is one or more ``POST /v1/completions``:

    run(h, tokens)      rows=each (default): for each prefix h + tokens[:k+1] one request with max_tokens 1,
                        temperature 0 and logprobs N; row k is the first generated token's top_logprobs.
                        rows=echo: one request with echo, whose top_logprobs[i] is the distribution predicting
                        prompt token i (OpenAI's semantics), plus the generated token's for the last row.
    decode(h, t, rand, sampler)  one request on h + [t] with max_tokens 1, that decode's temperature / top_k /
                        top_p (protocol 2: the checker varies them per decode) and seed = the float32 bits of rand:
                        the row, and the sampled token. The server draws with its own RNG, so a sampled token is
                        graded at L3 (its distribution), greedy at L2 or better. The sampled token's entry that
                        OpenAI's top_logprobs add beyond the top N is left out of the row.

Capabilities: "fork" and "immutable" (a handle is a value), nothing to release (the server keeps no session);
no "state" or "batch": check with --skip-law state,batch.

What comes back is a TopLogprobs (logprobs.py), graded against the spec's log-softmax at those ids: L1 at best.
Every other sampling knob is sent neutral (min_p 0, repeat_penalty 1, penalties 0), since servers default some on.

Token ids in and out (``vocab=``):
    ids (default)  prompts are arrays of token ids (OpenAI's API allows them; vLLM, SGLang, llama.cpp's
                   llama-server take them), and the answer must name tokens by id: ``token_id:N`` keys (vLLM with
                   ``return_tokens_as_token_ids``, which this adapter sends) or ``id`` fields (llama-server's
                   ``logprobs.content``).
    spelled        for servers that take and return text only (llama-cpp-python's server): prompts spell token i
                   as U+F0000 + i, as a GGUF written with ``lmstep export --format gguf --vocab ids`` does, and
                   the answer's token texts are read back the same way.

A server that is down, slow (no reply within ``timeout`` seconds) or answers garbage is a failure of that
implementation (ImplementationError), reported by the checker with what went wrong; never a crash.
"""

from __future__ import annotations

import json
import socket
import urllib.error
import urllib.request
from collections.abc import Sequence
from typing import Any

import numpy as np

from lmstep.runtime.ggufio.vocab import char_id, id_char
from lmstep.spec import Model
from lmstep.spec.errors import InputError
from lmstep.spec.sampler import Sampler

from .impl_options import choice, integer, number, parse_options
from .logprobs import TopLogprobs
from .protocol import ImplementationError

OPTIONS = {
    "vocab": (choice("ids", "spelled"), "ids"),
    "rows": (choice("each", "echo"), "each"),
    "logprobs": (integer(1, 1 << 20), 20),
    "timeout": (number(0.1, 3600.0), 30.0),
    "model": (str, ""),
}
MAX_REPLY = 64 * 1024 * 1024


class OpenAIImpl:
    capabilities = frozenset({"fork", "immutable"})

    def __init__(self, model: Model, url: str, options: dict[str, Any], spec_text: str):
        self.model, self.opts, self.vocab_size = model, options, model.vocab_size
        self.name = f"server {spec_text}"
        self.endpoint = completions_url(url)
        self.base = self.endpoint.rsplit("/completions", 1)[0]
        self.n = min(options["logprobs"], model.vocab_size)
        self.served_model: str | None = options["model"] or None
        self._asked_model = bool(options["model"])

    @classmethod
    def open(cls, spec: str, model: Model) -> OpenAIImpl:
        url, options = parse_options("openai", spec, OPTIONS)
        if not url.startswith(("http://", "https://")):
            raise InputError(f"openai:{spec}: give the server's URL, e.g. openai:http://127.0.0.1:8000/v1")
        return cls(model, url, options, f"openai:{spec}")

    # -- HTTP ---------------------------------------------------------------------------------------------
    def _http(self, url: str, body: dict[str, Any] | None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
        timeout = self.opts["timeout"]
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                raw = resp.read(MAX_REPLY + 1)
        except urllib.error.HTTPError as err:
            detail = " ".join(err.read(400).decode("utf-8", "replace").split())
            hint = ""
            if body is not None and isinstance(body.get("prompt"), list) and "prompt" in detail:
                hint = " (a server without token-id prompts: use vocab=spelled with a GGUF exported with --vocab ids)"
            raise ImplementationError(f"openai: {url} answered HTTP {err.code}: {detail[:240]}{hint}") from None
        except urllib.error.URLError as err:
            if isinstance(err.reason, (socket.timeout, TimeoutError)):
                raise ImplementationError(f"openai: {url}: no reply within {timeout:g} s (timeout=)") from None
            raise ImplementationError(f"openai: cannot reach {url}: {err.reason}; is the server running?") from None
        except TimeoutError:
            raise ImplementationError(f"openai: {url}: no reply within {timeout:g} s (timeout=)") from None
        except (OSError, ValueError) as err:  # a connection reset mid-reply, a malformed status line
            raise ImplementationError(f"openai: {url}: the connection failed: {err}") from None
        if len(raw) > MAX_REPLY:
            raise ImplementationError(f"openai: {url}: a reply larger than {MAX_REPLY} bytes")
        try:
            return json.loads(raw)
        except ValueError:
            raise ImplementationError(f"openai: {url}: the reply is not JSON: {raw[:120]!r}") from None

    def _model_name(self) -> str | None:
        """The served model's name from /v1/models (vLLM requires it in every request), once."""
        if not self._asked_model:
            self._asked_model = True
            try:
                listing = self._http(self.base + "/models", None)
                self.served_model = str(listing["data"][0]["id"])
            except (ImplementationError, KeyError, IndexError, TypeError):
                self.served_model = None  # llama-cpp-python's server and others accept requests without one
        return self.served_model

    def _complete(self, tokens: Sequence[int], sampler: Sampler, seed: int, echo: bool = False) -> dict[str, Any]:
        body: dict[str, Any] = {
            "prompt": self._prompt(tokens),
            "max_tokens": 1,
            "logprobs": self.n,
            "echo": echo,
            "temperature": float(sampler.temperature),
            "top_p": float(sampler.top_p),
            "top_k": int(sampler.top_k),  # 0: off in llama.cpp, vLLM and SGLang
            "min_p": 0.0,
            "repeat_penalty": 1.0,
            "repetition_penalty": 1.0,
            "presence_penalty": 0.0,
            "frequency_penalty": 0.0,
            "seed": seed,
            "stream": False,
            "return_tokens_as_token_ids": self.opts["vocab"] == "ids",
        }
        name = self._model_name()
        if name is not None:
            body["model"] = name
        reply = self._http(self.endpoint, body)
        try:
            choice0 = reply["choices"][0]
            if not isinstance(choice0, dict):
                raise TypeError
        except (KeyError, IndexError, TypeError):
            raise ImplementationError(f"openai: the reply has no choices[0]: {_brief(reply)}") from None
        return choice0

    # -- token ids <-> the server's words -----------------------------------------------------------------
    def _prompt(self, tokens: Sequence[int]) -> Any:
        if self.opts["vocab"] == "spelled":
            return "".join(id_char(int(t)) for t in tokens)
        return [int(t) for t in tokens]

    def _token_id(self, key: Any) -> int:
        if isinstance(key, int) and not isinstance(key, bool):
            return key
        if isinstance(key, str):
            if self.opts["vocab"] == "spelled":
                i = char_id(key)
                if i is not None:
                    return i
            elif key.startswith("token_id:") and key[9:].isdigit():
                return int(key[9:])
        hint = (
            "the server must run a GGUF exported with --vocab ids"
            if self.opts["vocab"] == "spelled"
            else "the server must name tokens by id (vLLM: return_tokens_as_token_ids); for text-only servers "
            "use vocab=spelled with a GGUF exported with --vocab ids"
        )
        raise ImplementationError(f"openai: cannot tell which token id {_brief(key)} is: {hint}")

    def _positions(self, choice0: dict[str, Any]) -> list[tuple[dict[int, float], int | None]]:
        """Per position of the answer: (top log-probabilities by token id, the token there)."""
        lp = choice0.get("logprobs")
        if not isinstance(lp, dict):
            raise ImplementationError(f"openai: the reply has no logprobs (does the server return them?): {_brief(lp)}")
        out: list[tuple[dict[int, float], int | None]] = []
        if isinstance(lp.get("content"), list):  # llama.cpp's llama-server: entries with ids
            for entry in lp["content"]:
                try:
                    top = {self._token_id(t["id"]): _number(t["logprob"]) for t in entry["top_logprobs"]}
                    out.append((top, self._token_id(entry["id"])))
                except (KeyError, TypeError):
                    raise ImplementationError(f"openai: malformed logprobs.content entry {_brief(entry)}") from None
            return out
        tops, toks = lp.get("top_logprobs"), lp.get("tokens")
        if not isinstance(tops, list) or not isinstance(toks, list) or len(tops) != len(toks):
            raise ImplementationError(f"openai: logprobs needs top_logprobs and tokens of one length: {_brief(lp)}")
        for top, tok in zip(tops, toks):
            if top is None:  # the first echoed position has no distribution
                out.append(({}, self._token_id(tok)))
                continue
            if not isinstance(top, dict):
                raise ImplementationError(f"openai: a top_logprobs entry is not an object: {_brief(top)}")
            out.append(({self._token_id(k): _number(v) for k, v in top.items()}, self._token_id(tok)))
        return out

    def _first_generated(self, tokens: Sequence[int], sampler: Sampler, seed: int) -> tuple[dict[int, float], int]:
        positions = self._positions(self._complete(tokens, sampler, seed))
        if len(positions) != 1 or not positions[0][0] or positions[0][1] is None:
            raise ImplementationError(
                f"openai: max_tokens 1 without echo gave {len(positions)} log-probability entries, expected 1"
            )
        top, sampled = positions[0][0], int(positions[0][1])
        if len(top) > self.n and sampled in top:  # OpenAI's top_logprobs add the sampled token when outside the top N
            top = {i: v for i, v in top.items() if i != sampled}
        return top, sampled

    # -- the protocol -------------------------------------------------------------------------------------
    def init(self) -> tuple[int, ...]:
        return ()

    def fork(self, handle: tuple[int, ...]) -> tuple[int, ...]:
        return handle

    def run(self, handle: tuple[int, ...], tokens: Sequence[int]) -> tuple[tuple[int, ...], TopLogprobs]:
        new = handle + tuple(int(t) for t in tokens)
        greedy = Sampler()
        if self.opts["rows"] == "each":
            rows = [self._first_generated(new[: len(handle) + k + 1], greedy, 0)[0] for k in range(len(tokens))]
            return new, TopLogprobs.rows(rows)
        positions = self._positions(self._complete(new, greedy, 0, echo=True))
        if len(positions) != len(new) + 1:
            raise ImplementationError(
                f"openai: echo gave {len(positions)} log-probability entries for a {len(new)}-token prompt and "
                f"max_tokens 1; OpenAI's echo gives {len(new) + 1} (the prompt's, then the generated token's): "
                "use rows=each"
            )
        echoed = [t for _, t in positions[: len(new)]]
        if echoed != list(new):
            raise ImplementationError(
                f"openai: the echoed prompt is {echoed[:8]}..., not the tokens sent {list(new)[:8]}..."
            )
        return new, TopLogprobs.rows([top for top, _ in positions[len(handle) + 1 : len(new) + 1]])

    def decode(
        self, handle: tuple[int, ...], token: int, rand: float, sampler: Sampler | None = None
    ) -> tuple[tuple[int, ...], TopLogprobs, int]:
        new = handle + (int(token),)
        seed = int(np.array(rand, np.float32).view(np.uint32))
        top, sampled = self._first_generated(new, sampler or self.model.sampler, seed)
        if not 0 <= sampled < self.vocab_size:
            raise ImplementationError(f"openai: sampled token {sampled} is outside the vocabulary")
        return new, TopLogprobs.rows([top]), sampled

    def close(self) -> None:
        pass


def completions_url(url: str) -> str:
    url = url.rstrip("/")
    if url.endswith("/completions"):
        return url
    return url + ("/completions" if url.endswith("/v1") else "/v1/completions")


def _number(v: Any) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise ImplementationError(f"openai: a log-probability is not a number: {_brief(v)}")
    return float(v)


def _brief(v: Any) -> str:
    text = json.dumps(v) if not isinstance(v, str) else repr(v)
    return text if len(text) <= 160 else text[:157] + "..."
