"""Units of the checker: level grading, the sampler's near-tie rule (sound and tight), the aimed probes, the
bit-exact codec, the python: adapter with its faults, release and refused sessions."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from reference_sampler import reference_sample

from lmstep.runtime.check import Level, check, open_impl
from lmstep.runtime.check.adapters import ModelImpl
from lmstep.runtime.check.levels import (
    _buckets,
    grade_logits,
    grade_numbers,
    grade_sample,
    plausible_excuses,
    reachable,
)
from lmstep.runtime.check.probes import TOP, edge_rand, exact_top_p, inside_top_k
from lmstep.runtime.check.protocol import speaks_v2
from lmstep.runtime.codec import CodecError, decode_array, encode_array, f32_hex, f32_value
from lmstep.spec import InputError, Sampler, load
from lmstep.spec.conformance import CEILING, FACTOR, FLOOR, L2_REL, Wide, bound, rel_err


def test_grades_follow_the_ladder():
    z = np.array([[1.0, 2.0, 3.0]], np.float32)
    assert grade_numbers(z.copy(), z, 1e-5).level == Level.L0
    assert grade_numbers(z + np.float32(1e-6), z, 1e-5).level == Level.L1
    assert grade_numbers(z + np.float32(1e-3), z, 1e-5).level == Level.L2  # within 1% of the scale
    assert grade_numbers(z + np.float32(0.5), z, 1e-5).level == Level.FAIL
    assert grade_numbers(z[:, :2], z, 1e-5).level == Level.FAIL  # shapes differ


def test_the_bound_is_factor_times_the_specs_own_error_with_a_floor():
    spec = np.array([1.0, -2.0], np.float32)
    assert bound(spec, spec.astype(np.float64)) == FLOOR  # the spec exact by luck: the floor
    wide = spec.astype(np.float64) + 1e-6
    assert bound(spec, wide) == pytest.approx(FACTOR * 0.5e-6)  # rel_err divides by max(1, max|b|) = 2
    assert FLOOR == 16 * 2.0**-24 and L2_REL == 1e-2
    assert bound(spec, spec.astype(np.float64) + 0.5) == CEILING  # a twin that computes something else: capped


@pytest.mark.parametrize(
    "name",
    ["tiny-llama", "tiny-gpt2", "tiny-mamba", "tiny-mistral", "tiny-mamba2"]
    + ["tiny-llama3", "tiny-qwen2", "tiny-qwen3", "tiny-gemma", "tiny-phi3"],
)
def test_the_float64_twin_computes_what_the_spec_computes(name):
    """The bound trusts the float64 twin: its logits stay within float32 rounding of the spec's over a sequence
    that crosses a sliding window three times (and tiny-mamba2's chunks of 8: a 20-token prefill ends inside its
    third chunk), prefilled and stepped, and every tensor of its state stays float64 (a twin that fell back to
    float32 somewhere would make the bound its own rounding). Control: a twin whose state forgets the window (the
    bug this test was written for, which made every bound huge) errs by orders of magnitude."""
    model = load(name)
    seq = [(7 * i + 3) % model.vocab_size for i in range(50)]
    wide = Wide(model)
    s, w = model.prefill(model.init_state(), seq[:20])[0], wide.prefill(wide.init_state(), seq[:20])[0]
    for t in seq[20:]:
        s, out = model.step(s, t, 0.5)
        w, z = wide.step(w, t)
        assert rel_err(out.logits, z) < 1e-5 and z.dtype == np.float64
    assert {str(a.dtype) for a in w.arrays().values()} == {"float64"}
    assert w.arrays().keys() == s.arrays().keys() and all(w.arrays()[k].shape == a.shape for k, a in s.arrays().items())
    if name == "tiny-mistral":
        from lmstep.spec.arrays import SeqBuffer

        w = wide.prefill(wide.init_state(), seq[:20])[0]
        forgot = tuple(tuple(SeqBuffer.from_array(b.view(), b.axis) for b in layer) for layer in w.cache)
        w = type(w)(w.arch, w.pos, forgot)
        errs = []
        s = model.prefill(model.init_state(), seq[:20])[0]
        for t in seq[20:]:
            s, out = model.step(s, t, 0.5)
            w, z = wide.step(w, t)
            errs.append(rel_err(out.logits, z))
        assert max(errs) > 100 * CEILING


@pytest.mark.parametrize("name", ["gpt2-ninner-bf16", "mamba-bias-rank-f16-sharded"])
def test_the_float64_twin_of_a_stored_checkpoint_widens_on_use(name):
    """A checkpoint's bf16 / f16 weights stay stored (spec/stored.py) in the spec and in its float64 twin (the
    twin widening the whole checkpoint would hold 4x its size; before WideStored it crashed every check of such a
    checkpoint). The twin computes what the spec computes, in float64 from its first op (the embedding rows), and
    a check of the spec against itself passes at L0."""
    from pathlib import Path

    from lmstep.spec.arrays import tree_leaves
    from lmstep.spec.conformance import WideStored
    from lmstep.spec.stored import StoredArray

    model = load(Path(__file__).parent / "fixtures" / "hf" / name)
    wide = Wide(model)
    stored = [a for _, a in tree_leaves(wide.weights) if isinstance(a, StoredArray)]
    assert stored and all(isinstance(a, WideStored) for a in stored)
    assert all(np.asarray(a).dtype == np.float64 and a.take([0], axis=0).dtype == np.float64 for a in stored)
    seq = [(5 * i + 1) % model.vocab_size for i in range(12)]
    z32 = model.prefill(model.init_state(), seq)[1]
    z64 = wide.prefill(wide.init_state(), seq)[1]
    assert z64.dtype == np.float64 and 0 < rel_err(z32, z64) < 1e-5
    report = check(model, open_impl("spec", model), required=Level.L0, skip_laws=["batch"], max_examples=1)
    assert report.passed, report.message


@pytest.mark.parametrize("name", ["mamba2-limit-groups4-bf16", "llama-mqa-headdim-bias-bf16"])
def test_the_float64_twin_of_a_checkpoint_kept_as_stored(name):
    """A bfloat16 checkpoint's weights are StoredArrays (spec/stored.py, widened on use), not numpy arrays: the
    twin widens them to float64 with exactly their values and computes the spec's logits within float32 rounding,
    prefilled across chunks and stepped (before, widen called .astype on them and every check of a bf16 or f16
    checkpoint stopped with an AttributeError)."""
    from pathlib import Path

    from lmstep.spec.arrays import tree_leaves
    from lmstep.spec.stored import StoredArray

    model = load(Path(__file__).parent / "fixtures" / "hf" / name)
    stored = [a for _, a in tree_leaves(model.weights) if isinstance(a, StoredArray)]
    assert stored  # the case under test: weights kept as stored
    wide = Wide(model)
    wides = dict(tree_leaves(wide.weights))
    for key, a in tree_leaves(model.weights):
        assert wides[key].dtype == np.float64 and np.array_equal(wides[key], np.asarray(a))
    seq = [(5 * i + 1) % model.vocab_size for i in range(12)]
    s, w = model.prefill(model.init_state(), seq[:8])[0], wide.prefill(wide.init_state(), seq[:8])[0]
    for t in seq[8:]:
        s, out = model.step(s, t, 0.5)
        w, z = wide.step(w, t)
        assert rel_err(out.logits, z) < 1e-5


def test_argmax_flips_at_l2_are_counted():
    spec = np.array([[1.0, 1.0 + 1e-3, -3.0]], np.float32)
    impl = spec + np.float32([[2e-3, 0, 0]])
    g = grade_logits(impl, spec, spec.astype(np.float64))
    assert g.level == Level.L2 and g.excused == 1


Z = np.array([3.0, 2.0, 1.0, 0.5, 0.0, -1.0], np.float32)


def test_the_sampler_is_graded_on_the_implementations_own_logits():
    s = Sampler(temperature=1.0, top_k=2)
    want = reference_sample(Z, 0.99, 1.0, 2, 1.0)
    assert grade_sample(want, Z, 0.99, s, 1e-6).level == Level.L0
    outside = grade_sample(2, Z, 0.99, s, 1e-6)  # rank 2 is outside top-2: probability 0, at every level
    assert outside.level == Level.FAIL and "probability 0" in outside.note
    other = grade_sample(1 - reference_sample(Z, 0.3, 1.0, 2, 1.0), Z, 0.3, s, 1e-6)  # kept, not a near tie
    assert other.level == Level.L3
    greedy = grade_sample(1, Z, 0.5, Sampler(), 1e-6)
    assert greedy.level == Level.FAIL and "greedy" in greedy.note


def test_a_draw_exactly_on_a_boundary_is_l1_and_a_near_tie_l2():
    s = Sampler(temperature=1.0)
    _, _, c, m = _buckets(Z, s)
    u = edge_rand(Z, s, 0)  # the target lands exactly on c_0: "<=" and "<" disagree there
    assert np.float32(np.float32(u) * c[m - 1]) == c[0]
    want = reference_sample(Z, u, 1.0, 0, 1.0)
    assert grade_sample(want, Z, u, s, 1e-6).level == Level.L0
    assert grade_sample(int(np.argsort(-Z)[0 if want != 0 else 1]), Z, u, s, 1e-6).level == Level.L1
    z = np.array([1.0, 1.0 + 2e-4, -5.0], np.float32)  # two tokens 2e-4 apart: a greedy near tie of 1e-4
    assert grade_sample(0, z, 0.5, Sampler(), 1e-4).level == Level.L2
    assert grade_sample(0, z, 0.5, Sampler(), 1e-6).level == Level.FAIL


@settings(max_examples=60, deadline=None)
@given(
    z=st.lists(st.floats(-8, 8, width=32), min_size=2, max_size=12).map(lambda v: np.array(v, np.float32)),
    noise=st.integers(0, 2**32 - 1),
    u=st.floats(0, 1 - 2**-24, width=32),
    t=st.sampled_from([0.0, 0.5, 1.0, 1.7]),
    k=st.integers(0, 4),
    p=st.sampled_from([1.0, 0.9, 0.5]),
    delta=st.sampled_from([1e-6, 1e-4, 1e-2]),
)
def test_the_near_tie_rule_is_sound(z, noise, u, t, k, p, delta):
    """Whatever token SPEC.md §3 draws from logits moved by at most delta, reachable() admits it: an engine whose
    logits are within the bound is never failed for its sampler."""
    moved = (z + np.random.default_rng(noise).uniform(-delta, delta, z.shape)).astype(np.float32)
    token = reference_sample(moved, u, t, k, p)
    assert reachable(z, u, Sampler(temperature=t, top_k=k, top_p=p), delta, token)[0]


def test_the_near_tie_rule_is_tight_a_kept_k_plus_one_is_not_excused():
    """Negative control of the L2 rule: with exact logits, the token a top-k that keeps k + 1 draws at u = TOP is
    not reachable (the old margin, 1e-3 / T, excused it)."""
    s = Sampler(temperature=0.8, top_k=3)
    extra = int(np.argsort(-Z, kind="stable")[3])
    assert not reachable(Z, TOP, s, 1e-6 * 3, extra)[0]
    assert grade_sample(extra, Z, TOP, s, 1e-6).level == Level.FAIL


def test_excuses_are_bounded_by_how_often_near_ties_occur():
    assert plausible_excuses(0.0) == 0 and plausible_excuses(1e-4) == 1
    assert 3 <= plausible_excuses(1.0) <= 12 and plausible_excuses(100.0) < 160


def test_an_exact_top_p_probe_puts_the_threshold_on_a_cumulative_sum():
    s = exact_top_p(Z, Sampler(temperature=1.0, top_p=0.5), seed=1)
    _, e, c, _ = _buckets(Z, Sampler(temperature=1.0))
    assert s.top_p != 0.5 and np.float32(c[-1] * np.float32(s.top_p)) in set(c.tolist())


@given(seed=st.integers(0, 2**32 - 1), k=st.integers(2, 12), t=st.sampled_from([0.5, 1.0, 1.5]))
def test_an_inside_top_k_probe_cuts_the_top_k_where_no_rounding_decides(seed, k, t):
    """The top_p chosen by inside_top_k keeps fewer than k ranks, keeps the same ranks when the logits move by an
    L1-sized amount (so the sampler grading cannot excuse a different draw), and the same fraction of the whole
    distribution would keep more (top-p before top-k is caught with the largest rand). Control: the given top_p,
    whose cut may fall anywhere, does not promise that."""
    z = np.random.default_rng(seed).normal(0, 2, 64).astype(np.float32)
    s = inside_top_k(z, Sampler(temperature=t, top_k=k, top_p=0.8))
    if s.top_p == np.float32(0.8):
        return  # no cut far enough from rounding (the probe then keeps the given settings)
    m = _buckets(z, s)[3]
    assert 1 <= m < k
    for sign in (-1, 1):
        moved = z + sign * 1e-5 * np.random.default_rng(seed + 1).random(64).astype(np.float32)
        assert _buckets(moved, s)[3] == m
    _, _, c_all, _ = _buckets(z, Sampler(temperature=t))
    _, _, c, _ = _buckets(z, Sampler(temperature=t, top_k=k))
    assert c[m - 1] < c_all[-1] * np.float32(s.top_p)  # the other order keeps rank m too


def test_inside_top_k_is_a_probe_the_plain_settings_are_not():
    z = np.random.default_rng(5).normal(0, 2, 64).astype(np.float32)
    plain = Sampler(temperature=1.0, top_k=8, top_p=0.999)
    assert _buckets(z, plain)[3] == 8  # the given top_p cuts nothing inside the top-k: no order difference to see
    assert _buckets(z, inside_top_k(z, plain))[3] < 8


@given(st.lists(st.floats(width=32, allow_nan=False), min_size=0, max_size=20), st.integers(1, 4))
def test_codec_round_trips_bit_exactly(values, rows):
    arr = np.array(values * rows, np.float32).reshape(rows, -1)
    back = decode_array(encode_array(arr))
    assert back.dtype == np.float32 and back.tobytes() == arr.tobytes()


@given(st.floats(width=32, allow_nan=False))
def test_f32_hex_round_trips(x):
    assert np.float32(f32_value(f32_hex(x))).tobytes() == np.float32(x).tobytes()


@pytest.mark.parametrize(
    "bad",
    [
        {"dtype": "f64", "shape": [1], "b64": ""},
        {"dtype": "f32", "shape": [2], "b64": "AAAA"},
        {"shape": [1]},
        "x",
        {"dtype": "f32", "shape": [1], "b64": "!!!"},
    ],
)
def test_codec_rejects_malformed_arrays(bad):
    with pytest.raises(CodecError):
        decode_array(bad)


class TinyWrapper:
    """A python:module:factory implementation of protocol 1: the spec, mutable handles, no extras."""

    capabilities = frozenset()

    def __init__(self, model):
        self.model, self.name, self.vocab_size = model, "wrapped spec", model.vocab_size

    def init(self):
        return self.model.init_state()

    def run(self, h, tokens):
        return self.model.prefill(h, list(tokens))

    def decode(self, h, token, rand):
        s, out = self.model.step(h, token, rand)
        return s, out.logits, out.token


def build(model):
    return TinyWrapper(model)


def test_python_factory_adapter_and_laws_it_cannot_exercise():
    model = load("tiny-llama")
    impl = open_impl("python:test_check_units:build", model)
    assert not speaks_v2(impl) and speaks_v2(ModelImpl(model, "spec"))
    report = check(model, impl, max_examples=3)
    assert not report.passed and not report.counterexample  # nothing failed: three laws were never compared
    assert "state, fork, batch: not exercised" in report.message and "--skip-law state,fork,batch" in report.message
    report = check(model, impl, max_examples=3, skip_laws=["state,fork", "batch"])
    assert report.passed and report.skipped == ("batch", "fork", "state") and "state" not in report.laws
    assert report.laws["determinism"]["level"] == Level.L0  # two fresh sessions: no fork needed
    assert any("protocol 1" in n for n in report.notes)


def test_every_declared_capability_is_exercised():
    """Coverage by construction: forks on an immutable engine, batches on a mutable one, releases, the state,
    and positions past 512 in the quick profile; the report counts them per law."""
    from lmstep.runtime.check.engines import ENGINES

    model = load("tiny-gpt2")
    calls: dict[str, int] = {}

    class Counting(ENGINES["mutable-batched"]):
        capabilities = ENGINES["mutable-batched"].capabilities | {"release"}

        def __getattribute__(self, name):
            if name in ("fork", "run_batch", "state", "release"):
                calls[name] = calls.get(name, 0) + 1
            return object.__getattribute__(self, name)

        def release(self, box):
            box.clear()

    report = check(model, Counting(model, "counting"), max_examples=1)
    assert report.passed, report.message
    assert {"fork", "run_batch", "state", "release"} <= set(calls)
    assert report.coverage["batch"]["n"] >= 3 and report.coverage["fork"]["forks"] > 0
    assert all(report.coverage[law]["deepest"] > 512 for law in ("split", "recurrent", "sampler", "state"))
    immutable = check(model, ModelImpl(model, "spec"), skip_laws=["batch"], max_examples=1)
    assert immutable.operations["fork"] >= 1 and immutable.coverage["fork"]["n"] > 0  # immutable engines fork too


def test_the_thorough_depth_passes_2048():
    model = load("tiny-gpt2")
    report = check(model, ModelImpl(model, "spec"), skip_laws=["batch"], max_examples=0, depth=2048)
    assert report.passed and report.examples == 1
    assert report.coverage["split"]["deepest"] > 2048 and report.coverage["split"]["longest"] >= 1023


class Raising(ModelImpl):
    """A python: engine whose chunked prefill fails past a cache block of 40 tokens."""

    def run(self, handle, tokens):
        if handle.pos + len(tokens) > 40:
            raise IndexError("cache block 40 is full")
        return super().run(handle, tokens)


def test_an_exception_in_a_python_implementation_is_its_failure_shrunk_with_its_traceback():
    model = load("tiny-llama")
    report = check(model, Raising(model, "raising"), skip_laws=["batch"])
    assert not report.passed and report.failed_law == "protocol"
    assert report.message == "run raised IndexError: cache block 40 is full"
    assert report.tail_kind == "traceback" and 'raise IndexError("cache block 40 is full")' in report.stderr_tail
    assert "protocol.py" not in report.stderr_tail  # the implementation's frames, not the checker's
    assert 1 < len(report.counterexample) <= 4 and report.counterexample[-1]["op"] == "run"


class Slots(ModelImpl):
    """An engine with 6 sequence slots (llama.cpp has a fixed number): init and fork take one."""

    capabilities = frozenset({"fork", "state"})
    SLOTS = 6

    def __init__(self, model, name):
        super().__init__(model, name)
        self.used = 0

    def _take(self):
        if self.used >= self.SLOTS:
            raise RuntimeError("no free sequence slot")
        self.used += 1

    def init(self):
        self._take()
        return [super().init()]

    def fork(self, box):
        self._take()
        return [box[0]]

    def run(self, box, tokens):
        box[0], z = super().run(box[0], tokens)
        return box, z

    def decode(self, box, token, rand, sampler=None):
        box[0], z, t = super().decode(box[0], token, rand, sampler)
        return box, z, t

    def state(self, box):
        return box[0].arrays()


class SlotsReleased(Slots):
    capabilities = frozenset({"fork", "state", "release"})

    def release(self, box):
        self.used -= 1


def test_slot_exhaustion_names_the_fix_and_release_cures_it():
    model = load("tiny-llama")
    report = check(model, Slots(model, "slots"), skip_laws=["batch"], max_examples=3)
    assert not report.passed and report.failed_law == "protocol"
    assert "no free sequence slot" in report.message and "declare the capability 'release'" in report.message
    released = SlotsReleased(model, "slots")
    report = check(model, released, skip_laws=["batch"], max_examples=3)
    assert report.passed, report.message
    assert report.operations["release"] >= 1 and released.used == 0  # every handle handed back


@pytest.mark.parametrize(
    "spec,match",
    [
        ("python:nope_module:x", "cannot import"),
        ("python:test_check_units:missing", "has no"),
        ("mutant:nope", "unknown mutant"),
        ("bogus", "unknown implementation"),
        ("python:justmodule", "python:module:factory"),
    ],
)
def test_bad_impl_specs_are_one_line_errors(spec, match):
    with pytest.raises(InputError, match=match):
        open_impl(spec, load("tiny-llama"))


def test_an_unknown_skipped_law_is_a_usage_error():
    model = load("tiny-llama")
    with pytest.raises(InputError, match="no such checker law"):
        check(model, ModelImpl(model, "spec"), skip_laws=["batches"])
