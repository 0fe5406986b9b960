"""`lmstep prove` through the real CLI entry point."""

from __future__ import annotations

import json

from lmstep.proofs.obligations import select
from lmstep.runtime.cli import main


def test_prove_only_json(capsys):
    assert main(["prove", "--only", "linear/", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    names = [r["name"] for r in out["results"]]
    assert "linear/xor-one-relu-layer" in names and all(n.startswith("linear/") for n in names)
    for r in out["results"]:
        assert r["ok"] and r["verdict"] == r["expected"] and r["seconds"] > 0
    witness = next(r for r in out["results"] if r["name"] == "linear/xor-one-relu-layer")
    assert set(witness["model"]) == {"W1", "b1", "W2", "b2"}


def test_prove_table_and_smt2(tmp_path, capsys):
    assert main(["prove", "--only", "scan/combine-assoc", "--smt2", str(tmp_path / "smt2")]) == 0
    out = capsys.readouterr().out
    assert "scan/combine-assoc-matrix~commuted" in out and "refuted" in out and "as expected, 0 not" in out
    assert len(list((tmp_path / "smt2").glob("*.smt2"))) == len(select("scan/combine-assoc")) == 6


def test_prove_unknown_name_is_one_line_error(capsys):
    assert main(["prove", "--only", "no-such-law"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no-such-law" in err and "--list" in err


def test_prove_list(capsys):
    assert main(["prove", "--list", "--long"]) == 0
    out = capsys.readouterr().out
    assert "floats/target-below-total-float32 " in out and "long" in out


def test_prove_exits_nonzero_when_a_verdict_differs(monkeypatch, capsys):
    import dataclasses

    from lmstep.proofs import obligations

    obligations.load_all()
    wrong = dataclasses.replace(obligations.REGISTRY["linear/xor-not-linear~or"], expected="proved", mutant_of=None)
    monkeypatch.setitem(obligations.REGISTRY, wrong.name, wrong)
    assert main(["prove", "--only", "linear/xor-not-linear~or", "--jobs", "1"]) == 1
    assert "FAIL" in capsys.readouterr().out
