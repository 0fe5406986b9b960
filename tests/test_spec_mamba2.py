"""Mamba-2's two forms ("train in parallel, run recurrent"): the chunked SSD (mamba2.ssd) equals the recurrence
(mamba2.ssm_step) at every chunk boundary and from carried states; splits at chunk boundaries; the chunk size
changes only rounding; the time-step limit, the head -> group map and the grouped gated norm are what SPEC.md
§11 says. Every check has a negative control: a catalogue mutant (lmstep/mutants.py) or a local variant that the
same check catches. The random-config laws (forks, causality, batches, ...) run Mamba-2 in
test_spec_properties.py through tests/strategies.py."""

from __future__ import annotations

import laws
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from tolerances import FORMS, rel_err

from lmstep.mutants import MUTANTS
from lmstep.spec import NP, Model, builtin, load, mamba2

TOL = FORMS["mamba2"]


def small(chunk: int, seed: int = 0, **changes) -> Model:
    """A small Mamba-2 (2 layers, 4 heads in 2 groups) with chunks of ``chunk`` steps."""
    cfg = mamba2.Config(
        vocab_size=32,
        hidden_size=8,
        state_size=4,
        num_hidden_layers=2,
        num_heads=4,
        head_dim=4,
        n_groups=2,
        chunk_size=chunk,
        **changes,
    )
    return Model("mamba2", cfg, builtin.init_weights("mamba2", cfg, seed), name=f"small-mamba2-{chunk}")


def tokens(n: int, seed: int = 0) -> list[int]:
    return np.random.default_rng(seed).integers(0, 32, n).tolist()


def boundary_lengths(q: int) -> list[int]:
    """Around the chunk edges: shorter than a chunk, one chunk, one more, two chunks and a ragged third."""
    return sorted({n for n in (q - 1, q, q + 1, 2 * q, 2 * q + 1, 3 * q - 1) if n >= 1})


# -- the SSD function itself, in float64: equal to the recurrence up to float64 rounding ----------------------
def ssd_inputs(rng: np.random.Generator, length: int, heads: int = 3, p: int = 2, n: int = 3):
    x = rng.standard_normal((1, length, heads, p))
    dt = rng.uniform(1e-3, 0.5, (1, length, heads))
    A = -rng.uniform(0.5, 4.0, heads)
    B, C = rng.standard_normal((2, 1, length, heads, n))
    h0 = rng.standard_normal((1, heads, p, n)) * 3
    return x, dt, A, B, C, h0


def ssd_vs_recurrence(ssd, length: int, chunk: int, seed: int) -> float:
    """rel_err of ``ssd`` (float64 inputs) against ``length`` steps of mamba2.ssm_step, outputs and final state."""
    x, dt, A, B, C, h0 = ssd_inputs(np.random.default_rng(seed), length)
    y, h_last = ssd(NP, x, dt, A, B, C, h0, chunk)
    h, rows = h0, []
    for t in range(length):
        y_t, h = mamba2.ssm_step(NP, h, x[:, t], dt[:, t], A, B[:, t], C[:, t])
        rows.append(y_t)
    return max(rel_err(y, np.stack(rows, axis=1)), rel_err(h_last, h))


# float64 rounding only: measured <= 6.4e-16 over every length 1..4Q+3 for Q = 1..9 (float32's is ~1e-7).
F64_TOL = 1e-12


@pytest.mark.law("unrolled-eq-recurrent", "split-invariance")
@given(st.integers(1, 9), st.data())
def test_ssd_equals_the_recurrence_in_float64(chunk, data):
    """From a random carried state, at lengths around every chunk edge (and past several chunks)."""
    length = data.draw(st.sampled_from(boundary_lengths(chunk)) | st.integers(1, 4 * chunk + 3))
    assert ssd_vs_recurrence(mamba2.ssd, length, chunk, data.draw(st.integers(0, 2**32 - 1))) <= F64_TOL


@pytest.mark.control("unrolled-eq-recurrent", "split-invariance")
@pytest.mark.parametrize("mutant", ["ssd-state-not-carried", "ssd-chunk-decay-off-by-one", "ssd-h0-undecayed"])
def test_ssd_mutants_break_the_float64_check(mutant):
    ssd = MUTANTS[mutant].function("mamba2.ssd")
    assert max(ssd_vs_recurrence(ssd, n, 3, seed=n) for n in boundary_lengths(3)) > 1e-3


def test_segsum_is_a_masked_sequential_sum():
    """SPEC.md §11: S[i, j] = a_{j+1} + ... + a_i summed left to right in float32 (bit for bit), MASKED above the
    diagonal. Control: the difference of cumulative sums (ssd_minimal's exp(A_cum[-1] - A_cum) form) is equal over
    the reals but not bit for bit."""
    a = np.random.default_rng(1).standard_normal(9).astype(np.float32)
    s = mamba2.segsum(NP, a)
    for i in range(9):
        for j in range(9):
            want = np.float32(0)
            for k in range(j + 1, i + 1):
                want = np.float32(want + a[k])
            assert s[i, j] == (want if j <= i else np.float32(-3.4028235e38)), (i, j)
    cum = np.cumsum(a, dtype=np.float32)
    differences = np.tril(cum[:, None] - cum[None, :])
    assert not np.array_equal(differences, np.tril(s))


# -- the model, in float32 ------------------------------------------------------------------------------------------
@pytest.mark.law("unrolled-eq-recurrent")
@pytest.mark.parametrize("chunk", [1, 2, 3, 4, 8])
def test_unrolled_equals_recurrent_at_chunk_boundaries(chunk):
    model = small(chunk)
    for n in boundary_lengths(chunk):
        assert laws.unrolled_vs_recurrent(model, tokens(n, n)) <= TOL, n


@pytest.mark.law("split-invariance")
@pytest.mark.parametrize("chunk", [2, 3, 4, 8])
def test_split_into_chunks_of_q_minus_one_q_and_q_plus_one(chunk):
    """Prefills of Q-1, Q and Q+1 tokens one after another (each from the state the last left), and the same split
    with the middle part stepped, equal one prefill of the whole."""
    model, seq = small(chunk), tokens(6 * chunk, chunk)
    cuts = [chunk - 1, 2 * chunk - 1, 3 * chunk]
    for modes in ([True], [True, False, True, True]):
        assert laws.split_invariance(model, seq, cuts, modes) <= TOL


@pytest.mark.control("split-invariance")
def test_chunk_boundary_split_catches_a_state_not_carried():
    model = MUTANTS["ssd-state-not-carried"].apply(small(3))
    assert laws.split_invariance(model, tokens(18, 3), [2, 5, 9], [True]) > 100 * TOL


@pytest.mark.law("numeric-tolerance")
def test_chunk_size_changes_only_rounding():
    """chunk_size is the unrolled form's schedule, not part of the equation: the same weights with chunks of 1, 3,
    8 and 256 give the same logits within the tolerance (proofs/ssd.py: equal over the reals)."""
    seq = tokens(40, 7)
    ref = small(256).unrolled(seq)
    for chunk in (1, 3, 8):
        assert rel_err(small(chunk).unrolled(seq), ref) <= TOL


@pytest.mark.law("unrolled-eq-recurrent")
def test_a_binding_time_step_limit_is_applied_by_both_forms():
    """time_step_limit clamps dt in the unrolled and the recurrent form alike (transformers' cached decode does not:
    docs/checkpoints.md). Control: the limit changes the logits, so it is really applied."""
    limited, free = small(4, time_step_limit=(0.02, 0.03)), small(4)
    seq = tokens(13, 2)
    assert laws.unrolled_vs_recurrent(limited, seq) <= TOL
    assert rel_err(limited.unrolled(seq), free.unrolled(seq)) > 0.01


@pytest.mark.control("unrolled-eq-recurrent")
def test_a_decode_that_ignores_the_limit_breaks_unrolled_eq_recurrent(monkeypatch):
    """transformers' Mamba-2 bug as a variant of the spec: the recurrent form without the clamp."""
    model = small(4, time_step_limit=(0.02, 0.03))
    monkeypatch.setattr(mamba2, "_time_step", lambda o, cfg, layer, dt: o.softplus(o.add(dt, layer.dt_bias)))
    stepped = laws.step_all(model, tokens(13, 2))[1]
    monkeypatch.undo()
    assert rel_err(model.unrolled(tokens(13, 2)), stepped) > 100 * TOL


def test_heads_read_their_group():
    """Head h uses B and C of group h // (H / G) (transformers' repeat_interleave). Control: the tiled map h % G
    (einops "(r g)" instead of "(g r)") differs."""
    cfg = small(4).config  # 4 heads in 2 groups of 2
    v = np.arange(2 * cfg.conv_dim, dtype=np.float32).reshape(2, cfg.conv_dim)
    _, b, c = mamba2._conv_outputs(NP, cfg, v, (0,))
    e, gn = cfg.intermediate_size, cfg.n_groups * cfg.state_size
    groups_b = v[:, e : e + gn].reshape(2, cfg.n_groups, cfg.state_size)
    r = cfg.num_heads // cfg.n_groups
    assert np.array_equal(b, groups_b[:, [h // r for h in range(cfg.num_heads)]])
    assert not np.array_equal(b, groups_b[:, [h % cfg.n_groups for h in range(cfg.num_heads)]])
    assert np.array_equal(c[:, 0], v[:, e + gn : e + gn + cfg.state_size])


def test_gated_norm_normalises_each_group_after_the_gate():
    """out = RMSNorm_g(y * silu(z)) per group of E / G channels, then out_proj (transformers' Mamba2RMSNormGated).
    Control: one norm over all E channels differs when G > 1."""
    model = small(4)
    layer, cfg = model.weights.layers[0], model.config
    rng = np.random.default_rng(3)
    y, x = rng.standard_normal((2, 1, cfg.num_heads, cfg.head_dim)).astype(np.float32)
    z = rng.standard_normal((1, cfg.intermediate_size)).astype(np.float32)
    out = mamba2._output(NP, cfg, layer, y, x, z, (0,))
    g = ((y + x * layer.D[:, None]).reshape(1, -1) * (z / (1 + np.exp(-z)))).astype(np.float64)
    groups = g.reshape(1, cfg.n_groups, -1)
    normed = (groups / np.sqrt((groups**2).mean(-1, keepdims=True) + cfg.layer_norm_epsilon)).reshape(1, -1)
    assert rel_err(out, (normed * layer.gated_norm) @ layer.out_proj) <= 1e-5
    whole = g / np.sqrt((g**2).mean(-1, keepdims=True) + cfg.layer_norm_epsilon)
    assert rel_err(out, (whole * layer.gated_norm) @ layer.out_proj) > 1e-3


def test_tiny_mamba2_crosses_chunks_and_generates_varied_text():
    """The built-in model's chunks (8) are shorter than the checker's prefills (up to 12), so a bug between chunks
    is reachable by the quick `lmstep check`; greedy output is not a constant."""
    model = load("tiny-mamba2")
    assert model.config.chunk_size < 12 and model.config.n_groups > 1
    assert len(set(model.generate(list(b"Hello"), 24))) > 6


def test_the_unrolled_form_never_steps(monkeypatch):
    """The chunked SSD is a different computation, not a loop over the recurrent one: with the step's functions
    disabled the unrolled form still runs (control: the recurrent form then fails)."""
    model = load("tiny-mamba2")

    def forbidden(*args, **kwargs):
        raise AssertionError("the unrolled form called the recurrent one")

    for name in ("ssm_step", "_mixer_step", "decode"):
        monkeypatch.setattr(mamba2, name, forbidden)
    assert model.unrolled(list(b"no step here, across chunks")).shape == (27, 256)
    with pytest.raises(AssertionError, match="called the recurrent"):
        model.step(model.init_state(), 1, 0.5)


@pytest.mark.law("causality", "states-are-values")
@pytest.mark.parametrize("chunk", [3, 4])
def test_causality_and_forks_across_chunk_edges(chunk):
    """A prefix that ends inside, at and just past a chunk edge keeps its logits when tokens are appended (the
    appended ones change the chunks the prefix's last steps sit in); two continuations of a state that ends
    mid-chunk each equal a fresh computation."""
    model, seq = small(chunk), tokens(4 * chunk, 5)
    for n in (chunk - 1, chunk, chunk + 1):
        assert laws.causality(model, seq[:n], seq[n : n + chunk + 2]) <= TOL
    assert laws.fork_law(model, seq[: chunk + 1], seq[chunk + 1 : 2 * chunk + 3], seq[:chunk])


@pytest.mark.control("causality")
def test_causality_check_catches_a_chunk_that_sees_its_future():
    """The same causality check on an SSD whose segment sums are not masked above the diagonal (each step reads
    the later steps of its chunk) fails."""
    model = small(4)

    def unmasked(o, a):
        i = o.arange(0, o.shape(a, -1))
        later = o.less(o.unsqueeze(i, 0), o.unsqueeze(i, -1))
        return o.cumsum(o.where(later, o.unsqueeze(a, -1), 0.0), axis=-2)

    seq = tokens(12, 5)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(mamba2, "segsum", unmasked)
        assert laws.causality(model, seq[:5], seq[5:9]) > 100 * TOL
