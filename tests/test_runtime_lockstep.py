"""The spec and onnxruntime driven in lockstep by a Hypothesis state machine: random chunked prefills, steps,
forks of an older state and resumes, on the built-in models. Invariant: every live pair of states agrees
within the tolerances (tests/runtime_helpers.py), and greedy tokens agree outside near-ties."""

from __future__ import annotations

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule
from runtime_helpers import GAP_FACTOR, LOGITS_RTOL, STATE_RTOL, greedy_gap, onnx_model, rel_err, state_err

from lmstep.spec import load

MODELS = {name: load(name) for name in ("tiny-llama", "tiny-gpt2", "tiny-mamba", "tiny-mistral", "tiny-mamba2")}
tokens = st.integers(0, 255)


class Lockstep(RuleBasedStateMachine):
    @initialize(name=st.sampled_from(sorted(MODELS)))
    def start(self, name):
        self.spec = MODELS[name]
        self.onnx = onnx_model(self.spec)
        self.arch = self.spec.arch
        self.live = [(self.spec.init_state(), self.onnx.init_state())]  # pairs (spec state, onnx state)
        self.problems: list[str] = []

    @rule(chunk=st.lists(tokens, min_size=1, max_size=20))  # 20: past tiny-mistral's window of 16 in one chunk
    def prefill(self, chunk):
        s, o = self.live[-1]
        s, logits = self.spec.prefill(s, chunk)
        o, ologits = self.onnx.prefill(o, chunk)
        if rel_err(ologits, logits) > LOGITS_RTOL[self.arch]:
            self.problems.append(f"prefill logits {rel_err(ologits, logits):.1e}")
        self.live.append((s, o))

    @rule(token=tokens, rand=st.integers(0, 2**24 - 1).map(lambda i: i / 2**24))  # spec rands: float32-exact, < 1
    def step(self, token, rand):
        s, o = self.live[-1]
        s, out = self.spec.step(s, token, rand)
        o, oout = self.onnx.step(o, token, rand)
        if rel_err(oout.logits, out.logits) > LOGITS_RTOL[self.arch]:
            self.problems.append(f"step logits {rel_err(oout.logits, out.logits):.1e}")
        if oout.token != out.token and greedy_gap(out.logits) > GAP_FACTOR * LOGITS_RTOL[self.arch]:
            self.problems.append(f"greedy token {oout.token} != {out.token}")
        self.live.append((s, o))

    @precondition(lambda self: len(self.live) > 1)
    @rule(back=st.integers(1, 3))
    def fork(self, back):
        """Resume from an older state pair: the newer ones stay alive, so both branches must stay correct."""
        self.live.append(self.live[max(0, len(self.live) - 1 - back)])

    @invariant()
    def states_agree(self):
        for s, o in self.live[-3:]:
            if state_err(o, s) > STATE_RTOL[self.arch]:
                self.problems.append(f"state at pos {s.pos}: {state_err(o, s):.1e}")
        assert self.problems == []


Lockstep.TestCase.settings = settings(Lockstep.TestCase.settings, stateful_step_count=8)
TestLockstep = Lockstep.TestCase


def test_negative_control_lockstep_catches_wrong_weights():
    """The machine's checks, driven by hand against an export of weights scaled by 1.001, report it."""
    import attrs
    import numpy as np
    import pytest

    from lmstep.spec.arrays import tree_map

    machine = Lockstep()
    machine.start("tiny-llama")
    off = attrs.evolve(machine.spec, weights=tree_map(lambda a: a * np.float32(1.001), machine.spec.weights))
    machine.onnx = onnx_model(off)
    machine.live = [(machine.spec.init_state(), machine.onnx.init_state())]
    machine.prefill([72, 105, 33])
    machine.step(10, 0.5)
    with pytest.raises(AssertionError):
        machine.states_agree()
