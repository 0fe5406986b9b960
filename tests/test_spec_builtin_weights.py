"""The built-in weights are reproducible from SPEC.md §9 alone: a scalar re-implementation of the generator
(written from the text, not calling lmstep.spec.builtin or lmstep.spec.rand) must give the digests that
SPEC.md publishes, and so must the spec's own generator."""

import hashlib
import math
import re
from pathlib import Path

import numpy as np
import pytest

from lmstep.spec import BUILTIN_MODELS, load

SPEC = Path(__file__).resolve().parent.parent / "SPEC.md"
M64 = 2**64 - 1


def mix(x: int) -> int:
    z = (x + 0x9E3779B97F4A7C15) & M64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
    return z ^ (z >> 31)


def affine(name: str, shape, config) -> tuple[float, float]:
    """SPEC.md §9's table."""
    leaf = name.rsplit(".", 1)[-1]
    if getattr(config, "norm_unit_offset", False) and "norm" in leaf:  # Gemma's (1 + w) norms
        return 0.1, 4.0 if name == "norm" else 0.0
    if getattr(config, "scale_embeddings", False) and leaf == "embed_tokens":
        return 1 / math.sqrt(config.hidden_size), 0.0
    table = {"A_log": (1.0, 0.5), "dt_proj_bias": (2.3, -4.6), "dt_bias": (2.3, -4.6), "D": (0.0, 1.0)}
    if leaf in table:
        return table[leaf]
    if "norm" in leaf or (leaf.startswith("ln_") and leaf.endswith("_weight")):
        return 0.1, 1.0
    if "bias" in leaf:
        return 0.1, 0.0
    if leaf in ("embed_tokens", "embeddings", "wte", "wpe"):
        return 1.0, 0.0
    gain = {"lm_head": 4.0, "attn_c_proj_weight": 3.0, "mlp_c_proj_weight": 3.0}.get(leaf, 1.5)
    return gain * math.sqrt(3.0 / shape[0]), 0.0


def published_digests() -> dict[str, str]:
    return dict(re.findall(r"^\| (tiny-[a-z0-9]+) \| `([0-9a-f]{64})` \|$", SPEC.read_text(), re.M))


@pytest.mark.parametrize("name", BUILTIN_MODELS)
def test_weights_regenerate_from_the_written_spec(name):
    model = load(name)
    key, offset, h = mix(20261126), 0, hashlib.sha256()
    for pname, shape in model.module.param_shapes(model.config).items():
        n = int(np.prod(shape))
        top24 = np.array([mix((key + offset + i) & M64) >> 40 for i in range(n)], np.float64)
        u = (2 * top24 / 2**24 - 1).astype(np.float32)  # exact: 25 significant bits at most fit float32 here
        a, b = affine(pname, shape, model.config)
        values = (u * np.float32(a)).astype(np.float32) + np.float32(b)
        h.update(f"{pname}{tuple(shape)}".encode())
        h.update(values.astype("<f4").tobytes())
        offset += n
    assert h.hexdigest() == published_digests()[name] == model.weights_digest()


def test_the_digest_sees_a_one_ulp_change():
    """Negative control: the digest is sensitive to a single weight changed by one ulp."""
    import attrs

    model = load("tiny-mamba")
    bumped = np.nextafter(model.weights.norm_f, np.float32(np.inf)).astype(np.float32)
    other = attrs.evolve(model, weights=attrs.evolve(model.weights, norm_f=bumped))
    assert other.weights_digest() != model.weights_digest()
