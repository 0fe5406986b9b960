"""L0: the exported graphs, run by onnx's ReferenceEvaluator, equal the numpy spec bit for bit.

The spec's NumpyOps mirror the evaluator's op implementations, and GraphOps emits the same op sequence, so
every op sees the same inputs and computes the same bits: logits, sampled tokens and every state tensor are
compared with exact equality. No op is exempt (measured: all three architectures, step and unrolled graphs).
Mamba's unrolled graph is built from the spec's forward with the runtime's scan schedule
(lmstep.runtime.mamba_scan, another bracketing of the spec's scan): it equals that function run on numpy bit for
bit, and the spec's own forward within tolerance (tests/test_mamba_scan.py). The spec's reference forward also
builds as a graph and runs bit for bit on the evaluator.
Negative controls: the same comparison on a graph with one Add turned into Sub reports a mismatch; the Mamba
graph compared with the spec's reference forward (the other bracketing) reports one.
"""

from __future__ import annotations

import copy

import numpy as np
import onnx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from onnx.reference import ReferenceEvaluator
from strategies import models

from lmstep.runtime import contract as io
from lmstep.runtime.export import build_step, build_unrolled, unrolled_forward
from lmstep.spec import NP, Model, State, builtin, load, mamba
from lmstep.spec.sampler import Sampler

_GRAPHS: dict[int, tuple] = {}


def graphs(model):
    if id(model) not in _GRAPHS:
        _GRAPHS[id(model)] = (model, build_step(model), build_unrolled(model))
    return _GRAPHS[id(model)][1:]


def run_ref(proto: onnx.ModelProto, feeds: dict) -> dict[str, np.ndarray]:
    names = [o.name for o in proto.graph.output]
    return dict(zip(names, ReferenceEvaluator(proto).run(None, feeds)))


def step_mismatches(model, step_proto, tokens, rands) -> list[str]:
    """Step the spec and the step graph (ReferenceEvaluator) side by side; names of values that differ."""
    bad = []
    state, ref_state = model.init_state(), io.empty_state(model.arch, model.config)
    sampler = io.sampler_feeds(model.sampler)
    for pos, (t, u) in enumerate(zip(tokens, rands)):
        state, out = model.step(state, t, u)
        feeds = io.contract_feeds(model.arch, np.array([[t]]), pos) | sampler | {"rand": np.array([u], np.float32)}
        r = run_ref(step_proto, feeds | ref_state)
        ref_state = {k: r[io.present_of(k)] for k in ref_state}
        if not np.array_equal(r["logits"][0, 0], out.logits) or r["logits"].dtype != np.float32:
            bad.append(f"logits@{pos}")
        if int(r[io.TOKEN_OUTPUT][0]) != out.token:
            bad.append(f"token@{pos}")
        bad += [f"{k}@{pos}" for k, a in state.arrays().items() if not np.array_equal(a, ref_state[k])]
    return bad


def numpy_prefill(model, state, chunk, forward=None):
    """``forward`` (default: the one the export builds from, :func:`unrolled_forward`) run on numpy, as a prefill."""
    toks = np.array([chunk], np.int64)
    positions = np.arange(state.pos, state.pos + len(chunk), dtype=np.int64)[None]
    forward = forward or unrolled_forward(model)
    logits, cache = forward(NP, model.config, model.weights, toks, positions, state.cache)
    return State(model.arch, state.pos + len(chunk), cache), logits[0]


def unrolled_mismatches(model, unrolled_proto, tokens, split, forward=None) -> list[str]:
    """Prefill tokens[:split] then tokens[split:] (a multi-token call with a cache) in both; what differs."""
    bad = []
    state, ref_state, pos = model.init_state(), io.empty_state(model.arch, model.config), 0
    for chunk in (tokens[:split], tokens[split:]):
        if not chunk:
            continue
        state, logits = numpy_prefill(model, state, chunk, forward)
        r = run_ref(unrolled_proto, io.contract_feeds(model.arch, np.array([chunk]), pos) | ref_state)
        ref_state = io.kept_state(model.config, {k: r[io.present_of(k)] for k in ref_state})  # a window's W - 1 rows
        pos += len(chunk)
        if not np.array_equal(r["logits"][0], logits):
            bad.append(f"logits@{pos}")
        bad += [f"{k}@{pos}" for k, a in state.arrays().items() if not np.array_equal(a, ref_state[k])]
    return bad


samplers = st.builds(
    Sampler,
    temperature=st.sampled_from([0.0, 0.7, 1.0, 1.5]),
    top_k=st.sampled_from([0, 1, 3, 1000]),
    top_p=st.sampled_from([1.0, 0.9, 0.3]),
)


@st.composite
def cases(draw):
    """A random model with random sampler settings, a few steps with their rands, and a chunked sequence."""
    model = draw(models())
    model = model.with_sampler(**{k: getattr(draw(samplers), k) for k in ("temperature", "top_k", "top_p")})
    n = draw(st.integers(1, 5))
    tokens = draw(st.lists(st.integers(0, model.vocab_size - 1), min_size=n, max_size=n))
    rands = draw(st.lists(st.integers(0, 2**24 - 1).map(lambda i: i / 2**24), min_size=n, max_size=n))
    sequence = draw(st.lists(st.integers(0, model.vocab_size - 1), min_size=1, max_size=20))
    return model, tokens, rands, sequence, draw(st.integers(0, len(sequence)))


@pytest.mark.export("sampler", "state-contract", "split-invariance")
@given(cases())
def test_graphs_equal_spec_bitwise(case):
    """Both graphs of one exported model (export is the slow part, so one test checks both)."""
    model, tokens, rands, sequence, split = case
    step_proto, unrolled_proto = graphs(model)
    assert step_mismatches(model, step_proto, tokens, rands) == []
    assert unrolled_mismatches(model, unrolled_proto, sequence, split) == []


def add_to_sub(proto: onnx.ModelProto) -> onnx.ModelProto:
    """A deliberately broken export: the first Add node computes Sub instead."""
    broken = copy.deepcopy(proto)
    next(n for n in broken.graph.node if n.op_type == "Add").op_type = "Sub"
    return broken


@pytest.mark.export("sliding-window", "split-invariance", "state-contract")
def test_mistral_graphs_equal_spec_bitwise_past_the_window():
    """tiny-mistral (window 16): 40 steps and chunks of 15, 17 and 9 tokens, past the window several times."""
    model = load("tiny-mistral", temperature=0.8)
    step_proto, unrolled_proto = graphs(model)
    tokens = list(range(40, 81))
    assert step_mismatches(model, step_proto, tokens[:40], [(i % 7) / 7 for i in range(40)]) == []
    assert unrolled_mismatches(model, unrolled_proto, tokens[:32], 15) == []
    assert unrolled_mismatches(model, unrolled_proto, tokens[:26], 17) == []


@pytest.mark.control("state-contract")
@pytest.mark.parametrize("name", ["tiny-llama", "tiny-gpt2", "tiny-mamba", "tiny-mistral", "tiny-mamba2"])
def test_negative_control_mutated_graph_is_caught(name):
    model = load(name, temperature=0.8)
    step_proto, unrolled_proto = graphs(model)
    assert step_mismatches(model, add_to_sub(step_proto), [72, 105], [0.25, 0.75])
    assert unrolled_mismatches(model, add_to_sub(unrolled_proto), [72, 105, 33], 2)


@pytest.mark.export("batch-invariance")
@pytest.mark.parametrize("name", ["tiny-llama", "tiny-gpt2", "tiny-mistral"])
def test_attention_mask_is_the_specs_key_mask_bitwise(name):
    """Left padding through genai's attention_mask equals the spec's forward with that key_mask, bit for bit,
    for a batch of two sequences (one padded); the negative control (mask ignored) differs."""
    from lmstep.spec import NP

    model = load(name)
    _, unrolled_proto = graphs(model)
    tokens = np.array([[0, 0, 72, 105, 33], [10, 20, 30, 40, 50]], np.int64)
    mask = np.array([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1]], np.int64)
    positions = np.maximum(np.cumsum(mask, axis=1) - 1, 0)
    cache = model.module.empty_cache(model.config, 2)
    logits, new_cache = model.module.forward(
        NP, model.config, model.weights, tokens, positions, cache, mask.astype(bool)
    )
    state = {k: np.zeros((2,) + v.shape[1:], np.float32) for k, v in io.empty_state(model.arch, model.config).items()}
    feeds = {"input_ids": tokens, "attention_mask": mask, "position_ids": positions} | state
    r = run_ref(unrolled_proto, feeds)
    assert np.array_equal(r["logits"], logits)
    assert all(
        np.array_equal(r[io.present_of(f"past_key_values.{i}.key")], k.view()) for i, (k, _) in enumerate(new_cache)
    )
    ignored = run_ref(unrolled_proto, feeds | {"attention_mask": np.ones_like(mask)})
    assert not np.array_equal(ignored["logits"][0], logits[0])


# The scan's power-of-two boundaries: the reference's round count and the runtime schedule's pairing levels
# (k <= 5) and top Hillis-Steele rounds (33, 65, 129 start a new top round) change at these lengths.
BOUNDARY_LENGTHS = sorted({n for k in range(1, 8) for n in (2**k - 1, 2**k, 2**k + 1)})
SMALL_MAMBA = mamba.Config(
    vocab_size=32, hidden_size=8, state_size=4, num_hidden_layers=2, intermediate_size=8, time_step_rank=2
)


def small_mamba(seed: int = 0) -> Model:
    return Model("mamba", SMALL_MAMBA, builtin.init_weights("mamba", SMALL_MAMBA, seed), name="small-mamba")


def carried_state(model, batch: int, seed: int):
    """A random Mamba state for ``batch`` sequences (per layer conv window and h), so the carried-state path runs."""
    rng = np.random.default_rng(seed)
    shapes = [t.shape[1:] for pair in model.init_state().cache for t in pair]
    flat = [rng.standard_normal((batch, *shape)).astype(np.float32) for shape in shapes]
    return tuple(zip(flat[0::2], flat[1::2]))


def batched_unrolled_mismatches(model, proto, tokens, forward) -> list[str]:
    """A batch of sequences [B, T] after a carried state: graph vs ``forward`` on numpy, bit for bit."""
    cache = carried_state(model, tokens.shape[0], tokens.shape[1])
    logits, new_cache = forward(NP, model.config, model.weights, tokens, None, cache)
    state = dict(zip(io.empty_state(model.arch, model.config), [t for pair in cache for t in pair]))
    r = run_ref(proto, {"input_ids": tokens} | state)
    bad = [] if np.array_equal(r["logits"], logits) else ["logits"]
    flat = [t for pair in new_cache for t in pair]
    return bad + [k for k, t in zip(state, flat) if not np.array_equal(r[io.present_of(k)], t)]


MAMBA_GRAPHS: dict[str, object] = {}


def mamba_graphs():
    if not MAMBA_GRAPHS:
        model = small_mamba()
        MAMBA_GRAPHS.update(
            model=model, runtime=build_unrolled(model), reference=build_unrolled(model, forward=mamba.forward)
        )
    return MAMBA_GRAPHS


@pytest.mark.parametrize("n", BOUNDARY_LENGTHS)
def test_mamba_graph_equals_its_scan_schedule_on_numpy_at_scan_boundaries(n):
    """model.onnx (the runtime's scan schedule) = mamba_scan.forward on numpy, bit for bit, for a batch of 2
    sequences after a carried state, at every power-of-two boundary up to 129 tokens; so does the spec's reference
    forward built as a graph, against the numpy spec."""
    g = mamba_graphs()
    tokens = np.random.default_rng(n).integers(0, SMALL_MAMBA.vocab_size, (2, n)).astype(np.int64)
    assert batched_unrolled_mismatches(g["model"], g["runtime"], tokens, unrolled_forward(g["model"])) == []
    assert batched_unrolled_mismatches(g["model"], g["reference"], tokens, mamba.forward) == []


def test_negative_control_the_mamba_graph_is_not_the_spec_reference_bitwise():
    """The two schedules bracket the scan differently: the bitwise comparison tells them apart."""
    g = mamba_graphs()
    tokens = np.random.default_rng(0).integers(0, SMALL_MAMBA.vocab_size, (2, 33)).astype(np.int64)
    assert batched_unrolled_mismatches(g["model"], g["runtime"], tokens, mamba.forward) != []
