"""GPT-2-style decoder (Radford et al. 2019): LayerNorm, learned positions, GELU (tanh), multi-head attention,
tied embeddings. Field names follow transformers' ``GPT2Config``.

    x_0     = wte[token] + wpe[pos]
    a_l     = LN_1(x_l);  q, k, v = split(a_l W_attn + b_attn)
    x_l'    = x_l + Attn(q, [K_cache; k], [V_cache; v]) W_proj + b_proj
    x_{l+1} = x_l' + gelu_tanh(LN_2(x_l') W_fc + b_fc) W_mlp + b_mlp
    logits  = LN_f(x_L) wte^T
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic

import attrs

from .arrays import WEIGHT, SeqBuffer, as_tuple
from .config import POSITIVE_FLOAT, POSITIVE_INT, require
from .layers import (
    attention_decode,
    attention_unrolled,
    causal_mask,
    gelu_tanh,
    layer_norm,
    linear,
    merge_heads,
    split_heads,
)
from .vocabulary import Appendable, KVCache, Ops, T


@attrs.frozen(kw_only=True)
class Config:
    vocab_size: int = attrs.field(**POSITIVE_INT)
    n_embd: int = attrs.field(**POSITIVE_INT)
    n_layer: int = attrs.field(**POSITIVE_INT)
    n_head: int = attrs.field(**POSITIVE_INT)
    n_positions: int = attrs.field(default=1024, **POSITIVE_INT)
    n_inner: int = attrs.field(**POSITIVE_INT)  # transformers' default None means 4 * n_embd; the loader resolves it
    layer_norm_epsilon: float = attrs.field(default=1e-5, **POSITIVE_FLOAT)

    def __attrs_post_init__(self) -> None:
        require(self.n_embd % self.n_head == 0, f"n_embd ({self.n_embd}) must be a multiple of n_head ({self.n_head})")

    @property
    def head_dim(self) -> int:
        return self.n_embd // self.n_head

    @property
    def context_limit(self) -> int:
        return self.n_positions


@attrs.frozen
class Layer(Generic[T]):
    ln_1_weight: T = attrs.field(**WEIGHT)  # [C]
    ln_1_bias: T = attrs.field(**WEIGHT)  # [C]
    c_attn_weight: T = attrs.field(**WEIGHT)  # [C, 3C]  (q | k | v)
    c_attn_bias: T = attrs.field(**WEIGHT)  # [3C]
    attn_c_proj_weight: T = attrs.field(**WEIGHT)  # [C, C]
    attn_c_proj_bias: T = attrs.field(**WEIGHT)  # [C]
    ln_2_weight: T = attrs.field(**WEIGHT)  # [C]
    ln_2_bias: T = attrs.field(**WEIGHT)  # [C]
    c_fc_weight: T = attrs.field(**WEIGHT)  # [C, F]
    c_fc_bias: T = attrs.field(**WEIGHT)  # [F]
    mlp_c_proj_weight: T = attrs.field(**WEIGHT)  # [F, C]
    mlp_c_proj_bias: T = attrs.field(**WEIGHT)  # [C]


@attrs.frozen
class Weights(Generic[T]):
    wte: T = attrs.field(**WEIGHT)  # [V, C], also the output projection (tied)
    wpe: T = attrs.field(**WEIGHT)  # [n_positions, C]
    layers: tuple[Layer[T], ...] = attrs.field(converter=as_tuple)
    ln_f_weight: T = attrs.field(**WEIGHT)  # [C]
    ln_f_bias: T = attrs.field(**WEIGHT)  # [C]


def param_shapes(cfg: Config) -> dict[str, tuple[int, ...]]:
    c, f = cfg.n_embd, cfg.n_inner
    shapes: dict[str, tuple[int, ...]] = {"wte": (cfg.vocab_size, c), "wpe": (cfg.n_positions, c)}
    for i in range(cfg.n_layer):
        p = f"layers.{i}."
        shapes |= {p + "ln_1_weight": (c,), p + "ln_1_bias": (c,), p + "c_attn_weight": (c, 3 * c)}
        shapes |= {p + "c_attn_bias": (3 * c,), p + "attn_c_proj_weight": (c, c), p + "attn_c_proj_bias": (c,)}
        shapes |= {p + "ln_2_weight": (c,), p + "ln_2_bias": (c,), p + "c_fc_weight": (c, f), p + "c_fc_bias": (f,)}
        shapes |= {p + "mlp_c_proj_weight": (f, c), p + "mlp_c_proj_bias": (c,)}
    return shapes | {"ln_f_weight": (c,), "ln_f_bias": (c,)}


def weights_from_dict(cfg: Config, params: dict[str, T]) -> Weights[T]:
    layers = []
    for i in range(cfg.n_layer):
        p = f"layers.{i}."
        layers.append(Layer(**{k[len(p) :]: a for k, a in params.items() if k.startswith(p)}))
    return Weights(params["wte"], params["wpe"], layers, params["ln_f_weight"], params["ln_f_bias"])


def empty_cache(cfg: Config, batch: int = 1) -> tuple[tuple[SeqBuffer, SeqBuffer], ...]:
    shape = (batch, cfg.n_head, cfg.head_dim)
    return tuple((SeqBuffer.empty(shape, axis=2), SeqBuffer.empty(shape, axis=2)) for _ in range(cfg.n_layer))


def _decoder(
    o: Ops[T], cfg: Config, w: Weights[T], tokens: T, positions: T, cache: KVCache[T], attend: Callable[[T, T, T], T]
) -> tuple[T, KVCache[T]]:
    H, D, C = cfg.n_head, cfg.head_dim, cfg.n_embd
    x = o.add(o.gather(w.wte, tokens), o.gather(w.wpe, positions))  # [B, T, C]
    new_cache: list[tuple[Appendable[T], Appendable[T]]] = []
    for layer, (k_cache, v_cache) in zip(w.layers, cache):
        a = layer_norm(o, x, layer.ln_1_weight, layer.ln_1_bias, cfg.layer_norm_epsilon)
        q, k, v = o.split(linear(o, a, layer.c_attn_weight, layer.c_attn_bias), -1, (C, C, C))
        k_all, k_cache = k_cache.append(split_heads(o, k, H, D))
        v_all, v_cache = v_cache.append(split_heads(o, v, H, D))
        new_cache.append((k_cache, v_cache))
        heads = attend(split_heads(o, q, H, D), k_all, v_all)
        x = o.add(x, linear(o, merge_heads(o, heads), layer.attn_c_proj_weight, layer.attn_c_proj_bias))
        m = layer_norm(o, x, layer.ln_2_weight, layer.ln_2_bias, cfg.layer_norm_epsilon)
        hidden = gelu_tanh(o, linear(o, m, layer.c_fc_weight, layer.c_fc_bias))
        x = o.add(x, linear(o, hidden, layer.mlp_c_proj_weight, layer.mlp_c_proj_bias))
    x = layer_norm(o, x, w.ln_f_weight, w.ln_f_bias, cfg.layer_norm_epsilon)
    return o.matmul(x, o.transpose(w.wte, (1, 0))), tuple(new_cache)


def forward(
    o: Ops[T], cfg: Config, w: Weights[T], tokens: T, positions: T, cache: KVCache[T], key_mask: T | None = None
) -> tuple[T, KVCache[T]]:
    """Unrolled form: causal-masked attention over [cache; new] for T tokens at once (see llama.forward)."""

    def attend(q: T, k_all: T, v_all: T) -> T:
        visible = causal_mask(o, o.shape(q, 2), o.shape(k_all, 2), key_mask)
        return attention_unrolled(o, q, k_all, v_all, visible, cfg.n_head, cfg.n_head, cfg.head_dim)

    return _decoder(o, cfg, w, tokens, positions, cache, attend)


def decode(
    o: Ops[T], cfg: Config, w: Weights[T], token: T, position: T, cache: KVCache[T], key_mask: T | None = None
) -> tuple[T, KVCache[T]]:
    """Recurrent form: one token [B] -> logits [B, V], cache grown by one slot."""

    def attend(q: T, k_all: T, v_all: T) -> T:
        return attention_decode(o, q, k_all, v_all, key_mask, cfg.n_head, cfg.n_head, cfg.head_dim)

    logits, cache = _decoder(o, cfg, w, o.unsqueeze(token, 1), o.unsqueeze(position, 1), cache, attend)
    return o.squeeze(logits, 1), cache
