"""Where each attention head looks at a transition (transformer families on the spec runtime).

The transition at position p consumed a token against the cache of positions 0..p-1. :func:`attention_weights`
reruns that decode step through the architecture's own ``_decoder`` with an ``attend`` that is
``layers.attention_decode`` op for op but also keeps the softmax weights, so the logits it produces are
bitwise those of ``model.step`` (tests/test_stepper_attention.py checks this) and the weights are the ones
that computed them. For a constructed model (docs/algorithms.md) this shows the algorithm: the reverse model's
second head puts weight 1.000 on the position it copies.
"""

from __future__ import annotations

from typing import Any

import attrs
import numpy as np

from lmstep.spec.arrays import SeqBuffer
from lmstep.spec.layers import softmax
from lmstep.spec.ops import NP


@attrs.frozen
class HeadView:
    layer: int
    head: int
    weights: np.ndarray  # [p + 1] float32: over positions 0..p (the cache and the token itself)

    @property
    def top(self) -> int:
        return int(np.argmax(self.weights))

    def text(self) -> str:
        w = self.weights
        if w.size > 1 and float(w.max() - w.min()) <= 1e-6 * float(w.max()):
            return f"L{self.layer}h{self.head} uniform over 0..{w.size - 1} ({float(w[0]):.3f} each)"
        return f"L{self.layer}h{self.head} -> {self.top} ({float(w[self.top]):.3f})"


def supported(model: Any) -> bool:
    """Spec models of the transformer families (onnx sessions keep their weights inside the graph)."""
    return getattr(model, "arch", None) in ("gpt2", "llama") and hasattr(model, "weights")


def attention_weights(model: Any, state: Any, token: int) -> tuple[list[HeadView], np.ndarray]:
    """The heads' weights when ``token`` is consumed at ``state.pos``, and the logits that step computes."""
    cfg, module = model.config, model.module
    n_kv = getattr(cfg, "num_key_value_heads", None) or cfg.n_head
    n_heads = getattr(cfg, "num_attention_heads", None) or cfg.n_head
    seen: list[np.ndarray] = []

    def attend(q: Any, k_all: Any, v_all: Any) -> Any:  # layers.attention_decode without a key mask, recording p
        group, d = n_heads // n_kv, cfg.head_dim
        qg = NP.reshape(q, (0, n_kv, group, d))
        scores = NP.mul(NP.matmul(qg, NP.transpose(k_all, (0, 1, 3, 2))), d**-0.5)
        p = softmax(NP, scores)  # [1, K, G, S]
        seen.append(NP.reshape(p, (n_heads, -1)))
        return NP.reshape(NP.matmul(p, v_all), (0, n_heads, 1, d))

    cache = tuple(tuple(_copy(t) for t in pair) for pair in state.cache)  # never append to the caller's buffers
    tok, pos = np.array([[token]], np.int64), np.array([[state.pos]], np.int64)
    logits, _ = module._decoder(NP, cfg, model.weights, tok, pos, cache, attend)
    views = [HeadView(i, h, np.asarray(p[h])) for i, p in enumerate(seen) for h in range(n_heads)]
    return views, logits[0, 0]


def _copy(buf: Any) -> Any:
    return SeqBuffer.from_array(np.array(buf.view()), buf.axis) if isinstance(buf, SeqBuffer) else buf


@attrs.frozen
class Before:
    """The state a transition started from, rebuilt from the one it produced: every cache one slot shorter."""

    pos: int
    cache: tuple[tuple[Any, Any], ...]


def before(state: Any) -> Before:
    p = state.pos - 1
    cut = lambda b: SeqBuffer.from_array(np.array(b.view()[:, :, :p, :]), b.axis)  # noqa: E731
    return Before(p, tuple(tuple(cut(b) for b in pair) for pair in state.cache))


def for_entry(model: Any, entry: Any) -> list[HeadView]:
    """The heads of the transition that produced ``entry`` (a stepper Entry); [] where there is nothing to show."""
    if entry.output is None or not supported(model):
        return []
    return attention_weights(model, before(entry.state), entry.input)[0]


def summary(views: list[HeadView]) -> str:
    """One line: each head's target position (or 'uniform'), e.g. ``L0h0 -> 5 (1.000) | L1h0 -> 3 (1.000)``."""
    return " | ".join(v.text() for v in views)
