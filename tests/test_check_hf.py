"""transformers as an implementation under check (the optional hf extra): Llama, GPT-2 and Mamba-2 conform at L1,
and the checker pins down where transformers' Mamba and (with a binding time_step_limit) Mamba-2 diverge. Skipped,
with the reason, without torch."""

from pathlib import Path

import pytest

pytest.importorskip("torch", reason="torch/transformers not installed (optional: pip install -e '.[hf]')")
pytest.importorskip("transformers", reason="transformers not installed (optional: pip install -e '.[hf]')")

from lmstep.runtime.check import Level, check, open_impl  # noqa: E402
from lmstep.spec import load  # noqa: E402

FIXTURES = Path(__file__).parent / "fixtures" / "hf"


@pytest.mark.parametrize(
    "name", ["llama-gqa-theta-sharded", "llama-mqa-headdim-bias-bf16", "gpt2-base", "mamba2-groups-chunk4"]
)
def test_transformers_conforms_at_l1(name):
    model = load(FIXTURES / name, temperature=0.8, top_k=20)
    report = check(model, open_impl("hf", model), required=Level.L1, max_examples=10)
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
    report = check(model, hf, required=Level.L1, max_examples=20)
    if broken:  # (a transformers release that fixes it would pass; the adapter is what is tested here)
        assert not report.passed and report.failed_law == "split" and len(report.counterexample) <= 4, report.message
        assert report.counterexample[-1]["op"] == "run" and len(report.counterexample[-1]["tokens"]) >= 2
    else:
        assert report.passed, report.message


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
    report = check(model, hf, required=Level.L1, max_examples=20)
    if broken:  # (a transformers release that fixes it would pass; the adapter is what is tested here)
        assert not report.passed and len(report.counterexample) <= 4, report.message
        last = report.counterexample[-1]
        assert last["op"] == "decode" or (last["op"] == "run" and len(last["tokens"]) == 1), report.counterexample
    else:
        assert report.passed, report.message
