"""Floating-point and integer counterexamples are real: replayed through numpy (and onnxruntime), they show the
difference Z3 claims. The replays are also recomputed here independently of proofs/replay.py."""

from __future__ import annotations

import numpy as np
import pytest
from proofs_helpers import default_results

from lmstep.proofs import integers
from lmstep.proofs.obligations import REGISTRY
from lmstep.spec import mamba
from lmstep.spec.ops import NP

ml_dtypes = pytest.importorskip("ml_dtypes")
DTYPES = {"float32": np.float32, "float16": np.float16, "bfloat16": ml_dtypes.bfloat16}


def _model(name):
    result = default_results()[name]
    assert result.verdict == "refuted" and result.model, result.detail
    return result


@pytest.mark.law("numeric-tolerance")
@pytest.mark.parametrize("fmt", DTYPES)
def test_add_assoc_counterexample_replays_in_numpy(fmt):
    result = _model(f"floats/add-assoc-{fmt}")
    a, b, c = (np.asarray(result.model[k], np.float64).astype(DTYPES[fmt]) for k in "abc")
    assert all(np.isfinite(np.float64(x)) for x in (a, b, c))
    assert (a + b) + c != a + (b + c)
    assert any(line.startswith(f"numpy {fmt}") and "!=" in line for line in result.replay)


@pytest.mark.law("numeric-tolerance")
@pytest.mark.parametrize("fmt", DTYPES)
def test_scan_counterexample_replays_through_the_numpy_spec(fmt):
    result = _model(f"floats/scan-vs-recurrence-{fmt}")
    dt = DTYPES[fmt]
    a = np.array([result.model[f"a{t}"] for t in range(4)], np.float64).astype(dt)
    b = np.array([result.model[f"b{t}"] for t in range(4)], np.float64).astype(dt)
    assert all(0.5 <= float(x) <= 1 and float(x) * 256 == int(float(x) * 256) for x in a)  # the stated assumptions
    assert all(abs(float(x)) <= 1 for x in b)
    _, h_scan = mamba._scan(NP, a.reshape(1, 4, 1, 1), b.reshape(1, 4, 1, 1))
    h = dt(0)
    for t in range(4):
        h = a[t] * h + b[t]
    assert h_scan.dtype == dt and h_scan[0, -1, 0, 0] != h


def test_onnxruntime_replay_is_reported():
    pytest.importorskip("onnxruntime")
    lines = default_results()["floats/add-assoc-float32"].replay
    assert any(
        line.startswith("onnxruntime") and "differ" in line and "bit-identical to numpy" in line for line in lines
    )


@pytest.mark.law("split-invariance")
@pytest.mark.parametrize("name", ["integers/chunked-scan-saturate8", "integers/chunked-scan-q4.4"])
def test_integer_counterexamples_replay(name):
    result = _model(name)
    dom = {"integers/chunked-scan-saturate8": integers.SAT8, "integers/chunked-scan-q4.4": integers.FIXED8}[name]
    lines = integers.replay(dom, result.model)
    assert "!=" in lines[0]


def test_a_counterexample_that_does_not_reproduce_is_an_error():
    from lmstep.proofs.domains import FLOAT32
    from lmstep.proofs.replay import ReplayMismatch, replay_both

    with pytest.raises(ReplayMismatch):
        replay_both(FLOAT32, {"a": 1.0}, lambda x: (x["a"], x["a"]), None, None, {}, "a vs a")


def test_float_obligations_have_replays():
    for name, ob in REGISTRY.items():
        if name.startswith(("floats/add-assoc", "floats/scan-vs")):
            assert ob.replay is not None and ob.expected == "refuted"
