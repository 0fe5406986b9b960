"""``lmstep check`` and counterexample replay through the real entry point, and the pytest plugin."""

import json

import pytest

from lmstep.runtime.cli import main

pytest_plugins = ["pytester"]
FAST = ["--examples", "3"]


def test_check_passes_and_fails_with_exit_codes(tmp_path, capsys):
    assert main(["check", "-m", "tiny-mamba", "--impl", "spec", "--skip-law", "batch", *FAST]) == 0
    printed = capsys.readouterr().out
    assert "PASS" in printed and "4 runs (1 coverage run + 3 explored)" in printed
    assert "skipped on request (--skip-law): batch" in printed
    out = tmp_path / "cex.json"
    assert main(["check", "-m", "tiny-mamba", "--impl", "mutant:conv-not-shifted", "--out", str(out)]) == 1
    printed = capsys.readouterr().out
    assert "FAIL" in printed and f"lmstep replay {out}" in printed
    doc = json.loads(out.read_text())
    assert doc["format"] == "lmstep-counterexample" and doc["version"] == 2 and doc["ops"][0]["op"] == "init"
    assert doc["environment"]["runtime"] == "spec" and doc["environment"]["numpy"] and doc["skip_laws"] == []


def test_a_law_not_exercised_fails_until_skipped_and_the_skip_is_recorded(tmp_path, capsys):
    assert main(["check", "-m", "tiny-llama", "--impl", "spec", *FAST]) == 1
    printed = capsys.readouterr().out
    assert "batch: not exercised (the implementation does not declare 'batch')" in printed
    assert "--skip-law batch" in printed
    out = tmp_path / "cex.json"
    argv = ["check", "-m", "tiny-llama", "--impl", "mutant:rope-restart", "--skip-law", "batch", "--out", str(out)]
    assert main(argv) == 1
    assert json.loads(out.read_text())["skip_laws"] == ["batch"]
    capsys.readouterr()
    assert main(["check", "-m", "tiny-llama", "--impl", "spec", "--skip-law", "batches"]) == 2
    assert "no such checker law" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["rand-shifted", "temperature-after-top-p"])
def test_sampler_bugs_fail_at_the_default_settings(capsys, name):
    """Before protocol 2 a greedy --model never sampled, so these passed with exit status 0."""
    assert main(["check", "-m", "tiny-llama", "--impl", f"mutant:{name}", *FAST]) == 1
    assert "first failure: sampler" in capsys.readouterr().out


def test_an_l2_engine_passes_level_l2_and_not_l1(capsys):
    argv = ["check", "-m", "tiny-llama", "--impl", "mutant:fp16-kv-cache", "--skip-law", "batch", *FAST]
    assert main([*argv, "--level", "L2"]) == 0
    assert main([*argv, "--level", "L1"]) == 1
    assert main([*argv, "--level", "L3"]) == 0


def test_replay_locates_the_divergence_and_the_spec_replays_clean(tmp_path, capsys):
    out = tmp_path / "cex.json"
    main(["check", "-m", "tiny-llama", "--impl", "mutant:kv-not-appended", "--out", str(out)])
    capsys.readouterr()
    assert main(["replay", str(out)]) == 1
    printed = capsys.readouterr().out
    assert "DIVERGED" in printed and "first state tensor that differs: past_key_values.0.key" in printed
    assert main(["replay", str(out), "--impl", "spec"]) == 0
    assert "OK: every op agrees" in capsys.readouterr().out


def test_existing_out_file_is_not_overwritten(tmp_path, capsys):
    out = tmp_path / "cex.json"
    out.write_text("keep me")
    assert main(["check", "-m", "tiny-llama", "--impl", "mutant:rope-restart", "--out", str(out)]) == 2
    assert "exists; pass --force" in capsys.readouterr().err and out.read_text() == "keep me"


def test_json_report(capsys):
    argv = ["check", "-m", "tiny-gpt2", "--impl", "spec", "--skip-law", "batch", "--json", *FAST]
    assert main(argv) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["passed"] and doc["laws"]["unrolled"]["level"] == "L0" and doc["counterexample_file"] is None
    assert doc["skipped_laws"] == ["batch"] and "batch" not in doc["laws"] and doc["runs"] == 4
    assert doc["laws"]["split"]["coverage"]["deepest"] > 512 and doc["operations"]["fork"] >= 1


def test_help_lists_every_level():
    from typer.testing import CliRunner

    from lmstep.runtime.cli import app

    out = CliRunner().invoke(app, ["check", "--help"], terminal_width=100).output
    assert "L0, L1, L2 or L3" in out and "--skip-law" in out and "L3 distribution" in out


def test_pytest_plugin_fixture(pytester):
    pytester.makepyfile(
        """
        def test_spec_conforms(lmstep_check):
            report = lmstep_check("tiny-gpt2", "spec", level="L0", skip_laws=["batch"])
            assert report.passed

        def test_mutant_fails(lmstep_check):
            lmstep_check("tiny-gpt2", "mutant:causal-mask-off-by-one")

        def test_unexercised_law_fails(lmstep_check):
            lmstep_check("tiny-gpt2", "spec")
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, failed=2)
    result.stdout.fnmatch_lines(["*does not conform at L1*", "*replay it with: lmstep replay*", "*not exercised*"])


def test_progress_without_a_terminal_is_a_plain_line_for_long_checks(capsys, monkeypatch):
    """A check that runs long (a real-size checkpoint) prints a progress line on stderr every PROGRESS_EVERY_S
    seconds when stderr is not a terminal; stdout (the report) is unchanged. Control: a short check prints none."""
    from lmstep.runtime.commands import check

    argv = ["check", "-m", "tiny-gpt2", "--impl", "spec", "--examples", "3", "--skip-law", "batch", "--json"]
    assert main(argv) == 0
    quiet = capsys.readouterr()
    assert "lmstep: checking" not in quiet.err
    monkeypatch.setattr(check, "PROGRESS_EVERY_S", 0.0)
    assert main(argv) == 0
    loud = capsys.readouterr()
    lines = [line for line in loud.err.splitlines() if line.startswith("lmstep: checking spec")]
    assert lines and all(" operations, " in line and "run " in line for line in lines)
    assert json.loads(loud.out)["passed"] and json.loads(loud.out)["runs"] == json.loads(quiet.out)["runs"]
