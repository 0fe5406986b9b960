"""Whole-model laws: the unrolled form (``forward``, one call over T tokens) equals T calls of the recurrent form
(``decode``, one token against the carried state), for every weight, through the architectures' own code.

This is the prefill-vs-decode bug class of docs/design.md §6 (different conv paths, caches ignored, chunks that
update state wrongly), stated for *all* weights of a tiny configuration: weights are symbolic reals, tokens
and positions concrete. sqrt, reciprocal, sigmoid, softplus, tanh are uninterpreted (only congruence is used:
both forms must apply them to provably equal arguments); cos/sin of concrete positions are computed by numpy.
The logits at every position and the final state must be equal.

The Llama-style families (SPEC.md §5) are the same decoder with switches, each proved on its own tiny config:
Qwen3's RMSNorm of each head's q and k and Gemma's (1 + w) norms, scaled embedding and tanh GELU add
normalisations and gates on both paths, partial RoPE (Phi-3) slices each head, llama3 RoPE scaling changes only
the concrete frequencies, Qwen2's biases enter the projections, and Mistral's sliding window (3 tokens across a
window of 2) bounds the state and bands the unrolled mask; none may break prefill = decode. Each has a catalogue
mutant whose decode path skips the family's feature (for Mistral, a forward that ignores the window), which must
come back refuted.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import numpy as np
import z3

from lmstep.spec import builtin, gpt2, llama, mamba, mamba2
from lmstep.spec.arrays import SeqBuffer
from lmstep.spec.model import ARCHITECTURES

from .domains import Real
from .obligations import Obligation, Query, catalogue, register
from .symbolic import Z3Ops, all_equal

TOKENS = [1, 0, 1]  # a repeated token, so a cache that ignored position or order would be caught

TINY_LLAMA = dict(
    vocab_size=2,
    hidden_size=2,
    intermediate_size=2,
    num_hidden_layers=1,
    num_attention_heads=2,
    num_key_value_heads=1,
    head_dim=2,
    max_position_embeddings=8,
)
CONFIGS: dict[str, Any] = {
    "llama": llama.Config(**TINY_LLAMA),
    "gpt2": gpt2.Config(vocab_size=2, n_embd=2, n_layer=1, n_head=1, n_positions=8, n_inner=2),
    "mamba": mamba.Config(
        vocab_size=2,
        hidden_size=2,
        state_size=1,
        num_hidden_layers=1,
        intermediate_size=1,
        time_step_rank=1,
        conv_kernel=2,
    ),
    # the Llama-style families: spec/llama.py's decoder with each family's switches
    "llama3": llama.Config(
        **TINY_LLAMA,
        rope_type="llama3",
        factor=8.0,
        low_freq_factor=1.0,
        high_freq_factor=4.0,
        original_max_position_embeddings=4,
    ),
    "qwen2": llama.Config(**TINY_LLAMA, model_type="qwen2", qkv_bias=True),
    "qwen3": llama.Config(**TINY_LLAMA, model_type="qwen3", qk_norm=True),
    "gemma": llama.Config(
        **TINY_LLAMA,
        model_type="gemma",
        hidden_act="gelu_pytorch_tanh",
        norm_unit_offset=True,
        scale_embeddings=True,
    ),
    "phi3": llama.Config(**{**TINY_LLAMA, "head_dim": 4}, model_type="phi3", partial_rotary_factor=0.5),
    # Mistral: a window of 2, so the 3 tokens cross it (the state keeps 1 key).
    "mistral": llama.Config(**TINY_LLAMA, model_type="mistral", sliding_window=2),
    # Two heads in two groups (each its own B, C and norm group), chunks of 2: the 3 tokens cross a chunk boundary.
    "mamba2": mamba2.Config(
        vocab_size=2,
        hidden_size=1,
        state_size=1,
        num_hidden_layers=1,
        num_heads=2,
        head_dim=1,
        n_groups=2,
        conv_kernel=2,
        chunk_size=2,
    ),
}
ARCH = {name: "llama" if isinstance(cfg, llama.Config) else name for name, cfg in CONFIGS.items()}
# Mamba-2's decays are exps of segment sums in the unrolled form and products of exps in the recurrent one: the
# "product" exp model (symbolic.py) makes them the same polynomial. The others use the field lemmas.
EXP = {"mamba2": "product"}


def symbolic_weights(o: Z3Ops, module: ModuleType, cfg: Any) -> Any:
    return module.weights_from_dict(cfg, {name: o.var(name, shape) for name, shape in module.param_shapes(cfg).items()})


def empty_cache(module: ModuleType, cfg: Any) -> Any:
    """The architecture's empty state with object (term) storage instead of float32."""
    cache = module.empty_cache(cfg, 1)

    def objects(t: Any) -> Any:
        if isinstance(t, SeqBuffer):
            return SeqBuffer.empty(t.shape[: t.axis] + t.shape[t.axis + 1 :], t.axis, dtype=object, keep=t.keep)
        return np.zeros(t.shape, dtype=object) + 0.0  # float zeros as Python floats, lifted when used

    return tuple(tuple(objects(t) for t in pair) for pair in cache)


def _state_terms(cache: Any) -> list[np.ndarray]:
    return [t.view() if isinstance(t, SeqBuffer) else t for pair in cache for t in pair]


def prefill_query(
    name: str,
    decode: Any = None,
    tokens: list[int] = TOKENS,
    seeded: bool = False,
    attempt_s: float | None = None,
    forward: Any = None,
) -> Query:
    """``name``: an architecture or a Llama-style family of CONFIGS. ``seeded``: the built-in generator's float32
    weights (seed 0) instead of symbolic ones - for mutants, whose counterexample Z3 then finds among the
    uninterpreted functions' values alone (symbolic weights: > 120 s). ``decode`` / ``forward``: a mutant's
    (default: the architecture's own)."""
    arch = ARCH[name]
    module = ARCHITECTURES[arch]
    decode, forward = decode or module.decode, forward or module.forward
    cfg, o = CONFIGS[name], Z3Ops(Real(), normalize=True, exp=EXP.get(name, "field"))
    w = builtin.init_weights(arch, cfg, 0) if seeded else symbolic_weights(o, module, cfg)
    positions = np.arange(len(tokens), dtype=np.int64)[None]
    tokens = np.array([tokens], np.int64)
    logits, cache = forward(o, cfg, w, tokens, positions, empty_cache(module, cfg))
    state, goals = empty_cache(module, cfg), []
    for t in range(tokens.shape[1]):
        step_logits, state = decode(o, cfg, w, tokens[:, t], positions[:, t], state)
        goals.append(all_equal(o, step_logits, logits[:, t]))
    goals += [all_equal(o, a, b) for a, b in zip(_state_terms(state), _state_terms(cache))]
    return Query(z3.And(*goals), o.facts, o.checks, {}, attempt_s=attempt_s)


# Each architecture's decode with one realistic bug of the mutant catalogue. (A RoPE position off by one in
# decode alone is *not* a bug over the reals: rotating every query and key one position further leaves q.k
# unchanged; the catalogue's rope-decode-off-by-one is caught in float32 through the cached keys.)
MUTANTS: dict[str, tuple[str, str, list[int], bool]] = {  # obligation suffix, catalogue mutant, tokens, seeded
    "llama": ("scale", "attention-decode-scale", TOKENS[:2], True),
    "mistral": ("window-only-in-decode", "window-only-in-decode", TOKENS, True),  # mutates forward, not decode
    "gpt2": ("position-off-by-one", "decode-position-off-by-one", TOKENS[:1], False),
    "mamba": ("conv-window", "conv-not-shifted", TOKENS[:2], True),
    "llama3": ("unscaled-rope", "llama3-rope-unscaled-in-decode", TOKENS[:2], True),
    "qwen2": ("bias-dropped", "qkv-bias-dropped-in-decode", TOKENS[:1], True),
    "qwen3": ("qk-norm-skipped", "qk-norm-skipped-in-decode", TOKENS[:1], True),
    "gemma": ("norm-offset-dropped", "norm-offset-dropped-in-decode", TOKENS[:1], True),
    "phi3": ("full-rotary", "partial-rotary-ignored-in-decode", TOKENS[:2], True),
    "mamba2": ("conv-window", "conv-not-shifted", TOKENS[:2], True),  # the conv step both generations share
}


def _mutated(variant: str, mutant: str) -> dict[str, Any]:
    """``variant``'s decode, or for Mistral its forward (llama.py's: the window bug is in the unrolled form), with
    the catalogue's ``mutant``."""
    return {MUTATED_FORM[variant]: catalogue(mutant, f"{ARCH[variant]}.{MUTATED_FORM[variant]}")}


MUTATED_FORM = {variant: "forward" if variant == "mistral" else "decode" for variant in CONFIGS}


# -- the registry -----------------------------------------------------------------------------------------
REAL = "the reals; weights symbolic; sqrt/reciprocal/sigmoid/softplus/tanh uninterpreted; MASKED as -inf"
SEEDED = REAL.replace("weights symbolic", "weights seeded (builtin.init_weights, seed 0)")
for variant in CONFIGS:
    name, arch = f"model/{variant}-prefill-eq-decode", ARCH[variant]
    family = "" if arch == variant else f" ({variant} switches)"
    register(
        Obligation(
            name,
            "model",
            f"{variant}: forward over T tokens equals T decode steps (logits and state)",
            REAL,
            f"T={len(TOKENS)}, tokens {TOKENS}, 1 layer, the tiny config in model.py",
            f"spec: {arch}.forward, {arch}.decode{family}",
            "proved",
            lambda variant=variant: prefill_query(variant),
            timeout_s=120,
            law="unrolled-eq-recurrent",
        )
    )
    bug, mutant, tokens, seeded = MUTANTS[variant]
    form = MUTATED_FORM[variant]
    register(
        Obligation(
            f"{name}~{bug}",
            "model",
            f"mutant: {arch}.{form}{family} with the {bug.replace('-', ' ')} bug: forward differs from decode",
            SEEDED if seeded else REAL,
            f"T={len(tokens)}",
            f"spec: mutated {arch}.{form}",
            "refuted",
            lambda variant=variant, mutant=mutant, tokens=tokens, seeded=seeded: prefill_query(
                variant, tokens=tokens, seeded=seeded, attempt_s=3.0, **_mutated(variant, mutant)
            ),
            mutant_of=name,
            mutant=mutant,
            timeout_s=120,
        )
    )  # Z3's search alone: gpt2 4 s to > 120 s by seed, llama past 120 s on some machines; a countermodel found
    # by evaluation and checked by Z3 (witness.py) decides each in under a second
