"""One model interface (lmstep.spec.interface.LanguageModel), implemented by the spec's Model and onnxruntime's
OnnxModel, and one ``generate`` over it.

Before, each class wrote its own generate: the spec sampled the first new token from the prefill's last logits
(unrolled form) with the numpy sampler, while OnnxModel prefilled all but the last prompt token and sampled it
in the step graph (recurrent form), so a near-tie could pick different first tokens; the spec also checked the
context only as it stepped (an error after the work), OnnxModel up front. Now both run interface.generate; what
remains per class is how a step is computed, and OnnxModel's fast decode loop must equal repeated steps.
(Equal tokens to the spec on the built-ins, greedy and sampled: tests/test_runtime_ort.py
test_generate_same_tokens_as_spec.)"""

from __future__ import annotations

import pytest
from protocols import mismatches
from runtime_helpers import onnx_model

from lmstep.runtime.onnx_model import OnnxModel, OnnxState
from lmstep.spec import InputError, Model, State, load, rand_for
from lmstep.spec.interface import LanguageModel, ModelState, step_loop

BUILTINS = ("tiny-llama", "tiny-gpt2", "tiny-mamba", "tiny-mistral", "tiny-mamba2")


@pytest.mark.parametrize("cls", [Model, OnnxModel])
def test_both_models_implement_the_interface(cls):
    assert mismatches(LanguageModel, cls) == []


@pytest.mark.parametrize("cls", [State, OnnxState])
def test_both_states_implement_the_state_interface(cls):
    assert mismatches(ModelState, cls) == []


def test_instances_are_language_models():
    model = load("tiny-gpt2")
    for m in (model, onnx_model(model)):
        assert isinstance(m, LanguageModel) and isinstance(m.init_state(), ModelState)


def test_negative_control_a_model_with_its_own_generate_is_flagged():
    class OwnGenerate(Model):
        def generate(self, prompt, steps, seed=1):  # another default seed
            return super().generate(prompt, steps, seed)

    class NoFastLoop:
        pass

    assert [p.split("(")[0] for p in mismatches(LanguageModel, OwnGenerate)] == ["OwnGenerate.generate"]
    assert "NoFastLoop lacks generate_from" in mismatches(LanguageModel, NoFastLoop)
    assert not isinstance(NoFastLoop(), LanguageModel)


@pytest.mark.parametrize("name", BUILTINS)
def test_onnx_fast_decode_loop_equals_repeated_steps(name):
    """OnnxModel.generate_from (private buffers, no host copies) = interface.step_loop over OnnxModel.step, with
    sampling, so every rand_for(seed, p) matters."""
    om = onnx_model(load(name, temperature=0.9, top_k=50))
    state, _ = om.prefill(om.init_state(), list(b"Hi there"))
    assert om.generate_from(state, 33, 12, 5) == step_loop(om, state, 33, 12, 5)


def test_negative_control_a_loop_with_shifted_rands_differs():
    om = onnx_model(load("tiny-llama", temperature=0.9, top_k=50))
    state, _ = om.prefill(om.init_state(), list(b"Hi there"))

    def shifted(state, token, steps, seed):  # draws position p with rand_for(seed, p - 1)
        out = []
        for _ in range(steps):
            state, step = om.step(state, token, rand_for(seed, state.pos))
            token = step.token
            out.append(token)
        return out

    assert shifted(state, 33, 12, 5) != step_loop(om, state, 33, 12, 5)


@pytest.mark.parametrize("which", ["spec", "onnx"])
def test_generate_checks_everything_before_computing(which, monkeypatch):
    model = load("tiny-gpt2")  # context 4096
    m: LanguageModel = model if which == "spec" else onnx_model(model)
    calls = []
    monkeypatch.setattr(type(m), "prefill", lambda self, *a: calls.append(a))
    with pytest.raises(InputError, match="position 4096 is beyond the model's context of 4096 tokens"):
        m.generate([1, 2], 4096)  # positions 0 .. 4096 would be consumed
    with pytest.raises(InputError, match="steps must be an integer"):
        m.generate([1, 2], -1)
    with pytest.raises(InputError, match="seed must be"):
        m.generate([1, 2], 0, seed=-1)
    assert m.generate([1, 2], 0) == [] and calls == []
