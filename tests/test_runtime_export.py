"""The exported folder: onnx.checker (full), the IO contract, the manifest, external data, the on-disk cache,
and (when installed) onnxruntime-genai running model.onnx with the written genai_config.json."""

from __future__ import annotations

import json
import os

import attrs
import numpy as np
import onnx
import pytest
from hypothesis import given, settings
from runtime_helpers import exported
from strategies import models

from lmstep.runtime import contract as io
from lmstep.runtime.cache import cached_export
from lmstep.runtime.folder import (
    GENAI_FILE,
    STEP_FILE,
    UNROLLED_FILE,
    WEIGHTS_FILE,
    ExportFolderError,
    config_from_manifest,
    read_manifest,
    write_folder,
)
from lmstep.runtime.onnx_model import OnnxModel
from lmstep.spec import load

BUILTINS = ["tiny-llama", "tiny-gpt2", "tiny-mamba", "tiny-mistral", "tiny-mamba2"]
FAMILIES = ["tiny-llama3", "tiny-qwen2", "tiny-qwen3", "tiny-gemma", "tiny-phi3"]  # the Llama-style families
F32, I64 = onnx.TensorProto.FLOAT, onnx.TensorProto.INT64


def contract_problems(model, folder) -> list[str]:
    """Differences between the graphs' declared inputs/outputs and the contract (names, dtypes, ranks)."""
    state = io.state_shapes(model.arch, model.config)
    token_inputs = {"input_ids": (I64, 2)} | (
        {"attention_mask": (I64, 2), "position_ids": (I64, 2)} if io.HAS_POSITIONS[model.arch] else {}
    )
    expect_in = token_inputs | {k: (F32, len(s)) for k, s in state.items()}
    expect_out = {"logits": (F32, 3)} | {io.present_of(k): (F32, len(s)) for k, s in state.items()}
    sampler = {"rand": (F32, 1), "temperature": (F32, 0), "top_k": (I64, 0), "top_p": (F32, 0)}
    problems = []
    for name, ins, outs in (
        (STEP_FILE, expect_in | sampler, expect_out | {io.TOKEN_OUTPUT: (I64, 1)}),
        (UNROLLED_FILE, expect_in, expect_out),
    ):
        g = onnx.load(folder / name, load_external_data=False).graph
        got_in = {v.name: (v.type.tensor_type.elem_type, len(v.type.tensor_type.shape.dim)) for v in g.input}
        got_out = {v.name: (v.type.tensor_type.elem_type, len(v.type.tensor_type.shape.dim)) for v in g.output}
        if got_in != ins:
            problems.append(f"{name} inputs {sorted(set(got_in.items()) ^ set(ins.items()))}")
        if got_out != outs:
            problems.append(f"{name} outputs {sorted(set(got_out.items()) ^ set(outs.items()))}")
    return problems


@pytest.mark.export("state-contract")
@pytest.mark.parametrize("name", BUILTINS + FAMILIES)
def test_builtin_export_is_checked_and_follows_the_contract(name):
    model = load(name)
    folder = exported(model)
    for graph in (STEP_FILE, UNROLLED_FILE):
        onnx.checker.check_model(str(folder / graph), full_check=True)
        assert [(o.domain, o.version) for o in onnx.load(folder / graph).opset_import] == [("", 21)]
    assert contract_problems(model, folder) == []
    m = read_manifest(folder)
    assert m["arch"] == model.arch and config_from_manifest(m) == model.config
    genai = folder / GENAI_FILE
    assert genai.exists() == (model.arch not in ("mamba", "mamba2"))
    if model.arch == "llama":  # genai's model type is the family's (runtime/genai.py)
        assert json.loads(genai.read_text())["model"]["type"] == model.config.model_type


@settings(max_examples=4)  # every export in the other tests is also checked by write_folder; this adds random configs
@given(models())
def test_random_exports_follow_the_contract(model):
    assert contract_problems(model, exported(model)) == []


@pytest.mark.control("state-contract")
def test_negative_control_contract_check_sees_a_renamed_input(tmp_path):
    model = load("tiny-gpt2")
    folder = exported(model)
    proto = onnx.load(folder / STEP_FILE)
    proto.graph.input[0].name = "ids"
    (tmp_path / UNROLLED_FILE).write_bytes((folder / UNROLLED_FILE).read_bytes())
    onnx.save_model(proto, tmp_path / STEP_FILE)
    assert contract_problems(model, tmp_path)


def test_external_data_is_shared_and_gives_the_same_bits(tmp_path):
    model = load("tiny-gpt2")
    inline = exported(model)
    external = write_folder(model, tmp_path / "ext", external=True)
    weight_bytes = sum(a.nbytes for a in (model.weights.wte, model.weights.wpe))
    data = (external / WEIGHTS_FILE).stat().st_size
    assert (external / STEP_FILE).stat().st_size < 100_000  # the graph file holds no large weights
    assert data < 1.5 * sum(t.nbytes for t in _leaves(model)) and data > weight_bytes  # written once for both graphs
    a, b = OnnxModel(inline, "cpu"), OnnxModel(external, "cpu")
    (sa, la), (sb, lb) = a.prefill(a.init_state(), [1, 2, 3]), b.prefill(b.init_state(), [1, 2, 3])
    assert la.tobytes() == lb.tobytes()
    assert all(x.tobytes() == y.tobytes() for x, y in zip(sa.arrays().values(), sb.arrays().values()))


def _leaves(model):
    from lmstep.spec.arrays import tree_leaves

    return [a for _, a in tree_leaves(model.weights)]


def test_cache_exports_once_and_keys_on_weights(tmp_path, monkeypatch):
    monkeypatch.setenv("LMSTEP_CACHE", str(tmp_path))
    model = load("tiny-llama")
    first = cached_export(model)
    stamp = (first / STEP_FILE).stat().st_mtime_ns
    assert cached_export(load("tiny-llama", temperature=0.5)) == first  # sampler settings are inputs, not graph
    assert (first / STEP_FILE).stat().st_mtime_ns == stamp
    assert first.parent == tmp_path / "onnx"
    other = attrs.evolve(model, weights=attrs.evolve(model.weights, norm=model.weights.norm * np.float32(2)))
    assert cached_export(other) != first
    assert sorted(p.name for p in (tmp_path / "onnx").iterdir()) == sorted(
        [first.name, cached_export(other).name]
    )  # no temp dirs left


def test_bad_folders_are_one_line_errors(tmp_path):
    with pytest.raises(ExportFolderError, match="not an lmstep export"):
        read_manifest(tmp_path)
    (tmp_path / "lmstep.json").write_text("{")
    with pytest.raises(ExportFolderError, match="not valid JSON"):
        read_manifest(tmp_path)
    folder = exported(load("tiny-mamba"))
    manifest = json.loads((folder / "lmstep.json").read_text())
    (tmp_path / "lmstep.json").write_text(json.dumps(manifest))
    with pytest.raises(ExportFolderError, match="lacks step.onnx"):
        read_manifest(tmp_path)
    with pytest.raises(ExportFolderError, match="exists and is not empty"):
        write_folder(load("tiny-mamba"), tmp_path)


@pytest.mark.parametrize("name", ["tiny-llama", "tiny-gpt2", "tiny-mistral", *FAMILIES])
def test_onnxruntime_genai_runs_the_export(name):
    og = pytest.importorskip(
        "onnxruntime_genai", reason="onnxruntime-genai is not installed (optional: pip install onnxruntime-genai)"
    )
    folder = exported(load(name))
    prompt = [72, 101, 108, 108, 111]
    genai_model = og.Model(str(folder))
    params = og.GeneratorParams(genai_model)
    params.set_search_options(max_length=len(prompt) + 40, do_sample=False)  # past tiny-mistral's window of 16
    gen = og.Generator(genai_model, params)
    gen.append_tokens(np.array([prompt], np.int32))
    tokens = []
    while not gen.is_done():
        gen.generate_next_token()
        tokens.append(int(gen.get_next_tokens()[0]))
    # genai stops early at eos (the last byte id, see runtime/genai.py); compare what it produced.
    assert tokens == OnnxModel(folder, "cpu").generate(prompt, len(tokens))


def test_no_export_leaves_temp_folders(tmp_path):
    write_folder(load("tiny-llama"), tmp_path / "a")
    assert os.listdir(tmp_path) == ["a"]
