"""Untrusted ONNX folders: external data outside the folder (absolute, .., symbolic links), truncated data and a
graph missing the IO contract are refused in one line before onnxruntime opens anything."""

import json
import os
import shutil

import onnx
import pytest

from lmstep.runtime.folder import ExportFolderError, write_folder
from lmstep.runtime.onnx_model import OnnxModel
from lmstep.spec import load


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    out = tmp_path_factory.mktemp("exp") / "tiny-llama"
    write_folder(load("tiny-llama"), out, external=True)
    return out


@pytest.fixture
def folder(exported, tmp_path):
    copy = tmp_path / "model"
    shutil.copytree(exported, copy)
    return copy


def rewrite_location(folder, location):
    path = folder / "step.onnx"
    proto = onnx.load(str(path), load_external_data=False)
    for t in proto.graph.initializer:
        for e in t.external_data:
            if e.key == "location":
                e.value = location
        if t.external_data:
            break  # one tensor is enough to be refused
    onnx.save(proto, str(path))


def test_control_the_untouched_export_opens(folder):
    assert OnnxModel(folder, provider="cpu").unrolled([1, 2]).shape == (2, 256)


@pytest.mark.parametrize(
    "location,match",
    [
        ("/etc/passwd", "relative path inside the model folder"),
        ("../outside.data", "relative path inside the model folder"),
        ("sub/../../x.data", "relative path inside the model folder"),
        ("missing.data", "does not exist"),
    ],
)
def test_external_data_paths_are_confined(folder, location, match):
    rewrite_location(folder, location)
    with pytest.raises(ExportFolderError, match=match) as err:
        OnnxModel(folder, provider="cpu")
    assert "\n" not in str(err.value)


def test_a_link_leaving_the_folder_is_refused(folder, tmp_path):
    outside = tmp_path / "secret.data"
    shutil.copy(folder / "weights.data", outside)
    os.symlink(outside, folder / "link.data")
    rewrite_location(folder, "link.data")
    with pytest.raises(ExportFolderError, match="leaves the model folder"):
        OnnxModel(folder, provider="cpu")


def test_truncated_external_data_is_refused(folder):
    data = folder / "weights.data"
    data.write_bytes(data.read_bytes()[:1000])
    with pytest.raises(ExportFolderError, match="past the file's end"):
        OnnxModel(folder, provider="cpu")


def test_a_graph_missing_part_of_the_contract_is_named(folder):
    path = folder / "model.onnx"
    proto = onnx.load(str(path), load_external_data=False)
    for v in proto.graph.input:
        if v.name == "position_ids":
            v.name = "positions"
    for node in proto.graph.node:
        node.input[:] = ["positions" if i == "position_ids" else i for i in node.input]
    onnx.save(proto, str(path))
    with pytest.raises(ExportFolderError, match="no input 'position_ids'"):
        OnnxModel(folder, provider="cpu")


def test_a_corrupt_graph_file_is_one_line(folder):
    (folder / "step.onnx").write_bytes(b"\x08\x07garbage" * 10)
    with pytest.raises(ExportFolderError, match="not a readable ONNX file"):
        OnnxModel(folder, provider="cpu")


def test_a_manifest_that_lies_about_the_model_is_caught(folder):
    """The manifest says 3 layers; the graph has 2: the contract check names the missing state input."""
    m = json.loads((folder / "lmstep.json").read_text())
    m["config"]["num_hidden_layers"] = 3
    (folder / "lmstep.json").write_text(json.dumps(m))
    with pytest.raises(ExportFolderError, match="past_key_values.2"):
        OnnxModel(folder, provider="cpu")


def test_export_force_replaces_an_export_but_never_another_folder(tmp_path, capsys):
    from lmstep.runtime.cli import main

    out = tmp_path / "exp"
    assert main(["export", "-m", "tiny-gpt2", "--out", str(out)]) == 0
    assert main(["export", "-m", "tiny-llama", "--out", str(out)]) == 2  # exists: refused without --force
    assert json.loads((out / "lmstep.json").read_text())["arch"] == "gpt2"
    assert main(["export", "-m", "tiny-llama", "--out", str(out), "--force"]) == 0
    assert json.loads((out / "lmstep.json").read_text())["arch"] == "llama"
    other = tmp_path / "mine"
    other.mkdir()
    (other / "notes.txt").write_text("precious")
    assert main(["export", "-m", "tiny-llama", "--out", str(other), "--force"]) == 2
    assert (other / "notes.txt").read_text() == "precious" and "never other folders" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["exp", "mine"]  # no temporary folders left behind
