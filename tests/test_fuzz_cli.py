"""Every file lmstep reads, fuzzed through the real command line: golden traces and counterexamples (replay),
checkpoint config.json and safetensors headers and exported folders' lmstep.json (generate -m FOLDER), and the
replies of a program under check (check --impl cmd:...). Each case is a valid file with one type-confused edit
or byte-level damage (tests/fuzzing.py); the command must give a verdict (exit 0/1) or one error line (exit 2),
never a traceback. Case counts: FUZZ_CASES per file kind (10x under --hypothesis-profile thorough), fewer where
each case starts processes or onnxruntime sessions."""

from __future__ import annotations

import json
import os
import shutil
import struct
import sys
from pathlib import Path

import pytest
from fuzzing import cli, damage, dumps_lines, edit
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lmstep.runtime.cli import main
from lmstep.runtime.stepper.session import Session
from lmstep.runtime.trace import record
from lmstep.spec import load

FUZZ_CASES = 150
THOROUGH = settings.default.max_examples >= 300


def cases(n: int) -> settings:
    return settings(
        max_examples=10 * n if THOROUGH else n,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        derandomize=not THOROUGH,  # the default run is the same every time; thorough explores
        database=None,
    )


HERE = Path(__file__).parent
FIXTURES = HERE / "fixtures" / "hf"


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """One valid file of each kind."""
    root = tmp_path_factory.mktemp("valid")
    model = load("tiny-llama", temperature=0.8, top_k=20)
    session = Session.start(model, [72, 105], 3).advance(3)
    session = session.fork(seed=9).forward().back().back().fork(token=65).forward()
    record.save(root / "trace.jsonl", model, 3, 4, record.session_ops(session, 4))
    assert main(["check", "-m", "tiny-mamba", "--impl", "mutant:conv-not-shifted", "--out", str(root / "cex.json")])
    assert main(["export", "-m", "tiny-mamba", "--out", str(root / "export")]) == 0
    return root


def _replay(capsys, path: Path, what: str) -> None:
    code, out, _ = cli(capsys, ["replay", path], what)
    if code == 0:
        assert "OK:" in out, what


@cases(FUZZ_CASES)
@given(data=st.data())
def test_replay_of_an_edited_golden_trace(files, tmp_path_factory, capsys, data):
    lines = [json.loads(line) for line in (files / "trace.jsonl").read_text().splitlines()]
    path = tmp_path_factory.mktemp("tr") / "t.jsonl"
    if data.draw(st.integers(0, 4)) == 0:
        raw, what = damage(dumps_lines(lines), data)
    else:
        i = data.draw(st.integers(0, len(lines) - 1))
        lines[i], what = edit(lines[i], data)
        raw, what = dumps_lines(lines), f"line {i + 1}: {what}"
    path.write_bytes(raw)
    _replay(capsys, path, what)


@cases(FUZZ_CASES)
@given(data=st.data())
def test_replay_of_an_edited_counterexample(files, tmp_path_factory, capsys, data):
    doc = json.loads((files / "cex.json").read_text())
    path = tmp_path_factory.mktemp("cx") / "cex.json"
    if data.draw(st.integers(0, 4)) == 0:
        raw, what = damage(json.dumps(doc).encode(), data)
    else:
        doc, what = edit(doc, data)
        raw = json.dumps(doc).encode()
    path.write_bytes(raw)
    _replay(capsys, path, what)


def _checkpoint(root: Path, name: str) -> Path:
    folder = root / name
    shutil.copytree(FIXTURES / name, folder, ignore=shutil.ignore_patterns("expected*"))
    return folder


@cases(FUZZ_CASES)
@given(data=st.data(), name=st.sampled_from(["llama-mha-tied", "gpt2-base", "mamba-base"]))
def test_generate_on_a_checkpoint_with_an_edited_config(tmp_path_factory, capsys, data, name):
    folder = _checkpoint(tmp_path_factory.mktemp("hf"), name)
    config = json.loads((folder / "config.json").read_text())
    if data.draw(st.integers(0, 4)) == 0:
        raw, what = damage(json.dumps(config).encode(), data)
    else:
        config, what = edit(config, data)
        raw = json.dumps(config).encode()
    (folder / "config.json").write_bytes(raw)
    cli(capsys, ["generate", "-m", folder, "-t", "1,2", "-n", "2"], f"{name} config.json: {what}")


@cases(FUZZ_CASES // 2)
@given(data=st.data(), name=st.sampled_from(["llama-mha-tied", "mamba-base"]))
def test_generate_on_a_checkpoint_with_an_edited_safetensors_header(tmp_path_factory, capsys, data, name):
    folder = _checkpoint(tmp_path_factory.mktemp("st"), name)
    raw = (folder / "model.safetensors").read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + n])
    if data.draw(st.integers(0, 4)) == 0:
        new, what = damage(raw, data)
    else:
        header, what = edit(header, data)
        text = json.dumps(header).encode()
        new = struct.pack("<Q", len(text)) + text + raw[8 + n :]
    (folder / "model.safetensors").write_bytes(new)
    cli(capsys, ["generate", "-m", folder, "-t", "1,2", "-n", "2"], f"{name} safetensors header: {what}")


@cases(FUZZ_CASES // 3)
@given(data=st.data(), which=st.sampled_from(["tokenizer", "index"]))
def test_generate_on_a_checkpoint_with_an_edited_tokenizer_or_shard_index(tmp_path_factory, capsys, data, which):
    name, file = {
        "tokenizer": ("gpt2-base", "tokenizer.json"),
        "index": ("llama-gqa-theta-sharded", "model.safetensors.index.json"),
    }[which]
    folder = _checkpoint(tmp_path_factory.mktemp("tk"), name)
    doc = json.loads((folder / file).read_text())
    if data.draw(st.integers(0, 4)) == 0:
        raw, what = damage(json.dumps(doc).encode(), data)
    else:
        doc, what = edit(doc, data)
        raw = json.dumps(doc).encode()
    (folder / file).write_bytes(raw)
    prompt = ["--prompt", "Hi"] if which == "tokenizer" else ["-t", "1,2"]
    cli(capsys, ["generate", "-m", folder, *prompt, "-n", "2"], f"{name} {file}: {what}")


@cases(FUZZ_CASES // 5)  # each case opens onnxruntime sessions
@given(data=st.data(), file=st.sampled_from(["step.onnx", "model.onnx"]))
def test_generate_on_an_export_with_a_damaged_graph(files, tmp_path_factory, capsys, data, file):
    folder = tmp_path_factory.mktemp("gr") / "export"
    shutil.copytree(files / "export", folder)
    raw, what = damage((folder / file).read_bytes(), data)
    (folder / file).write_bytes(raw)
    cli(capsys, ["generate", "-m", folder, "-t", "1,2", "-n", "2", "--provider", "cpu"], f"{file}: {what}")


@cases(FUZZ_CASES // 3)  # each case opens two onnxruntime sessions
@given(data=st.data())
def test_generate_on_an_export_with_an_edited_manifest(files, tmp_path_factory, capsys, data):
    folder = tmp_path_factory.mktemp("ex") / "export"
    folder.mkdir()
    for f in (files / "export").iterdir():
        if f.name != "lmstep.json":
            os.symlink(f, folder / f.name)
    manifest = json.loads((files / "export" / "lmstep.json").read_text())
    if data.draw(st.integers(0, 4)) == 0:
        raw, what = damage(json.dumps(manifest).encode(), data)
    else:
        manifest, what = edit(manifest, data)
        raw = json.dumps(manifest).encode()
    (folder / "lmstep.json").write_bytes(raw)
    cli(capsys, ["generate", "-m", folder, "-t", "1,2", "-n", "2", "--provider", "cpu"], f"lmstep.json: {what}")


REPLY_FIELDS = {  # reply index (0 = hello) -> fields an edit may hit
    0: [["vocab_size"], ["capabilities"], ["capabilities", 0], ["id"], ["ok"], []],
    1: [["handle"], ["id"], []],
    2: [["handle"], ["logits"], ["logits", "shape"], ["logits", "b64"], ["logits", "dtype"], []],
    3: [["handle"], ["logits"], ["token"], ["arrays"], []],
}


@cases(12)  # each case starts a program under check
@given(
    reply=st.integers(0, 3),
    data=st.data(),
)
def test_check_of_a_program_whose_reply_is_edited(tmp_path_factory, capsys, reply, data):
    from fuzzing import CONFUSED

    how = data.draw(st.sampled_from(["value", "delete", "raw"]))
    if how == "raw":
        spoil = {"reply": reply, "raw": data.draw(st.sampled_from(["", "null", "[]", "{", '"x"', "1e999", "\x00"]))}
    else:
        path = data.draw(st.sampled_from(REPLY_FIELDS[reply]))
        if how == "delete" and path:
            spoil = {"reply": reply, "delete": path}
        else:
            spoil = {"reply": reply, "path": path, "value": data.draw(st.sampled_from(CONFUSED))}
    spoil_file = tmp_path_factory.mktemp("spoil") / "spoil.json"
    spoil_file.write_text(json.dumps(spoil))
    program = f"{sys.executable} {HERE / 'fuzz_engine.py'} {spoil_file}"
    argv = ["check", "-m", "tiny-llama", "--impl", f"cmd:{program}", "--examples", "2", "--steps", "3"]
    cli(capsys, argv + ["--timeout", "20"], f"reply {reply}: {spoil}")


@cases(FUZZ_CASES)
@given(
    tokens=st.one_of(
        st.text(max_size=12), st.sampled_from(["1,,2", "1,", ",", "\u0663", "1_0", " 7 ", "-1", "9" * 30])
    ),
    temperature=st.sampled_from(["0", "0.8", "-1", "nan", "inf", "1e40", "x"]),
    top_p=st.sampled_from(["1", "0.5", "0", "2", "nan"]),
    top_k=st.sampled_from(["0", "5", "-3", "99999999999999999999"]),
    seed=st.sampled_from(["0", "18446744073709551615", "18446744073709551616", "-1", "x"]),
    steps=st.sampled_from(["0", "3", "-1", "100000"]),
)
def test_generate_with_any_option_values(capsys, tokens, temperature, top_p, top_k, seed, steps):
    argv = ["generate", "-m", "tiny-gpt2", "--tokens", tokens, "-T", temperature, "--top-p", top_p]
    argv += ["--top-k", top_k, "--seed", seed, "-n", steps]
    cli(capsys, argv, " ".join(argv))


def test_the_contract_catches_a_traceback(capsys, monkeypatch):
    """Negative control: a reader that raises an unexpected exception fails the contract (it becomes lmstep's
    one-line internal error, which cli() refuses)."""
    from lmstep.runtime.trace import schema

    monkeypatch.setattr(schema, "read", lambda path: {}["boom"])
    with pytest.raises(AssertionError, match="internal error"):
        cli(capsys, ["replay", HERE / "conftest.py"], "a broken reader")
