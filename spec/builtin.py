"""Built-in tiny models: byte-level vocabulary (256), weights generated bit-exactly from a seed.

Any implementation can rebuild them: parameters are drawn in ``param_shapes`` order from one counter stream,
``u = rand.uniform_array(seed, shape, offset)`` in [-1, 1) with ``offset`` = number of values drawn before, then
mapped by :func:`init_affine` with float32 multiply-add only (no exp/log), so regeneration is bit-exact.
The scales make logits far from uniform and greedy continuations varied.
"""

from __future__ import annotations

import math

import attrs
import numpy as np

from . import gpt2, llama, mamba, mamba2
from .model import ARCHITECTURES, Config, Weights
from .rand import uniform_array

SEED = 20261126

TINY_LLAMA = llama.Config(
    vocab_size=256,
    hidden_size=64,
    intermediate_size=176,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    head_dim=16,
    max_position_embeddings=4096,
    rms_norm_eps=1e-5,
    rope_theta=10000.0,
)

CONFIGS: dict[str, tuple[str, Config, str]] = {
    "tiny-llama": (
        "llama",
        TINY_LLAMA,
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
            vocab_size=256,
            hidden_size=64,
            state_size=16,
            num_hidden_layers=2,
            intermediate_size=128,
            time_step_rank=4,
            conv_kernel=4,
        ),
        "Mamba-style selective SSM: 2 layers, width 64, inner 128, state 16, conv 4, tied embeddings; bytes",
    ),
    # The families of the Llama-style decoder (SPEC.md §5): tiny-llama with each family's switches.
    "tiny-llama3": (
        "llama",
        attrs.evolve(
            TINY_LLAMA,
            rope_theta=500000.0,
            rope_type="llama3",
            factor=8.0,
            low_freq_factor=1.0,
            high_freq_factor=4.0,
            original_max_position_embeddings=256,
        ),
        "Llama 3.x: tiny-llama with llama3 RoPE scaling (factor 8 past an original context of 256, theta 5e5); bytes",
    ),
    "tiny-qwen2": (
        "llama",
        attrs.evolve(
            TINY_LLAMA, model_type="qwen2", qkv_bias=True, rope_theta=1e6, rms_norm_eps=1e-6, tie_word_embeddings=True
        ),
        "Qwen2: q/k/v biases (no o bias), GQA 4/2, theta 1e6, tied embeddings; bytes",
    ),
    "tiny-qwen3": (
        "llama",
        attrs.evolve(TINY_LLAMA, model_type="qwen3", head_dim=32, qk_norm=True, rope_theta=1e6, rms_norm_eps=1e-6),
        "Qwen3: RMSNorm on each head's q and k before RoPE, head_dim 32 (4 x 32 != width 64), GQA 4/2; bytes",
    ),
    "tiny-gemma": (
        "llama",
        attrs.evolve(
            TINY_LLAMA,
            model_type="gemma",
            hidden_size=48,
            intermediate_size=128,
            num_key_value_heads=1,
            head_dim=32,
            rms_norm_eps=1e-6,
            hidden_act="gelu_pytorch_tanh",
            norm_unit_offset=True,
            scale_embeddings=True,
            tie_word_embeddings=True,
        ),
        "Gemma: embeddings x sqrt(48), (1 + w) RMSNorms, GeGLU (tanh), MQA 4/1, head_dim 32, tied; bytes",
    ),
    "tiny-phi3": (
        "llama",
        attrs.evolve(TINY_LLAMA, model_type="phi3", num_key_value_heads=4, partial_rotary_factor=0.75),
        "Phi-3: RoPE on the first 12 of 16 dims of each head (partial_rotary_factor 0.75), 4 heads; bytes",
    ),
    "tiny-mistral": (
        "llama",
        attrs.evolve(
            TINY_LLAMA,
            model_type="mistral",
            intermediate_size=192,
            num_key_value_heads=1,
            sliding_window=16,  # small, so short sessions cross it: the state keeps 15 keys per layer
        ),
        "Mistral-style: tiny-llama's decoder with a sliding window of 16 (bounded state), 1 kv head; bytes",
    ),
    "tiny-mamba2": (
        "mamba2",
        mamba2.Config(
            vocab_size=256,
            hidden_size=64,
            state_size=16,
            num_hidden_layers=2,
            num_heads=8,
            head_dim=16,
            expand=2,
            n_groups=2,
            conv_kernel=4,
            chunk_size=8,
        ),
        "Mamba-2 (SSD): 2 layers, width 64, 8 heads of 16 in 2 groups, state 16, conv 4, chunks of 8; bytes",
    ),
}


def init_affine(name: str, shape: tuple[int, ...], cfg: Config | None = None) -> tuple[float, float]:
    """(scale a, offset b) for a parameter: value = float32(u * a) + b, two IEEE float32 ops, bit-exact anywhere.

    Matrices [in, out] get a = gain * sqrt(3 / in) (variance gain^2 / in), rounded once to float32. A model whose
    norms scale by (1 + w) (Gemma) gets norm weights near 0, and embeddings that its sqrt(hidden_size) scale
    brings to [-1, 1), so that, as in the other models, the blocks rather than the input token steer the logits.
    """
    leaf = name.rsplit(".", 1)[-1]
    if isinstance(cfg, llama.Config) and cfg.norm_unit_offset and "norm" in leaf:
        return 0.1, 4.0 if name == "norm" else 0.0  # final norm scale ~5: sharp logits through a tied head
    if isinstance(cfg, llama.Config) and cfg.scale_embeddings and leaf == "embed_tokens":
        return 1.0 / math.sqrt(cfg.hidden_size), 0.0
    if leaf == "A_log":  # A = -exp(A_log) in -[0.61, 4.5): decay rates spread like S4D-real's -(1..N)
        return 1.0, 0.5
    if leaf in ("dt_proj_bias", "dt_bias"):  # softplus^-1 of dt in about [1e-3, 0.1] (Mamba §3.6): [-6.9, -2.3)
        return 2.3, -4.6
    if leaf == "D":
        return 0.0, 1.0
    if "norm" in leaf or (leaf.startswith("ln_") and leaf.endswith("_weight")):
        return 0.1, 1.0
    if "bias" in leaf:
        return 0.1, 0.0
    if leaf in ("embed_tokens", "embeddings", "wte"):
        return 1.0, 0.0
    if leaf == "wpe":  # as strong as wte, so tied-embedding self-attraction does not make greedy repeat
        return 1.0, 0.0
    # Strong residual branches for the same reason: the block outputs, not the input token, steer the logits.
    gain = {"lm_head": 4.0, "attn_c_proj_weight": 3.0, "mlp_c_proj_weight": 3.0}.get(leaf, 1.5)
    return gain * math.sqrt(3.0 / shape[0]), 0.0


def init_weights(arch: str, cfg: Config, seed: int = SEED) -> Weights:
    module = ARCHITECTURES[arch]
    params, offset = {}, 0
    for name, shape in module.param_shapes(cfg).items():
        scale, shift = init_affine(name, shape, cfg)
        params[name] = uniform_array(seed, shape, offset) * np.float32(scale) + np.float32(shift)
        offset += int(np.prod(shape))
    return module.weights_from_dict(cfg, params)
