"""onnxruntime-genai's generator API as an implementation under check (``--impl genai``): lmstep's exported
folders conform at L1 on the laws genai can support; a folder of another model is caught. Needs the genai
extra."""

import json
import shutil

import pytest

pytest.importorskip("onnxruntime_genai", reason="onnxruntime-genai not installed (optional: pip install -e '.[genai]')")

from lmstep.runtime.cache import cached_export  # noqa: E402
from lmstep.runtime.check import Level, check, open_impl  # noqa: E402
from lmstep.runtime.cli import main  # noqa: E402
from lmstep.spec import load  # noqa: E402


@pytest.mark.parametrize("name", ["tiny-llama", "tiny-gpt2"])
def test_genai_conforms_at_l1(name):
    """Chunks (every row of genai's logits output), decodes, the state (its present outputs) and causality; no
    fork, batch or immutable handles in genai's API, so those laws are dropped on purpose (skip_laws; without it
    the check fails them as not exercised, the control)."""
    model = load(name, temperature=0.8, top_k=40)
    report = check(model, open_impl("genai:", model), required=Level.L1, max_examples=15, skip_laws=["fork", "batch"])
    assert report.passed, report.message
    assert {"unrolled", "split", "recurrent", "sampler", "state", "determinism", "causality"} == set(report.laws)
    assert all(s["n"] > 0 for s in report.laws.values())
    report = check(model, open_impl("genai:", model), required=Level.L1, max_examples=2)
    assert not report.passed and "fork, batch: not exercised" in report.message


def test_cli_one_line_and_another_models_folder_is_caught(capsys):
    folder = cached_export(load("tiny-gpt2"))
    skip = ["--skip-law", "fork,batch"]
    assert main(["check", "-m", "tiny-gpt2", "--impl", f"genai:{folder}", "--examples", "5", *skip]) == 0
    assert "PASS" in capsys.readouterr().out
    assert main(["check", "-m", "tiny-llama", "--impl", f"genai:{folder}", "--examples", "5", *skip]) == 1  # control
    assert "FAIL" in capsys.readouterr().out


def test_refusals(tmp_path, capsys):
    assert main(["check", "-m", "tiny-mamba", "--impl", "genai:"]) == 2
    assert "no model type for Mamba" in capsys.readouterr().err
    assert main(["check", "-m", "tiny-llama", "--impl", f"genai:{tmp_path / 'none'}"]) == 2
    assert "not a folder" in capsys.readouterr().err
    broken = tmp_path / "broken"
    shutil.copytree(cached_export(load("tiny-llama")), broken)
    cfg = json.loads((broken / "genai_config.json").read_text())
    cfg["model"]["decoder"]["filename"] = "missing.onnx"
    (broken / "genai_config.json").write_text(json.dumps(cfg))
    assert main(["check", "-m", "tiny-llama", "--impl", f"genai:{broken}"]) == 2
    assert "onnxruntime-genai cannot load it" in capsys.readouterr().err
    (broken / "genai_config.json").write_text("{}")
    assert main(["check", "-m", "tiny-llama", "--impl", f"genai:{broken}"]) == 2
    assert "no usable genai_config.json" in capsys.readouterr().err
