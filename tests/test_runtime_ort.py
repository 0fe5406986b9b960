"""onnxruntime (CPU) against the spec: L1 logits and state within measured tolerances, L2 greedy tokens equal
(outside near-ties), L0 bitwise run to run and across thread counts, unrolled graph = repeated step graph,
states that are values. Each property has a negative control that the same check catches."""

from __future__ import annotations

import attrs
import numpy as np
import onnxruntime as ort
import pytest
from hypothesis import given
from hypothesis import strategies as st
from runtime_helpers import GAP_FACTOR, LOGITS_RTOL, STATE_RTOL, greedy_gap, onnx_model, rel_err, state_err
from strategies import models

import lmstep.runtime.session as session
from lmstep.runtime import contract as io
from lmstep.runtime.onnx_model import OnnxState
from lmstep.spec import load, rand_for
from lmstep.spec.arrays import tree_map

BUILTINS = ["tiny-llama", "tiny-gpt2", "tiny-mamba", "tiny-mistral", "tiny-mamba2"]


def divergences(model, om, chunks, steps) -> list[str]:
    """Prefill ``chunks`` one after another, then greedy-step ``steps`` tokens, in the spec and in onnxruntime;
    what exceeds the tolerances (logits, state) and any greedy token that differs outside a near-tie."""
    bad, arch = [], model.arch
    s, o = model.init_state(), om.init_state()
    for chunk in chunks:
        s, logits = model.prefill(s, chunk)
        o, ologits = om.prefill(o, chunk)
        if rel_err(ologits, logits) > LOGITS_RTOL[arch]:
            bad.append(f"prefill logits {rel_err(ologits, logits):.1e}")
        if state_err(o, s) > STATE_RTOL[arch]:
            bad.append(f"prefill state {state_err(o, s):.1e}")
    for t in steps:
        s, out = model.step(s, t, 0.5)
        o, oout = om.step(o, t, 0.5)
        if rel_err(oout.logits, out.logits) > LOGITS_RTOL[arch]:
            bad.append(f"step logits {rel_err(oout.logits, out.logits):.1e}")
        if oout.token != out.token and greedy_gap(out.logits) > GAP_FACTOR * LOGITS_RTOL[arch]:
            bad.append(f"greedy token {oout.token} != {out.token}")
    if state_err(o, s) > STATE_RTOL[arch]:
        bad.append(f"step state {state_err(o, s):.1e}")
    return bad


@st.composite
def cases(draw):
    model = draw(models())
    seq = draw(st.lists(st.integers(0, model.vocab_size - 1), min_size=1, max_size=20))
    cut = draw(st.integers(1, len(seq)))
    steps = draw(st.lists(st.integers(0, model.vocab_size - 1), min_size=1, max_size=4))
    return model, [seq[:cut], seq[cut:]] if cut < len(seq) else [seq], steps


@pytest.mark.export("numeric-tolerance", "state-contract")
@given(cases())
def test_ort_matches_spec_within_tolerance(case):
    model, chunks, steps = case
    assert divergences(model, onnx_model(model), chunks, steps) == []


@pytest.mark.control("numeric-tolerance")
def test_negative_control_wrong_weights_exceed_tolerance():
    """An export of slightly different weights (the embedding scaled by 1.001) fails the same check."""
    for name in BUILTINS:
        model = load(name)
        off = type(model)(
            model.arch, model.config, tree_map(lambda a: a * np.float32(1.001), model.weights), name="off"
        )
        assert divergences(model, onnx_model(off), [[72, 105, 33]], [10, 20])


# -- L0: onnxruntime is deterministic ---------------------------------------------------------------------
def trace(om, tokens) -> list[np.ndarray]:
    """Every number a short run produces: prefill logits and state, then step logits and tokens and state."""
    o, logits = om.prefill(om.init_state(), tokens[:-3])
    out = [logits, *o.arrays().values()]
    for t in tokens[-3:]:
        o, step = om.step(o, t, rand_for(1, o.pos + 1))
        out += [step.logits, np.array(step.token), *o.arrays().values()]
    return out


def bitwise_equal(a: list[np.ndarray], b: list[np.ndarray]) -> bool:
    return len(a) == len(b) and all(
        x.dtype == y.dtype and x.shape == y.shape and x.tobytes() == y.tobytes() for x, y in zip(a, b)
    )


@pytest.mark.export("determinism")
@pytest.mark.parametrize("name", BUILTINS)
def test_ort_bitwise_run_to_run_and_across_threads(name):
    model = load(name, temperature=0.9, top_k=50)
    tokens = list(range(40, 100))
    first = trace(onnx_model(model, threads=1), tokens)
    assert bitwise_equal(first, trace(onnx_model(model, threads=1), tokens))
    assert bitwise_equal(first, trace(onnx_model(model, threads=2), tokens))


@pytest.mark.control("determinism")
def test_negative_control_one_ulp_is_not_bitwise_equal():
    """The bitwise check sees a one-ulp change of one weight tensor."""
    model = load("tiny-llama")
    nudged = attrs.evolve(model.weights, norm=np.nextafter(model.weights.norm, np.float32(np.inf)))
    ulp = attrs.evolve(model, weights=nudged)
    tokens = list(range(40, 60))
    assert not bitwise_equal(trace(onnx_model(model), tokens), trace(onnx_model(ulp), tokens))


# -- unrolled graph = repeated step graph -------------------------------------------------------------------
# Measured max relative difference, ORT unrolled vs ORT steps (150 random models per architecture): 9.1e-7
# llama, 1.1e-6 gpt2, 2.4e-6 mamba (its parallel scan multiplies decays in another order than the recurrence);
# the logits tolerances cover them with room.
def unrolled_vs_steps(om, seq, offset=0) -> float:
    _, unrolled = om.prefill(om.init_state(), seq)
    o, worst = om.init_state(), 0.0
    for i, t in enumerate(seq[offset:]):
        o, out = om.step(o, t, 0.5)
        worst = max(worst, rel_err(out.logits, unrolled[i]))
    return worst


@pytest.mark.export("unrolled-eq-recurrent")
@given(models(), st.data())
def test_unrolled_graph_equals_repeated_step_graph(model, data):
    seq = data.draw(st.lists(st.integers(0, model.vocab_size - 1), min_size=1, max_size=16))
    assert unrolled_vs_steps(onnx_model(model), seq) <= LOGITS_RTOL[model.arch]


@pytest.mark.control("unrolled-eq-recurrent")
def test_negative_control_steps_off_by_one_token_are_caught():
    om = onnx_model(load("tiny-llama"))
    assert unrolled_vs_steps(om, [72, 105, 33, 10], offset=1) > LOGITS_RTOL["llama"]


# -- states are values ----------------------------------------------------------------------------------
def step_is_pure(om, state, token) -> bool:
    """Stepping leaves ``state`` unchanged, and stepping it again (a fork) gives the same bits."""
    before = state.arrays()
    s1, o1 = om.step(state, token, 0.3)
    s2, o2 = om.step(state, token, 0.3)
    unchanged = all(np.array_equal(before[k], v) for k, v in state.arrays().items())
    same = np.array_equal(o1.logits, o2.logits) and bitwise_equal(
        list(s1.arrays().values()), list(s2.arrays().values())
    )
    return unchanged and same


@pytest.mark.export("states-are-values")
@pytest.mark.parametrize("name", BUILTINS)
def test_states_are_values(name):
    om = onnx_model(load(name))
    state, _ = om.prefill(om.init_state(), [72, 105])
    assert step_is_pure(om, state, 33)
    # generate (two private buffers in turn for Mamba) gives what repeated steps give and leaves no trace.
    before = state.arrays()
    toks, o = [], state
    for _ in range(5):
        o, out = om.step(o, toks[-1] if toks else 33, rand_for(0, o.pos + 1))
        toks.append(out.token)
    assert om.generate_from(state, 33, 5, 0) == toks
    assert all(np.array_equal(before[k], v) for k, v in state.arrays().items())


@pytest.mark.control("states-are-values")
def test_alias_guard_and_negative_control(monkeypatch):
    """One buffer bound as both input and output is refused; with the guard off, the purity check catches it."""
    om = onnx_model(load("tiny-mamba"))
    state, _ = om.prefill(om.init_state(), [72, 105])
    aliased = {io.present_of(k): v for k, v in state.values.items()}
    with pytest.raises(AssertionError, match="bound to the buffer of an input"):
        om._step.run(om._step_feeds(33, state.pos, 0.3), state.values, into=aliased)

    monkeypatch.setattr(session, "check_no_alias", lambda inputs, outputs: None)
    real_run = session.GraphRunner.run

    def run_in_place(self, arrays, values, into=None, host_outputs=()):
        return real_run(
            self, arrays, values, into={io.present_of(k): v for k, v in values.items()}, host_outputs=host_outputs
        )

    monkeypatch.setattr(session.GraphRunner, "run", run_in_place)
    fresh = OnnxState(
        state.arch, state.pos, {k: ort.OrtValue.ortvalue_from_numpy(a) for k, a in state.arrays().items()}
    )
    assert not step_is_pure(om, fresh, 33)


# -- sliding window: bounded states; model.onnx also takes genai's whole-history past ----------------------------
@pytest.mark.export("sliding-window", "split-invariance")
def test_mistral_far_past_the_window():
    """tiny-mistral (window 16): chunks of 15, 16, 17 and 40 tokens, then 50 steps: logits and the bounded state
    (15 keys per layer) within the tolerances; the decode loop's states stay 15 rows too."""
    model = load("tiny-mistral")
    om = onnx_model(model)
    tokens = np.random.default_rng(3).integers(0, 256, 88).tolist()
    assert divergences(model, om, [tokens[:15], tokens[15:31], tokens[31:48], tokens[48:88]], tokens[:50]) == []
    state, _ = om.prefill(om.init_state(), tokens)
    assert {a.shape for a in state.arrays().values()} == {(1, 1, 15, 16)}
    assert om.generate_from(state, 7, 40, 3) == model.generate_from(
        model.prefill(model.init_state(), tokens)[0], 7, 40, 3
    )


@pytest.mark.export("sliding-window")
def test_mistral_model_onnx_accepts_a_whole_history_past():
    """onnxruntime-genai feeds model.onnx its own present back: [past; new] whole, never trimmed, with an
    attention_mask over the whole sequence. The band hides what the window evicts: the logits equal the spec's
    within the tolerance, 40 positions past the window."""
    model = load("tiny-mistral")
    om = onnx_model(model)
    tokens = np.random.default_rng(4).integers(0, 256, 70).tolist()
    past = io.empty_state(model.arch, model.config)
    spec, pos, worst = model.init_state(), 0, 0.0
    for chunk in (tokens[:20], tokens[20:21], tokens[21:50], tokens[50:51], tokens[51:70]):
        feeds = io.contract_feeds(model.arch, np.array([chunk], np.int64), pos) | past
        out = om._unrolled.run(feeds, {}, host_outputs=tuple(om._unrolled.output_names))
        past = {k: out[io.present_of(k)].numpy() for k in past}
        spec, logits = model.prefill(spec, chunk)
        worst, pos = max(worst, rel_err(out["logits"].numpy()[0], logits)), pos + len(chunk)
    assert {a.shape[2] for a in past.values()} == {70} and worst <= LOGITS_RTOL["llama"]
    assert io.kept_state(model.config, past).keys() == spec.arrays().keys()
    assert all(
        rel_err(io.kept_state(model.config, past)[k], a) <= STATE_RTOL["llama"] for k, a in spec.arrays().items()
    )


# -- generation: the same tokens as the spec --------------------------------------------------------------
@pytest.mark.export("sampler", "rand-by-position")
@pytest.mark.parametrize("name", BUILTINS)
@pytest.mark.parametrize("settings", [{}, {"temperature": 0.8, "top_k": 40, "top_p": 0.95}, {"temperature": 1.0}])
def test_generate_same_tokens_as_spec(name, settings):
    """Measured equal on these cases; the sampler's margins (docs/design.md §5, L2) were never needed here."""
    model = load(name, **settings)
    prompt = list(b"Hello, world")
    assert onnx_model(model).generate(prompt, 24, seed=7) == model.generate(prompt, 24, seed=7)


# -- CUDA -------------------------------------------------------------------------------------------------
HAVE_CUDA = "CUDAExecutionProvider" in ort.get_available_providers()
NO_CUDA = "no CUDA provider in this onnxruntime (CPU-only build or no GPU): CUDA = CPU checks skipped"


class StatelessPrefill:
    """A model whose prefill returns its initial state (a negative control: a provider that lost the state)."""

    def __init__(self, model):
        self.model, self.arch = model, model.arch

    def init_state(self):
        return self.model.init_state()

    def prefill(self, state, tokens):
        return self.model.init_state(), self.model.prefill(state, tokens)[1]

    def step(self, state, token, rand):
        return self.model.step(state, token, rand)


@pytest.mark.skipif(not HAVE_CUDA, reason=NO_CUDA)
@pytest.mark.parametrize("name", BUILTINS)
def test_cuda_matches_cpu_within_tolerance(name):
    from lmstep.runtime.loading import load as load_onnx

    cpu, cuda = load_onnx(name, provider="cpu"), load_onnx(name, provider="cuda")
    prompt = np.random.default_rng(1).integers(0, 256, 300).tolist()  # past 256: the scan's ninth level runs
    assert divergences(cpu, cuda, [prompt], range(5)) == []  # the same comparison as onnxruntime vs the spec
    assert cuda.generate([72, 105], 16) == cpu.generate([72, 105], 16)
    # Negative control: the same check catches a CUDA side that lost its state.
    assert divergences(cpu, StatelessPrefill(cuda), [prompt], range(5)) != []


@pytest.mark.skipif(not HAVE_CUDA, reason=NO_CUDA)
def test_cuda_is_bitwise_deterministic_run_to_run():
    from lmstep.runtime.loading import load as load_onnx

    cuda = load_onnx("tiny-mamba", provider="cuda")
    prompt = list(range(40, 120))
    runs = [cuda.prefill(cuda.init_state(), prompt)[1] for _ in range(3)]
    assert all(np.array_equal(r, runs[0]) for r in runs)


@pytest.mark.skipif(HAVE_CUDA, reason="a CUDA provider exists here: the unavailable-provider error cannot be shown")
def test_cuda_unavailable_is_a_clear_error():
    from lmstep.runtime.loading import load as load_onnx
    from lmstep.runtime.session import ProviderError

    with pytest.raises(ProviderError, match="provider cuda is not available"):
        load_onnx("tiny-llama", provider="cuda")
    assert (
        load_onnx("tiny-llama", provider="auto").provider_note
        == "provider auto -> cpu (no CUDA provider in this onnxruntime)"
    )


@pytest.mark.export("split-invariance")
def test_a_prompt_longer_than_the_graphs_scan_runs_in_chunks(monkeypatch):
    """The unrolled Mamba graph is built for up to mamba_scan.MAX_UNROLLED_LEN tokens (its scan's level count is
    static); longer prompts are prefilled in chunks with the state carried. Shown with the limit lowered to 7 tokens:
    the chunked prefill equals one call within the tolerances, while the same check catches chunks that drop the
    state."""
    from lmstep.runtime import mamba_scan
    from lmstep.runtime.loading import load as load_onnx

    om = load_onnx("tiny-mamba", provider="cpu")
    tokens = list(range(40, 70))
    s_one, l_one = om.prefill(om.init_state(), tokens)
    monkeypatch.setattr(mamba_scan, "MAX_UNROLLED_LEN", 7)
    s_chunked, l_chunked = om.prefill(om.init_state(), tokens)
    assert s_chunked.pos == len(tokens) and l_chunked.shape == l_one.shape
    assert rel_err(l_chunked, l_one) <= LOGITS_RTOL["mamba"] and state_err(s_chunked, s_one) <= STATE_RTOL["mamba"]
    # Negative control: chunks that each start from the initial state.
    dropped = np.concatenate([om.prefill(om.init_state(), tokens[i : i + 7])[1] for i in range(0, len(tokens), 7)])
    assert rel_err(dropped, l_one) > LOGITS_RTOL["mamba"]
