"""A catalogue of realistic injected bugs (DESIGN.md §5), each a small implementation the checker must catch.

Every mutant is the spec with one thing wrong, built without touching the spec's own modules (the reference
runs in the same process): bugs in model code go into a private copy of the architecture module
(:func:`clone`), bugs in state handling or sampling into the adapter around it.
"""

from __future__ import annotations

import importlib.util
import itertools
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import Any

import attrs
import numpy as np

from lmstep.spec import Model, State
from lmstep.spec.arrays import SeqBuffer
from lmstep.spec.model import freeze_cache
from lmstep.spec.ops import NP, NumpyOps
from lmstep.spec.sampler import Sampler, sample_one

_clones = itertools.count()


def clone(module: ModuleType) -> ModuleType:
    """A fresh copy of a spec module (same source, private globals) that can be patched safely."""
    spec = importlib.util.spec_from_file_location(f"{module.__name__}_mutant{next(_clones)}", module.__file__)
    copy = importlib.util.module_from_spec(spec)
    copy.__package__ = module.__package__
    spec.loader.exec_module(copy)
    return copy


class Engine:
    """The spec's equations behind the checker protocol, with hooks a mutant overrides."""

    capabilities = frozenset({"fork", "state", "immutable"})

    def __init__(self, model: Model, name: str, module: ModuleType | None = None, ops: Any = NP):
        self.model, self.name, self.vocab_size = model, name, model.vocab_size
        self.module, self.ops = module or model.module, ops

    def init(self) -> State:
        return self.model.init_state()

    def positions(self, start: int, n: int) -> np.ndarray:
        """Positions [1, n] of a chunk of n tokens consumed from position ``start`` (run)."""
        return np.arange(start, start + n, dtype=np.int64)[None, :]

    def decode_position(self, pos: int) -> np.ndarray:
        """The position [1] of the one token decode consumes."""
        return np.array([pos], np.int64)

    def run(self, s: State, tokens: Sequence[int]) -> tuple[State, np.ndarray]:
        m = self.model
        toks = np.array([list(tokens)], np.int64)
        logits, cache = self.module.forward(
            self.ops, m.config, m.weights, toks, self.positions(s.pos, len(tokens)), s.cache
        )
        return State(m.arch, s.pos + len(tokens), freeze_cache(cache)), np.asarray(logits[0], np.float32)

    def decode(self, s: State, token: int, rand: float) -> tuple[State, np.ndarray, int]:
        m = self.model
        logits, cache = self.module.decode(
            self.ops, m.config, m.weights, np.array([token], np.int64), self.decode_position(s.pos), s.cache
        )
        z = np.asarray(logits[0], np.float32)
        return State(m.arch, s.pos + 1, freeze_cache(cache)), z, self.sample(z, rand)

    def sample(self, logits: np.ndarray, rand: float) -> int:
        return sample_one(logits, rand, self.model.sampler)

    def fork(self, s: State) -> State:
        return s

    def state(self, s: State) -> dict[str, np.ndarray]:
        return s.arrays()

    def close(self) -> None:
        pass


@attrs.frozen
class Mutant:
    name: str
    model: str  # the built-in model it is meant for
    bug: str
    build_fn: Callable[[Model, str], Any]
    sampler: Sampler = Sampler()  # sampler settings that make the bug observable

    def build(self, model: Model) -> Any:
        return self.build_fn(model, f"mutant:{self.name}")


# -- model-code bugs (a patched private copy of the architecture module) -----------------------------------
def _leaky_mask(o: Any, n_new: Any, n_all: Any, key_mask: Any = None) -> Any:
    slot = o.add(o.arange(0, n_new), o.sub(n_all, n_new))
    visible = o.less_equal(o.unsqueeze(o.arange(0, n_all), 0), o.unsqueeze(o.add(slot, 1), -1))  # sees one future key
    return o.unsqueeze(o.unsqueeze(visible, 0), 0)


def causal_mask_off_by_one(model: Model, name: str) -> Engine:
    module = clone(model.module)
    module.causal_mask = _leaky_mask
    return Engine(model, name, module)


def gqa_wrong_mapping(model: Model, name: str) -> Engine:
    module = clone(model.module)

    def attention_decode(o, q, k_all, v_all, key_mask, n_heads, n_kv, head_dim):
        from lmstep.spec.layers import softmax

        group = n_heads // n_kv
        q = o.transpose(o.reshape(q, (0, group, n_kv, head_dim)), (0, 2, 1, 3))  # head h -> kv h % K, not h // G
        out = o.matmul(softmax(o, o.mul(o.matmul(q, o.transpose(k_all, (0, 1, 3, 2))), head_dim**-0.5)), v_all)
        return o.reshape(o.transpose(out, (0, 2, 1, 3)), (0, n_heads, 1, head_dim))

    module.attention_decode = attention_decode
    return Engine(model, name, module)


def conv_not_shifted(model: Model, name: str) -> Engine:
    module = clone(model.module)
    step = module._mixer_step

    def stale(o, cfg, layer, x, conv_state, h):
        out, _, h = step(o, cfg, layer, x, conv_state, h)
        return out, conv_state, h

    module._mixer_step = stale
    return Engine(model, name, module)


def h0_ignored(model: Model, name: str) -> Engine:
    module = clone(model.module)
    mixer = module._mixer_unrolled

    def fresh(o, cfg, layer, x, conv_state, h0, **kw):
        return mixer(o, cfg, layer, x, conv_state, np.zeros_like(h0), **kw)  # a cached multi-token forward drops h

    module._mixer_unrolled = fresh
    return Engine(model, name, module)


class _Float16Ops(NumpyOps):
    def matmul(self, a, b):  # half-precision operands and accumulation, as an fp16 GEMM without fp32 accumulate
        return np.matmul(np.asarray(a, np.float16), np.asarray(b, np.float16)).astype(np.float32)


def float16_accumulation(model: Model, name: str) -> Engine:
    return Engine(model, name, ops=_Float16Ops())


# -- state-handling bugs ----------------------------------------------------------------------------------
class RopeRestart(Engine):
    """Positions restart at 0 for every prefill chunk (a prefill path that computes positions locally)."""

    def positions(self, start, n):
        return Engine.positions(self, 0, n)


class DecodePositionOffByOne(Engine):
    """Decode looks up the position after the one it consumes."""

    def decode_position(self, pos):
        return Engine.decode_position(self, pos + 1)


class KvNotAppended(Engine):
    """A multi-token step with a cache attends correctly but does not store the new keys and values."""

    def run(self, s, tokens):
        new, logits = Engine.run(self, s, tokens)
        if s.pos > 0:
            new = State(s.arch, new.pos, s.cache)
        return new, logits


class ZeroPaddedChunk(Engine):
    """Prefill pads the chunk with token 0 to a multiple of 4 and keeps the state after the padding."""

    def run(self, s, tokens):
        padded = list(tokens) + [0] * (-len(tokens) % 4)
        new, logits = Engine.run(self, s, padded)
        return State(s.arch, s.pos + len(tokens), new.cache), logits[: len(tokens)]


class RandShifted(Engine):
    """Decode samples with the rand it was given on the previous call of the session (a rand index off by one)."""

    def init(self):
        return (Engine.init(self), 0.5)

    def run(self, handle, tokens):
        state, logits = Engine.run(self, handle[0], tokens)
        return (state, handle[1]), logits

    def decode(self, handle, token, rand):
        state, logits, _ = Engine.decode(self, handle[0], token, rand)
        return (state, rand), logits, Engine.sample(self, logits, handle[1])

    def state(self, handle):
        return handle[0].arrays()


class MutableEngine(Engine):
    """An engine with mutable sessions (like most real ones): handles are boxes updated in place."""

    capabilities = frozenset({"fork", "state"})

    def init(self):
        return [Engine.init(self)]

    def run(self, box, tokens):
        box[0], logits = Engine.run(self, box[0], tokens)
        return box, logits

    def decode(self, box, token, rand):
        box[0], logits, tok = Engine.decode(self, box[0], token, rand)
        return box, logits, tok

    def fork(self, box):
        return [box[0]]

    def state(self, box):
        return box[0].arrays()


class AliasedFork(MutableEngine):
    """fork() hands back the same session object, so the snapshot moves when the original does."""

    def fork(self, box):
        return box


class BatchedEngine(Engine):
    """A correct batched transformer implementation (the positive control of the batch law): the sequences'
    caches are left-padded to a common length and so are their new chunks, one forward call runs the batch
    [B, T] with per-row positions and a key mask that hides every padding slot, and each sequence's state is
    cut back out of the batch.

        row i:  [pad (P - P_i) | past_i | pad (T - n_i) | new_i]      P = max P_i, T = max n_i
    """

    capabilities = frozenset({"fork", "state", "immutable", "batch"})
    mask_padding = True

    def run_batch(self, states, chunks):
        m = self.model
        P, T = max(s.pos for s in states), max(len(c) for c in chunks)
        toks = np.array([[0] * (T - len(c)) + list(c) for c in chunks], np.int64)
        positions = np.array(
            [[0] * (T - len(c)) + list(range(s.pos, s.pos + len(c))) for s, c in zip(states, chunks)], np.int64
        )
        real = np.array(
            [
                [False] * (P - s.pos) + [True] * s.pos + [False] * (T - len(c)) + [True] * len(c)
                for s, c in zip(states, chunks)
            ]
        )
        cache = tuple(
            tuple(
                SeqBuffer.from_array(np.concatenate([_left_pad(s.cache[layer][kv].view(), P) for s in states]), 2)
                for kv in range(2)
            )
            for layer in range(len(states[0].cache))
        )
        logits, cache = self.module.forward(
            NP, m.config, m.weights, toks, positions, cache, real if self.mask_padding else None
        )
        out = []
        for i, (s, c) in enumerate(zip(states, chunks)):
            keep = np.flatnonzero(real[i])  # the sequence's own slots, in order
            mine = tuple(
                tuple(SeqBuffer.from_array(buf.view()[i : i + 1][:, :, keep], 2) for buf in pair) for pair in cache
            )
            out.append((State(s.arch, s.pos + len(c), mine), np.asarray(logits[i, T - len(c) :], np.float32)))
        return out


def _left_pad(kv: np.ndarray, length: int) -> np.ndarray:
    """[1, K, S, D] -> [1, K, length, D] with zeros in front."""
    return np.concatenate([np.zeros(kv.shape[:2] + (length - kv.shape[2],) + kv.shape[3:], kv.dtype), kv], axis=2)


class BatchPaddingLeak(BatchedEngine):
    """Batches like BatchedEngine but forgets the key mask, so real tokens attend to the padding."""

    mask_padding = False


# -- sampler bugs -----------------------------------------------------------------------------------------
class TopPDropsBoundaryToken(Engine):
    """top-p keeps ranks with c_r < p * total, dropping the token that crosses the threshold (at least one kept)."""

    def sample(self, logits, rand):
        s = self.model.sampler
        y = logits / np.float32(s.temperature)
        order = np.argsort(-y, kind="stable")
        k = len(y) if s.top_k == 0 else min(s.top_k, len(y))
        e = np.where(np.arange(len(y)) < k, np.exp(y[order] - y[order][0]), np.float32(0)).astype(np.float32)
        c = np.cumsum(e, dtype=np.float32)
        m = max(1, int(np.sum((c < c[-1] * np.float32(s.top_p)) & (np.arange(len(y)) < k))))
        target = np.float32(rand) * c[m - 1]
        return int(order[min(int(np.sum(c[:m] <= target)), m - 1)])


class TemperatureAfterTopP(Engine):
    """The top-p set is chosen on the untempered distribution; temperature is applied afterwards."""

    def sample(self, logits, rand):
        s = self.model.sampler
        order = np.argsort(-logits, kind="stable")
        k = len(logits) if s.top_k == 0 else min(s.top_k, len(logits))
        raw = np.where(np.arange(len(logits)) < k, np.exp(logits[order] - logits[order][0]), 0).astype(np.float32)
        c_raw = np.cumsum(raw, dtype=np.float32)
        prev = np.concatenate([[0], c_raw[:-1]]).astype(np.float32)
        m = int(np.sum((prev < c_raw[-1] * np.float32(s.top_p)) & (np.arange(len(logits)) < k)))
        y = logits[order][:m] / np.float32(s.temperature)
        c = np.cumsum(np.exp(y - y[0]).astype(np.float32), dtype=np.float32)
        return int(order[min(int(np.sum(c <= np.float32(rand) * c[-1])), m - 1)])


HOT = Sampler(temperature=0.9, top_k=40, top_p=0.8)

MUTANTS: dict[str, Mutant] = {
    m.name: m
    for m in [
        Mutant("rope-restart", "tiny-llama", "RoPE positions restart at 0 for every prefill chunk", RopeRestart),
        Mutant(
            "kv-not-appended",
            "tiny-llama",
            "a multi-token step with a cache does not append its keys/values",
            KvNotAppended,
        ),
        Mutant(
            "causal-mask-off-by-one",
            "tiny-gpt2",
            "the causal mask lets each query see one future key",
            causal_mask_off_by_one,
        ),
        Mutant("conv-not-shifted", "tiny-mamba", "decode does not shift the conv window", conv_not_shifted),
        Mutant(
            "zero-padded-chunk",
            "tiny-mamba",
            "prefill zero-pads the chunk to a multiple of 4 into the state",
            ZeroPaddedChunk,
        ),
        Mutant(
            "h0-ignored", "tiny-mamba", "a multi-token forward with a cache restarts the SSM state from 0", h0_ignored
        ),
        Mutant("rand-shifted", "tiny-llama", "decode samples with the previous call's rand", RandShifted, HOT),
        Mutant(
            "temperature-after-top-p",
            "tiny-gpt2",
            "top-p is chosen before temperature is applied",
            TemperatureAfterTopP,
            Sampler(temperature=0.5, top_p=0.6),
        ),
        Mutant(
            "gqa-wrong-mapping",
            "tiny-llama",
            "decode maps query head h to kv head h % K instead of h // G",
            gqa_wrong_mapping,
        ),
        Mutant(
            "top-p-drops-boundary-token",
            "tiny-llama",
            "top-p drops the token that crosses the threshold",
            TopPDropsBoundaryToken,
            HOT,
        ),
        Mutant(
            "float16-accumulation", "tiny-llama", "matmuls in float16 with float16 accumulation", float16_accumulation
        ),
        Mutant("aliased-fork", "tiny-gpt2", "fork returns the same mutable session, so forks share state", AliasedFork),
        Mutant(
            "batch-padding-leak", "tiny-gpt2", "batched sequences attend to unmasked left padding", BatchPaddingLeak
        ),
        Mutant(
            "decode-position-off-by-one",
            "tiny-gpt2",
            "decode looks up the learned position after its own",
            DecodePositionOffByOne,
        ),
    ]
}
