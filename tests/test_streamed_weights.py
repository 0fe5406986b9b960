"""The spec streams a checkpoint's weights (spec/stored.py, spec/checkpoint.py): bf16 / f16 tensors stay in their
stored format and are widened to float32 per use, float32 tensors in our layout are views of the mapped file,
and nothing the model computes changes: logits, states, tokens and the weights digest are bit-for-bit those of
the same weights widened eagerly. Peak memory is measured in a child process against an eager loader, which
the same measurement must catch."""

from __future__ import annotations

import json
import mmap
import os
import subprocess
import sys

import attrs
import numpy as np
import pytest
from checkpoint_maker import checkpoint_bytes, write_llama
from hf_fixtures import folder
from hypothesis import given
from hypothesis import strategies as hst

from lmstep.spec import load, rand_for
from lmstep.spec.arrays import frozen_array, tree_map
from lmstep.spec.checkpoint import count_nonfinite
from lmstep.spec.hf_names import transposed
from lmstep.spec.safetensors_io import to_float32
from lmstep.spec.stored import Scratch, StoredArray


def eager(model):
    """The same model with every weight widened to a plain float32 array up front (what the loader did before)."""
    return attrs.evolve(model, weights=tree_map(lambda a: frozen_array(np.asarray(a, np.float32)), model.weights))


def run_all(model, tokens):
    """Logits of both forms, every state tensor along the way, and sampled tokens: the bits the model produces."""
    state, rows = model.init_state(), []
    for pos, t in enumerate(tokens):
        state, out = model.step(state, t, rand_for(3, pos + 1))
        rows.append(out.logits.tobytes() + np.int64(out.token).tobytes())
    rows += [a.tobytes() for a in state.arrays().values()]
    rows.append(model.unrolled(tokens).tobytes())
    rows.append(np.asarray(model.with_sampler(temperature=0.9, top_k=20).generate(tokens[:3], 6, seed=5)).tobytes())
    return rows


@pytest.fixture(scope="module")
def bf16_sharded(tmp_path_factory):
    return write_llama(tmp_path_factory.mktemp("ck") / "bf16", dtype="bfloat16", shards=3)


def test_bf16_weights_stay_stored_and_compute_the_eager_bits(bf16_sharded):
    model = load(bf16_sharded)
    leaves = model.named_weights()
    assert all(isinstance(a, StoredArray) and a.raw.dtype == np.uint16 for a in leaves.values())
    held = sum(a.stored_nbytes for a in leaves.values())
    assert held == checkpoint_bytes(bf16_sharded) - _header_bytes(bf16_sharded)  # 2 bytes a value, no more
    reference = eager(model)
    tokens = [5, 17, 3, 88, 40, 2, 61]
    assert run_all(model, tokens) == run_all(reference, tokens)
    assert model.weights_digest() == reference.weights_digest()
    assert model.weights == reference.weights and reference.weights == model.weights


def test_control_a_one_ulp_change_is_seen_by_the_same_checks(bf16_sharded):
    model = load(bf16_sharded)
    reference = eager(model)
    w = reference.weights.layers[1]
    bumped = attrs.evolve(w, up_proj=np.nextafter(w.up_proj, np.float32(np.inf)).astype(np.float32))
    layers = list(reference.weights.layers)
    layers[1] = bumped
    other = attrs.evolve(reference, weights=attrs.evolve(reference.weights, layers=tuple(layers)))
    tokens = [5, 17, 3, 88, 40, 2, 61]
    assert run_all(model, tokens) != run_all(other, tokens)
    assert model.weights_digest() != other.weights_digest()
    assert model.weights != other.weights


@pytest.mark.parametrize("name", ["llama-mqa-headdim-bias-bf16", "gpt2-ninner-bf16", "mamba-bias-rank-f16-sharded"])
def test_fixtures_in_other_formats_compute_the_eager_bits(name):
    model = load(folder(name))
    assert any(isinstance(a, StoredArray) for a in model.named_weights().values())
    tokens = [1, 7, 2, 9, 4]
    assert run_all(model, tokens) == run_all(eager(model), tokens)


def test_float32_tensors_in_our_layout_are_read_only_views_of_the_file():
    model = load(folder("gpt2-base"))  # GPT-2's Conv1D weights are already [in, out]
    for name, a in model.named_weights().items():
        assert isinstance(a, np.ndarray) and a.dtype == np.float32 and not a.flags.writeable, name
        assert _maps_file(a), f"{name} was copied"
    with pytest.raises(ValueError, match="read-only"):
        model.weights.wte[0, 0] = 1.0
    llama = load(folder("llama-mha-tied"))  # nn.Linear weights are transposed once, into memory of their own
    assert not _maps_file(llama.weights.layers[0].q_proj) and _maps_file(llama.weights.embed_tokens)


def test_stored_array_is_an_immutable_value():
    raw = np.array([[0x3F80, 0xC000], [0x4040, 0x0000]], np.uint16)  # bf16 bits of 1, -2, 3, 0
    a = StoredArray(raw, "BF16")
    raw[0, 0] = 0  # the caller's array is not ours: a StoredArray copies what it cannot freeze
    assert a.shape == (2, 2) and a.dtype == np.float32 and a.nbytes == 16 and a.stored_nbytes == 8
    assert np.asarray(a).tolist() == [[1, -2], [3, 0]]
    widened = np.asarray(a)
    widened[0, 0] = 99  # a fresh array each time: writing it changes nothing stored
    assert np.asarray(a)[0, 0] == 1 and not a.raw.flags.writeable
    assert np.take(a, [1, 1], axis=0).tolist() == [[3, 0], [3, 0]] and a[0].tolist() == [1, -2]
    assert a.T.tolist() == [[1, 3], [-2, 0]] and np.transpose(a, (1, 0)).tolist() == [[1, 3], [-2, 0]]
    assert (np.ones((1, 2), np.float32) @ a).tolist() == [[4, -2]]
    assert a == np.array([[1, -2], [3, 0]], np.float32) and a != np.array([[1, -2], [3, 1]], np.float32)
    with pytest.raises(ValueError, match="no float32 buffer"):
        np.asarray(a, copy=False)


@given(hst.integers(1, 70), hst.integers(1, 40), hst.sampled_from([np.uint16, np.float32, np.float16]))
def test_blocked_transpose_equals_numpy(rows, cols, dtype):
    a = np.arange(rows * cols).astype(dtype).reshape(rows, cols)
    t = transposed(a)
    assert t.flags.c_contiguous and t.dtype == a.dtype and np.array_equal(t, a.T)


@given(hst.lists(hst.integers(0, 0xFFFF), min_size=1, max_size=200), hst.sampled_from(["BF16", "F16"]))
def test_nonfinite_count_from_bits_equals_widened_values(bits, fmt):
    raw = np.array(bits, np.uint16)
    raw = raw.view(np.float16) if fmt == "F16" else raw
    widened = to_float32(raw, fmt)
    assert count_nonfinite(raw, fmt) == widened.size - np.count_nonzero(np.isfinite(widened))


def test_control_nonfinite_count_with_the_other_formats_exponent_disagrees():
    raw = np.array([0x7C00], np.uint16)  # f16 +inf; as bf16 it is a finite 2^121
    assert count_nonfinite(raw.view(np.float16), "F16") == 1 and count_nonfinite(raw, "BF16") == 0


# -- peak memory, measured in a child process ---------------------------------------------------------------------
# Peak RSS is VmHWM (this process image's high-water mark), not getrusage's ru_maxrss: Linux carries ru_maxrss
# across exec, so a child forked from a large parent would report the parent's size.
PROBE = """
import json, sys
import numpy as np
from lmstep.spec import load
from lmstep.spec import checkpoint
if sys.argv[2] == "eager":  # the loader before streaming: every tensor widened to float32 up front
    checkpoint.float32_leaf = lambda raw, fmt, scratch=None: checkpoint.to_float32(np.asarray(raw), fmt)
base = int(open("/proc/self/statm").read().split()[1]) * 4096
model = load(sys.argv[1])
tokens = model.generate([1, 2, 3, 4], 3)
model.unrolled(list(range(16)))
peak = next(int(l.split()[1]) * 1024 for l in open("/proc/self/status") if l.startswith("VmHWM:"))
print(json.dumps({"grew": peak - base, "tokens": tokens}))
"""


def probe(path: str, mode: str) -> dict:
    out = subprocess.run([sys.executable, "-c", PROBE, path, mode], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="peak RSS is read from /proc (Linux only)")
def test_peak_memory_stays_near_the_checkpoint_size_and_the_eager_loader_is_caught(tmp_path):
    """A 49 MB bf16 checkpoint (8 layers, 512 wide, vocab 2048) loaded and run in a fresh process: the resident set
    grows by at most 1.5x the checkpoint (measured 1.32x: the transposed matrices in bf16, one scratch buffer per
    widened matrix shape, numpy's and the interpreter's own growth, which weigh more on a small model; 1.1x at
    1.1B parameters, benchmarks/bench_real_sizes.py). The eager loader (float32 copies) measured 4.15x."""
    path = write_llama(
        tmp_path / "ck", vocab=2048, hidden=512, intermediate=1408, layers=8, heads=8, kv_heads=2, shards=2
    )
    size = checkpoint_bytes(path)
    streamed, widened = probe(path, "streamed"), probe(path, "eager")
    assert streamed["tokens"] == widened["tokens"]
    assert streamed["grew"] <= 1.5 * size, f"streamed load grew RSS by {streamed['grew'] / size:.2f}x the checkpoint"
    assert widened["grew"] > 1.5 * size, f"control: eager load grew RSS by only {widened['grew'] / size:.2f}x"


def _header_bytes(path: str) -> int:
    total = 0
    for f in os.listdir(path):
        if f.endswith(".safetensors"):
            with open(os.path.join(path, f), "rb") as fh:
                total += 8 + int.from_bytes(fh.read(8), "little")
    return total


def _maps_file(a: np.ndarray) -> bool:
    """Whether ``a``'s memory is a mapped file (its base chain ends in a memoryview of an mmap)."""
    while isinstance(a, np.ndarray):
        a = a.base
    return isinstance(a, memoryview) and isinstance(a.obj, mmap.mmap)


def test_a_widened_array_in_use_is_never_reused():
    """Widening reuses a scratch buffer only when nothing refers to it: an array (or a view of it) that a caller
    keeps is never overwritten by a later widening. Control: once dropped, the buffer is reused."""
    rng = np.random.default_rng(0)
    first = rng.standard_normal((512, 1024)).astype(np.float32)  # 2 MB: over Scratch.MIN_BYTES, pooled
    second = rng.standard_normal((512, 1024)).astype(np.float32)
    scratch = Scratch()
    a, b = (StoredArray((x.view(np.uint32) >> 16).astype(np.uint16), "BF16", scratch) for x in (first, second))
    kept = np.asarray(a)
    view = np.asarray(b)[3:5]
    expected_a, expected_view = kept.copy(), view.copy()
    for _ in range(3):
        np.asarray(a), np.asarray(b), np.matmul(np.ones((1, 512), np.float32), a)
    assert np.array_equal(kept, expected_a) and np.array_equal(view, expected_view)
    del kept, view
    assert len({np.asarray(a).ctypes.data for _ in range(3)}) == 1  # each dropped at once: one buffer, reused
