"""The CLI through its real entry point (cli.main): export, --runtime/--provider on step and generate, exported
folders as --model, and one-line errors with exit status 2."""

from __future__ import annotations

import json

import pytest

from lmstep.runtime.cli import main
from lmstep.spec import load


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("LMSTEP_CACHE", str(tmp_path / "cache"))


def run(capsys, *argv) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def generated(out: str) -> list[int]:
    return json.loads(out)["tokens"]


@pytest.mark.parametrize("name", ["tiny-llama", "tiny-mamba"])
def test_export_then_generate_from_the_folder(capsys, tmp_path, name):
    code, out, _ = run(capsys, "export", "--model", name, "--out", str(tmp_path / "x"))
    assert code == 0 and "exported" in out
    spec_tokens = load(name, temperature=0.8).generate([72, 105], 10, seed=3)
    code, out, err = run(
        capsys, "generate", "-m", str(tmp_path / "x"), "-t", "72,105", "-n", "10", "-T", "0.8", "-s", "3", "--json"
    )
    assert code == 0 and generated(out) == spec_tokens
    assert "provider auto -> cpu" in err or "provider auto -> cuda" in err


def test_runtime_onnx_on_a_builtin_equals_spec(capsys):
    args = ["generate", "-m", "tiny-gpt2", "-t", "72,105", "-n", "12", "--json"]
    code, spec_out, _ = run(capsys, *args)
    assert code == 0
    code, onnx_out, err = run(capsys, *args, "--runtime", "onnx", "--provider", "cpu")
    assert code == 0 and generated(onnx_out) == generated(spec_out)
    assert "export: building step graph" in err  # exported on the fly, once
    code, _, err = run(capsys, *args, "--runtime", "onnx", "--provider", "cpu")
    assert code == 0 and "export:" not in err  # then cached


def test_step_command_on_onnx(capsys):
    code, out, _ = run(
        capsys, "step", "-m", "tiny-llama", "-t", "72,105", "-n", "3", "-r", "onnx", "--provider", "cpu", "--json"
    )
    rows = [json.loads(line) for line in out.splitlines()]
    code2, spec_out, _ = run(capsys, "step", "-m", "tiny-llama", "-t", "72,105", "-n", "3", "--json")
    spec_rows = [json.loads(line) for line in spec_out.splitlines()]
    assert code == code2 == 0 and [r["sampled"] for r in rows] == [r["sampled"] for r in spec_rows]


@pytest.mark.parametrize(
    "argv, message",
    [
        (["generate", "-m", "tiny-llama", "-t", "1", "--runtime", "tpu"], "unknown runtime 'tpu'"),
        (["generate", "-m", "tiny-llama", "-t", "1", "-r", "onnx", "--provider", "npu"], "unknown provider 'npu'"),
        (["generate", "-m", "tiny-llama", "-t", "1", "--provider", "cuda"], "applies to --runtime onnx"),
        (["export", "-m", "no-such-model", "-o", "x"], "no built-in model or checkpoint directory"),
    ],
)
def test_errors_are_one_line_exit_2(capsys, argv, message):
    code, out, err = run(capsys, *argv)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1


def test_exported_folder_with_spec_runtime_is_refused(capsys, tmp_path):
    assert run(capsys, "export", "-m", "tiny-gpt2", "-o", str(tmp_path / "g"))[0] == 0
    code, _, err = run(capsys, "generate", "-m", str(tmp_path / "g"), "-t", "1", "--runtime", "spec")
    assert code == 2 and "run it with --runtime onnx" in err
    code, _, err = run(capsys, "export", "-m", "tiny-gpt2", "-o", str(tmp_path / "g"))
    assert code == 2 and "exists and is not empty" in err


def test_help_fits_one_screen(capsys):
    for cmd in ("export", "generate", "step"):
        code, out, _ = run(capsys, cmd, "--help")
        assert code == 0 and len(out.splitlines()) <= 40 and "Examples" in out
