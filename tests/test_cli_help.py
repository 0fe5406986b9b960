"""Every help text fits one screen and shows examples; errors from the real executable carry no traceback."""

from __future__ import annotations

import subprocess

import pytest
from terminal import LMSTEP

from lmstep.runtime.cli import COMMANDS, main


@pytest.mark.parametrize("command", [[]] + [[c] for c in COMMANDS])
def test_help_fits_one_screen_with_examples(capsys, command):
    assert main(command + ["--help"]) == 0
    out = capsys.readouterr().out
    assert len(out.splitlines()) <= 40, out
    assert "Example" in out
    assert max(len(line) for line in out.splitlines()) <= 100


def test_bare_lmstep_prints_help(capsys):
    assert main([]) == 0
    assert "Commands:" in capsys.readouterr().out


def test_the_executable_prints_one_line_errors(tmp_path):
    (tmp_path / "t.jsonl").write_text("exists\n")
    for args in (
        ["step", "-m", "tiny-llama", "--tokens", "999"],
        ["trace", "-m", "tiny-llama", "-p", "a", "-o", "t.jsonl"],
        ["step", "--bogus"],
    ):
        r = subprocess.run([LMSTEP, *args], capture_output=True, text=True, cwd=tmp_path, timeout=60)
        assert r.returncode == 2, r.stderr
        assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr and r.stderr.startswith("lmstep: error: ")
