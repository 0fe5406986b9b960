"""Sliding-window attention (Mistral, SPEC.md §5): the law ``sliding-window`` (a bounded state, logits that never
reach further back than L (W - 1) tokens), the spec's other laws at positions well past the window with chunks
that straddle it, and the bounded SeqBuffer behind the state (appends O(1) amortized, memory bounded, forks and
wraps leaving every old value unchanged). The mutants that break these laws are the catalogue's window-* entries,
run as negative controls in test_spec_mutants.py and below."""

from __future__ import annotations

import laws
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from strategies import WINDOWS, models, token_lists
from tolerances import FORMS

from lmstep.mutants import MUTANTS
from lmstep.spec import Model, builtin, llama, load
from lmstep.spec.arrays import MIN_CAPACITY, SeqBuffer

mistrals = models(archs=("mistral",))


def small_mistral(window: int, layers: int = 2, seed: int = 0) -> Model:
    cfg = llama.Config(
        vocab_size=32,
        hidden_size=16,
        intermediate_size=20,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=4,
        max_position_embeddings=512,
        sliding_window=window,
    )
    return Model("llama", cfg, builtin.init_weights("llama", cfg, seed), name=f"small-mistral-w{window}")


def _tokens(n: int, seed: int = 0) -> list[int]:
    return np.random.default_rng(seed).integers(0, 32, n).tolist()


# -- the law itself -----------------------------------------------------------------------------------------------
@pytest.mark.law("sliding-window")
@given(mistrals, st.data())
def test_state_is_bounded_and_logits_are_local(model, data):
    """Every state holds min(pos, W - 1) keys per layer; replacing the tokens beyond the receptive field of the
    last position changes none of its logits, in either form."""
    reach = model.config.num_hidden_layers * (model.config.sliding_window - 1)
    tokens = data.draw(token_lists(model.vocab_size, 1, reach + 24))
    assert laws.sliding_window(model, tokens) == []


@pytest.mark.law("sliding-window")
def test_a_long_decode_holds_w_minus_1_keys():
    """At position 300 with a window of 16, tiny-mistral's state is 15 keys per layer, not 300."""
    model = load("tiny-mistral")
    state, _ = model.prefill(model.init_state(), list(range(256)) + list(range(40)))
    state, _ = model.step(state, 7, 0.5)
    assert state.pos == 297 and {a.shape for a in state.arrays().values()} == {(1, 1, 15, 16)}


@pytest.mark.control("sliding-window")
@pytest.mark.parametrize("name", ["window-band-off-by-one", "window-only-in-decode", "window-state-keeps-w"])
def test_window_mutants_break_the_law_on_random_configs(name):
    """The law's check catches each window bug on small configs of every window, not only on tiny-mistral."""
    mutant = MUTANTS[name]
    for window in WINDOWS[1:]:
        model = mutant.apply(small_mistral(window))
        assert laws.sliding_window(model, _tokens(2 * window + 8)), f"{name} passes with W={window}"


# -- the other laws, across the window edge -------------------------------------------------------------------------
STRADDLE = [(w, n) for w in (1, 2, 4, 5) for n in (w - 1, w, w + 1, 3 * w + 2) if n > 0]


@pytest.mark.law("unrolled-eq-recurrent", "split-invariance")
@pytest.mark.parametrize("window", [1, 2, 4, 5])
def test_forms_and_splits_far_past_the_window(window):
    """80 tokens (16x to 80x the window); chunks of W - 1, W, W + 1 and 3W + 2 tokens, alternately prefilled and
    stepped, each starting where the previous one left off: many chunks straddle a window edge."""
    model, tokens = small_mistral(window, seed=window), _tokens(80, window)
    assert laws.unrolled_vs_recurrent(model, tokens) <= FORMS["llama"]
    sizes = [n for w, n in STRADDLE if w == window] * 8
    cuts = list(np.cumsum(sizes)[np.cumsum(sizes) < len(tokens)])
    modes = [i % 3 != 1 for i in range(len(cuts) + 1)]
    assert laws.split_invariance(model, tokens, cuts, modes) <= FORMS["llama"]


@pytest.mark.law("states-are-values", "causality")
@pytest.mark.parametrize("window", [1, 3, 8])
def test_forks_resumes_and_causality_past_the_window(window):
    """Forks from a state deep past the window (its buffer has wrapped) continue like fresh computations, and the
    old state is unchanged; appending tokens never changes earlier logits."""
    model, tokens = small_mistral(window), _tokens(120, 7)
    assert laws.fork_law(model, tokens[:70], tokens[70 : 70 + 3 * window], tokens[100 : 100 + window + 1])
    assert laws.causality(model, tokens[:90], tokens[90:]) <= FORMS["llama"]


@pytest.mark.law("batch-invariance")
@pytest.mark.parametrize("window", [1, 3])
def test_padded_batch_past_the_window(window):
    """Left-padded sequences longer than the window: the band counts real keys only, so padding takes no place."""
    model = small_mistral(window)
    assert laws.batch_invariance(model, [_tokens(20, 1), _tokens(6, 2), _tokens(13, 3)]) <= FORMS["llama"]
    assert laws.batched_vs_single(model, np.array([_tokens(30, 4), _tokens(30, 5)]), (7, 19)) <= FORMS["llama"]


# -- the bounded buffer -------------------------------------------------------------------------------------------
@pytest.mark.law("states-are-values", "sliding-window")
@given(
    st.integers(0, 6),
    st.lists(st.tuples(st.integers(0, 40), st.integers(1, 9)), min_size=1, max_size=60),
)
def test_bounded_buffer_reads_back_the_newest_rows(keep, ops):
    """Model-checks a bounded SeqBuffer against plain lists: ops extend an earlier value (a fork when it was
    extended before) by n rows. Every value keeps reading its own last ``keep`` rows, through in-place appends,
    forks and wraps, and each append returns the rows it saw: the kept ones, then the new ones."""
    values = [(SeqBuffer.empty((2,), axis=0, keep=keep), [])]
    counter = 0
    for src, n in ops:
        buf, rows = values[src % len(values)]
        new_rows = [[counter + i, -(counter + i)] for i in range(n)]
        counter += n
        seen, new = buf.append(np.array(new_rows, np.float32))
        assert seen.tolist() == [[float(a), float(b)] for a, b in rows[len(rows) - min(keep, len(rows)) :] + new_rows]
        values.append((new, rows + new_rows))
    for buf, rows in values:
        want = rows[len(rows) - min(keep, len(rows)) :]
        assert buf.view().tolist() == [[float(a), float(b)] for a, b in want]
        assert buf.capacity <= max(MIN_CAPACITY, 2 * keep)  # memory bounded by the window, not by the history


def test_bounded_buffer_copies_once_per_window_of_appends():
    """10000 single-row appends with keep = 64: the kept rows move to a new store once per ~64 appends (each move
    copies <= 64 rows: O(1) per append), and the store never grows past 2 * keep rows."""
    buf, moves = SeqBuffer.empty((1, 2, 4), axis=2, keep=64), 0
    for i in range(10_000):
        _, new = buf.append(np.full((1, 2, 1, 4), i, np.float32))
        moves += new.store is not buf.store
        buf = new
    assert buf.shape == (1, 2, 64, 4) and buf.view()[0, 0, :, 0].tolist() == list(range(10_000 - 64, 10_000))
    assert buf.capacity == 128 and (10_000 - 128) // 65 <= moves <= 10_000 // 64  # one move per 65 appends


@pytest.mark.law("states-are-values")
def test_a_wrap_never_changes_an_old_state():
    """A state right before its buffer wraps, stepped on two branches (one wraps in place, one forks): the shared
    state's arrays keep their bits; each branch equals the same steps from a fresh copy of the state."""
    model = load("tiny-mistral")
    base, _ = model.prefill(model.init_state(), list(range(29)))  # 29 rows written: the store holds 30
    before = {k: v.copy() for k, v in base.arrays().items()}
    a, b = base, base
    for t in (1, 2, 3):
        a, _ = model.step(a, t, 0.5)
        b, _ = model.step(b, t + 10, 0.5)
    assert all(np.array_equal(before[k], v) for k, v in base.arrays().items())
    fresh, _ = model.prefill(model.init_state(), list(range(29)))
    for t in (1, 2, 3):
        fresh, _ = model.step(fresh, t, 0.5)
    assert a == fresh and a != b


@pytest.mark.control("states-are-values", "unrolled-eq-recurrent")
def test_wrap_off_by_one_is_caught_only_past_the_wrap():
    """The catalogue's window-wrap-off-by-one: invisible before the buffer wraps (25 tokens), caught after it."""
    model = MUTANTS["window-wrap-off-by-one"].load()
    prompt = list(b"The quick brown fox jumps")
    assert laws.unrolled_vs_recurrent(model, prompt) <= FORMS["llama"]
    assert laws.unrolled_vs_recurrent(model, prompt * 2) > 100 * FORMS["llama"]
