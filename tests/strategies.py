"""Hypothesis strategies shared by the tests: small random configs of every architecture, with weights
generated from a drawn seed (the built-in models' generator applied to any config); token sequences up to 129
tokens, often at the scan's power-of-two boundaries; batches of sequences for the batched model functions."""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

from lmstep.spec import Model, builtin, gpt2, llama, mamba, mamba2

ARCHS = ("llama", "gpt2", "mamba", "mamba2")
# Sliding windows (Mistral: the Llama decoder with sliding_window): 1 (each token alone) up to more than the short
# sequences, so most sequences cross them. A random Llama config has one a quarter of the time; the family
# "mistral" (models(("mistral",))) always has one.
WINDOWS = (1, 2, 3, 5, 8, 16)
FAMILY_ARCH = {"mistral": "llama"}

# The scan's power-of-two boundaries, T = 2^k - 1, 2^k, 2^k + 1 for k = 1..7: the spec's Hillis-Steele scan gains
# a round after each power of two; the runtime's pairing schedule (runtime/mamba_scan.py) pads odd lengths at each
# of its 5 pairing levels and runs Hillis-Steele rounds on its top past 32 tokens (33, 65 and 129 each add one).
BOUNDARY_LENGTHS = sorted({n for k in range(1, 8) for n in (2**k - 1, 2**k, 2**k + 1)})
LONGEST = BOUNDARY_LENGTHS[-1]  # 129: three top rounds of the pairing schedule, eight rounds of the reference
CONTEXT = 256  # the transformers' position limit in random configs: room for LONGEST tokens and more


@st.composite
def configs(draw, arch: str):
    vocab = draw(st.sampled_from([7, 32, 61]))
    layers = draw(st.integers(1, 2))
    if arch in ("llama", "mistral"):
        windowed = arch == "mistral" or draw(st.integers(0, 3)) == 0
        window = draw(st.sampled_from(WINDOWS)) if windowed else None
        kv = draw(st.sampled_from([1, 2]))
        heads = kv * draw(st.sampled_from([1, 2, 3]))
        head_dim = draw(st.sampled_from([4, 8]))
        attention_bias = draw(st.booleans())
        return llama.Config(
            vocab_size=vocab,
            hidden_size=draw(st.sampled_from([8, 16, 24])),
            intermediate_size=draw(st.sampled_from([8, 20])),
            num_hidden_layers=layers,
            num_attention_heads=heads,
            num_key_value_heads=kv,
            head_dim=head_dim,
            max_position_embeddings=CONTEXT,
            rope_theta=draw(st.sampled_from([10000.0, 500000.0, 100.0])),
            attention_bias=attention_bias,
            mlp_bias=draw(st.booleans()),
            tie_word_embeddings=draw(st.booleans()),
            sliding_window=window,
            **draw(family_switches(attention_bias)),
        )
    if arch == "gpt2":
        heads = draw(st.sampled_from([1, 2, 4]))
        # Width >= 8: LayerNorm over 4 values is so ill-conditioned (it divides by their spread) that float32
        # rounding differences are amplified 10x (measured tail 1.3e-5 vs 4e-6 at width 8).
        head_dim = draw(st.sampled_from([8] if heads == 1 else [4, 8]))
        return gpt2.Config(
            vocab_size=vocab,
            n_embd=heads * head_dim,
            n_layer=layers,
            n_head=heads,
            n_positions=CONTEXT,
            n_inner=draw(st.sampled_from([8, 32])),
        )
    if arch == "mamba2":
        return draw(mamba2_configs(vocab, layers))
    return mamba.Config(
        vocab_size=vocab,
        hidden_size=draw(st.sampled_from([8, 16])),
        state_size=draw(st.sampled_from([2, 4, 8])),
        num_hidden_layers=layers,
        intermediate_size=draw(st.sampled_from([8, 16, 32])),
        time_step_rank=draw(st.sampled_from([1, 2, 4])),
        conv_kernel=draw(st.sampled_from([2, 3, 4])),
        use_bias=draw(st.booleans()),
        use_conv_bias=draw(st.booleans()),
        tie_word_embeddings=draw(st.booleans()),
    )


# RoPE scalings (SPEC.md §4); llama3's wavelength thresholds 16 and 4 put the random configs' frequencies
# (head_dim 4 or 8, theta 100 .. 5e5) in all three of its regimes.
ROPE_SCALINGS = [
    {},
    {"rope_type": "linear", "factor": 4.0},
    {
        "rope_type": "llama3",
        "factor": 8.0,
        "low_freq_factor": 1.0,
        "high_freq_factor": 4.0,
        "original_max_position_embeddings": 16,
    },
]


@st.composite
def family_switches(draw, attention_bias: bool):
    """The Llama-style families' switches (SPEC.md §5), each drawn on its own so that any combination is tried."""
    return dict(
        qkv_bias=not attention_bias and draw(st.booleans()),
        qk_norm=draw(st.booleans()),
        norm_unit_offset=draw(st.booleans()),
        scale_embeddings=draw(st.booleans()),
        hidden_act=draw(st.sampled_from(["silu", "gelu_pytorch_tanh"])),
        partial_rotary_factor=draw(st.sampled_from([1.0, 0.5])),
        **draw(st.sampled_from(ROPE_SCALINGS)),
    )


# time_step_limit: the default (no clamp), and limits that bind for the small dt of random weights (dt ~ 1e-3..0.1).
TIME_STEP_LIMITS = [(0.0, float("inf")), (0.0, 0.05), (0.01, float("inf")), (0.005, 0.03)]


@st.composite
def mamba2_configs(draw, vocab: int, layers: int):
    """Small Mamba-2 configs: H P = expand C, G | H, and chunks of 1..5 or 8 so that random lengths cross chunk
    boundaries (T < Q, T = Q, ragged last chunks, many chunks). Width >= 8 and norm groups of >= 4 channels, for
    the reason GPT-2's width is (an RMSNorm over 1-2 values amplifies rounding; measured tail 4.7e-5 vs 8e-6)."""
    hidden, expand = draw(st.sampled_from([8, 16])), draw(st.sampled_from([1, 2]))
    heads = draw(st.sampled_from([1, 2, 4]))
    return mamba2.Config(
        vocab_size=vocab,
        hidden_size=hidden,
        state_size=draw(st.sampled_from([2, 4])),
        num_hidden_layers=layers,
        num_heads=heads,
        head_dim=expand * hidden // heads,
        expand=expand,
        n_groups=draw(st.sampled_from([g for g in (1, 2, 4) if heads % g == 0 and expand * hidden // g >= 4])),
        conv_kernel=draw(st.sampled_from([2, 3, 4])),
        chunk_size=draw(st.sampled_from([1, 2, 3, 4, 5, 8])),
        time_step_limit=draw(st.sampled_from(TIME_STEP_LIMITS)),
        use_bias=draw(st.booleans()),
        use_conv_bias=draw(st.booleans()),
        tie_word_embeddings=draw(st.booleans()),
    )


@st.composite
def models(draw, archs=ARCHS):
    family = draw(st.sampled_from(archs))
    cfg, arch = draw(configs(family)), FAMILY_ARCH.get(family, family)
    seed = draw(st.integers(0, 2**32 - 1))
    return Model(arch, cfg, builtin.init_weights(arch, cfg, seed), name=f"random-{family}-{seed}")


def lengths(min_size: int = 1, max_size: int = LONGEST):
    """A sequence length in [min_size, max_size]: a short one (cheap), a scan boundary, or any."""
    boundaries = [n for n in BOUNDARY_LENGTHS if min_size <= n <= max_size]
    short = st.integers(min_size, min(max_size, 24))
    return st.one_of(short, st.sampled_from(boundaries), st.integers(min_size, max_size)) if boundaries else short


def token_lists(vocab: int, min_size: int = 1, max_size: int = 24):
    """Token ids; lengths from :func:`lengths`, so a max_size past 32 reaches the scan's long-sequence rounds."""
    return lengths(min_size, max_size).flatmap(lambda n: st.lists(st.integers(0, vocab - 1), min_size=n, max_size=n))


def token_batches(vocab: int, min_len: int = 1, max_len: int = LONGEST, max_batch: int = 3):
    """[B, T] int64 token ids, B in 2..max_batch, for the batched model functions (forward / decode)."""
    shapes = st.tuples(st.integers(2, max_batch), lengths(min_len, max_len))
    return shapes.flatmap(
        lambda bt: st.lists(st.integers(0, vocab - 1), min_size=bt[0] * bt[1], max_size=bt[0] * bt[1]).map(
            lambda ids: np.array(ids, np.int64).reshape(bt)
        )
    )
