"""The compiled folders in transformers: committed fixtures (tools/make_algorithm_fixtures.py) compared without
torch, and a live run when transformers is installed.

Two comparisons of logits. (1) transformers' logits lie inside the rounding enclosure of the spec's computation
(proofs/rounding.py): a bound for every float32 evaluation order, not a tuned number. (2) A tight measured one:
RTOL = 2e-5 in SPEC §8's rel_err (max |ours - theirs| / max(1, max |theirs|) per sequence), the repo's GPT-2
onnxruntime tolerance (tests/runtime_helpers.py). Measured worst on the fixtures: 5.0e-6 (sort) and 5.5e-6
(reverse) against SDPA attention in transformers 5.25 / torch 2.13 CPU. That is more than the random
checkpoints' 9.6e-7 (docs/checkpoints.md): hard heads score 256 and the count MLP multiplies by 360, so a few
ulps there move the logits more."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from lmstep.proofs.exhaustive import prompts_of_length, teacher_forced
from lmstep.proofs.rounding import RoundingOps, fresh_cache
from lmstep.runtime.algorithms import ALGORITHMS, compile_algorithm, params_of
from lmstep.runtime.algorithms.folder import write_folder
from lmstep.spec import load
from lmstep.spec.conformance import rel_err
from lmstep.spec.safetensors_io import read_safetensors

ROOT = os.path.join(os.path.dirname(__file__), "fixtures", "algorithms")
RTOL = 2e-5


def fixture(name: str) -> tuple[dict, dict[str, np.ndarray]]:
    folder = os.path.join(ROOT, name)
    with open(os.path.join(folder, "expected.json")) as fh:
        expected = json.load(fh)
    return expected, read_safetensors(os.path.join(folder, "expected.safetensors"))


def mismatches(algo, expected: dict, logits: dict[str, np.ndarray]) -> list[str]:
    """Every way ``algo``'s spec model differs from what transformers recorded (empty when they agree)."""
    out = []
    model = algo.model
    for i, rec in enumerate(expected["samples"]):
        ours = model.unrolled(rec["tokens"])
        tokens = np.array([rec["tokens"]], np.int64)
        positions = np.arange(tokens.shape[1], dtype=np.int64)[None]
        enc = model.module.forward(RoundingOps(), model.config, model.weights, tokens, positions, fresh_cache(2))[0]
        if not enc.contains(logits[f"logits.{i}"][None]).all():
            out.append(f"logits of sample {i}: outside the rounding enclosure")
        if rel_err(ours, logits[f"logits.{i}"]) > RTOL:
            out.append(f"logits of sample {i}: rel err {rel_err(ours, logits[f'logits.{i}']):.2e}")
        prompt = algo.prompt(rec["prompt"])
        if algo.model.generate(prompt, len(rec["generate"])) != rec["generate"]:
            out.append(f"greedy continuation of {rec['prompt']}")
    return out


@pytest.mark.law("compiled-algorithm")
@pytest.mark.parametrize("name", list(ALGORITHMS))
def test_spec_agrees_with_transformers_fixture(name):
    expected, logits = fixture(name)
    algo = compile_algorithm(name)
    assert expected["weights_sha256"] == algo.model.weights_digest(), "stale: python tools/make_algorithm_fixtures.py"
    assert (expected["symbols"], expected["max_len"]) == (algo.symbols, algo.max_len)
    assert mismatches(algo, expected, logits) == []
    for rec in expected["samples"]:  # transformers' generate stopped at EOS with the algorithm's answer
        assert rec["generate"] == algo.answer(rec["prompt"])
    every = expected["every_prompt"]  # transformers, teacher forced, on every prompt within the bound
    assert every["prompts"] == every["agree"] == sum(4**n for n in range(9)) == 87381
    assert every["min_top2_margin"] > 1.0


@pytest.mark.control("compiled-algorithm")
@pytest.mark.parametrize("name", list(ALGORITHMS))
def test_a_perturbed_model_disagrees_with_the_fixture(name):
    """Negative control: the same comparison fails for a model with one weight entry changed."""
    expected, logits = fixture(name)
    algo = compile_algorithm(name)
    params, s = params_of(algo), algo.stream
    params["layers.1.mlp_c_proj_bias"][s.at("tok", algo.bos)] += 0.5  # a small change that keeps every answer
    found = mismatches(algo.with_params(params), expected, logits)
    assert found and all(m.startswith("logits") for m in found)


@pytest.mark.law("compiled-algorithm")
def test_live_transformers_runs_the_folders(tmp_path):
    torch = pytest.importorskip("torch", reason="torch not installed (optional: pip install -e '.[hf]')")
    transformers = pytest.importorskip("transformers", reason="transformers not installed (pip install -e '.[hf]')")
    for name in ALGORITHMS:
        algo = compile_algorithm(name, symbols=3, max_len=4)
        folder = write_folder(algo, tmp_path / name)
        ref = transformers.AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.float32).eval()
        spec = load(str(folder))
        for n in range(algo.max_len + 1):  # every prompt, teacher forced, one batch per length
            tokens, want = teacher_forced(algo, prompts_of_length(algo.symbols, n))
            with torch.no_grad():
                theirs = ref(torch.tensor(tokens)).logits.float().numpy()
            assert (theirs[:, n + 1 :].argmax(-1) == want).all()
            for row in range(0, len(tokens), 41):
                assert rel_err(spec.unrolled(tokens[row].tolist()), theirs[row]) <= RTOL
        prompt = algo.prompt([2, 0, 1, 1])
        with torch.no_grad():
            out = ref.generate(torch.tensor([prompt]), max_new_tokens=8, do_sample=False, pad_token_id=algo.eos)
        assert out[0, len(prompt) :].tolist() == algo.answer([2, 0, 1, 1])  # stops at EOS (config.json's eos id)
