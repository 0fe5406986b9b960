"""``lmstep check`` and counterexample replay through the real entry point, and the pytest plugin."""

import json

from lmstep.runtime.cli import main

pytest_plugins = ["pytester"]


def test_check_passes_and_fails_with_exit_codes(tmp_path, capsys):
    assert main(["check", "-m", "tiny-mamba", "--impl", "spec", "--examples", "5"]) == 0
    assert "PASS" in capsys.readouterr().out
    out = tmp_path / "cex.json"
    assert main(["check", "-m", "tiny-mamba", "--impl", "mutant:conv-not-shifted", "--out", str(out)]) == 1
    printed = capsys.readouterr().out
    assert "FAIL" in printed and f"lmstep replay {out}" in printed
    doc = json.loads(out.read_text())
    assert doc["format"] == "lmstep-counterexample" and doc["version"] == 2 and doc["ops"][0]["op"] == "init"
    assert doc["environment"]["runtime"] == "spec" and doc["environment"]["numpy"]


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
    assert main(["check", "-m", "tiny-gpt2", "--impl", "spec", "--examples", "8", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["passed"] and doc["laws"]["unrolled"]["level"] == "L0" and doc["counterexample_file"] is None


def test_pytest_plugin_fixture(pytester):
    pytester.makepyfile(
        """
        def test_spec_conforms(lmstep_check):
            report = lmstep_check("tiny-gpt2", "spec", level="L0")
            assert report.passed

        def test_mutant_fails(lmstep_check):
            lmstep_check("tiny-gpt2", "mutant:causal-mask-off-by-one")
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*does not conform at L1*", "*replay it with: lmstep replay*"])


def test_progress_without_a_terminal_is_a_plain_line_for_long_checks(capsys, monkeypatch):
    """A check that runs long (a real-size checkpoint) prints a progress line on stderr every PROGRESS_EVERY_S
    seconds when stderr is not a terminal; stdout (the report) is unchanged. Control: a short check prints none."""
    from lmstep.runtime.commands import check

    argv = ["check", "-m", "tiny-gpt2", "--impl", "spec", "--examples", "3", "--json"]
    assert main(argv) == 0
    quiet = capsys.readouterr()
    assert "lmstep: checking" not in quiet.err
    monkeypatch.setattr(check, "PROGRESS_EVERY_S", 0.0)
    assert main(argv) == 0
    loud = capsys.readouterr()
    lines = [line for line in loud.err.splitlines() if line.startswith("lmstep: checking spec")]
    assert lines and all(" operations, " in line and "example " in line for line in lines)
    assert json.loads(loud.out)["passed"] and json.loads(loud.out)["examples"] == json.loads(quiet.out)["examples"]
