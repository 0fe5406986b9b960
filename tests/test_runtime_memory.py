"""The onnx runtime at any size (runtime/export.py, runtime/folder.py, runtime/weights.py), on small stand-ins:
weights streamed to external data one tensor at a time (the graphs only reference them), both sessions of an
export sharing one read-only map of the weights (and one transposed copy of a tied output projection), a
one-line error naming the memory needed when a model cannot fit, and peak memory of export + first run measured
in a child process against the plain way of opening the graphs, which the same measurement must catch."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import onnx
import pytest
from checkpoint_maker import write_llama
from onnx.numpy_helper import to_array
from onnx.reference import ReferenceEvaluator

from lmstep.runtime import contract as io
from lmstep.runtime import folder as folder_mod
from lmstep.runtime import weights as weights_mod
from lmstep.runtime.cli import main
from lmstep.runtime.export import ALIGN, MIN_EXTERNAL_TENSOR
from lmstep.runtime.folder import STEP_FILE, UNROLLED_FILE, WEIGHTS_FILE, ExportFolderError, write_folder
from lmstep.runtime.onnx_model import OnnxModel
from lmstep.spec import load
from lmstep.spec.arrays import tree_leaves


def f32_bytes(model) -> int:
    return sum(a.nbytes for _, a in tree_leaves(model.weights))


@pytest.fixture(scope="module")
def bf16_checkpoint(tmp_path_factory):
    return write_llama(tmp_path_factory.mktemp("ck") / "bf16", vocab=128, hidden=64, intermediate=96, shards=2)


def test_just_over_the_external_threshold_weights_are_streamed_and_graphs_hold_none(
    bf16_checkpoint, tmp_path, monkeypatch
):
    """A model just over a lowered threshold is exported with external data: each weight written once, float32,
    page-aligned, equal to the spec's value; the graph files stay small; the graphs still compute the spec's bits
    (onnx's ReferenceEvaluator reads the external data) and onnxruntime's tokens are the spec's."""
    model = load(bf16_checkpoint)
    monkeypatch.setattr(folder_mod, "EXTERNAL_TOTAL_BYTES", f32_bytes(model) - 1)
    out = write_folder(model, tmp_path / "ext")
    data = np.memmap(out / WEIGHTS_FILE, dtype=np.uint8, mode="r")
    for file in (STEP_FILE, UNROLLED_FILE):
        assert (out / file).stat().st_size < 100_000
        proto = onnx.load(str(out / file), load_external_data=False)
        inits = {t.name: t for t in proto.graph.initializer}
        for name, leaf in tree_leaves(model.weights):
            t = inits[name]
            if leaf.nbytes < MIN_EXTERNAL_TENSOR:  # norm weights stay inline
                assert t.data_location != onnx.TensorProto.EXTERNAL and np.array_equal(to_array(t), leaf)
                continue
            info = {e.key: e.value for e in t.external_data}
            offset, length = int(info["offset"]), int(info["length"])
            assert info["location"] == WEIGHTS_FILE and offset % ALIGN == 0 and length == leaf.nbytes
            assert np.array_equal(np.frombuffer(data, np.float32, leaf.size, offset).reshape(leaf.shape), leaf)
    tokens = [3, 1, 4, 1, 5, 9]
    ref = ReferenceEvaluator(onnx.load(str(out / UNROLLED_FILE)))
    feeds = io.contract_feeds("llama", np.array([tokens]), 0) | io.empty_state("llama", model.config)
    assert np.array_equal(ref.run(["logits"], feeds)[0][0], model.unrolled(tokens))
    assert OnnxModel(out, "cpu").generate(tokens, 8) == model.generate(tokens, 8)


def test_inline_export_too_large_for_protobuf_is_refused(bf16_checkpoint, tmp_path, monkeypatch, capsys):
    model = load(bf16_checkpoint)
    monkeypatch.setattr(folder_mod, "MAX_INLINE_BYTES", f32_bytes(model) - 1)
    with pytest.raises(ExportFolderError, match=r"too large to keep inline .* \(--external\)"):
        write_folder(model, tmp_path / "a", external=False)
    assert not (tmp_path / "a").exists()
    assert main(["export", "-m", bf16_checkpoint, "-o", str(tmp_path / "b"), "--inline"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--external" in err
    monkeypatch.setattr(folder_mod, "MAX_INLINE_BYTES", f32_bytes(model))  # control: at the limit it is written
    assert write_folder(model, tmp_path / "c", external=False).is_dir()


def test_both_sessions_share_one_copy_of_the_weights(tmp_path):
    """Every external weight reaches both sessions as the same OrtValue, a view of one map of weights.data; the
    tied output projection's Transpose is replaced, in both session graphs, by one shared transposed copy."""
    model = load("tiny-gpt2")  # tied: logits = x @ wte^T
    om = OnnxModel(write_folder(model, tmp_path / "ext", external=True), "cpu")
    shared = om._weights
    step, unrolled = (onnx.load(str(om.folder / f), load_external_data=False) for f in (STEP_FILE, UNROLLED_FILE))
    a, b = shared.for_graph(step), shared.for_graph(unrolled)
    assert set(a) == set(b) == {n for n, leaf in tree_leaves(model.weights) if leaf.nbytes >= 1024}
    assert all(a[n] is b[n] for n in a)
    lo, hi = shared._arrays["wte"].ctypes.data, shared._arrays["wte"].ctypes.data + shared.mapped_bytes
    mapped = np.memmap(om.folder / WEIGHTS_FILE, dtype=np.uint8, mode="r")
    assert all(np.array_equal(np.asarray(v.numpy()), model.named_weights()[n]) for n, v in a.items())
    assert shared.mapped_bytes == mapped.size and lo <= a["wte"].data_ptr() < hi
    (fold_a,), (fold_b,) = om._step.bound.values(), om._unrolled.bound.values()
    assert fold_a is fold_b and np.array_equal(fold_a.numpy(), model.weights.wte.T)
    assert shared.transposed_bytes == model.weights.wte.nbytes
    prompt = [72, 105, 33]
    assert om.generate(prompt, 12) == model.generate(prompt, 12)


def test_not_enough_memory_is_one_line_naming_what_is_needed(tmp_path, monkeypatch, capsys):
    folder = write_folder(load("tiny-llama"), tmp_path / "ext", external=True)
    monkeypatch.setattr(weights_mod, "available_bytes", lambda: 1 << 20)
    with pytest.raises(weights_mod.OutOfMemoryError, match=r"needs about \d+\.\d GiB of memory, but only 0\.0 GiB"):
        OnnxModel(folder, "cpu")
    assert main(["generate", "-m", str(folder), "--tokens", "1,2", "--steps", "2"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "needs about" in err and "available" in err
    monkeypatch.setattr(weights_mod, "available_bytes", lambda: 1 << 40)  # control: with the memory, it runs
    assert main(["generate", "-m", str(folder), "--tokens", "1,2", "--steps", "2"]) == 0


def test_memory_needed_counts_the_weights_once():
    """The estimate is the weights once plus working room, whatever the number of graphs sharing them."""
    fake = weights_mod.SharedWeights.__new__(weights_mod.SharedWeights)
    fake.values, fake.mapped_bytes = {"w": None}, 1 << 30
    graph = onnx.helper.make_model(
        onnx.helper.make_graph(
            [], "g", [], [], [onnx.TensorProto(name="w", data_type=onnx.TensorProto.FLOAT, dims=[1 << 28])]
        )
    )
    one, two = weights_mod.bytes_needed([graph], fake), weights_mod.bytes_needed([graph, graph], fake)
    assert one == two and (1 << 30) < one < 1.5 * (1 << 30)


# -- peak memory of export + first run, in a child process ---------------------------------------------------------
PROBE = """
import json, sys
from lmstep.runtime import session, weights
from lmstep.runtime.loading import load
if sys.argv[2] == "plain":  # each session reads its own copy and prepacks its matrices (before weights.py)
    weights.SharedWeights.session_graph = lambda self, proto, path, changed=False: (
        proto.SerializeToString() if changed else str(path), {}, {})
    plain = session.session_options
    def options(threads=1):
        so = plain(threads)
        so.add_session_config_entry("session.disable_prepacking", "0")
        return so
    session.session_options = options
base = int(open("/proc/self/statm").read().split()[1]) * 4096
model = load(sys.argv[1], provider="cpu")
tokens = model.generate([1, 2, 3, 4], 3)
model.unrolled(list(range(16)))
peak = next(int(l.split()[1]) * 1024 for l in open("/proc/self/status") if l.startswith("VmHWM:"))
print(json.dumps({"grew": peak - base, "tokens": tokens}))
"""


MALLOC_RETURNS = "glibc.malloc.mmap_threshold=65536:glibc.malloc.trim_threshold=65536"


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="peak RSS is read from /proc (Linux only)")
def test_export_and_first_run_stay_near_the_float32_weights(tmp_path):
    """A 31 MB bf16 checkpoint (62 MB as float32) exported and run on onnxruntime in a fresh process (export cache
    empty): the resident set grows by at most 1.5x the float32 weights (measured 1.33x: the map of weights.data,
    the spec model used for the export, onnxruntime's buffers; 1.05x at 1.1B parameters, bench_real_sizes.py).
    Opening the same folder the plain way (each session its own copy, prepacked) measured 2.24x.

    Both children run with glibc's malloc returning freed memory (fixed mmap and trim thresholds): this model's
    matrices are under a megabyte, and glibc keeps such freed blocks (the export's spec model) in its heap,
    which counted 0.4x more here; a real model's multi-megabyte matrices are returned either way."""
    path = write_llama(
        tmp_path / "ck", vocab=4096, hidden=512, intermediate=1408, layers=4, heads=8, kv_heads=2, shards=2
    )
    weights = 4 * sum(int(np.prod(a.shape)) for _, a in tree_leaves(load(path).weights))
    runs = {}
    for mode in ("shared", "plain"):
        env = os.environ | {"LMSTEP_CACHE": str(tmp_path / f"cache-{mode}"), "GLIBC_TUNABLES": MALLOC_RETURNS}
        out = subprocess.run([sys.executable, "-c", PROBE, path, mode], capture_output=True, text=True, env=env)
        assert out.returncode == 0, out.stderr[-2000:]
        runs[mode] = json.loads(out.stdout)
    assert runs["shared"]["tokens"] == runs["plain"]["tokens"] == load(path).generate([1, 2, 3, 4], 3)
    shared, plain = runs["shared"]["grew"] / weights, runs["plain"]["grew"] / weights
    assert shared <= 1.5, f"export + first run grew RSS by {shared:.2f}x the float32 weights"
    assert plain > 1.5, f"control: plain sessions grew RSS by only {plain:.2f}x"


def test_a_checkpoint_exported_before_opens_without_reading_its_weights(bf16_checkpoint, tmp_path, monkeypatch):
    """runtime.load on a checkpoint folder notes which export its files map to; the next load opens that export
    without loading (and hashing) the weights. Control: once a file changes, it loads them again."""
    import shutil

    from lmstep.runtime import loading

    ckpt = shutil.copytree(bf16_checkpoint, tmp_path / "ck")
    monkeypatch.setenv("LMSTEP_CACHE", str(tmp_path / "cache"))
    loads = []
    real = loading.load_spec
    monkeypatch.setattr(loading, "load_spec", lambda *a, **k: loads.append(a) or real(*a, **k))
    first = loading.load(ckpt, provider="cpu")
    assert len(loads) == 1
    second = loading.load(ckpt, provider="cpu", temperature=0.5)
    assert len(loads) == 1 and second.folder == first.folder
    assert second.generate([1, 2, 3], 4, seed=7) == load(ckpt, temperature=0.5).generate([1, 2, 3], 4, seed=7)
    config = ckpt / "config.json"
    config.write_text(config.read_text())  # same bytes, a new modification time: the note no longer applies
    assert loading.load(ckpt, provider="cpu").folder == first.folder and len(loads) == 2


@pytest.mark.parametrize("name", ["tiny-llama", "tiny-gpt2", "tiny-mamba"])
def test_greedy_step_graph_computes_the_full_graphs_bits_without_the_sort(name, tmp_path):
    """At temperature 0 the runtime runs the step graph with the sampled branch pruned (greedy.py): no TopK left,
    and the same logits, tokens and states bit for bit as the full step graph. Control: the full graph has the
    TopK, and at temperature > 0 the full graph runs."""
    from lmstep.runtime.greedy import greedy_step

    model = load(name)
    om = OnnxModel(write_folder(model, tmp_path / "x"), "cpu")
    full = onnx.load(str(om.folder / STEP_FILE))
    pruned = greedy_step(full)
    assert "TopK" in {n.op_type for n in full.graph.node} and "TopK" not in {n.op_type for n in pruned.graph.node}
    assert len(pruned.graph.node) < len(full.graph.node)
    fast = om._step_runner()
    assert fast is not om._step and om.with_sampler(temperature=0.7)._step_runner() is om._step
    assert om.with_sampler(top_k=3)._step_runner() is fast  # greedy whatever top_k: opened once, shared
    state_full = state_fast = om.init_state()
    for pos, token in enumerate([5, 9, 2, 7, 1]):
        feeds = om._step_feeds(token, pos, 0.5)
        a = om._step.run(feeds, state_full.values, host_outputs=("logits", "token"))
        b = fast.run(feeds, state_fast.values, host_outputs=("logits", "token"))
        assert all(a[k].numpy().tobytes() == b[k].numpy().tobytes() for k in a)
        state_full = type(state_full)(om.arch, pos + 1, {n: a[io.present_of(n)] for n in state_full.values})
        state_fast = type(state_fast)(om.arch, pos + 1, {n: b[io.present_of(n)] for n in state_fast.values})
    assert om.generate([3, 4], 6) == model.generate([3, 4], 6)


def test_greedy_step_needs_the_samplers_final_where():
    from lmstep.runtime.export import build_step
    from lmstep.runtime.greedy import greedy_step

    proto = build_step(load("tiny-llama"))
    final = next(n for n in proto.graph.node if "token" in n.output)
    final.input[0] = "rand"  # the token no longer comes from Where(Equal(temperature, 0), ...): left alone
    assert greedy_step(proto) is None
