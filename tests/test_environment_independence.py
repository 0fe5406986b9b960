"""The test suite holds in whatever environment the machine gives it: helpers never hand one model's results to
another, subprocesses inherit the environment (the BLAS kernel decides the bits), and the BLAS thread policy."""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
import weakref

from runtime_helpers import exported

from lmstep.runtime.folder import read_manifest
from lmstep.spec import builtin, mamba
from lmstep.spec.model import Model


def _tiny_mamba(seed: int) -> Model:
    cfg = mamba.Config(
        vocab_size=8, hidden_size=4, state_size=2, num_hidden_layers=1, intermediate_size=4, time_step_rank=1
    )
    return Model("mamba", cfg, builtin.init_weights("mamba", cfg, seed), name=f"m{seed}")


def test_export_cache_never_hands_out_another_models_export():
    """The cache is keyed by id(model): it must keep each model alive, or CPython reuses the id for a later model
    and the cache hands that model the earlier one's export (seen: tiny-mamba given another model's graphs)."""
    refs = []
    for seed in range(3):
        model = _tiny_mamba(seed)
        digest, folder = model.weights_digest(), exported(model)
        assert read_manifest(folder)["weights_sha256"] == digest
        refs.append(weakref.ref(model))
        del model
        gc.collect()
    assert all(r() is not None for r in refs)  # kept alive, so no id can be reused while the cache holds it


CHILD = (
    "import json; from lmstep.runtime.environment import blas; from lmstep.spec import load\n"
    "m = load('tiny-llama', temperature=0.9, top_k=20)\n"
    "print(json.dumps({'kernel': [b['kernel'] for b in blas()], 'tokens': m.generate([72, 105], 24, seed=5)}))"
)


def _child(**overrides: str) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", CHILD], capture_output=True, text=True, check=True, env={**os.environ, **overrides}
    )
    return json.loads(out.stdout)


def test_a_child_process_with_the_inherited_environment_uses_the_same_blas_kernel():
    from lmstep.runtime.environment import blas

    here = [b["kernel"] for b in blas()]
    assert _child()["kernel"] == here


def test_policy_one_blas_thread_unless_the_user_chose(monkeypatch):
    from lmstep.runtime import threads

    for name in ("LMSTEP_BLAS_THREADS",) + threads.USER_CHOICE:
        monkeypatch.delenv(name, raising=False)
    assert threads.policy() == 1
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert threads.policy() is None  # the BLAS read the user's own setting when it loaded
    monkeypatch.setenv("LMSTEP_BLAS_THREADS", "2")
    assert threads.policy() == 2


def test_the_command_line_runs_one_blas_thread_unless_told(tmp_path):
    """Through the real entry point, in a fresh process: the policy is in force when the work runs (the trace
    records the BLAS thread count it ran with), and LMSTEP_BLAS_THREADS or the BLAS' own variable override it."""
    from lmstep.runtime import threads

    base = {k: v for k, v in os.environ.items() if k not in ("LMSTEP_BLAS_THREADS",) + threads.USER_CHOICE}

    def recorded(**extra: str) -> list[int]:
        out = tmp_path / f"t{len(extra)}{''.join(extra)}.jsonl"
        argv = [sys.executable, "-m", "lmstep.runtime.cli", "trace", "-m", "tiny-mamba", "-n", "2", "-o", str(out)]
        subprocess.run(argv, check=True, capture_output=True, env={**base, **extra})
        meta = json.loads(out.read_text().splitlines()[0])["#meta"]
        return [b["threads"] for b in meta["environment"]["blas"]]

    assert set(recorded()) == {1}
    if (os.cpu_count() or 1) >= 2:  # a BLAS caps its threads at the cores it has
        assert set(recorded(LMSTEP_BLAS_THREADS="2")) == {2}
        assert set(recorded(OPENBLAS_NUM_THREADS="2")) == {2}  # the user's own choice, left alone
