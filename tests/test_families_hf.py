"""The Llama-style families against transformers itself, live (the optional hf extra; skipped, with the reason,
without torch): RoPE frequencies to the bit, Gemma's embedding scale, and the logits of every family's fixtures
recomputed now (tests/test_checkpoints.py compares the recorded ones without torch)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hf_fixtures import NAMES, folder
from test_checkpoints import RTOL
from test_families import LLAMA3

torch = pytest.importorskip("torch", reason="torch not installed (optional: pip install -e '.[hf]')")
transformers = pytest.importorskip(
    "transformers", reason="transformers not installed (optional: pip install -e '.[hf]')"
)

from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS  # noqa: E402
from transformers.models.llama.modeling_llama import LlamaRotaryEmbedding  # noqa: E402

from lmstep.spec import llama, load, rope  # noqa: E402
from lmstep.spec.conformance import rel_err  # noqa: E402

FAMILY_FIXTURES = [n for n in NAMES if n.split("-")[0] in ("llama3", "qwen2", "qwen3", "gemma", "phi3")]
FAMILY_FIXTURES += [n for n in NAMES if n.startswith("llama-linear")]


def _hf_rope(theta: float, head_dim: int, params: dict) -> tuple[np.ndarray, np.ndarray]:
    """transformers' (base, scaled) inv_freq for a Llama config with these rope_parameters."""
    cfg = transformers.LlamaConfig(
        hidden_size=4 * head_dim,
        num_attention_heads=4,
        head_dim=head_dim,
        max_position_embeddings=100_000,
        rope_parameters={"rope_theta": theta, **params},
    )
    base, _ = LlamaRotaryEmbedding.compute_default_rope_parameters(cfg)
    scaled, attention_factor = ROPE_INIT_FUNCTIONS[params["rope_type"]](cfg)
    assert attention_factor == 1.0  # cos and sin unscaled, as SPEC.md §4 has them
    return base.numpy(), scaled.numpy()


SCALINGS = [{"rope_type": "linear", "factor": f} for f in (2.0, 2.5, 4.0, 7.5)] + [
    dict(rope_type="llama3", factor=f, low_freq_factor=lo, high_freq_factor=hi, original_max_position_embeddings=o)
    for f, lo, hi, o in LLAMA3
]


@pytest.mark.parametrize("theta", [10000.0, 500000.0, 1e6, 100.0])
def test_scaled_frequencies_are_transformers_bit_for_bit(theta):
    """Given transformers' base frequencies, spec/rope.py's linear and llama3 scalings give its bits exactly
    (every float32 operation in its order); the base itself is the correctly rounded power, which torch's
    vectorised pow misses by one ulp in a few frequencies (counted, never more than one ulp)."""
    off_by_one = total = 0
    for head_dim, params in itertools.product([8, 16, 64, 96, 128, 256], SCALINGS):
        base, scaled = _hf_rope(theta, head_dim, params)
        if params["rope_type"] == "linear":
            ours = rope.linear_inv_freq(base, params["factor"])
        else:
            keys = ("factor", "low_freq_factor", "high_freq_factor", "original_max_position_embeddings")
            ours = rope.llama3_inv_freq(base, *(params[k] for k in keys))
        assert ours.tobytes() == scaled.tobytes(), (head_dim, params)
        ulps = np.abs(rope.base_inv_freq(head_dim, theta).view(np.int32) - base.view(np.int32))
        assert ulps.max() <= 1
        off_by_one, total = off_by_one + int(ulps.sum()), total + ulps.size
    assert off_by_one <= 0.02 * total  # measured: 110 of 16500 over a wider grid (0.7%)


def test_gemma_embedding_scale_is_transformers_buffer():
    from transformers.models.gemma.modeling_gemma import GemmaTextScaledWordEmbedding

    for hidden in (24, 48, 2048, 3072, 3584, 4096):
        buffer = GemmaTextScaledWordEmbedding(4, hidden, 0, embed_scale=hidden**0.5).embed_scale
        cfg = llama.Config(
            vocab_size=4,
            hidden_size=hidden,
            intermediate_size=4,
            num_hidden_layers=1,
            num_attention_heads=1,
            num_key_value_heads=1,
            head_dim=4,
            scale_embeddings=True,
        )
        assert buffer.dtype == torch.float32 and float(buffer) == cfg.embedding_scale


@pytest.mark.parametrize("name", FAMILY_FIXTURES)
def test_family_fixture_against_live_transformers(name):
    """The fixture folder run by transformers now (float32) and by lmstep: every position of a 40-token sequence,
    and 12 greedy tokens (transformers' generate) token for token."""
    torch.set_num_threads(1)
    hf = transformers.AutoModelForCausalLM.from_pretrained(folder(name), dtype=torch.float32).eval()
    model = load(folder(name))
    tokens = np.random.default_rng(7).integers(0, model.vocab_size, 40).tolist()
    with torch.no_grad():
        theirs = hf(torch.tensor([tokens])).logits[0].numpy()
        greedy = hf.generate(
            torch.tensor([tokens[:5]]),
            attention_mask=torch.ones(1, 5, dtype=torch.long),
            max_new_tokens=12,
            do_sample=False,
            pad_token_id=0,
        )[0, 5:].tolist()
    assert rel_err(model.unrolled(tokens), theirs) <= RTOL
    assert model.generate(tokens[:5], 12) == greedy
