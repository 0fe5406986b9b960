"""The checker has teeth: every mutant of the catalogue (lmstep/mutants.py) the checker runs is caught, with a short
counterexample, by a checker law that checks one of the laws the mutant breaks; and the correct implementations
(the spec itself, an independent external one, a batched engine) pass."""

import sys
from pathlib import Path

import pytest

from lmstep.mutants import CHECKED, MUTANTS
from lmstep.runtime.check import Level, check, open_impl
from lmstep.runtime.check.adapters import ModelImpl
from lmstep.runtime.check.engines import ENGINES, BatchedImpl, mutant_impl
from lmstep.runtime.check.lockstep import LAWS
from lmstep.spec import load

EXTERNAL = f"cmd:{sys.executable} {Path(__file__).parent / 'external_impl.py'}"


@pytest.mark.parametrize("name", sorted(CHECKED))
def test_every_mutant_is_caught(name):
    mutant = MUTANTS[name]
    model = load(mutant.model, **mutant.sampler)
    report = check(model, mutant_impl(name, model), max_examples=60, shrink_seconds=5)
    assert not report.passed, f"{name} was not caught"
    assert report.failed_law and report.counterexample
    laws = LAWS[report.failed_law][0]  # the laws that checker law checks
    assert set(laws) & set(mutant.breaks), f"{name}: caught by {report.failed_law} ({laws}), not by its laws"
    assert len(report.counterexample) <= 6, report.counterexample  # shrunk to a handful of operations


def test_every_mutant_names_an_engine_of_the_checker():
    assert {m.engine for m in MUTANTS.values()} <= set(ENGINES)


@pytest.mark.parametrize("name", ["tiny-llama", "tiny-gpt2", "tiny-mamba", "tiny-mamba2"])
def test_the_spec_passes_at_l0(name):
    model = load(name, temperature=0.9, top_k=40, top_p=0.8)
    report = check(model, open_impl("spec", model), required=Level.L0, max_examples=20)
    assert report.passed, report.message
    assert {law for law, s in report.laws.items() if s["level"] == Level.L0} >= {
        "unrolled",
        "split",
        "recurrent",
        "sampler",
        "state",
    }


def test_an_independent_external_implementation_passes_at_l1():
    model = load("tiny-gpt2")
    impl = open_impl(EXTERNAL, model)
    try:
        report = check(model, impl, required=Level.L1, max_examples=20)
    finally:
        impl.close()
    assert report.passed, report.message
    assert report.laws["recurrent"]["level"] == Level.L1  # different kernels: numerically equal, not bitwise
    assert report.laws["sampler"]["level"] == Level.L0


def test_the_same_external_implementation_fails_at_l0():
    """Negative control for the level ladder: L0 is not reachable with independent arithmetic."""
    model = load("tiny-gpt2")
    impl = open_impl(EXTERNAL, model)
    try:
        report = check(model, impl, required=Level.L0, max_examples=10)
    finally:
        impl.close()
    assert not report.passed and "L1 numeric" in report.message


@pytest.mark.parametrize("bug,law", [("position", "recurrent"), ("noise", "recurrent")])
def test_bugs_in_the_external_implementation_are_caught(bug, law):
    model = load("tiny-gpt2")
    impl = open_impl(f"{EXTERNAL} --bug {bug}", model)
    try:
        report = check(model, impl, max_examples=20)
    finally:
        impl.close()
    assert not report.passed and report.failed_law in (law, "unrolled", "split", "state"), report.message


@pytest.mark.parametrize(
    "bug,needle",
    [
        ("crash", "exited with status 139"),
        ("hang", "no reply within"),
        ("garbage", "not JSON"),
        ("wrong-shape", "shape [1, 255]"),
    ],
)
def test_a_misbehaving_program_is_a_failure_of_that_program(bug, needle):
    model = load("tiny-gpt2")
    impl = open_impl(f"{EXTERNAL} --bug {bug}", model, timeout=2)
    try:
        report = check(model, impl, max_examples=5)
    finally:
        impl.close()
    assert not report.passed and report.failed_law == "protocol"
    assert needle in report.message
    if bug == "crash":
        assert "segmentation fault (simulated)" in report.stderr_tail


class OwnRng:
    """An implementation whose sampler ignores the given rand and draws from its own stream, with the spec's
    distribution (``scale`` = 1) or a wrong temperature (``scale`` != 1).

    Its stream is the given rand shifted by 1/2 modulo 1: uniform on the same 2^-24 grid whenever rand is, so the
    token distribution is exactly the spec's while the tokens themselves differ; and a function of its input, so
    replays (Hypothesis' final run, the shrinker's, within a time budget that depends on the machine's load)
    see the same implementation every time. With a numpy RNG instead, how far the RNG had advanced depended on
    how many replays the shrinker managed, and the G-test's 1e-3 false-failure rate per comparison was drawn
    afresh each run: the test failed now and then under load."""

    def __init__(self, model, scale=1.0):
        self.engine, self.scale = ModelImpl(model, "own-rng"), scale
        self.name, self.vocab_size, self.capabilities = "own-rng", model.vocab_size, self.engine.capabilities
        self.model = model.with_sampler(temperature=model.sampler.temperature * scale)

    def __getattr__(self, name):
        return getattr(self.engine, name)

    def decode(self, s, token, rand):
        state, logits, _ = self.engine.decode(s, token, rand)
        return state, logits, int(self.model.sample(logits, (float(rand) + 0.5) % 1.0))


def test_own_rng_reaches_l3_but_not_l2():
    model = load("tiny-llama", temperature=1.0, top_k=20)
    assert check(model, OwnRng(model), required=Level.L3, max_examples=8).passed
    for budget in (0.0, 10.0):  # how far the shrinker gets (load) must not change the verdict or the law
        report = check(model, OwnRng(model), required=Level.L2, max_examples=8, shrink_seconds=budget)
        assert not report.passed and report.failed_law == "sampler"


def test_wrong_distribution_fails_even_at_l3():
    model = load("tiny-llama", temperature=1.0, top_k=20)
    report = check(model, OwnRng(model, scale=3.0), required=Level.L3, max_examples=15)
    assert not report.passed and "distribution differs" in report.message


@pytest.mark.parametrize("name", ["tiny-llama", "tiny-gpt2", "tiny-mamba"])
def test_the_onnxruntime_backend_passes_at_l1(name):
    model = load(name, temperature=0.8, top_k=30)
    report = check(model, open_impl("onnx", model, provider="cpu"), required=Level.L1, max_examples=10)
    assert report.passed, report.message
    assert report.laws["state"]["level"] >= Level.L1 and report.laws["sampler"]["level"] >= Level.L2


@pytest.mark.parametrize("name", ["tiny-llama", "tiny-gpt2"])
def test_a_correct_batched_implementation_passes_the_batch_law(name):
    """Positive control of the batch law: real batching (padded caches and chunks, a key mask) conforms; the
    same engine on a spec whose attention ignores the mask is the batch-padding-leak mutant, caught above."""
    model = load(name)
    report = check(model, BatchedImpl(model, "batched"), required=Level.L1, max_examples=25)
    assert report.passed, report.message
    assert report.laws["batch"]["n"] > 0 and report.laws["batch"]["level"] >= Level.L1
