"""Immutable explicit state: read-only arrays, old states unchanged after stepping, forks, and appends that
write in place (amortized O(1)) instead of copying the cache every step."""

import threading

import attrs
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from lmstep.spec import InputError, load
from lmstep.spec.arrays import MIN_CAPACITY, SeqBuffer, frozen_array
from lmstep.spec.model import StepOutput


@pytest.mark.law("states-are-values")
@pytest.mark.parametrize("name", ["tiny-llama", "tiny-gpt2", "tiny-mamba", "tiny-mistral", "tiny-mamba2"])
def test_state_and_output_arrays_are_read_only(name):
    model = load(name)
    state, out = model.step(model.init_state(), 1, 0.5)
    for arr in [*state.arrays().values(), out.logits]:
        with pytest.raises(ValueError, match="read-only"):
            arr[(0,) * arr.ndim] = 5
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        state.pos = 7
    weights = [w for w in attrs.astuple(model.weights, recurse=False) if isinstance(w, np.ndarray)]
    with pytest.raises(ValueError, match="read-only"):
        weights[0][0] = 1


def test_constructing_from_a_users_array_copies_it():
    mine = np.ones(4, np.float32)
    out = StepOutput(mine, 3)
    mine[0] = 9  # the caller keeps writing to their array ...
    assert out.logits[0] == 1  # ... and our value does not change


@pytest.mark.law("states-are-values")
@pytest.mark.parametrize("name", ["tiny-llama", "tiny-gpt2", "tiny-mamba", "tiny-mistral", "tiny-mamba2"])
def test_step_never_changes_its_input_state(name):
    model = load(name)
    s0, _ = model.prefill(model.init_state(), list(b"abc"))
    before = {k: v.copy() for k, v in s0.arrays().items()}
    s1, _ = model.step(s0, 100, 0.3)
    s2, _ = model.step(s1, 101, 0.3)
    assert s0.pos == 3 and s1.pos == 4 and s2.pos == 5
    assert all(np.array_equal(before[k], v) and v.shape == before[k].shape for k, v in s0.arrays().items())


def test_append_writes_in_place_and_shares_memory():
    """The structural reason step is O(1) in the cache length: no copy while nobody forked."""
    model = load("tiny-llama")
    state, _ = model.prefill(model.init_state(), list(range(40)))
    nxt, _ = model.step(state, 5, 0.5)
    old_k, new_k = state.cache[0][0], nxt.cache[0][0]
    assert new_k.store is old_k.store  # same storage, one more row claimed
    assert np.shares_memory(old_k.view(), new_k.view())


def test_capacity_doubles_so_copies_are_logarithmic():
    buf, stores = SeqBuffer.empty((1, 2, 4), axis=2), set()
    for _ in range(5000):
        _, buf = buf.append(np.ones((1, 2, 1, 4), np.float32))
        stores.add(id(buf.store))
    assert buf.shape == (1, 2, 5000, 4)
    assert len(stores) <= int(np.log2(5000 / MIN_CAPACITY)) + 2  # 10 stores for 5000 appends


@pytest.mark.law("states-are-values")
def test_fork_copies_once_and_both_branches_are_right():
    _, base = SeqBuffer.empty((3,), axis=0).append(np.arange(6, dtype=np.float32).reshape(2, 3))
    a_view, a = base.append(np.full((1, 3), 7, np.float32))
    b_view, b = base.append(np.full((1, 3), 8, np.float32))  # second append at the same slot: a fork
    assert a.store is base.store and b.store is not base.store
    assert a_view[2, 0] == 7 and b_view[2, 0] == 8 and base.shape == (2, 3)


@pytest.mark.law("states-are-values")
@given(st.lists(st.tuples(st.integers(0, 30), st.integers(1, 4)), min_size=1, max_size=40))
def test_any_sequence_of_appends_and_forks_reads_back_what_was_written(ops):
    """Model-checks SeqBuffer against plain lists: ops are (index of an earlier value to extend, rows)."""
    values = [(SeqBuffer.empty((2,), axis=0), [])]
    counter = 0
    for src, n in ops:
        buf, rows = values[src % len(values)]
        new_rows = [[counter + i, -(counter + i)] for i in range(n)]
        counter += n
        _, new = buf.append(np.array(new_rows, np.float32))
        values.append((new, rows + new_rows))
    for buf, rows in values:
        assert buf.view().tolist() == [[float(a), float(b)] for a, b in rows]


@pytest.mark.law("states-are-values")
def test_concurrent_forks_from_one_state():
    """Threads stepping the same state at once each get their own correct branch."""
    model = load("tiny-gpt2")
    base, _ = model.prefill(model.init_state(), list(b"shared prefix"))
    results = {}

    def branch(tok):
        s = base
        for _ in range(5):
            s, out = model.step(s, tok, 0.5)
        results[tok] = (s, out.logits)

    threads = [threading.Thread(target=branch, args=(t,)) for t in (10, 20, 30, 40)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for tok, (s, logits) in results.items():
        ref = base
        for _ in range(5):
            ref, ref_out = model.step(ref, tok, 0.5)
        assert s == ref and np.array_equal(logits, ref_out.logits)


@pytest.mark.law("state-contract")
def test_state_equality_is_exact():
    model = load("tiny-mamba")
    s1, _ = model.prefill(model.init_state(), [1, 2, 3])
    s2, _ = model.prefill(model.init_state(), [1, 2, 3])
    s3, _ = model.prefill(model.init_state(), [1, 2, 4])
    assert s1 == s2 and s1.digest() == s2.digest()
    assert s1 != s3 and s1.digest() != s3.digest()


def test_a_state_from_another_model_is_refused():
    llama, gpt2 = load("tiny-llama"), load("tiny-gpt2")
    with pytest.raises(InputError, match="state must be a State of this llama model"):
        llama.step(gpt2.init_state(), 1, 0.5)


def test_a_state_of_another_shape_or_window_is_refused():
    """tiny-llama's and tiny-mistral's states are both llama states, of other kv heads; and a full-attention state
    of tiny-mistral's own shapes given to it (its decode would attend to every key, past the window) is refused
    too, while the model's own states step on."""
    import attrs

    mistral = load("tiny-mistral")
    full = attrs.evolve(mistral, config=attrs.evolve(mistral.config, sliding_window=None))
    for state in (load("tiny-llama").init_state(), full.prefill(full.init_state(), [1, 2, 3])[0]):
        with pytest.raises(InputError, match="other tensor shapes or another window"):
            mistral.step(state, 1, 0.5)
        with pytest.raises(InputError, match="other tensor shapes or another window"):
            mistral.prefill(state, [1])
    assert mistral.step(mistral.prefill(mistral.init_state(), [1, 2, 3])[0], 1, 0.5)[0].pos == 4


def test_frozen_array_is_a_copy():
    src = np.arange(3)
    out = frozen_array(src)
    assert not np.shares_memory(src, out) and not out.flags.writeable
