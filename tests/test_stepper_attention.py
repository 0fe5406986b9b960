"""The stepper's attention view (runtime/stepper/attention.py): the weights it shows are the ones that computed the
step's logits, and on the constructed reverse model they are the algorithm (docs/algorithms.md)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from lmstep.runtime.algorithms import compile_algorithm, params_of
from lmstep.runtime.cli import main
from lmstep.runtime.stepper import attention
from lmstep.spec import load


@pytest.mark.parametrize("name", ["tiny-llama", "tiny-gpt2"])
def test_weights_reproduce_the_step_bitwise(name):
    model = load(name)
    state = model.init_state()
    for pos, token in enumerate([72, 105, 33, 10]):
        views, logits = attention.attention_weights(model, state, token)
        state, out = model.step(state, token, 0.5)
        assert np.array_equal(logits, out.logits)  # the recorded softmax is the one that made these logits
        assert len(views) == model.config.num_hidden_layers * 4 if name == "tiny-llama" else len(views) == 8
        for v in views:
            assert v.weights.shape == (pos + 1,) and abs(float(v.weights.sum()) - 1) < 1e-6
        assert [v.top for v in attention.for_entry(model, _Entry(state, token))] == [v.top for v in views]


class _Entry:  # the fields of a stepper Entry that for_entry reads
    def __init__(self, state, token):
        self.state, self.input, self.output = state, token, object()


def _walk(model, tokens):
    state, rows = model.init_state(), []
    for token in tokens:
        views, _ = attention.attention_weights(model, state, token)
        rows.append(views)
        state, _ = model.step(state, token, 0.5)
    return rows


@pytest.mark.law("compiled-algorithm")
def test_reverse_heads_point_at_sep_and_at_the_copied_position():
    algo = compile_algorithm("reverse", 3, 4)
    xs = [2, 0, 1, 1]
    seq = algo.prompt(xs) + algo.expected(xs)  # teacher forced: BOS x SEP y
    sep = len(xs) + 1
    rows = _walk(algo.model, seq)
    for t in range(sep, len(seq)):
        layer1, layer2 = rows[t]
        assert layer1.top == sep and layer1.weights[sep] == 1.0  # exp(-128) underflows: exactly one-hot
        assert layer2.top == 2 * sep - t - 1 and float(layer2.weights[layer2.top]) > 0.999
    # negative control: with layer 2's key for position 2 not read, no key matches target 2
    params, s = params_of(algo), algo.stream
    params["layers.1.c_attn_weight"][s.at("pos", 2), s.width + 2] = 0.0
    t = 2 * sep - 2 - 1  # the step whose target is position 2
    assert _walk(algo.with_params(params).model, seq)[t][1].top != 2


def test_sort_heads_see_sep_then_count_uniformly():
    algo = compile_algorithm("sort", 3, 4)
    xs = [2, 0, 2]
    rows = _walk(algo.model, algo.prompt(xs) + algo.expected(xs))
    for t, (layer1, layer2) in enumerate(rows):
        assert layer1.top == (0 if t <= len(xs) else len(xs) + 1)  # BOS until SEP is visible, then SEP
        assert np.allclose(layer2.weights, 1 / (t + 1), rtol=1e-6) and ("uniform" in layer2.text()) == (t > 0)


def test_cli_shows_attention_lines_and_json(tmp_path, capsys):
    assert main(["compile", "reverse", "--out", str(tmp_path / "r"), "-k", "3", "--max-len", "4"]) == 0
    capsys.readouterr()
    assert main(["step", "-m", str(tmp_path / "r"), "--tokens", "3,2,0,4", "--steps", "3"]) == 0
    out = capsys.readouterr().out
    assert "  attend L0h0 -> 3 (1.000) | L1h0 -> 2 (1.000)" in out  # at SEP (position 3): copy x_2 from 2
    assert main(["step", "-m", str(tmp_path / "r"), "--tokens", "3,2,0,4", "--steps", "3", "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["sampled"] for r in rows[3:]] == [0, 2, 5]  # the stepper decodes the same answer: reverse, then EOS
    assert [(a["layer"], a["top"]) for a in rows[-1]["attention"]] == [(0, 3), (1, 0)]  # BOS: the answer is EOS
    assert main(["step", "-m", "tiny-mamba", "--tokens", "1,2", "--steps", "1", "--json"]) == 0
    assert all(json.loads(line)["attention"] == [] for line in capsys.readouterr().out.splitlines())
