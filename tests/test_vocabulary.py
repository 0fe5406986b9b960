"""The op vocabulary's contract (spec/vocabulary.py): every interpretation implements every op with the same
signature, an interpretation that reinterprets only part of it says which part, and every op is used.

Signatures are compared by introspection (tests/protocols.py): names, parameter names, kinds and defaults.
Types are mypy's job (tests/test_types.py)."""

from __future__ import annotations

import functools

import pytest
from protocols import members, mismatches

from lmstep.proofs.integers import IntNumpyOps
from lmstep.proofs.symbolic import Z3Ops
from lmstep.runtime.export import build_step, build_unrolled
from lmstep.runtime.graph_ops import GraphOps
from lmstep.spec import load
from lmstep.spec.ops import NumpyOps
from lmstep.spec.vocabulary import Ops

OPS = set(members(Ops))
INTERPRETATIONS = {"numpy": NumpyOps, "onnx": GraphOps, "z3": Z3Ops, "bit-vector": IntNumpyOps}
# Public methods an interpretation has besides the ops: Z3Ops' bookkeeping for stating proofs.
HELPERS = {"z3": {"fresh", "fact", "check", "func", "var"}}


def _public_methods(cls: type) -> set[str]:
    return {n for n in dir(cls) if not n.startswith("_") and callable(getattr(cls, n))}


@pytest.mark.parametrize("kind", INTERPRETATIONS)
def test_every_interpretation_implements_every_op_with_the_same_signature(kind):
    cls = INTERPRETATIONS[kind]
    assert mismatches(Ops, cls) == []
    extra = _public_methods(cls) - OPS - HELPERS.get(kind, set())
    assert not extra, f"{cls.__name__} has methods outside the vocabulary: {sorted(extra)}; add them to Ops first"


def test_the_bit_vector_interpretation_reinterprets_exactly_its_declared_subset():
    own = {n for n in vars(IntNumpyOps) if n in OPS}  # the rest is inherited from NumpyOps unchanged
    assert own == IntNumpyOps.BITVECTOR_OPS
    assert mismatches(Ops, IntNumpyOps, only=IntNumpyOps.BITVECTOR_OPS) == []


def test_negative_control_a_missing_or_changed_op_is_flagged():
    class Missing(NumpyOps):
        matmul = None  # type: ignore[assignment]

    del Missing.matmul
    Missing.matmul = property(lambda self: None)  # not a method

    class Renamed(NumpyOps):
        def slice(self, x, axis, begin, end=None):  # "begin" instead of "start"
            return super().slice(x, axis, begin, end)

    class NewDefault(NumpyOps):
        def reduce_sum(self, x, axis, keepdims=False):  # another default changes every caller's result
            return super().reduce_sum(x, axis, keepdims)

    class Lacking:
        def add(self, a, b):
            return a + b

        def gather(self, data, indices):  # no axis
            return data[indices]

    assert mismatches(Ops, Missing) == ["Missing.matmul is not a method"]
    assert [p.split("(")[0] for p in mismatches(Ops, Renamed)] == ["Renamed.slice"]
    assert [p.split("(")[0] for p in mismatches(Ops, NewDefault)] == ["NewDefault.reduce_sum"]
    lacking = mismatches(Ops, Lacking)
    assert "Lacking lacks matmul" in lacking and len(lacking) == len(OPS) - 1  # all but add and gather
    assert any(p.startswith("Lacking.gather(self, data, indices) != gather(") for p in lacking)

    class Sneaky(IntNumpyOps):  # reinterprets sub without declaring it
        def sub(self, a, b):
            return super().sub(a, b)

    assert {n for n in vars(Sneaky) if n in OPS} != IntNumpyOps.BITVECTOR_OPS


def _record(cls: type, used: set[str], monkeypatch: pytest.MonkeyPatch) -> None:
    for name in OPS:
        original = getattr(cls, name)

        @functools.wraps(original)
        def wrapper(self, *args, _name=name, _original=original, **kwargs):
            used.add(_name)
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(cls, name, wrapper)


def ops_used(monkeypatch: pytest.MonkeyPatch) -> set[str]:
    """The ops called while the built-ins run (prefill, a sampled step) and export (both graphs)."""
    used: set[str] = set()
    _record(NumpyOps, used, monkeypatch)
    _record(GraphOps, used, monkeypatch)
    for name in ("tiny-llama", "tiny-gpt2", "tiny-mamba", "tiny-mamba2"):
        model = load(name, temperature=0.8, top_k=5, top_p=0.9)
        state, _ = model.prefill(model.init_state(), [1, 2, 3])
        model.step(state, 4, 0.5)
        build_step(model), build_unrolled(model)
    return used


def test_every_op_is_used_by_the_models_or_the_export(monkeypatch):
    """An op that nothing calls is dead weight in four places (as ``log`` was): remove it from Ops."""
    assert OPS - ops_used(monkeypatch) == set()


def test_negative_control_an_op_nothing_calls_is_reported(monkeypatch):
    used = ops_used(monkeypatch)
    assert ({"log"} | OPS) - used == {"log"}
