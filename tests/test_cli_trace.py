"""`lmstep trace` then `lmstep replay`: a recorded trace passes; a tampered one diverges at the right op."""

from __future__ import annotations

import json

import pytest

from lmstep.runtime.cli import main
from lmstep.spec import load

ARGS = ["-m", "tiny-llama", "--prompt", "Hello", "--steps", "6", "-T", "0.8", "--seed", "4"]


def run(capsys, *args: str) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    path = tmp_path_factory.mktemp("trace") / "golden.jsonl"
    assert main(["trace", *ARGS, "--out", str(path)]) == 0
    return path


def lines(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def tamper(src, dst, index, change):
    rows = lines(src)
    change(rows[index + 1])  # +1: line 0 is the header
    dst.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return dst


def test_trace_records_what_generate_computes(recorded, capsys):
    meta, *ops, end = lines(recorded)
    assert meta["#meta"]["format"] == "lmstep-trace" and meta["#meta"]["format_version"] == 2
    assert end == {"#end": {"ops": 6}}
    assert meta["#meta"]["runtime"] == "spec" and meta["#meta"]["environment"]["blas"]
    assert meta["#meta"]["model"]["name"] == "tiny-llama" and meta["#meta"]["seed"] == {"#bigint": "4"}
    assert meta["#meta"]["sampler"]["temperature"] == {"f32": "0x3f4ccccd"}  # 0.8 as float32
    assert [op["kind"] for op in ops] == ["prefill"] + ["step"] * 5
    assert [op["from"] for op in ops] == list(range(-1, 5))
    expected = load("tiny-llama", temperature=0.8).generate(list(b"Hello"), 6, seed=4)
    assert [op["token"] for op in ops] == expected
    assert all(len(op["logits"]["top"]) == 5 and len(op["state"]["tensors"]) == 4 for op in ops)


def test_replay_of_a_fresh_trace_is_bitwise(recorded, capsys):
    code, out, _ = run(capsys, "replay", recorded)
    assert code == 0 and out.count("  bitwise\n") == 6 and "OK: 6 of 6 ops bitwise" in out


def test_stepwise_trace_replays(tmp_path, capsys):
    path = tmp_path / "s.jsonl"
    assert (
        run(capsys, "trace", "-m", "tiny-mamba", "--tokens", "1,2,3", "--steps", "2", "--stepwise", "-o", path)[0] == 0
    )
    assert [op["kind"] for op in lines(path)[1:-1]] == ["step"] * 4
    code, out, _ = run(capsys, "replay", path)
    assert code == 0 and "OK: 4 of 4 ops bitwise" in out


def test_changed_logit_byte_diverges_at_that_op(recorded, tmp_path, capsys):
    def flip_last_hex_digit(op):
        h = op["logits"]["top"][0]["logit"]["f32"]
        op["logits"]["top"][0]["logit"]["f32"] = h[:-1] + ("1" if h[-1] == "0" else "0")

    path = tamper(recorded, tmp_path / "logit.jsonl", 3, flip_last_hex_digit)
    code, out, _ = run(capsys, "replay", path)
    assert code == 1
    assert "first: op 3 (step at position 7): logit of token" in out and "1 of 6 ops diverged" in out
    # the same one-ulp change is accepted within a tolerance, and reported as "close"
    code, out, _ = run(capsys, "replay", path, "--atol", "1e-4")
    assert code == 0 and "1 within tolerance" in out and " close " in out


def test_changed_token_diverges_at_that_op(recorded, tmp_path, capsys):
    path = tamper(recorded, tmp_path / "token.jsonl", 2, lambda op: op.update(token=(op["token"] + 1) % 256))
    code, out, _ = run(capsys, "replay", path)
    assert code == 1 and "first: op 2 (step at position 6): sampled token" in out


def test_changed_input_diverges_in_the_state(recorded, tmp_path, capsys):
    path = tamper(recorded, tmp_path / "input.jsonl", 4, lambda op: op.update(input=(op["input"] + 1) % 256))
    code, out, _ = run(capsys, "replay", path, "--atol", "1e-3")
    assert code == 1 and "first: op 4" in out


def test_changed_state_digest_names_the_tensor(recorded, tmp_path, capsys):
    def corrupt(op):
        op["state"]["digest"] = "0" * 16
        op["state"]["tensors"][1]["sha256"] = "0" * 64

    code, out, _ = run(capsys, "replay", tamper(recorded, tmp_path / "state.jsonl", 1, corrupt))
    assert code == 1 and "first: op 1 (step at position 5): state differs: first tensor past_key_values.0.value" in out


def test_other_weights_diverge_at_the_header(recorded, tmp_path, capsys):
    rows = lines(recorded)
    rows[0]["#meta"]["model"]["weights_sha256"] = "0" * 64
    path = tmp_path / "w.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    code, out, _ = run(capsys, "replay", path)
    assert code == 1 and "DIVERGED at the header: model weights_sha256 differs" in out


@pytest.mark.parametrize(
    "content, message",
    [
        ("not json\n", ":1: not JSON"),
        ('{"#meta": {"format": "other"}}\n', "format is 'other'"),
        (
            '{"#meta": {"format": "lmstep-trace", "format_version": 9}}\n',
            "format_version 9 is not one this lmstep reads",
        ),
        ('{"#meta": {"format": "lmstep-trace", "format_version": 1}}\n{"kind": "jump"}\n', '"model" must be'),
    ],
)
def test_unreadable_traces_are_one_line_errors(tmp_path, capsys, content, message):
    path = tmp_path / "bad.jsonl"
    path.write_text(content)
    code, out, err = run(capsys, "replay", path)
    assert code == 2 and err.count("\n") == 1 and message in err


def test_existing_out_needs_force(recorded, tmp_path, capsys):
    path = tmp_path / "t.jsonl"
    path.write_text("keep me\n")
    code, _, err = run(capsys, "trace", *ARGS, "--out", path)
    assert code == 2 and err == f"lmstep: error: {path} exists; pass --force to overwrite it\n"
    assert path.read_text() == "keep me\n"
    assert run(capsys, "trace", *ARGS, "--out", path, "--force")[0] == 0
    assert path.read_text() == recorded.read_text()
    assert [p.name for p in tmp_path.iterdir()] == ["t.jsonl"]  # no temp file left behind


def test_digests_follow_the_documented_rules(recorded):
    """docs/trace-format.md, written again from the text: state digest and per-tensor sha256."""
    import hashlib

    model = load("tiny-llama", temperature=0.8)
    meta, prefill, *_ = lines(recorded)
    state, logits = model.prefill(model.init_state(), prefill["tokens"])
    h = hashlib.sha256(f"llama:{state.pos}".encode())
    for t, (name, a) in zip(prefill["state"]["tensors"], state.arrays().items()):
        assert t["name"] == name and t["sha256"] == hashlib.sha256(a.astype("<f4").tobytes()).hexdigest()
        h.update((name + str(tuple(a.shape)) + "float32").encode() + a.astype("<f4").tobytes())
    assert prefill["state"]["digest"] == h.hexdigest()[:16]
    assert prefill["logits"]["sha256"] == hashlib.sha256(logits.astype("<f4").tobytes()).hexdigest()


def test_a_sliding_window_trace_past_the_window_replays_bitwise(tmp_path, capsys):
    """tiny-mistral (window 16), 30 sampled steps after a 12-byte prompt: every recorded state is the bounded one
    (15 keys per layer from position 15 on), and the trace replays bit for bit."""
    path = tmp_path / "window.jsonl"
    args = ["-m", "tiny-mistral", "--prompt", "Hello, world", "--steps", "30", "-T", "0.8", "--seed", "2"]
    assert main(["trace", *args, "--out", str(path)]) == 0
    _, *ops, _ = lines(path)
    shapes = {tuple(t["shape"]) for t in ops[-1]["state"]["tensors"]}
    assert shapes == {(1, 1, 15, 16)} and ops[-1]["state"]["pos"] == 12 + 29
    code, out, _ = run(capsys, "replay", path)
    assert code == 0 and "OK: 30 of 30 ops bitwise" in out


def test_a_mamba2_trace_is_standard_json_and_replays(tmp_path, capsys):
    """Mamba-2's config holds an infinite time_step_limit: the header tags it as transformers does
    ({"__float__": "Infinity"}) instead of json's bare Infinity, which strict parsers reject, and replay still
    recognises the model. Control: the bare spelling is what plain json.dumps would have written."""
    path = tmp_path / "m2.jsonl"
    assert run(capsys, "trace", "-m", "tiny-mamba2", "--prompt", "Hi", "--steps", "3", "-o", path)[0] == 0

    def strict(constant):
        raise ValueError(f"non-standard JSON constant {constant}")

    header = json.loads(path.read_text().splitlines()[0], parse_constant=strict)
    assert header["#meta"]["model"]["config"]["time_step_limit"] == [0.0, {"__float__": "Infinity"}]
    code, out, _ = run(capsys, "replay", path)
    assert code == 0 and "OK: 3 of 3 ops bitwise" in out
    with pytest.raises(ValueError, match="non-standard"):
        json.loads(json.dumps({"limit": [0.0, float("inf")]}), parse_constant=strict)
