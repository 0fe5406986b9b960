"""Replaying a solver's floating-point counterexample on real hardware.

Z3's answer is about IEEE arithmetic as the standard defines it; a replay shows the same inputs give the same
difference (a) through the numpy spec itself, in the format's numpy dtype, and (b) through onnxruntime, running
the very expression DAG the solver reasoned about, converted op for op to an ONNX graph (fp.add -> Add,
fp.mul -> Mul, ...). A counterexample that does not reproduce in numpy is a bug in the encoding, so
:class:`ReplayMismatch` is raised and the runner reports the obligation as an error.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import z3

from .domains import Float, fp_value


class ReplayMismatch(AssertionError):
    """The solver's counterexample does not show the claimed difference when run for real."""


def np_dtype(dom: Float) -> Any:
    """numpy's dtype for an IEEE format (bfloat16 through ml_dtypes, None when it is not installed)."""
    if dom.name == "bfloat16":
        try:
            import ml_dtypes
        except ImportError:
            return None
        return ml_dtypes.bfloat16
    return {"float32": np.float32, "float16": np.float16}[dom.name]


def bits(x: Any) -> str:
    """A value and its bit pattern, e.g. 0.1 (0x3dcccccd), as the trace format writes floats (docs/design.md §5)."""
    a = np.asarray(x)
    width = a.dtype.itemsize * 8
    raw = int(a.view({16: np.uint16, 32: np.uint32, 64: np.uint64}[width]))
    return f"{float(a)!r} (0x{raw:0{width // 4}x})"


def same(x: Any, y: Any) -> bool:
    """Bitwise equality, except that +0 == -0 (the law compares with IEEE ==)."""
    return bool(np.asarray(x) == np.asarray(y)) or (
        np.isnan(np.asarray(x, np.float64)) and np.isnan(np.asarray(y, np.float64))
    )


def replay_both(
    dom: Float,
    inputs: dict[str, Any],
    compute: Callable[[dict[str, np.ndarray]], tuple[Any, Any]],
    left: z3.ExprRef,
    right: z3.ExprRef,
    variables: dict[str, z3.ExprRef],
    what: str,
) -> list[str]:
    """Replay a counterexample through the numpy spec (``compute``: the two ways, as the spec computes them)
    and through onnxruntime (the solver's two expression DAGs); the ORT line says whether its bits match."""
    dtype = np_dtype(dom)
    if dtype is None:
        return [f"numpy: skipped, {dom.name} needs ml_dtypes (pip install ml-dtypes)"]
    arrays = {k: np.asarray(v, dtype=np.float64).astype(dtype) for k, v in inputs.items()}
    with np.errstate(all="ignore"):
        a, b = compute(arrays)
    if same(a, b):
        raise ReplayMismatch(f"numpy {dom.name}: {what} gave {bits(a)} both ways")
    return [f"numpy {dom.name}: {what}: {bits(a)} != {bits(b)}"] + ort_replay(
        dom, inputs, left, right, variables, what, (a, b)
    )


_ONNX_OPS = {z3.Z3_OP_FPA_ADD: "Add", z3.Z3_OP_FPA_SUB: "Sub", z3.Z3_OP_FPA_MUL: "Mul", z3.Z3_OP_FPA_DIV: "Div"}


def to_onnx(dom: Float, outputs: dict[str, z3.ExprRef], names: dict[str, str]) -> Any:
    """An ONNX model computing ``outputs`` from scalar inputs: one node per fp operation of the z3 DAG.
    ``names`` maps each z3 variable (by its string) to an input name. Only round-to-nearest-even ops."""
    from onnx import TensorProto, helper

    elem = {"float32": TensorProto.FLOAT, "float16": TensorProto.FLOAT16, "bfloat16": TensorProto.BFLOAT16}[dom.name]
    nodes, inits, seen = [], [], {}

    def visit(t: z3.ExprRef) -> str:
        key = t.get_id()
        if key in seen:
            return seen[key]
        if z3.is_fp_value(t):
            name = f"c{len(seen)}"
            value = np.asarray(fp_value(t), dtype=np.float64).astype(np_dtype(dom) or np.float32)
            inits.append(helper.make_tensor(name, elem, [], vals=value.tobytes(), raw=True))
        elif z3.is_const(t):
            name = names[str(t)]
        else:
            op = _ONNX_OPS.get(t.decl().kind())
            if op is None or not z3.eq(t.arg(0), z3.RNE()):
                raise NotImplementedError(f"no ONNX op for {t.decl()}")
            args = [visit(t.arg(i)) for i in range(1, t.num_args())]
            name = f"n{len(seen)}"
            nodes.append(helper.make_node(op, args, [name]))
        seen[key] = name
        return name

    outs = []
    for out_name, t in outputs.items():
        nodes.append(helper.make_node("Identity", [visit(t)], [out_name]))
        outs.append(helper.make_tensor_value_info(out_name, elem, []))
    ins = [helper.make_tensor_value_info(n, elem, []) for n in names.values()]
    graph = helper.make_graph(nodes, "counterexample", ins, outs, inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def ort_replay(
    dom: Float,
    inputs: dict[str, Any],
    left: z3.ExprRef,
    right: z3.ExprRef,
    variables: dict[str, z3.ExprRef],
    what: str,
    numpy_values: tuple[Any, Any],
) -> list[str]:
    """Run both expression DAGs in onnxruntime (CPU, no graph optimisation: fusions change bits)."""
    try:
        import onnxruntime as ort
    except ImportError:
        return ["onnxruntime: skipped, not installed"]
    dtype = np_dtype(dom)
    if dtype is None:
        return [f"onnxruntime: skipped, {dom.name} inputs need ml_dtypes"]
    model = to_onnx(dom, {"left": left, "right": right}, {str(v): k for k, v in variables.items()})
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    try:
        session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
        feeds = {k: np.asarray(inputs[k], np.float64).astype(dtype) for k in variables}
        out_left, out_right = session.run(["left", "right"], feeds)
    except Exception as err:  # a kernel missing for this dtype on CPU is a fact to report, not a failure
        first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        return [f"onnxruntime {ort.__version__} {dom.name}: not run ({first_line[:120]})"]
    verdict = "differ" if not same(out_left, out_right) else "equal: NOT reproduced"
    bitwise = all(
        np.asarray(x).tobytes() == np.asarray(y).astype(dtype).tobytes()
        for x, y in zip((out_left, out_right), numpy_values)
    )
    note = (
        "bit-identical to numpy"
        if bitwise
        else "not bit-identical to numpy (CPU kernels may compute this format in float32)"
    )
    return [
        f"onnxruntime {ort.__version__} {dom.name}: {what}: {bits(out_left)} vs {bits(out_right)} ({verdict}; {note})"
    ]
