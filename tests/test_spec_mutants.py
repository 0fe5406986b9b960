"""Negative controls: each law in test_spec_properties.py, run on a deliberately broken variant of the spec,
must report a violation. Realistic bugs (DESIGN.md §5), injected by monkeypatching one spec function."""

import laws
import numpy as np
import pytest
from tolerances import FORMS

from lmstep.proofs.mutants import mutate
from lmstep.spec import gpt2, interface, layers, llama, load, mamba
from lmstep.spec.arrays import SeqBuffer

PROMPT = list(b"The quick brown fox jumps")


def test_rope_position_off_by_one_in_decode(monkeypatch):
    """Decode rotates with position + 1: unrolled = recurrent catches it."""
    original = llama.decode
    monkeypatch.setattr(
        llama, "decode", lambda o, cfg, w, tok, pos, *a, **k: original(o, cfg, w, tok, pos + 1, *a, **k)
    )
    assert laws.unrolled_vs_recurrent(load("tiny-llama"), PROMPT) > 100 * FORMS["llama"]


@pytest.mark.parametrize("arch_module,name", [(llama, "tiny-llama"), (gpt2, "tiny-gpt2")])
def test_causal_mask_off_by_one(monkeypatch, arch_module, name):
    """The mask lets each query see one future key: causality (and unrolled = recurrent) catch it."""

    def leaky_mask(o, n_new, n_all, key_mask=None):
        slot = o.add(o.arange(0, n_new), o.sub(n_all, n_new))
        visible = o.less_equal(o.unsqueeze(o.arange(0, n_all), 0), o.unsqueeze(o.add(slot, 1), -1))
        return o.unsqueeze(o.unsqueeze(visible, 0), 0)

    monkeypatch.setattr(arch_module, "causal_mask", leaky_mask)
    model = load(name)
    assert laws.causality(model, PROMPT[:10], PROMPT[10:14]) > 100 * FORMS[model.arch]
    assert laws.unrolled_vs_recurrent(model, PROMPT) > 100 * FORMS[model.arch]


def test_conv_window_not_shifted_in_decode(monkeypatch):
    """Mamba decode keeps the old conv window: unrolled = recurrent catches it."""
    original = mamba._mixer_step

    def stale_window(o, cfg, layer, x, conv_state, h):
        out, _, h = original(o, cfg, layer, x, conv_state, h)
        return out, conv_state, h

    monkeypatch.setattr(mamba, "_mixer_step", stale_window)
    assert laws.unrolled_vs_recurrent(load("tiny-mamba"), PROMPT) > 100 * FORMS["mamba"]


def test_scan_with_swapped_operands(monkeypatch):
    """The parallel scan combines (a1, b1).(a2, b2) as a1 b2 + b1 (operands swapped): caught by law 2 and 3."""

    swapped_scan = mutate(mamba._scan, "o.add(o.mul(a, b_prev), b)", "o.add(o.mul(a, b), b_prev)")
    monkeypatch.setattr(mamba, "_scan", swapped_scan)
    model = load("tiny-mamba")
    assert laws.unrolled_vs_recurrent(model, PROMPT) > 100 * FORMS["mamba"]
    assert laws.split_invariance(model, PROMPT, [5, 9], [True, False, True]) > 100 * FORMS["mamba"]


def test_prefill_ignoring_the_cache(monkeypatch):
    """A multi-token forward that drops the past (DESIGN.md §5): split invariance catches it."""
    original = llama.forward

    def forgetful(o, cfg, w, tokens, positions, cache, key_mask=None):
        return original(o, cfg, w, tokens, positions, llama.empty_cache(cfg, 1), key_mask)

    monkeypatch.setattr(llama, "forward", forgetful)
    assert laws.split_invariance(load("tiny-llama"), PROMPT, [8], [True, True]) > 100 * FORMS["llama"]


def test_rand_reused_across_positions(monkeypatch):
    """generate() draws rand for position 0 every time: the position-keyed stream law catches it."""
    real = interface.rand_for  # generate's (spec/interface.py), shared by Model and OnnxModel
    monkeypatch.setattr(interface, "rand_for", lambda seed, pos: real(seed, 0))
    model = load("tiny-gpt2", temperature=1.0)
    assert not laws.generation_split_invariance(model, PROMPT[:6], 8, 3, 2)


def test_rand_stream_keyed_by_step_count(monkeypatch):
    """generate() counts draws instead of positions, so prefill length shifts the stream: caught."""
    real = interface.rand_for
    monkeypatch.setattr(interface, "rand_for", lambda seed, pos: real(seed, pos - 6))
    model = load("tiny-llama", temperature=1.0)
    assert not laws.generation_split_invariance(model, PROMPT[:6], 8, 11, 3)


def test_forks_sharing_one_buffer(monkeypatch):
    """A cache that always appends in place (no fork detection): the fork law catches the aliasing."""

    def aliasing_append(self, rows):
        store, end = self.store, self.length + rows.shape[self.axis]
        if end > store.data.shape[self.axis]:
            return SeqBuffer.from_array(np.concatenate([self.view(), rows], axis=self.axis), self.axis).append(
                np.zeros_like(rows)[(slice(None),) * self.axis + (slice(0, 0),)]
            )
        index = [slice(None)] * store.data.ndim
        index[self.axis] = slice(self.length, end)
        store.data[tuple(index)] = rows
        new = SeqBuffer(store, end, self.axis)
        return new.view(), new

    monkeypatch.setattr(SeqBuffer, "append", aliasing_append)
    assert not laws.fork_law(load("tiny-llama"), PROMPT[:5], PROMPT[5:8], PROMPT[10:12])


def test_gqa_head_mapping_wrong_in_decode(monkeypatch):
    """Decode maps query head h to kv head h % K instead of h // G: unrolled = recurrent catches it."""

    def wrong_gqa(o, q, k_all, v_all, key_mask, n_heads, n_kv, head_dim):
        group = n_heads // n_kv
        q = o.transpose(o.reshape(q, (0, group, n_kv, head_dim)), (0, 2, 1, 3))  # head h = g * K + kv
        scores = o.mul(o.matmul(q, o.transpose(k_all, (0, 1, 3, 2))), head_dim**-0.5)
        out = o.matmul(layers.softmax(o, scores), v_all)
        return o.reshape(o.transpose(out, (0, 2, 1, 3)), (0, n_heads, 1, head_dim))

    monkeypatch.setattr(layers, "attention_decode", wrong_gqa)
    monkeypatch.setattr(llama, "attention_decode", wrong_gqa)
    assert laws.unrolled_vs_recurrent(load("tiny-llama"), PROMPT) > 100 * FORMS["llama"]


def test_a_scan_round_cut_short_is_caught_by_the_quick_profile(monkeypatch):
    """The reference scan written for 32 tokens (its rounds stop at distance 16): sequences of at most 32 tokens
    cannot see it, so the property test's strategies must reach longer ones. The @given test itself, run under
    the active (default quick) Hypothesis profile, fails on it."""
    import test_spec_properties as properties

    from lmstep.proofs.scan import ROUNDS_CAPPED

    capped = mutate(mamba._scan, *ROUNDS_CAPPED)
    monkeypatch.setattr(mamba, "_scan", capped)
    assert laws.unrolled_vs_recurrent(load("tiny-mamba"), PROMPT) <= FORMS["mamba"]  # 25 tokens: invisible
    with pytest.raises(AssertionError):
        properties.test_unrolled_equals_recurrent()


def test_batched_forward_sharing_the_first_rows_state(monkeypatch):
    """A batched Mamba prefill that continues every sequence from row 0's carried state: the batched law
    catches it (each row alone differs)."""
    original = mamba._mixer_unrolled

    def first_row_state(o, cfg, layer, x, conv_state, h0, **kw):
        return original(o, cfg, layer, x, conv_state, np.broadcast_to(h0[:1], h0.shape), **kw)

    monkeypatch.setattr(mamba, "_mixer_unrolled", first_row_state)
    tokens = np.array([list(b"The quick brown fox"), list(b"jumps over the lazy")], np.int64)
    assert laws.batched_vs_single(load("tiny-mamba"), tokens, (6, 12)) > 100 * FORMS["mamba"]
