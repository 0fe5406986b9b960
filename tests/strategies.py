"""Hypothesis strategies shared by the tests: small random configs of every architecture, with weights
generated from a drawn seed (the built-in models' generator applied to any config)."""

from __future__ import annotations

from hypothesis import strategies as st

from lmstep.spec import Model, builtin, gpt2, llama, mamba

ARCHS = ("llama", "gpt2", "mamba")


@st.composite
def configs(draw, arch: str):
    vocab = draw(st.sampled_from([7, 32, 61]))
    layers = draw(st.integers(1, 2))
    if arch == "llama":
        kv = draw(st.sampled_from([1, 2]))
        heads = kv * draw(st.sampled_from([1, 2, 3]))
        head_dim = draw(st.sampled_from([4, 8]))
        return llama.Config(
            vocab_size=vocab,
            hidden_size=draw(st.sampled_from([8, 16, 24])),
            intermediate_size=draw(st.sampled_from([8, 20])),
            num_hidden_layers=layers,
            num_attention_heads=heads,
            num_key_value_heads=kv,
            head_dim=head_dim,
            max_position_embeddings=128,
            rope_theta=draw(st.sampled_from([10000.0, 500000.0, 100.0])),
            attention_bias=draw(st.booleans()),
            mlp_bias=draw(st.booleans()),
            tie_word_embeddings=draw(st.booleans()),
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
            n_positions=128,
            n_inner=draw(st.sampled_from([8, 32])),
        )
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


@st.composite
def models(draw, archs=ARCHS):
    arch = draw(st.sampled_from(archs))
    cfg = draw(configs(arch))
    seed = draw(st.integers(0, 2**32 - 1))
    return Model(arch, cfg, builtin.init_weights(arch, cfg, seed), name=f"random-{arch}-{seed}")


def token_lists(vocab: int, min_size: int = 1, max_size: int = 24):
    return st.lists(st.integers(0, vocab - 1), min_size=min_size, max_size=max_size)
