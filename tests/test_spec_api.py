"""The public API of lmstep.spec on the built-in models: shapes, dtypes, clear errors, and the structural
guarantee that the unrolled form never loops the recurrent one."""

import numpy as np
import pytest

from lmstep.spec import BUILTIN_MODELS, InputError, load
from lmstep.spec.model import ARCHITECTURES

NAMES = sorted(BUILTIN_MODELS)


@pytest.mark.parametrize("name", NAMES)
def test_shapes_and_dtypes(name):
    model = load(name)
    state, out = model.step(model.init_state(), 65, 0.25)
    assert out.logits.shape == (256,) and out.logits.dtype == np.float32 and isinstance(out.token, int)
    state, logits = model.prefill(state, [66, 67, 68])
    assert logits.shape == (3, 256) and logits.dtype == np.float32 and state.pos == 4
    assert model.unrolled([65, 66]).shape == (2, 256)


@pytest.mark.parametrize("name", NAMES)
def test_unrolled_never_calls_the_recurrent_form(name, monkeypatch):
    def forbidden(*args, **kwargs):
        raise AssertionError("unrolled form called decode")

    model = load(name)  # every built-in, each family through its architecture's module (the Llama-style: llama)
    monkeypatch.setattr(ARCHITECTURES[model.arch], "decode", forbidden)
    model.unrolled(list(b"no step here"))
    with pytest.raises(AssertionError, match="called decode"):  # control: the patch reaches this model's step
        model.step(model.init_state(), 65, 0.25)


@pytest.mark.parametrize("name", NAMES)
def test_builtin_logits_are_peaked_and_greedy_output_varies(name):
    """Built-in weights are scaled so the models are interesting: far from uniform, greedy not constant."""
    model = load(name)
    logits = model.unrolled(list(b"Hello, world"))
    probs = np.exp(logits - logits.max(-1, keepdims=True))
    probs /= probs.sum(-1, keepdims=True)
    assert probs.max(-1).mean() > 0.2  # uniform would be 1/256 = 0.004
    for prompt in (b"Hello", b"The cat", b"0123"):
        assert len(set(model.generate(list(prompt), 32))) >= 3


@pytest.mark.parametrize("name", NAMES)
def test_builtin_weights_are_reproducible(name):
    from lmstep.spec import builtin

    arch, cfg, _ = builtin.CONFIGS[name]
    assert builtin.init_weights(arch, cfg) == builtin.init_weights(arch, cfg)
    assert builtin.init_weights(arch, cfg) != builtin.init_weights(arch, cfg, seed=1)


def test_sampler_settings_are_part_of_the_value():
    greedy, hot = load("tiny-llama"), load("tiny-llama", temperature=1.5, top_k=40, top_p=0.95)
    assert greedy != hot and hot.sampler.top_k == 40
    assert greedy.with_sampler(temperature=1.5, top_k=40, top_p=0.95) == hot


@pytest.mark.parametrize(
    "call,match",
    [
        (lambda m, s: m.step(s, 256, 0.5), "outside the vocabulary"),
        (lambda m, s: m.step(s, -1, 0.5), "outside the vocabulary"),
        (lambda m, s: m.step(s, 1.5, 0.5), "must be integers"),
        (lambda m, s: m.step(s, 1, 1.0), "rand must be a float in"),
        (lambda m, s: m.prefill(s, []), "tokens is empty"),
        (lambda m, s: m.prefill(s, np.zeros((2, 2), np.int64)), "1-D sequence"),
        (lambda m, s: m.prefill(s, [0] * 4097), "beyond the model's context"),
        (lambda m, s: m.step("state", 1, 0.5), "state must be a State"),
        (lambda m, s: m.generate([1], -1), "steps must be"),
        (lambda m, s: m.generate([1], 2, seed=-5), "seed must be"),
    ],
)
def test_bad_input_is_one_clear_error(call, match):
    model = load("tiny-llama")
    with pytest.raises(InputError, match=match) as err:
        call(model, model.init_state())
    assert "\n" not in str(err.value)


def test_unknown_model_name():
    with pytest.raises(InputError, match="no built-in model or checkpoint directory named 'tiny-bert'"):
        load("tiny-bert")


def test_mamba_has_no_context_limit_but_transformers_do():
    assert load("tiny-mamba").context_limit is None
    assert load("tiny-llama").context_limit == 4096 and load("tiny-gpt2").context_limit == 4096
