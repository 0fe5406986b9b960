"""Negative controls from the one mutant catalogue (lmstep/mutants.py): every mutant that edits the spec's code and
that float32 arithmetic can show is run, on each of its models, through the spec-level check of every law it
claims to break (``Mutant.spec_level_laws``: the same functions of tests/laws.py the property tests run on the
correct spec), and must fail it by far. Adding a mutant to the catalogue adds its controls here."""

from __future__ import annotations

from types import SimpleNamespace

import laws
import numpy as np
import pytest
from test_spec_rand import VECTORS
from tolerances import FORMS

from lmstep.mutants import MUTANTS
from lmstep.mutation import build
from lmstep.spec import load

PROMPT = list(b"The quick brown fox jumps")  # 25 tokens; with PROMPT[:8] an odd and an even scan length
LONG = PROMPT * 2  # 50 tokens: past the 32 a scan with too few rounds would get right, and past tiny-mistral's
# window of 16 three times (its state wraps its buffer of 30 rows once)
BATCH = np.array([list(b"The quick brown fox"), list(b"jumps over the lazy")], np.int64)


def far(err: float, model) -> bool:
    """Caught with room: 100x the tolerance the property tests allow the correct spec."""
    return err > 100 * FORMS[model.arch]


def _determinism(mutant, model) -> bool:
    """Two runs differ in this process, or (rand from hash()) in two fresh interpreters."""
    hot = model.with_sampler(temperature=1.0)
    if laws.trajectory(hot, [72, 105], 12, 1) != laws.trajectory(hot, [72, 105], 12, 1):
        return True
    return laws.fresh_process_trajectories("1", mutant.name, [model.name]) != laws.fresh_process_trajectories(
        "2", mutant.name, [model.name]
    )


# law id -> check(mutant, model) -> True when the law is violated.
CHECKS = {
    "unrolled-eq-recurrent": lambda mut, m: far(
        max(laws.unrolled_vs_recurrent(m, t) for t in (PROMPT[:8], PROMPT, LONG)), m
    ),
    "split-invariance": lambda mut, m: far(
        max(
            laws.split_invariance(m, PROMPT, [5, 9], [True, False, True]),
            laws.split_invariance(m, LONG, [5, 9, 30], [True, False, True, True]),  # a chunk after a full window
        ),
        m,
    ),
    "causality": lambda mut, m: far(
        max(laws.causality(m, PROMPT[:k], PROMPT[k : k + n]) for k, n in ((2, 3), (10, 4))), m
    ),
    "states-are-values": lambda mut, m: not laws.fork_law(m, PROMPT[:5], PROMPT[5:8], PROMPT[10:12]),
    "batch-invariance": lambda mut, m: far(
        max(
            laws.batched_vs_single(m, BATCH, (6, 12)),  # equal lengths, from a carried batched state
            0.0
            if m.arch in ("mamba", "mamba2")
            else laws.batch_invariance(m, [PROMPT[:9], PROMPT[:4]]),  # padded, key mask
        ),
        m,
    ),
    "rand-by-position": lambda mut, m: (
        not laws.generation_split_invariance(m.with_sampler(temperature=1.0), PROMPT[:6], 8, 11, 3)
    ),
    "determinism": _determinism,
    "sliding-window": lambda mut, m: (
        getattr(m.config, "sliding_window", None) is not None and bool(laws.sliding_window(m, LONG))
    ),
    "rand-stream": lambda mut, m: (
        sum(mut.function("rand.rand_for")(s, p) != bits / 2**24 for s, p, bits in VECTORS) >= len(VECTORS) - 1
    ),
    "sampler": lambda mut, m: (
        "sampler" in laws.sampler_violations(mut.function("sampler.sample"))
        or not laws.sampler_agreement(m.with_sampler(temperature=0.9, top_k=40, top_p=0.8), PROMPT[:6], 8, 5)
    ),
}
for _law in ("sampler-greedy", "sampler-bracket", "sampler-keep-set", "sampler-no-zero-prob"):
    CHECKS[_law] = lambda mut, m, law=_law: law in laws.sampler_violations(mut.function("sampler.sample"))

CONTROLS = [(name, model, law) for name, m in MUTANTS.items() for model in m.models for law in m.spec_level_laws()]


@pytest.mark.parametrize("name,model_name,law", CONTROLS)
def test_mutant_breaks_its_law(name, model_name, law):
    mutant = MUTANTS[name]
    with np.errstate(all="ignore"):
        assert CHECKS[law](mutant, mutant.load(model_name)), f"{name} on {model_name} passes the {law} check"


def test_every_spec_level_law_has_a_check():
    """Mutant.spec_level_laws() (what `lmstep laws` lists as this file's controls) is what CHECKS can check."""
    assert {law for _, _, law in CONTROLS} <= set(CHECKS)


def test_the_correct_spec_passes_every_check():
    """Positive control: the same checks on the correct spec report nothing."""
    spec = SimpleNamespace(name="", function=build(()).function)  # the spec's own functions, as a mutant offers
    for model_name in ("tiny-llama", "tiny-gpt2", "tiny-mamba", "tiny-mistral", "tiny-mamba2"):
        model = load(model_name)
        for law, check in CHECKS.items():
            if law == "determinism":
                continue  # its fresh processes are test_spec_properties'
            assert not check(spec, model), f"the spec fails the {law} check on {model_name}"


@pytest.mark.control("unrolled-eq-recurrent")
def test_a_scan_round_cut_short_is_caught_by_the_quick_profile(monkeypatch):
    """The reference scan written for 32 tokens (the catalogue's scan-rounds-capped): sequences of at most 32
    tokens cannot see it, so the property test's strategies must reach longer ones. The @given test itself, run
    under the active (default quick) Hypothesis profile with the mutant installed in the live spec, fails."""
    import test_spec_properties as properties

    for obj, attr, fn in MUTANTS["scan-rounds-capped"].patches():
        monkeypatch.setattr(obj, attr, fn)
    assert laws.unrolled_vs_recurrent(load("tiny-mamba"), PROMPT) <= FORMS["mamba"]  # 25 tokens: invisible
    with pytest.raises(AssertionError):
        properties.test_unrolled_equals_recurrent()
