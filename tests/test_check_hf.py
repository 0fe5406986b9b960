"""transformers as an implementation under check (the optional hf extra): Llama, GPT-2, one fixture of each
Llama-style family (Llama 3.x RoPE, Qwen2, Qwen3, Gemma, Phi-3, and Mistral, whose sliding window's cache, W - 1
keys, is compared tensor by tensor) and Mamba-2 conform at L1, and the checker pins down where transformers' Mamba
and (with a binding time_step_limit) Mamba-2 diverge. Skipped, with the reason, without torch."""

from pathlib import Path

import pytest

pytest.importorskip("torch", reason="torch/transformers not installed (optional: pip install -e '.[hf]')")
pytest.importorskip("transformers", reason="transformers not installed (optional: pip install -e '.[hf]')")

from lmstep.runtime.check import Level, check, open_impl  # noqa: E402
from lmstep.spec import load  # noqa: E402

FIXTURES = Path(__file__).parent / "fixtures" / "hf"


FAMILIES = [
    "llama3-rope-gqa",
    "qwen2-mqa-tied-linear-bf16",  # (the windowed one: transformers trims its cache to W - 1 = 63 rows at pos 64)
    "qwen3-mqa-tied-bias-llama3-f16-sharded",
    "gemma-mqa-headdim",
    "phi3-partial-rotary-tied-bf16",
    "mistral-gqa-window4",
]


@pytest.mark.parametrize(
    "name", ["llama-gqa-theta-sharded", "llama-mqa-headdim-bias-bf16", "gpt2-base", *FAMILIES, "mamba2-groups-chunk4"]
)
def test_transformers_conforms_at_l1(name):
    model = load(FIXTURES / name, temperature=0.8, top_k=20)
    # transformers' adapter runs one sequence per handle (no 'batch'): the batch law is dropped, not left unexercised
    report = check(model, open_impl("hf", model), required=Level.L1, skip_laws=["batch"], max_examples=10)
    assert report.passed, report.message
    assert report.laws["state"]["level"] >= Level.L1  # the whole KV cache, not a sampled channel


def test_transformers_mamba_multi_token_continuation_is_found():
    """transformers 5.24's Mamba takes its one-token decode path for any forward with a cache, so a chunk of
    several tokens after a cache is wrong; single steps and whole prefills agree. The checker isolates it."""
    from lmstep.spec.conformance import FORMS, rel_err

    model = load(FIXTURES / "mamba-base")
    hf = open_impl("hf", model)
    h, whole = hf.run(hf.init(), [1, 2, 3])
    assert rel_err(whole, model.unrolled([1, 2, 3])) <= FORMS["mamba"]  # a prefill from the initial state
    h, z, _ = hf.decode(h, 4, 0.5)
    assert rel_err(z, model.unrolled([1, 2, 3, 4])[-1]) <= FORMS["mamba"]  # one cached step
    _, chunk = hf.run(h, [5, 6])
    broken = rel_err(chunk, model.unrolled([1, 2, 3, 4, 5, 6])[4:]) > FORMS["mamba"]  # two tokens after a cache
    report = check(model, hf, required=Level.L1, skip_laws=["batch"], max_examples=20)
    if broken:  # (a transformers release that fixes it would pass; the adapter is what is tested here)
        assert not report.passed and report.failed_law == "split" and len(report.counterexample) <= 4, report.message
        assert report.counterexample[-1]["op"] == "run" and len(report.counterexample[-1]["tokens"]) >= 2
    else:
        assert report.passed, report.message


def test_transformers_mistral_far_past_the_window(tmp_path):
    """A fresh random MistralForCausalLM (tools/hf_random.py) with a window of 5, saved and loaded by lmstep: 96
    tokens (19 windows) in one forward, and in chunks of 4, 5, 6 and 1 through transformers' own cache. The logits
    agree within the checkpoint tolerance (tests/test_checkpoints.py RTOL), and transformers' sliding-window cache
    equals the spec's state, W - 1 = 4 keys per layer, tensor by tensor. Negative control: read without its window
    the same checkpoint's logits differ."""
    import sys

    import attrs
    import numpy as np

    from lmstep.spec.conformance import rel_err

    sys.path.insert(0, str(Path(__file__).parent.parent / "tools"))
    from hf_random import build

    config = dict(vocab_size=50, hidden_size=32, intermediate_size=40, num_hidden_layers=2, num_attention_heads=4)
    build("mistral", 7, **config, num_key_value_heads=2, sliding_window=5, max_position_embeddings=128).save_pretrained(
        tmp_path
    )
    model = load(tmp_path)
    hf = open_impl("hf", model)
    tokens = np.random.default_rng(7).integers(0, 50, 96).tolist()
    assert rel_err(hf.run(hf.init(), tokens)[1], model.unrolled(tokens)) <= 1e-5
    handle, state, start = hf.init(), model.init_state(), 0
    for n in [4, 5, 6, 1] * 6:
        chunk, start = tokens[start : start + n], start + n
        handle, theirs = hf.run(handle, chunk)
        state, ours = model.prefill(state, chunk)
        assert rel_err(theirs, ours) <= 1e-5
        got, want = hf.state(handle), state.arrays()
        assert got.keys() == want.keys() and all(rel_err(got[k], a) <= 1e-5 for k, a in want.items())
    assert {a.shape[2] for a in want.values()} == {4}
    full = attrs.evolve(model, config=attrs.evolve(model.config, sliding_window=None))
    assert rel_err(hf.run(hf.init(), tokens)[1], full.unrolled(tokens)) > 1e-2


def test_transformers_mamba2_cached_decode_ignores_time_step_limit():
    """transformers 5.25's Mamba-2 clamps dt to time_step_limit in its chunked forward but not in its one-token
    cached decode (mamba2_selective_state_update takes no limit): a single token after a cache computes another
    model. Whole prefills and multi-token chunks after a cache agree with the spec. The checker isolates it."""
    from lmstep.spec.conformance import FORMS, rel_err

    model = load(FIXTURES / "mamba2-limit-groups4-bf16")
    tol, want = FORMS["mamba2"], model.unrolled([1, 2, 3, 4, 5, 6])
    hf = open_impl("hf", model)
    h, whole = hf.run(hf.init(), [1, 2, 3])
    assert rel_err(whole, want[:3]) <= tol  # a prefill from the initial state: the chunked path
    h2, chunk = hf.run(h, [4, 5])
    assert rel_err(chunk, want[3:5]) <= tol  # two tokens after a cache: the chunked path again
    _, z, _ = hf.decode(h, 4, 0.5)
    broken = rel_err(z, want[3]) > tol  # one token after a cache: the decode path, without the clamp
    report = check(model, hf, required=Level.L1, skip_laws=["batch"], max_examples=20)
    if broken:  # (a transformers release that fixes it would pass; the adapter is what is tested here)
        assert not report.passed and len(report.counterexample) <= 4, report.message
        last = report.counterexample[-1]
        assert last["op"] == "decode" or (last["op"] == "run" and len(last["tokens"]) == 1), report.counterexample
    else:
        assert report.passed, report.message
