"""The checker has teeth: every mutant of the catalogue (lmstep/mutants.py) the checker runs is caught by the
default quick check (default sampler settings, no flags), with a short counterexample, by a checker law that
checks one of the laws the mutant breaks; and the correct implementations pass (the spec itself, an independent
external one on every architecture, onnxruntime, batched engines with immutable and with mutable sessions). The
positive control at L2 (a float16 KV cache) passes --level L2 and fails L1."""

import sys
from pathlib import Path

import pytest

from lmstep.mutants import CHECKED, MUTANTS
from lmstep.runtime.check import Level, check, open_impl, parse_level
from lmstep.runtime.check.engines import ENGINES, mutant_impl
from lmstep.runtime.check.lockstep import LAWS
from lmstep.spec import load

EXTERNAL = f"cmd:{sys.executable} {Path(__file__).parent / 'external_impl.py'}"
BUGS = sorted(name for name, m in CHECKED.items() if m.conforms_at is None)
CONTROLS = sorted(name for name, m in CHECKED.items() if m.conforms_at is not None)
ARCHS = ["tiny-llama", "tiny-gpt2", "tiny-mamba"]
WINDOWED = ["tiny-mistral"]  # a sliding window (SPEC.md §5); the external example implements the three above
FAMILIES = ["tiny-llama3", "tiny-qwen2", "tiny-qwen3", "tiny-gemma", "tiny-phi3"]  # the Llama-style switches (§5)
SSD = ["tiny-mamba2"]  # Mamba-2's chunked SSD (SPEC.md §11): its state is a conv window and one matrix per head


@pytest.mark.parametrize("name", BUGS)
def test_every_mutant_is_caught_by_the_default_check(name):
    mutant = MUTANTS[name]
    model = load(mutant.model)  # the default, greedy sampler: the check varies the settings itself
    report = check(model, mutant_impl(name, model), required=parse_level(mutant.level), shrink_seconds=3)
    assert not report.passed, f"{name} was not caught"
    assert report.counterexample, f"{name}: {report.message}"  # a comparison failed, not a law left unexercised
    laws = LAWS[report.failed_law][0]  # the laws that checker law checks
    assert set(laws) & set(mutant.breaks), f"{name}: caught by {report.failed_law} ({laws}), not by its laws"
    # shrunk to a handful of operations (an L0 probe aimed at one state needs the operations that lead to it)
    assert len(report.counterexample) <= (6 if mutant.level == "L1" else 8), report.counterexample


def test_the_catalogue_has_every_bug_class_the_checker_must_catch():
    engines = {MUTANTS[n].engine for n in BUGS}
    assert {"kv-window-16", "kv-capacity-32", "kv-ring-256", "kv-page-boundary", "fork-drops-last"} <= engines
    assert {"batch-positions", "rand-shifted", "rand-reused"} <= engines
    assert {"rms-eps-outside-sqrt", "rms-eps-outside-sqrt-mamba", "layernorm-eps-outside-sqrt"} <= set(BUGS)
    constants = {n for n in BUGS if "typo" in n or "hardcoded" in n}
    assert {MUTANTS[n].model for n in constants} == set(ARCHS)  # a constant wrong in its third digit, per arch
    sampler = {"top-k-off-by-one", "top-k-drops-kth", "top-p-drops-boundary-token", "temperature-after-top-p"}
    assert sampler | {"top-p-before-top-k", "normalise-first"} <= set(BUGS)
    assert len(BUGS) >= 30 and all(MUTANTS[n].level == "L1" for n in sampler)


def test_every_mutant_names_an_engine_of_the_checker():
    assert {m.engine for m in MUTANTS.values()} <= set(ENGINES)


@pytest.mark.parametrize("name", CONTROLS)
def test_a_positive_control_conforms_at_its_level_and_not_above(name):
    mutant = MUTANTS[name]
    model = load(mutant.model)
    level = parse_level(mutant.conforms_at)
    report = check(model, mutant_impl(name, model), required=level, skip_laws=["batch"], max_examples=10)
    assert report.passed, report.message
    assert {report.laws[law]["level"] for law in ("unrolled", "split", "recurrent", "state")} == {level}
    above = check(model, mutant_impl(name, model), required=Level(level + 1), skip_laws=["batch"], shrink_seconds=2)
    assert not above.passed and set(LAWS[above.failed_law][0]) & set(mutant.breaks), above.message


@pytest.mark.parametrize("name", ARCHS + WINDOWED + FAMILIES + SSD)
def test_the_spec_passes_at_l0(name):
    model = load(name)
    report = check(model, open_impl("spec", model), required=Level.L0, skip_laws=["batch"], max_examples=10)
    assert report.passed, report.message
    assert {law for law, s in report.laws.items() if s["level"] == Level.L0} >= {
        "unrolled",
        "split",
        "recurrent",
        "sampler",
        "state",
        "fork",
        "determinism",
    }


@pytest.mark.parametrize("name", ARCHS)
def test_an_independent_external_implementation_passes_at_l1(name):
    """tests/external_impl.py, written from SPEC.md in plain numpy, token by token, over JSON lines (protocol 2,
    every capability): L1 on every law, well inside each comparison's bound, and its sampler to the bit."""
    model = load(name)
    impl = open_impl(EXTERNAL, model)
    try:
        report = check(model, impl, required=Level.L1, max_examples=10)
    finally:
        impl.close()
    assert report.passed, report.message
    assert report.laws["recurrent"]["level"] == Level.L1  # different kernels: numerically equal, not bitwise
    assert report.laws["sampler"]["level"] == Level.L0 and report.coverage["sampler"]["draws"] > 0
    assert max(s.get("worst_ratio", 0) for s in report.laws.values()) < 0.7  # measured <= 0.42: margin >= 2.4


def test_the_same_external_implementation_fails_at_l0():
    """Negative control for the level ladder: L0 is not reachable with independent arithmetic."""
    model = load("tiny-gpt2")
    impl = open_impl(EXTERNAL, model)
    try:
        report = check(model, impl, required=Level.L0, max_examples=2)
    finally:
        impl.close()
    assert not report.passed and "L1 numeric" in report.message


@pytest.mark.parametrize("bug,law", [("position", "recurrent"), ("noise", "recurrent")])
def test_bugs_in_the_external_implementation_are_caught(bug, law):
    model = load("tiny-gpt2")
    impl = open_impl(f"{EXTERNAL} --bug {bug}", model)
    try:
        report = check(model, impl, max_examples=5)
    finally:
        impl.close()
    assert not report.passed and report.failed_law in (law, "unrolled", "split", "state"), report.message


@pytest.mark.parametrize("level", [Level.L2, Level.L3])
def test_a_top_k_keeping_k_plus_one_fails_at_l2_and_l3(level):
    """The near-tie excuse of L2 comes from the comparison's L1 bound, so a sampler that keeps one token too many
    is never excused; at L3 the extra token has probability 0 under the spec."""
    model = load("tiny-llama")
    impl = open_impl(f"{EXTERNAL} --bug top-k", model)
    try:
        report = check(model, impl, required=level, max_examples=3)
    finally:
        impl.close()
    assert not report.passed and report.failed_law == "sampler", report.message
    assert "probability 0" in report.message


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
        report = check(model, impl, max_examples=2)
    finally:
        impl.close()
    assert not report.passed and report.failed_law == "protocol"
    assert needle in report.message
    if bug == "crash":
        assert "segmentation fault (simulated)" in report.stderr_tail


def test_an_error_reply_is_shrunk_like_any_failure():
    """A program that answers {"ok": false} is alive: its operations replay, so they are shrunk."""
    model = load("tiny-gpt2")
    impl = open_impl(f"{EXTERNAL} --bug raise", model)
    try:
        report = check(model, impl, max_examples=2)
    finally:
        impl.close()
    assert not report.passed and report.failed_law == "protocol" and "out of cache blocks" in report.message
    assert report.counterexample and len(report.counterexample) <= 6


def test_an_older_program_speaking_protocol_1_is_still_checked():
    model = load("tiny-gpt2")
    impl = open_impl(f"{EXTERNAL} --protocol 1", model)
    try:
        report = check(model, impl, max_examples=3)
    finally:
        impl.close()
    assert report.passed, report.message
    assert any("protocol 1" in n for n in report.notes) and report.coverage["sampler"]["draws"] == 0


@pytest.mark.parametrize("name", ARCHS + WINDOWED + FAMILIES + SSD)
def test_the_onnxruntime_backend_passes_at_l1(name):
    model = load(name)
    report = check(model, open_impl("onnx", model, provider="cpu"), skip_laws=["batch"], max_examples=5)
    assert report.passed, report.message
    assert report.laws["state"]["level"] >= Level.L1 and report.laws["sampler"]["level"] >= Level.L1


@pytest.mark.parametrize("engine", ["batched", "mutable-batched"])
@pytest.mark.parametrize("name", ["tiny-llama", "tiny-gpt2", *WINDOWED])
def test_a_correct_batched_implementation_passes_the_batch_law(name, engine):
    """Positive control of the batch law: real batching (padded caches and chunks, a key mask) conforms, with
    immutable handles and with mutable sessions (the quick profile batches both); the same engine on a spec
    whose attention ignores the mask is the batch-padding-leak mutant, caught above."""
    model = load(name)
    report = check(model, ENGINES[engine](model, engine), required=Level.L1, max_examples=5)
    assert report.passed, report.message
    assert report.coverage["batch"]["n"] >= 3 and report.laws["batch"]["level"] >= Level.L1
