"""Built-in tiny models: byte-level vocabulary (256), weights generated bit-exactly from a seed.

Any implementation can rebuild them: parameters are drawn in ``param_shapes`` order from one counter stream,
``u = rand.uniform_array(seed, shape, offset)`` in [-1, 1) with ``offset`` = number of values drawn before, then
scaled by :func:`init_value`. The scales make logits far from uniform and greedy continuations varied.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from . import gpt2, llama, mamba
from .rand import uniform_array

SEED = 20261126

CONFIGS: dict[str, tuple[str, Any, str]] = {
    "tiny-llama": (
        "llama",
        llama.Config(
            vocab_size=256, hidden_size=64, intermediate_size=176, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, head_dim=16, max_position_embeddings=4096, rms_norm_eps=1e-5, rope_theta=10000.0,
        ),
        "Llama-style: 2 layers, width 64, 4 query heads sharing 2 kv heads (GQA), RoPE, SwiGLU; bytes",
    ),
    "tiny-gpt2": (
        "gpt2",
        gpt2.Config(vocab_size=256, n_embd=64, n_layer=2, n_head=4, n_positions=4096, n_inner=256),
        "GPT-2-style: 2 layers, width 64, 4 heads, learned positions, GELU(tanh), tied embeddings; bytes",
    ),
    "tiny-mamba": (
        "mamba",
        mamba.Config(
            vocab_size=256, hidden_size=64, state_size=16, num_hidden_layers=2, intermediate_size=128,
            time_step_rank=4, conv_kernel=4,
        ),
        "Mamba-style selective SSM: 2 layers, width 64, inner 128, state 16, conv 4, tied embeddings; bytes",
    ),
}


def init_value(name: str, u: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Map uniform draws u in [-1, 1) to a parameter. Matrices [in, out] get variance gain^2 / in."""
    leaf = name.rsplit(".", 1)[-1]
    if leaf == "A_log":  # S4D-real initialisation (Gu et al. 2022): A = -(1, 2, ..., N) per channel
        return np.broadcast_to(np.log(np.arange(1, shape[-1] + 1, dtype=np.float32)), shape).astype(np.float32)
    if leaf == "dt_proj_bias":  # dt in [1e-3, 1e-1] log-uniformly, stored as its inverse softplus (Mamba §3.6)
        dt = np.exp((u + 1) / 2 * (math.log(0.1) - math.log(1e-3)) + math.log(1e-3)).astype(np.float32)
        return (dt + np.log(-np.expm1(-dt))).astype(np.float32)
    if leaf == "D":
        return np.ones(shape, np.float32)
    if "norm" in leaf or (leaf.endswith("_weight") and leaf.startswith("ln_")):
        return (1.0 + 0.1 * u).astype(np.float32)
    if "bias" in leaf:
        return (0.1 * u).astype(np.float32)
    if leaf in ("embed_tokens", "embeddings", "wte"):
        return u
    if leaf == "wpe":  # as strong as wte, so tied-embedding self-attraction does not make greedy repeat
        return u
    # Strong residual branches for the same reason: the block outputs, not the input token, steer the logits.
    gain = {"lm_head": 4.0, "attn_c_proj_weight": 3.0, "mlp_c_proj_weight": 3.0}.get(leaf, 1.5)
    return (u * np.float32(gain * math.sqrt(3.0 / shape[0]))).astype(np.float32)


def init_weights(arch: str, cfg: Any, seed: int = SEED) -> Any:
    module = {"llama": llama, "gpt2": gpt2, "mamba": mamba}[arch]
    params, offset = {}, 0
    for name, shape in module.param_shapes(cfg).items():
        params[name] = init_value(name, uniform_array(seed, shape, offset), shape)
        offset += int(np.prod(shape))
    return module.weights_from_dict(cfg, params)
