"""Units of the checker: level grading with the margin rule, the bit-exact codec, the python: adapter."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from lmstep.runtime.check import Level, check, open_impl
from lmstep.runtime.check.levels import grade_logits, grade_numbers, grade_token
from lmstep.runtime.codec import CodecError, decode_array, encode_array, f32_hex, f32_value
from lmstep.spec import InputError, Sampler, load


def test_grades_follow_the_ladder():
    z = np.array([[1.0, 2.0, 3.0]], np.float32)
    assert grade_numbers(z.copy(), z, 1e-5).level == Level.L0
    assert grade_numbers(z + np.float32(1e-6), z, 1e-5).level == Level.L1
    assert grade_logits(z + np.float32([[0.5, 0, 0]]), z, 1e-5).level == Level.L2  # argmax unchanged
    assert grade_logits(z[:, ::-1].copy(), z, 1e-5).level == Level.FAIL  # argmax moved by a wide margin


def test_margin_rule_excuses_only_near_ties():
    spec = np.array([1.0, 1.0 + 1e-4, -3.0], np.float32)  # a near tie between tokens 0 and 1
    impl = spec + np.float32([2e-4, 0, 0])  # an error larger than the gap flips the argmax
    assert grade_logits(impl[None], spec[None], 1e-6).level == Level.L2
    far = np.array([1.0, 2.0, -3.0], np.float32)
    assert grade_logits((far + np.float32([2.0, 0, 0]))[None], far[None], 1e-6).level == Level.FAIL
    greedy = Sampler()
    assert grade_token(0, 1, spec, 0.5, greedy).level == Level.L2
    assert grade_token(0, 1, far, 0.5, greedy).level == Level.FAIL


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
    """A python:module:factory implementation: the spec through the protocol, mutable handles, no extras."""

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


def test_python_factory_adapter():
    model = load("tiny-llama")
    report = check(model, open_impl("python:test_check_units:build", model), max_examples=10)
    assert report.passed and "state" not in report.laws  # no "state" capability: only outputs compared


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
