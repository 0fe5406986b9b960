"""The spec's laws (lmstep.spec.laws, SPEC.md §1) over random configs, weights, token sequences and seeds. The
broken variants each law catches are the catalogue's mutants (lmstep/mutants.py), run in test_spec_mutants.py."""

import laws
import numpy as np
import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from strategies import BOUNDARY_LENGTHS, LONGEST, models, token_batches, token_lists
from tolerances import FORMS

from lmstep.spec import Model, builtin, load, mamba


@st.composite
def model_and_tokens(draw, min_size=1, max_size=24):
    model = draw(models())
    return model, draw(token_lists(model.vocab_size, min_size, max_size))


@pytest.mark.law("determinism")
@given(model_and_tokens(), st.integers(0, 2**64 - 1), st.sampled_from([0.0, 0.8, 1.5]))
def test_determinism(case, seed, temperature):
    """The same (model, prompt, seed, sampler) gives a bitwise identical trajectory."""
    model, prompt = case
    model = model.with_sampler(temperature=temperature, top_k=5, top_p=0.9)
    assert laws.trajectory(model, prompt, 6, seed) == laws.trajectory(model, prompt, 6, seed)


@pytest.mark.law("determinism")
def test_determinism_in_a_fresh_process():
    """... also in a fresh interpreter (no hidden global state, no hash randomisation effects)."""
    here = [
        list(laws.trajectory(load(n, temperature=0.9, top_k=20), [72, 105, 33], 12, 2**63 + 5)) for n in laws.BUILTINS
    ]
    assert laws.fresh_process_trajectories("123") == here


# A small Mamba for explicit examples at the scan's boundaries (tiny dims: long sequences stay cheap).
SMALL_MAMBA = mamba.Config(
    vocab_size=32, hidden_size=8, state_size=4, num_hidden_layers=2, intermediate_size=8, time_step_rank=2
)


def small_mamba(seed: int = 0) -> Model:
    return Model("mamba", SMALL_MAMBA, builtin.init_weights("mamba", SMALL_MAMBA, seed), name=f"small-mamba-{seed}")


def _tokens(n: int, vocab: int = SMALL_MAMBA.vocab_size) -> list[int]:
    return np.random.default_rng(n).integers(0, vocab, n).tolist()


@pytest.mark.law("unrolled-eq-recurrent", "numeric-tolerance")
@given(model_and_tokens(max_size=LONGEST))
@example((small_mamba(1), _tokens(33)))  # explicit: the first lengths past 32, 64 and 128 (the rounds that random
@example((small_mamba(2), _tokens(65)))  # draws reach less often), so the quick profile always runs them
@example((small_mamba(3), _tokens(129)))
def test_unrolled_equals_recurrent(case):
    """unrolled(tokens) = logits from stepping (and the same final state), within the measured tolerance."""
    model, tokens = case
    assert laws.unrolled_vs_recurrent(model, tokens) <= FORMS[model.arch]


@pytest.mark.law("unrolled-eq-recurrent")
@pytest.mark.parametrize("n", BOUNDARY_LENGTHS)
def test_mamba_unrolled_equals_recurrent_at_scan_boundaries(n):
    """At every power-of-two boundary T = 2^k - 1, 2^k, 2^k + 1 (k <= 7) of the scan's rounds."""
    assert laws.unrolled_vs_recurrent(small_mamba(n), _tokens(n)) <= FORMS["mamba"]


@pytest.mark.law("batch-invariance")
@given(models(), st.data())
def test_batched_forms_equal_each_sequence_alone(model, data):
    """The batched functions (forward over [B, T], decode over [B]) on B >= 2 sequences, from the empty state and
    from a carried batched state, equal each sequence alone within the tolerance."""
    tokens = data.draw(token_batches(model.vocab_size, 2))
    t = tokens.shape[1]
    cuts = sorted(data.draw(st.tuples(st.integers(1, t), st.integers(1, t))))
    assert laws.batched_vs_single(model, tokens, cuts) <= FORMS[model.arch]


@pytest.mark.law("split-invariance")
@given(model_and_tokens(min_size=2, max_size=LONGEST), st.data())
def test_split_invariance(case, data):
    """Any partition of a prompt into chunks, each stepped or prefilled, gives the same logits and state."""
    model, tokens = case
    cuts = sorted(data.draw(st.sets(st.integers(1, len(tokens) - 1), max_size=5)))
    modes = data.draw(st.lists(st.booleans(), min_size=len(cuts) + 1, max_size=len(cuts) + 1))
    assert laws.split_invariance(model, tokens, cuts, modes) <= FORMS[model.arch]


@pytest.mark.law("causality")
@given(model_and_tokens(), st.data())
def test_causality(case, data):
    """Appending tokens never changes earlier positions' logits."""
    model, tokens = case
    extra = data.draw(token_lists(model.vocab_size, 1, 8))
    assert laws.causality(model, tokens, extra) <= FORMS[model.arch]


@pytest.mark.law("states-are-values")
@given(model_and_tokens(max_size=12), st.data())
def test_forks_are_independent(case, data):
    """Two continuations from one state equal fresh computations; the shared state is unchanged."""
    model, prefix = case
    a = data.draw(token_lists(model.vocab_size, 1, 6))
    b = data.draw(token_lists(model.vocab_size, 1, 6))
    assert laws.fork_law(model, prefix, a, b)


@pytest.mark.law("rand-by-position")
@given(model_and_tokens(min_size=2, max_size=12), st.integers(0, 2**32), st.data())
def test_sampled_continuation_is_split_invariant(case, seed, data):
    """rand is keyed by position: how the prompt was consumed cannot shift the stream."""
    model, prompt = case
    cut = data.draw(st.integers(1, len(prompt) - 1))
    model = model.with_sampler(temperature=1.0)
    assert laws.generation_split_invariance(model, prompt, 5, seed, cut)


@pytest.mark.law("batch-invariance")
@given(st.data())
def test_batch_invariance(data):
    """A sequence left-padded into a batch, the padding hidden by the key mask, gets its logits alone."""
    model = data.draw(models(archs=("llama", "gpt2")))
    seqs = data.draw(st.lists(token_lists(model.vocab_size, 1, 12), min_size=2, max_size=3))
    assert laws.batch_invariance(model, seqs) <= FORMS[model.arch]


@pytest.mark.law("sampler")
@given(models(), st.integers(0, 2**32), st.data())
def test_step_samples_the_reference_token(model, seed, data):
    """step()'s token is the independent reference sampler's token for its logits and rand."""
    settings = data.draw(st.sampled_from([(0.0, 0, 1.0), (0.9, 40, 0.8), (1.5, 0, 1.0), (0.7, 3, 0.95)]))
    model = model.with_sampler(temperature=settings[0], top_k=settings[1], top_p=settings[2])
    assert laws.sampler_agreement(model, data.draw(token_lists(model.vocab_size, 1, 6)), 6, seed)
