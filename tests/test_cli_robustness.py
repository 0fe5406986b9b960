"""The command line on a newcomer's machine, through its real entry point (cli.main, or the console script):
reproducibility recorded and scoped, exit codes that tell "diverged" from "unreadable", nothing the user had
lost or created behind their back, limits checked before the work, and the rough edges (--version, permissions,
benchmarks' --help)."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from fuzzing import cli

from lmstep.runtime.cli import main

ROOT = Path(__file__).resolve().parents[1]
TRACE = ["trace", "-m", "tiny-llama", "--prompt", "Hi", "--steps", "4", "-T", "0.8", "--seed", "2"]


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("LMSTEP_CACHE", str(tmp_path / "cache"))


def lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def write_lines(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture(scope="module")
def trace_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("t") / "t.jsonl"
    assert main([*TRACE, "--out", str(path)]) == 0
    return path


# -- 2. reproducibility: runtime, provider and environment recorded; bitwise only where it holds -----------------
def test_a_trace_recorded_on_onnx_replays_on_onnx(tmp_path, capsys):
    path = tmp_path / "o.jsonl"
    code, out, _ = cli(capsys, [*TRACE, "-r", "onnx", "--provider", "cpu", "--out", path], "trace -r onnx")
    meta = lines(path)[0]["#meta"]
    assert code == 0 and meta["runtime"] == "onnx" and meta["provider"] == "cpu"
    assert meta["environment"]["onnxruntime"] and meta["environment"]["onnxruntime_threads"] == 1
    code, out, _ = cli(capsys, ["replay", path], "replay of an onnx trace")
    assert code == 0 and "runtime onnx, provider cpu" in out and "OK: 4 of 4 ops bitwise" in out
    assert "comparing bitwise: the numeric environment matches" in out
    # on the spec instead: another computation, so compared at the documented tolerance, and said so
    code, out, _ = cli(capsys, ["replay", path, "-r", "spec"], "replay of an onnx trace on the spec")
    assert code == 0 and "runtime onnx -> spec" in out and "L1 tolerance of llama (atol = rtol = 2e-05)" in out
    code, out, _ = cli(capsys, ["replay", path, "-r", "spec", "--bitwise"], "--bitwise")
    assert code == 1 and "DIVERGED" in out  # the bits do differ: the tolerance was needed


def test_environment_difference_is_named_and_the_comparison_scoped(trace_file, tmp_path, capsys):
    rows = lines(trace_file)
    rows[0]["#meta"]["environment"]["blas"][0]["kernel"] = "Prescott"
    rows[0]["#meta"]["environment"]["numpy"] = "1.0.0"
    code, out, _ = cli(capsys, ["replay", write_lines(tmp_path / "e.jsonl", rows)], "another environment")
    why = out.splitlines()[1]
    assert code == 0 and why.startswith("comparing at the L1 tolerance of llama")
    assert "numpy 1.0.0 -> " in why and "BLAS kernel Prescott -> " in why


def test_format_version_1_traces_still_replay(trace_file, tmp_path, capsys):
    rows = lines(trace_file)[:-1]  # no end record
    for key in ("runtime", "provider", "environment"):
        del rows[0]["#meta"][key]
    rows[0]["#meta"]["format_version"] = 1
    code, out, _ = cli(capsys, ["replay", write_lines(tmp_path / "v1.jsonl", rows)], "a v1 trace")
    assert code == 0 and "format version 1" in out and "OK: 4 of 4 ops bitwise" in out


OTHER_KERNELS = {"x86_64": ["Haswell", "Sandybridge", "Nehalem", "Prescott"], "aarch64": ["ARMV8", "NEOVERSEN1"]}


def test_replay_under_another_blas_kernel(trace_file):
    """The issue's case: a trace recorded with one OpenBLAS kernel, replayed with another on the same machine
    (OPENBLAS_CORETYPE, in a child that inherits everything else): the replay names the kernel change and
    compares at the tolerance (exit 0); --bitwise shows the bits differ or not, whichever is true."""
    from lmstep.runtime.environment import blas

    here = [b["kernel"] for b in blas()]
    if not here or blas()[0]["library"] != "openblas":
        pytest.skip(f"numpy's BLAS here is {blas()}: OPENBLAS_CORETYPE does not apply")
    import platform

    other = next((k for k in OTHER_KERNELS.get(platform.machine(), []) if k not in here), None)
    if other is None:
        pytest.skip(f"no other OpenBLAS kernel known for {platform.machine()}")
    env = {**os.environ, "OPENBLAS_CORETYPE": other}
    run = [sys.executable, "-m", "lmstep.runtime.cli", "replay", str(trace_file)]
    child = subprocess.run(run, capture_output=True, text=True, env=env, timeout=300)
    if f"-> {other}" not in child.stdout:
        pytest.skip(f"this OpenBLAS did not switch to {other} (OPENBLAS_CORETYPE ignored): {child.stdout[:300]}")
    assert child.returncode == 0 and "comparing at the L1 tolerance" in child.stdout, child.stdout + child.stderr
    assert f"BLAS kernel {here[0]} -> {other}" in child.stdout


def test_counterexamples_record_the_environment_and_version_1_still_reads(tmp_path, capsys):
    out = tmp_path / "cex.json"
    code, _, _ = cli(capsys, ["check", "-m", "tiny-mamba", "--impl", "mutant:conv-not-shifted", "--out", out], "check")
    doc = json.loads(out.read_text())
    assert code == 1 and doc["version"] == 2 and doc["environment"]["blas"]
    code, text, _ = cli(capsys, ["replay", out], "replay v2")
    assert code == 1 and "FAIL: first divergence" in text and "does not record" not in text
    doc["version"] = 1
    del doc["environment"]
    (tmp_path / "v1.json").write_text(json.dumps(doc))
    code, text, _ = cli(capsys, ["replay", tmp_path / "v1.json"], "replay v1")
    assert code == 1 and "does not record the environment" in text and "FAIL: first divergence" in text


# -- 3/5. exit codes, truncation, limits before the work ----------------------------------------------------------
def test_truncated_and_header_only_traces_are_input_errors(trace_file, tmp_path, capsys):
    rows = lines(trace_file)
    cases = {
        "cut at a line boundary": rows[:-2],
        "end record missing": rows[:-1],
        "header only": rows[:1],
        "header and end only": [rows[0], {"#end": {"ops": 0}}],
        "end record miscounts": rows[:2] + rows[3:-1] + [{"#end": {"ops": 3}}],
    }
    for what, content in cases.items():
        code, _, err = cli(capsys, ["replay", write_lines(tmp_path / "x.jsonl", content)], what)
        assert code == 2 and ("truncated" in err or "no ops" in err or "#meta" in err or "end record" in err), what


def test_diverged_is_1_and_unreadable_is_2(trace_file, tmp_path, capsys):
    rows = lines(trace_file)
    rows[2]["token"] = (rows[2]["token"] + 1) % 256
    assert cli(capsys, ["replay", write_lines(tmp_path / "d.jsonl", rows)], "diverged")[0] == 1
    rows[2]["token"] = True  # a bool where an id belongs: malformed, not a divergence
    assert cli(capsys, ["replay", write_lines(tmp_path / "m.jsonl", rows)], "malformed")[0] == 2
    (tmp_path / "b.jsonl").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\xff")
    code, _, err = cli(capsys, ["replay", tmp_path / "b.jsonl"], "binary")
    assert code == 2 and "not a text file" in err


@pytest.mark.parametrize(
    "field, value",
    [("top", None), ("#meta", []), ("pos", []), ("pos", "0xzz"), ("id", True)],
)
def test_the_issues_trace_crashes_are_one_line_errors(trace_file, tmp_path, capsys, field, value):
    rows = lines(trace_file)
    op = rows[2]
    if field == "top":
        op["logits"]["top"][0] = value
    elif field == "id":
        op["logits"]["top"][0]["id"] = value
    else:
        op[field] = value
    code, _, err = cli(capsys, ["replay", write_lines(tmp_path / "x.jsonl", rows)], f"{field} = {value!r}")
    assert code == 2 and ":3:" in err  # names the line


@pytest.fixture(scope="module")
def cex_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("c") / "cex.json"
    assert main(["check", "-m", "tiny-mamba", "--impl", "mutant:conv-not-shifted", "--out", str(path)]) == 1
    return path


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda d: d["ops"][-1].update(op={"#bigint": "-1"}), "unknown operation"),
        (lambda d: d.update(impl=[1]), "impl must be"),
        (lambda d: d.update(version=True), "version True is not supported"),
        (lambda d: d["model"]["sampler"].update(temperature={"#bigint": "-1"}), "temperature"),
        (lambda d: d["ops"][0].update(new=None), "field 'new'"),
    ],
)
def test_the_issues_counterexample_crashes_are_one_line_errors(cex_file, tmp_path, capsys, change, message):
    doc = json.loads(cex_file.read_text())
    change(doc)
    (tmp_path / "x.json").write_text(json.dumps(doc))
    code, _, err = cli(capsys, ["replay", tmp_path / "x.json"], message)
    assert code == 2 and message in err


def test_limits_are_checked_before_any_work(tmp_path, capsys, monkeypatch):
    from lmstep.spec.model import Model

    def no_work(*args, **kwargs):
        raise AssertionError("the model ran before the limit was checked")

    monkeypatch.setattr(Model, "prefill", no_work)
    monkeypatch.setattr(Model, "step", no_work)
    for argv in (
        ["trace", "-m", "tiny-llama", "-n", "5000", "-o", tmp_path / "t.jsonl"],
        ["trace", "-m", "tiny-llama", "-n", "4093", "--stepwise", "-o", tmp_path / "t.jsonl"],
        ["generate", "-m", "tiny-gpt2", "-t", "1,2", "-n", "5000"],
        ["step", "-m", "tiny-llama", "-t", "1,2", "-n", "5000"],
    ):
        code, _, err = cli(capsys, argv, " ".join(map(str, argv)))
        assert code == 2 and "beyond the model's context of 4096" in err
    assert not (tmp_path / "t.jsonl").exists()


@pytest.mark.parametrize(
    "argv, message",
    [
        (["generate", "-m", "tiny-llama", "--tokens", "1,,2"], "entry 2 is empty"),
        (["generate", "-m", "tiny-llama", "--tokens", "1,"], "entry 2 is empty"),
        (["generate", "-m", "tiny-llama", "--tokens", "\u0663"], "not an integer"),
        (["step", "-m", "tiny-llama", "-i", "--json"], "does not apply with --interactive"),
        (["step", "-m", "tiny-llama", "-i"], "needs a terminal"),
        (["prove", "--force"], "--force applies to --smt2"),
        (["prove", "--list", "--smt2", "x"], "--list runs nothing"),
        (["check", "-m", "tiny-llama", "--impl", "spec", "--timeout", "3"], "--timeout applies to cmd:"),
        (["check", "-m", "tiny-llama", "--impl", "spec", "--provider", "cpu"], "--provider applies to onnx"),
    ],
)
def test_bad_and_inapplicable_options_are_usage_errors(capsys, argv, message):
    code, _, err = cli(capsys, argv, " ".join(argv))
    assert code == 2 and message in err


def test_replay_refuses_options_for_the_other_file_kind(trace_file, tmp_path, capsys):
    code, _, err = cli(capsys, ["replay", trace_file, "--impl", "onnx"], "--impl on a trace")
    assert code == 2 and "--impl applies to counterexamples" in err
    out = tmp_path / "cex.json"
    cli(capsys, ["check", "-m", "tiny-mamba", "--impl", "mutant:conv-not-shifted", "--out", out], "check")
    for flag in (["--runtime", "spec"], ["--atol", "1e-3"], ["--bitwise"], ["--provider", "cpu"]):
        code, _, err = cli(capsys, ["replay", out, *flag], f"{flag} on a counterexample")
        assert code == 2 and "apply to golden traces" in err


# -- tracebacks the issue found ------------------------------------------------------------------------------
def test_a_python_factory_that_raises_is_one_line(tmp_path, capsys, monkeypatch):
    (tmp_path / "bad_engines.py").write_text(
        "def boom(model):\n    raise RuntimeError('no GPU here')\n"
        "def not_impl(model):\n    return object()\n"
        "notcallable = 3\n"
    )
    (tmp_path / "broken_import.py").write_text("raise ValueError('half-written module')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    for target, message in (
        ("bad_engines:boom", "the factory raised RuntimeError: no GPU here"),
        ("bad_engines:not_impl", "the implementation lacks"),
        ("bad_engines:notcallable", "is not callable"),
        ("broken_import:f", "raised ValueError: half-written module"),
    ):
        code, _, err = cli(capsys, ["check", "-m", "tiny-llama", "--impl", f"python:{target}"], target)
        assert code == 2 and message in err, err


def test_unbalanced_quote_in_a_cmd_impl_is_a_finding_not_a_crash(capsys):
    code, _, err = cli(capsys, ["check", "-m", "tiny-llama", "--impl", 'cmd:python "unclosed'], "unbalanced")
    assert code == 2 and "cannot split" in err


# -- 4. nothing lost, nothing created behind the user's back ------------------------------------------------
def test_outputs_refuse_folders_empty_names_and_missing_parents(tmp_path, capsys):
    (tmp_path / "d").mkdir()
    for out, message in (
        (tmp_path / "d", "is a folder"),
        ("", "empty"),
        (tmp_path / "a" / "b" / "t.jsonl", "does not exist; create it first (mkdir -p"),
    ):
        for force in ([], ["--force"]):
            code, _, err = cli(capsys, [*TRACE, "--out", out, *force], f"--out {out!r} {force}")
            assert code == 2 and message in err
    code, _, err = cli(capsys, ["export", "-m", "tiny-mamba", "--out", tmp_path / "x" / "y"], "export a/b")
    assert code == 2 and "does not exist" in err
    assert not (tmp_path / "a").exists() and not (tmp_path / "x").exists()


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs /proc (Linux) for an unwritable folder as root")
def test_an_unwritable_output_fails_before_the_work(tmp_path, capsys, monkeypatch):
    from lmstep.spec.model import Model

    monkeypatch.setattr(Model, "prefill", lambda *a, **k: (_ for _ in ()).throw(AssertionError("work started")))
    code, _, err = cli(capsys, [*TRACE, "--out", "/proc/self/lmstep-trace.jsonl"], "trace into /proc")
    assert code == 2 and "cannot write /proc/self/lmstep-trace.jsonl" in err
    argv = ["check", "-m", "tiny-llama", "--impl", "spec", "--out", "/proc/self/cex.json"]
    code, _, err = cli(capsys, argv, "check into /proc")
    assert code == 2 and "cannot write" in err


def test_files_get_the_umask_mode_and_export_folders_0755(tmp_path, capsys):
    old = os.umask(0o022)
    try:
        cli(capsys, [*TRACE, "--out", tmp_path / "t.jsonl"], "trace")
        cli(capsys, ["export", "-m", "tiny-mamba", "--out", tmp_path / "e"], "export")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "t.jsonl").stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "e").stat().st_mode) == 0o755
    assert {stat.S_IMODE(f.stat().st_mode) for f in (tmp_path / "e").iterdir()} == {0o644}


def test_export_force_replaces_only_what_it_wrote(tmp_path, capsys):
    folder = tmp_path / "e"
    cli(capsys, ["export", "-m", "tiny-mamba", "--out", folder, "--external"], "export --external")
    assert (folder / "weights.data").exists()
    (folder / "notes.txt").write_text("mine\n")
    (folder / "old-run.onnx").write_text("also mine\n")
    code, _, err = cli(capsys, ["export", "-m", "tiny-mamba", "--out", folder], "export again")
    assert code == 2 and "--force" in err
    code, out, _ = cli(capsys, ["export", "-m", "tiny-mamba", "--out", folder, "--inline", "--force"], "--force")
    assert code == 0 and "notes.txt" not in out
    names = {p.name for p in folder.iterdir()}
    assert {"notes.txt", "old-run.onnx", "lmstep.json", "step.onnx", "model.onnx"} <= names
    assert "weights.data" not in names  # written by the earlier export, not by this one: removed
    assert set(json.loads((folder / "lmstep.json").read_text())["files"]) == names - {"notes.txt", "old-run.onnx"}
    code, _, _ = cli(capsys, ["generate", "-m", folder, "-t", "1,2", "-n", "3", "--provider", "cpu"], "run it")
    assert code == 0
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "a.txt").write_text("x")
    code, _, err = cli(capsys, ["export", "-m", "tiny-mamba", "--out", tmp_path / "mine", "--force"], "not ours")
    assert code == 2 and "never other folders" in err and (tmp_path / "mine" / "a.txt").exists()


def test_prove_smt2_never_overwrites_and_refuses_a_file(tmp_path, capsys):
    only = ["prove", "--only", "scan/combine-assoc-scalar"]
    folder = tmp_path / "smt2"
    assert cli(capsys, [*only, "--smt2", folder], "prove --smt2 new")[0] == 0
    written = folder / "scan__combine-assoc-scalar.smt2"
    written.write_text("; my edit\n")
    (folder / "mine.smt2").write_text("; keep\n")
    code, _, err = cli(capsys, [*only, "--smt2", folder], "again")
    assert code == 2 and "pass --force" in err and written.read_text() == "; my edit\n"
    assert cli(capsys, [*only, "--smt2", folder, "--force"], "--force")[0] == 0
    assert written.read_text() != "; my edit\n" and (folder / "mine.smt2").read_text() == "; keep\n"
    (tmp_path / "f.txt").write_text("x")
    code, _, err = cli(capsys, [*only, "--smt2", tmp_path / "f.txt"], "--smt2 FILE")
    assert code == 2 and "a file, not a folder" in err
    code, _, err = cli(capsys, [*only, "--smt2", tmp_path / "a" / "b"], "--smt2 a/b")
    assert code == 2 and "does not exist" in err and not (tmp_path / "a").exists()


def test_the_stepper_shows_a_write_error_and_keeps_every_branch(tmp_path):
    from lmstep.runtime.stepper.keys import apply_key
    from lmstep.runtime.stepper.session import Session
    from lmstep.spec import load

    session = Session.start(load("tiny-llama", temperature=0.8), [72, 105], 1).advance(3).fork(seed=5).forward()
    (tmp_path / "taken.jsonl").write_text("keep me\n")
    for path, message in (
        (str(tmp_path / "no" / "such" / "t.jsonl"), "does not exist"),
        (str(tmp_path / "taken.jsonl"), "exists; pass --force"),
        (str(tmp_path), "is a folder"),
    ) + ((("/proc/self/t.jsonl", "cannot write"),) if Path("/proc/self").is_dir() else ()):
        after, shown, quit_ = apply_key(session, "w", lambda prompt, p=path: p)
        assert after is session and not quit_ and message in str(shown) and str(shown).startswith("error:")
    assert (tmp_path / "taken.jsonl").read_text() == "keep me\n"
    fresh = Session.start(load("tiny-llama"), [72], 1)
    _, shown, _ = apply_key(fresh, "w", lambda prompt: str(tmp_path / "empty.jsonl"))
    assert "nothing to write" in str(shown) and not (tmp_path / "empty.jsonl").exists()


# -- 6. rough edges ------------------------------------------------------------------------------------------
def test_version(capsys):
    from importlib.metadata import version

    code, out, _ = cli(capsys, ["--version"], "--version")
    assert code == 0 and out == f"lmstep {version('lmstep')}\n"


def test_console_script_exit_codes_and_no_traceback(tmp_path):
    """The installed `lmstep` (entry()), not just main(): 2 for a usage error, with one line."""
    lmstep = Path(sys.executable).parent / "lmstep"
    if not lmstep.exists():
        pytest.skip("the lmstep console script is not installed beside this interpreter (pip install -e .)")
    bad = subprocess.run([str(lmstep), "replay", str(tmp_path / "missing.jsonl")], capture_output=True, text=True)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "Traceback" not in bad.stderr


def test_prove_progress_is_a_bar_on_a_terminal_and_silent_in_a_pipe(capsys):
    import pexpect
    from terminal import Terminal

    code, _, err = cli(capsys, ["prove", "--only", "scan/combine-assoc"], "prove piped")
    assert code == 0 and err == ""  # no dots, no bar in a pipe
    t = Terminal(["prove", "--only", "scan/"])  # the bar redraws until the end, then clears: read the stream
    t.child.expect(rb"proving \x1b\[[0-9;]*m\xe2\x94\x81[^\r]* \d+/\d+", timeout=60)  # "proving ━━━ 3/30"
    t.child.expect(pexpect.EOF, timeout=120)
    t.child.close()
    assert t.child.exitstatus == 0


@pytest.mark.parametrize("script", sorted(p.name for p in (ROOT / "benchmarks").glob("*.py")))
def test_benchmarks_have_a_real_help(script):
    run = subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), "--help"], capture_output=True, text=True)
    assert run.returncode == 0 and run.stdout.startswith("usage: "), run.stderr[-500:]


def test_no_profiler_dumps_are_tracked():
    if not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True).stdout.split()
    assert not [f for f in tracked if "onnxruntime_profile_" in f]
    assert "onnxruntime_profile__*.json" in (ROOT / ".gitignore").read_text()
