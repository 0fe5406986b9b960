"""Constructed models (`lmstep compile`, runtime/algorithms/): the folder, its contract, the exhaustive check and
its rounding enclosures, each with a negative control. The full proofs run as `algorithm/` obligations in
tests/test_proofs_suite.py; here the bound is small (3 symbols, max_len 4: 121 prompts) so each test is quick."""

from __future__ import annotations

import json

import numpy as np
import pytest

from lmstep.proofs import rounding
from lmstep.proofs.exhaustive import check, prompts_of_length
from lmstep.runtime.algorithms import compile_algorithm, params_of
from lmstep.runtime.algorithms.folder import read_folder, write_folder
from lmstep.runtime.cli import main
from lmstep.spec import load
from lmstep.spec.conformance import rel_err

ALGOS = ["sort", "reverse"]
PROMPTS = [[], [2], [1, 1], [2, 0, 1], [0, 2, 2, 1], [1, 0, 1, 0]]  # empty, repeats, already sorted / reversed


def run(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def small(name: str):
    return compile_algorithm(name, symbols=3, max_len=4)


def broken(name: str):
    """One weight entry changed (the `~perturbed-weight` mutants of proofs/algorithm.py, on the small model)."""
    algo = small(name)
    params, s = params_of(algo), algo.stream
    if name == "sort":  # g_0's score for symbol 1: -2/K -> +2/K, so 1 outranks 0 when both remain
        params["layers.1.mlp_c_proj_weight"][0, s.at("tok", 1)] = 0.25
    else:  # layer 2's key no longer reads position 2
        params["layers.1.c_attn_weight"][s.at("pos", 2), s.width + 2] = 0.0
    return algo.with_params(params)


@pytest.mark.law("compiled-algorithm")
@pytest.mark.parametrize("name", ALGOS)
def test_compiled_folder_generates_the_answer(tmp_path, capsys, name):
    out = tmp_path / name
    code, text, err = run(capsys, "compile", name, "--out", str(out), "--symbols", "3", "--max-len", "4")
    assert code == 0 and err == "" and f"compiled {name}" in text
    files = sorted(p.name for p in out.iterdir())
    assert files == ["algorithm.json", "config.json", "model.safetensors", "tokenizer.json"]
    meta = json.loads((out / "algorithm.json").read_text())
    assert (meta["symbol_ids"], meta["bos"], meta["sep"], meta["eos"], meta["max_len"]) == ([0, 1, 2], 3, 4, 5, 4)
    assert meta["weights_sha256"] == small(name).model.weights_digest()
    model, algo = load(str(out)), small(name)
    assert model.weights_digest() == algo.model.weights_digest()  # what lmstep's checkpoint reader sees
    for xs in PROMPTS:
        answer = algo.answer(xs)
        assert answer[-1] == algo.eos and answer[:-1] == (sorted(xs) if name == "sort" else xs[::-1])
        assert model.generate(algo.prompt(xs), len(answer)) == answer  # prefill, then recurrent steps
    code, text, _ = run(capsys, "generate", "-m", str(out), "--tokens", "3,2,0,1,4", "--steps", "4")
    assert code == 0 and text.strip() == ("0,1,2,5" if name == "sort" else "1,0,2,5")
    # the tokenizer names the tokens: a text prompt, and the stepper shows names, not ids
    code, text, _ = run(capsys, "generate", "-m", str(out), "--prompt", "<bos> 2 0 1 <sep>", "--steps", "4")
    assert code == 0 and text.strip() == ("2 0 1 0 1 2" if name == "sort" else "2 0 1 1 0 2")  # prompt, answer
    code, text, _ = run(capsys, "step", "-m", str(out), "--prompt", "<bos> 2 <sep>", "--steps", "1")
    assert code == 0 and "in 3 '<bos>'" in text and "in 4 '<sep>'" in text, text
    # negative control: the same check on a folder with one weight changed
    write_folder(broken(name), tmp_path / "broken")
    bad = load(str(tmp_path / "broken"))
    assert any(bad.generate(algo.prompt(xs), len(algo.answer(xs))) != algo.answer(xs) for xs in PROMPTS)


def test_compile_never_clobbers(tmp_path, capsys):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep")
    code, _, err = run(capsys, "compile", "sort", "--out", str(mine))
    assert code == 2 and "exists and is not empty" in err and err.count("\n") == 1
    code, _, err = run(capsys, "compile", "sort", "--out", str(mine), "--force")
    assert code == 2 and "never other folders" in err
    assert [p.name for p in mine.iterdir()] == ["notes.txt"] and (mine / "notes.txt").read_text() == "keep"
    code, _, err = run(capsys, "compile", "sort", "--out", str(tmp_path / "missing" / "sort"))
    assert code == 2 and "does not exist" in err and not (tmp_path / "missing").exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    assert run(capsys, "compile", "reverse", "--out", str(empty), "--max-len", "2")[0] == 0
    code, _, err = run(capsys, "compile", "sort", "--out", str(empty))
    assert (
        code == 2 and "--force" in err and json.loads((empty / "algorithm.json").read_text())["algorithm"] == "reverse"
    )
    assert run(capsys, "compile", "sort", "--out", str(empty), "--force")[0] == 0  # an earlier compile: replaced
    assert json.loads((empty / "algorithm.json").read_text())["algorithm"] == "sort"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temporary folders left
    for args, why in [
        (["bogus"], "unknown algorithm 'bogus'"),
        (["sort", "--symbols", "0"], "--symbols must be an integer in [1, 64]"),
        (["sort", "--max-len", "99"], "--max-len must be an integer in [0, 64]"),
    ]:
        code, _, err = run(capsys, "compile", *args, "--out", str(tmp_path / "new"))
        assert code == 2 and why in err and err.count("\n") == 1 and not (tmp_path / "new").exists()


@pytest.mark.law("compiled-algorithm")
def test_compile_check_proves_the_written_folder(tmp_path, capsys):
    code, text, _ = run(capsys, "compile", "reverse", "-o", str(tmp_path / "r"), "-k", "2", "--max-len", "3", "--check")
    assert code == 0 and "15 prompts (lengths 0..3, 2 symbols), 49 greedy decisions" in text and "all correct" in text
    # negative control: a folder whose weights do not compute the algorithm is caught by the same reader + check
    params = params_of(compile_algorithm("reverse", 2, 3))
    params["layers.1.c_attn_weight"][:, :] = 0.0  # layer 2 attends uniformly: no copying
    write_folder(compile_algorithm("reverse", 2, 3).with_params(params), tmp_path / "bad")
    assert not check(read_folder(tmp_path / "bad"), robust=False).ok


@pytest.mark.law("compiled-algorithm")
@pytest.mark.parametrize("name", ALGOS)
def test_every_small_prompt_is_answered_robustly(name):
    report = check(small(name))
    assert report.ok and report.prompts == 121 == sum(3**n for n in range(5))
    assert report.decisions == sum(3**n * (n + 1) for n in range(5))
    assert 0 < report.max_error < report.min_robust <= report.min_margin


@pytest.mark.control("compiled-algorithm")
@pytest.mark.parametrize("name", ALGOS)
def test_check_finds_a_perturbed_weight(name):
    report = check(broken(name), stop_after=3)
    assert not report.ok and any(f.why == "wrong token" and f.chosen != f.expected for f in report.failures)
    f = next(f for f in report.failures if f.why == "wrong token")
    algo = broken(name)  # the counterexample replays through generate (prefill + recurrent steps)
    assert algo.model.generate(algo.prompt(f.prompt), len(algo.answer(f.prompt))) != algo.answer(f.prompt)


@pytest.mark.control("compiled-algorithm")
def test_enclosures_hold_float32_and_need_the_rounding_terms(monkeypatch):
    algo = small("sort")
    assert check(algo, 2).ok  # the spec's float32 logits lie inside every enclosure
    # negative control: without the rounding allowance (u = 0) the enclosure is the float64 value alone, which the
    # float32 logits miss: the radius is what makes the bound hold
    for name in ("U", "LIBM", "TINY"):
        monkeypatch.setattr(rounding, name, 0.0)
    report = check(algo, 2)
    assert not report.ok and {f.why for f in report.failures} == {"enclosure misses float32"}


def test_enclosure_contains_other_summation_orders():
    """A dot product summed in numpy's order, reversed, and pairwise in float32 lies in the matmul enclosure."""
    rng = np.random.default_rng(0)
    for _ in range(200):
        n = int(rng.integers(2, 64))
        a, b = rng.standard_normal((1, n)).astype(np.float32), rng.standard_normal((n, 1)).astype(np.float32)
        enc = rounding.RoundingOps().matmul(a, b)
        terms = (a[0] * b[:, 0]).astype(np.float32)
        for total in (np.sum(terms, dtype=np.float32), _sequential(terms[::-1]), _sequential(terms)):
            assert enc.contains(total).all()


def _sequential(terms: np.ndarray) -> np.float32:
    acc = np.float32(0)
    for t in terms:
        acc = np.float32(acc + t)
    return acc


def test_prompts_are_enumerated_exactly_once():
    xs = prompts_of_length(3, 4)
    assert xs.shape == (81, 4) and len({tuple(r) for r in xs.tolist()}) == 81 and xs.min() == 0 and xs.max() == 2
    assert prompts_of_length(3, 0).shape == (1, 0)


@pytest.mark.export("compiled-algorithm")
@pytest.mark.parametrize("name", ALGOS)
def test_onnx_runtime_gives_the_same_answers(tmp_path, name):
    """The folder on onnxruntime (`--runtime onnx`: exported on first use): every prompt within a small bound."""
    import runtime_helpers  # noqa: F401  (exports go to a per-run cache)

    from lmstep.runtime import load as load_onnx

    algo = compile_algorithm(name, symbols=3, max_len=3)
    folder = write_folder(algo, tmp_path / name)
    ort = load_onnx(str(folder), provider="cpu")
    for n in range(algo.max_len + 1):
        for xs in prompts_of_length(algo.symbols, n).tolist():
            answer = algo.answer(xs)
            assert ort.generate(algo.prompt(xs), len(answer)) == answer
    seq = algo.prompt([2, 0, 1]) + algo.expected([2, 0, 1])
    ours, theirs = algo.model.unrolled(seq), ort.unrolled(seq)
    assert rel_err(theirs, ours) <= runtime_helpers.LOGITS_RTOL["gpt2"]


def test_rounding_ops_keep_the_vocabulary_contract():
    """RoundingOps is a partial interpretation: its declared subset has Ops' signatures, nothing else is public."""
    from protocols import members, mismatches

    from lmstep.spec.vocabulary import Ops

    declared = rounding.RoundingOps.ENCLOSURE_OPS
    public = {n for n in dir(rounding.RoundingOps) if not n.startswith("_") and n != "ENCLOSURE_OPS"}
    assert public == set(declared) and declared <= set(members(Ops))
    assert mismatches(Ops, rounding.RoundingOps, only=declared) == []

    class Renamed(rounding.RoundingOps):  # negative control: a parameter renamed is flagged
        def reduce_sum(self, x, axis, keep=True):
            return super().reduce_sum(x, axis, keep)

    assert [p.split("(")[0] for p in mismatches(Ops, Renamed, only=declared)] == ["Renamed.reduce_sum"]


def test_check_refuses_a_folder_that_is_not_a_compiled_algorithm(tmp_path):
    from lmstep.spec.errors import InputError

    with pytest.raises(InputError, match="no algorithm.json"):
        read_folder(tmp_path)
    write_folder(small("sort"), tmp_path / "s")
    (tmp_path / "s" / "algorithm.json").write_text('{"format": "lmstep-algorithm", "format_version": 1}')
    with pytest.raises(InputError, match="list of symbols"):
        read_folder(tmp_path / "s")
    (tmp_path / "s" / "algorithm.json").write_text("{not json")
    with pytest.raises(InputError, match="not valid JSON"):
        read_folder(tmp_path / "s")
