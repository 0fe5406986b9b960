"""`lmstep step` piped and --json, through the real entry point; --json lines checked against model.step."""

from __future__ import annotations

import json

import pytest

from lmstep.runtime.cli import main
from lmstep.spec import load, rand_for


def run(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("name", ["tiny-llama", "tiny-gpt2", "tiny-mamba", "tiny-mamba2"])
def test_json_lines_are_model_step_results(capsys, name):
    code, out, _ = run(
        capsys,
        "step",
        "-m",
        name,
        "--tokens",
        "72,105,0",
        "--steps",
        "3",
        "-T",
        "0.8",
        "--top-k",
        "40",
        "--seed",
        "5",
        "--json",
    )
    assert code == 0
    rows = [json.loads(line) for line in out.splitlines()]
    assert [r["pos"] for r in rows] == [0, 1, 2, 3, 4]  # 3 prompt tokens, then 2 more inputs to sample 3 tokens
    model = load(name, temperature=0.8, top_k=40)
    state, feed = model.init_state(), [72, 105, 0]
    for r in rows:
        assert r["input"] == (feed[r["pos"]] if r["pos"] < 3 else rows[r["pos"] - 1]["sampled"])
        assert r["rand"] == rand_for(5, r["pos"] + 1)
        state, step_out = model.step(state, r["input"], r["rand"])
        assert r["sampled"] == step_out.token and r["state"]["digest"] == state.digest()
        assert r["top"][0]["logit"] == float(step_out.logits.max())
        assert r["next"] == (feed[r["pos"] + 1] if r["pos"] + 1 < 3 else r["sampled"])
        assert [t["name"] for t in r["state"]["tensors"]] == list(state.arrays())
    generated = [r["sampled"] for r in rows[2:]]
    assert len(generated) == 3 and rows[-1]["next_source"] == "sampled"


def test_piped_text_shows_each_transition(capsys):
    code, out, _ = run(capsys, "step", "-m", "tiny-llama", "--prompt", "Hi", "--steps", "1")
    assert code == 0 and "\x1b" not in out
    first, second = out.split("\npos ")
    assert first.startswith("pos 0  in 72 'H'  rand ") and "next 105 'i' (prompt)" in first
    assert "  top    " in first and "  state  pos 1  digest " in first
    assert "layer 0  key [1, 2, 1, 16] |" in first and "layer 1  key" in first
    assert second.startswith("1  in 105 'i'") and "(sampled)" in second


def test_non_printable_bytes_are_escaped(capsys):
    code, out, _ = run(capsys, "step", "-m", "tiny-llama", "--tokens", "10,153,92", "--steps", "0")
    assert code == 0
    assert "in 10 '\\n'" in out and "in 153 '\\x99'" in out


@pytest.mark.parametrize(
    "args, message",
    [
        (["-m", "tiny-llama", "--tokens", "1,300"], "token id 300 is outside the vocabulary [0, 256)"),
        (["-m", "tiny-llama", "--prompt", "a", "--tokens", "1"], "give either --prompt TEXT or --tokens IDS, not both"),
        (["-m", "no-such-model", "--prompt", "a"], "no built-in model or checkpoint directory named 'no-such-model'"),
        (["-m", "tiny-llama", "--tokens", "1,x"], "--tokens must be comma-separated integers"),
        (["-m", "tiny-llama", "--tokens", "1", "--seed", "-1"], "seed must be an integer in [0, 2**64 - 1]"),
        (["-m", "tiny-llama", "--tokens", "1", "--runtime", "gpu"], "unknown runtime 'gpu'"),
        (["-m", "tiny-llama", "--tokens", "1", "--top-p", "0"], "top_p must be in (0, 1]"),
        (["-m", "tiny-llama", "--tokens", "1", "--steps", "-1"], "Invalid value for '--steps'"),
        (["--prompt", "a"], "Missing option '--model'"),
    ],
)
def test_errors_are_one_line_exit_2(capsys, args, message):
    code, out, err = run(capsys, "step", *args)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("lmstep: error: ") and message in err


def test_models_lists_what_each_is(capsys):
    code, out, _ = run(capsys, "models")
    assert code == 0
    for name, arch in [
        ("tiny-llama", "llama"),
        ("tiny-gpt2", "gpt2"),
        ("tiny-mamba", "mamba"),
        ("tiny-gemma", "gemma"),
        ("tiny-mistral", "mistral"),
        ("tiny-mamba2", "mamba2"),
    ]:
        assert f"{name:<12} {arch}" in out
    assert "key [1, 2, T, 16]" in out and "recurrent_state [1, 128, 16]" in out and "GQA" in out
    assert "key [1, 1, min(T, 15), 16]" in out  # tiny-mistral's window of 16 bounds its state
    code, out, _ = run(capsys, "models", "--json")
    rows = [json.loads(line) for line in out.splitlines()]
    assert [r["name"] for r in rows][:3] == ["tiny-llama", "tiny-gpt2", "tiny-mamba"] and rows[0]["params"] > 0
    families = {r["name"]: (r["arch"], r["family"]) for r in rows}
    assert families["tiny-qwen3"] == ("llama", "qwen3") and families["tiny-llama3"] == ("llama", "llama")
    assert families["tiny-mistral"] == ("llama", "mistral") and families["tiny-mamba2"] == ("mamba2", "mamba2")


def test_the_readme_quick_start_command_runs(capsys):
    """`lmstep step --model tiny-llama --steps 8` (README) works without a prompt: it starts from "Hello"."""
    assert main(["step", "--model", "tiny-llama", "--steps", "8"]) == 0
    out = capsys.readouterr().out
    assert out.count("pos ") >= 12 and "in 72 'H'" in out  # 4 prompt transitions + 8 sampled, from "Hello"
