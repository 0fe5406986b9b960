"""llama.cpp as an implementation under check, in process through llama-cpp-python's low-level API
(``--impl llamacpp:FILE.gguf [options]``, or ``llamacpp:`` to export ``--model`` to a cached GGUF first).

How each protocol operation maps onto llama.cpp (one context, one unified KV cache or recurrent memory shared by
up to ``seqs`` sequences; a handle is a sequence id and its position):

    init        a free sequence id (its memory emptied with llama_memory_seq_rm)
    run         one llama_decode of the whole chunk with a logits row requested for every token
    decode      llama_decode of one token, then the sampler: lmstep's (SPEC.md §3) on llama.cpp's logits by
                default, or llama.cpp's own chain (sampler=native: top-k, top-p, temperature, then a draw seeded
                with the rand's float32 bits: a different RNG, so at best L3)
    fork        llama_memory_seq_cp into a free sequence id (cells shared, copied on write)
    run_batch   one llama_decode holding every sequence's chunk, each token tagged with its sequence
    state       llama_state_seq_get_data, parsed (llamacpp_state.py) into the spec's names and layout: keys
                [1, K, pos, D] back in rotate-half order (llama.cpp's "normal" RoPE caches adjacent pairs)
    release     llama_memory_seq_rm (capability "release": the checker releases every handle it is done with);
                a handle dropped without release is freed when it is garbage-collected, as a fallback

A context holds at most ``seqs`` sequences (n_seq_max): a check that needs more live handles than that gets a
clear failure naming the limit (protocol.Guarded adds how many handles the checker held).

Options (impl_options.py): kv=f32|f16|bf16|q8_0 (KV-cache type, default f32), fa=off|on (flash attention),
threads=N, sampler=lmstep|native, ctx=N (KV cells shared by all live sequences), seqs=N (at most 256).
ctx must hold the deepest sequence the checker drives (:func:`cells_needed`: the thorough coverage run's main
line, up to the model's context) beside the others; a smaller ctx is refused when the engine is opened, so a
check never reports a full cache as a finding about llama.cpp. The default is four times the model's context (at
most 4096), and never less than that need.
"""

from __future__ import annotations

import collections
import ctypes
import os
import weakref
from collections.abc import Sequence
from typing import Any

import numpy as np

from lmstep.spec import Model
from lmstep.spec.errors import InputError
from lmstep.spec.sampler import Sampler, sample_one

from .impl_options import choice, integer, parse_options
from .protocol import CAPABILITIES, ImplementationError

GGML_TYPES = {"f32": 0, "f16": 1, "q8_0": 8, "bf16": 30}
OPTIONS = {
    "kv": (choice(*GGML_TYPES), "f32"),
    "fa": (choice("off", "on"), "off"),
    "threads": (integer(1, 256), 1),
    "sampler": (choice("lmstep", "native"), "lmstep"),
    "ctx": (integer(16, 1 << 24), 0),  # 0: 4 x min(context, 4096)
    "seqs": (integer(1, 256), 256),
    "vocab": (choice("model", "ids"), "model"),  # the vocabulary of the GGUF written for llamacpp: (no file)
}
SIDE_CELLS = 256  # cells for the sessions beside the deepest one (coverage.py's side work stays below 100 tokens)
LOG_TAIL: collections.deque[str] = collections.deque(maxlen=30)
_STATE: dict[str, Any] = {}


def _lib() -> Any:
    """llama_cpp, initialised once, with llama.cpp's log captured (its tail explains a failed load)."""
    if "lib" in _STATE:
        return _STATE["lib"]
    try:
        import llama_cpp
    except ImportError:
        raise InputError("--impl llamacpp needs llama-cpp-python: pip install -e '.[llamacpp]'") from None

    @llama_cpp.llama_log_callback
    def keep(level: int, text: bytes, user_data: Any) -> None:
        line = (text or b"").decode("utf-8", "replace").rstrip()
        if line:
            LOG_TAIL.append(line)

    llama_cpp.llama_log_set(keep, ctypes.c_void_p(0))
    llama_cpp.llama_backend_init()
    _STATE.update(lib=llama_cpp, log=keep)  # the callback must outlive every call
    return llama_cpp


def cells_needed(model: Model) -> int:
    """KV cells the checker can need at once: its deepest session, the main line of the thorough coverage run
    (coverage.py: chunks of LENGTHS with a decode after each until past DEPTH["thorough"]), capped by the model's
    context, plus the sessions beside it. A recurrent model (Mamba) keeps no cells per position: ctx then only
    bounds a llama_decode's tokens (n_batch), and the longest chunk is the need."""
    from .coverage import DEPTH, LENGTHS

    pos = 0
    for n in LENGTHS:
        pos += n + 1
        if pos > DEPTH["thorough"]:
            break
    if model.arch == "mamba":
        return max(LENGTHS) + 1
    return min(pos, model.context_limit or pos) + SIDE_CELLS


def log_tail(n: int = 6) -> str:
    useful = [ln for ln in LOG_TAIL if len(ln.strip(". ")) > 2]  # not the loader's progress dots
    lines = [ln for ln in useful if "error" in ln.lower() or "failed" in ln.lower() or "not" in ln] or useful
    return " | ".join(lines[-n:])


class Seq:
    """A handle: a llama.cpp sequence id and how many tokens it holds."""

    def __init__(self, impl: LlamaCppImpl, seq: int, pos: int):
        self.seq, self.pos = seq, pos
        self._free = weakref.finalize(self, impl._garbage.append, seq)

    def __repr__(self) -> str:
        return f"Seq(id={self.seq}, pos={self.pos})"


class LlamaCppImpl:
    def __init__(self, model: Model, path: str, options: dict[str, Any], spec_text: str):
        need = cells_needed(model)
        if options["ctx"] and options["ctx"] < need:
            raise InputError(
                f"llamacpp: ctx={options['ctx']} is below the {need} KV cells the check can need at once (its "
                f"deepest sequence, up to the model's context, beside the others); use ctx>={need} or leave ctx unset"
            )
        L = self.L = _lib()
        self.model, self.path, self.opts = model, path, options
        self.name = f"llama.cpp {spec_text}".strip()
        params = L.llama_model_default_params()
        params.n_gpu_layers = 0
        LOG_TAIL.clear()
        self.lm = L.llama_model_load_from_file(os.fsencode(path), params)
        if not self.lm:
            raise InputError(f"llamacpp:{path}: llama.cpp cannot load it: {log_tail() or 'no reason given'}")
        self._check_model()
        n_ctx = options["ctx"] or max(4 * min(model.context_limit or 4096, 4096), need)
        cp = L.llama_context_default_params()
        cp.n_ctx, cp.n_batch, cp.n_ubatch, cp.n_seq_max = n_ctx, n_ctx, min(512, n_ctx), options["seqs"]
        cp.n_threads = cp.n_threads_batch = options["threads"]
        cp.type_k = cp.type_v = GGML_TYPES[options["kv"]]
        cp.flash_attn_type = 1 if options["fa"] == "on" else 0
        cp.kv_unified = True  # one cell pool for every sequence: a fork shares its cells instead of copying them
        cp.no_perf = True
        self.ctx = L.llama_init_from_model(self.lm, cp)
        if not self.ctx:
            L.llama_model_free(self.lm)
            raise InputError(f"llamacpp:{path}: llama.cpp cannot create a context: {log_tail() or 'no reason'}")
        self.mem = L.llama_get_memory(self.ctx)
        self.vocab_size = L.llama_vocab_n_tokens(L.llama_model_get_vocab(self.lm))
        if self.vocab_size != model.vocab_size:
            self.close()
            raise InputError(f"llamacpp:{path}: vocabulary {self.vocab_size} != the model's {model.vocab_size}")
        self.n_ctx, self.seqs = n_ctx, options["seqs"]
        self.free = list(range(self.seqs - 1, -1, -1))
        self._garbage: list[int] = []
        self.interleaved = L.llama_model_rope_type(self.lm) == 0  # LLAMA_ROPE_TYPE_NORM: adjacent pairs
        caps = {"fork", "batch"}
        if options["kv"] in ("f32", "f16", "bf16"):
            caps.add("state")  # a quantized cache (q8_0) is not read back as numbers
        if "release" in CAPABILITIES:
            caps.add("release")
        self.capabilities = frozenset(caps)

    @classmethod
    def open(cls, spec: str, model: Model) -> LlamaCppImpl:
        target, options = parse_options("llamacpp", spec, OPTIONS)
        if not target:
            from lmstep.runtime.ggufio import cached_gguf

            target = str(cached_gguf(model, options["vocab"]))
        elif not os.path.isfile(target):
            raise InputError(f"llamacpp:{target}: no such file; give a .gguf file, or llamacpp: to export --model")
        return cls(model, target, options, f"llamacpp:{spec}")

    def _meta(self, key: str) -> str | None:
        buf = ctypes.create_string_buffer(256)
        n = self.L.llama_model_meta_val_str(self.lm, key.encode(), buf, len(buf))
        return buf.value.decode() if n >= 0 else None

    def _check_model(self) -> None:
        """A GGUF lmstep wrote records the weights it holds: they must be --model's (any other GGUF is taken as
        it is, and its vocabulary and state shapes are checked as they are used)."""
        digest = self._meta("lmstep.weights_digest")
        if digest is not None and len(digest) == 64 and digest != self.model.weights_digest():
            self.L.llama_model_free(self.lm)
            raise InputError(
                f"llamacpp:{self.path}: holds other weights (digest {digest[:12]}) than --model "
                f"({self.model.weights_digest()[:12]}); export it again with lmstep export --format gguf"
            )

    # -- sequences ----------------------------------------------------------------------------------------
    def _alloc(self) -> int:
        while self._garbage:
            seq = self._garbage.pop()
            self.L.llama_memory_seq_rm(self.mem, seq, -1, -1)
            self.free.append(seq)
        if not self.free:
            raise ImplementationError(
                f"llama.cpp: all {self.seqs} sequences are in use (seqs={self.seqs}; llama.cpp allows 256)"
            )
        return self.free.pop()

    def release(self, handle: Seq) -> None:
        handle._free.detach()
        self.L.llama_memory_seq_rm(self.mem, handle.seq, -1, -1)
        self.free.append(handle.seq)

    # -- the protocol -------------------------------------------------------------------------------------
    def init(self) -> Seq:
        seq = self._alloc()
        self.L.llama_memory_seq_rm(self.mem, seq, -1, -1)
        return Seq(self, seq, 0)

    def _decode(self, items: list[tuple[Seq, Sequence[int]]]) -> np.ndarray:
        """One llama_decode of every (sequence, tokens) -> logits [total tokens, V] in the same order."""
        L = self.L
        total = sum(len(t) for _, t in items)
        if total > self.n_ctx:
            raise ImplementationError(f"llama.cpp: a batch of {total} tokens exceeds ctx={self.n_ctx}")
        batch = L.llama_batch_init(total, 0, 1)
        try:
            k = 0
            for h, tokens in items:
                for i, t in enumerate(tokens):
                    batch.token[k], batch.pos[k], batch.n_seq_id[k], batch.logits[k] = int(t), h.pos + i, 1, 1
                    batch.seq_id[k][0] = h.seq
                    k += 1
            batch.n_tokens = total
            LOG_TAIL.clear()
            rc = L.llama_decode(self.ctx, batch)
        finally:
            L.llama_batch_free(batch)
        if rc == 1:
            raise ImplementationError(
                f"llama.cpp: no room in the KV cache for {total} tokens (ctx={self.n_ctx} cells for all live "
                "sequences); raise ctx= or release handles"
            )
        if rc != 0:
            raise ImplementationError(f"llama.cpp: llama_decode returned {rc}: {log_tail() or 'no reason'}")
        ptr = L.llama_get_logits(self.ctx)
        return np.ctypeslib.as_array(ptr, shape=(total, self.vocab_size)).astype(np.float32, copy=True)

    def run(self, handle: Seq, tokens: Sequence[int]) -> tuple[Seq, np.ndarray]:
        logits = self._decode([(handle, tokens)])
        handle.pos += len(tokens)
        return handle, logits

    def decode(
        self, handle: Seq, token: int, rand: float, sampler: Sampler | None = None
    ) -> tuple[Seq, np.ndarray, int]:
        logits = self._decode([(handle, [token])])[0]
        handle.pos += 1
        s = sampler or self.model.sampler
        if self.opts["sampler"] == "native":
            return handle, logits, self._native(s, rand)
        return handle, logits, sample_one(logits, rand, s)

    def _native(self, s: Sampler, rand: float) -> int:
        """llama.cpp's own sampler chain in its default order (common/sampling.cpp: top-k, top-p, then
        temperature), its draw seeded with the float32 bits of ``rand``: reproducible, but not the spec's draw."""
        L = self.L
        chain = L.llama_sampler_chain_init(L.llama_sampler_chain_default_params())
        try:
            if s.temperature == 0:
                L.llama_sampler_chain_add(chain, L.llama_sampler_init_greedy())
            else:
                L.llama_sampler_chain_add(chain, L.llama_sampler_init_top_k(int(s.top_k)))
                L.llama_sampler_chain_add(chain, L.llama_sampler_init_top_p(float(s.top_p), 1))
                L.llama_sampler_chain_add(chain, L.llama_sampler_init_temp(float(s.temperature)))
                seed = int(np.array(rand, np.float32).view(np.uint32))
                L.llama_sampler_chain_add(chain, L.llama_sampler_init_dist(seed))
            return int(L.llama_sampler_sample(chain, self.ctx, -1))
        finally:
            L.llama_sampler_free(chain)

    def fork(self, handle: Seq) -> Seq:
        seq = self._alloc()
        self.L.llama_memory_seq_rm(self.mem, seq, -1, -1)
        self.L.llama_memory_seq_cp(self.mem, handle.seq, seq, -1, -1)
        return Seq(self, seq, handle.pos)

    def run_batch(self, handles: list[Seq], chunks: list[Sequence[int]]) -> list[tuple[Seq, np.ndarray]]:
        logits = self._decode(list(zip(handles, chunks)))
        out, k = [], 0
        for h, c in zip(handles, chunks):
            out.append((h, logits[k : k + len(c)]))
            h.pos += len(c)
            k += len(c)
        return out

    def state(self, handle: Seq) -> dict[str, np.ndarray]:
        from .llamacpp_state import parse_state

        L = self.L
        size = L.llama_state_seq_get_size(self.ctx, handle.seq)
        buf = (ctypes.c_uint8 * max(size, 1))()
        n = L.llama_state_seq_get_data(self.ctx, buf, size, handle.seq)
        return parse_state(bytes(buf)[:n], self.model, handle.pos, self.interleaved)

    def close(self) -> None:
        L = self.L
        if getattr(self, "ctx", None):
            L.llama_free(self.ctx)
            self.ctx = None
        if getattr(self, "lm", None):
            L.llama_model_free(self.lm)
            self.lm = None
