"""What a float-valued spec array holds when the spec runs symbolically: reals, IEEE floats or bit-vectors.

:class:`~lmstep.proofs.symbolic.Z3Ops` delegates every scalar operation on float data to one of these, so the
same spec function is read three ways by the prover:
- :class:`Real` - exact real arithmetic (the algebra the paper writes down);
- :class:`Float` - IEEE 754 binary formats with round-to-nearest-even, one rounding per op, no FMA (numpy and
  ONNX CPU kernels compute ``a * b + c`` as two rounded ops);
- :class:`BitVec` - fixed-width integers: wrap-around (two's complement), saturating, or Qm.f fixed point.

Index data (token ids, ranks, counts) is never a domain value: it stays a concrete numpy int array or becomes a
z3 ``Int`` term (unbounded; every index in the spec is far below 2**63).
"""

from __future__ import annotations

from fractions import Fraction
from typing import Any

import z3


class _Ordered:
    """Comparisons through z3's operators: reals, and signed bit-vectors (z3's < on bit-vectors is signed)."""

    def lt(self, a, b):
        return a < b

    def le(self, a, b):
        return a <= b

    def eq(self, a, b):
        return a == b

    def max(self, a, b):
        return z3.If(a >= b, a, b)

    def min(self, a, b):
        return z3.If(a <= b, a, b)


class Real(_Ordered):
    """Exact reals. Division is z3's total ``/`` (x/0 unspecified); Z3Ops adds a "divisor != 0" check."""

    name = "real"

    def sort(self) -> z3.SortRef:
        return z3.RealSort()

    def var(self, name: str) -> z3.ExprRef:
        return z3.Real(name)

    def const(self, x: Any) -> z3.ExprRef:
        return z3.RealVal(Fraction(float(x)) if not isinstance(x, int) else x)  # the float's exact value

    def owns(self, x: Any) -> bool:
        return z3.is_expr(x) and x.sort() == z3.RealSort()

    def from_int(self, x: z3.ExprRef) -> z3.ExprRef:
        return z3.ToReal(x)

    def add(self, a, b):
        return a + b

    def sub(self, a, b):
        return a - b

    def mul(self, a, b):
        return a * b

    def div(self, a, b):
        return a / b

    def neg(self, a):
        return -a


class Float:
    """IEEE 754 binary format with ``ebits`` exponent and ``sbits`` significand bits (incl. the hidden bit)."""

    RNE = z3.RNE()

    def __init__(self, ebits: int, sbits: int, name: str) -> None:
        self.ebits, self.sbits, self.name = ebits, sbits, name
        self._sort = z3.FPSort(ebits, sbits)

    def sort(self) -> z3.SortRef:
        return self._sort

    def var(self, name: str) -> z3.ExprRef:
        return z3.FP(name, self._sort)

    def const(self, x: Any) -> z3.ExprRef:
        # z3 rounds the Python double to this format with RNE, as numpy's cast to float32/float16 does.
        return z3.FPVal(float(x), None, self._sort)

    def owns(self, x: Any) -> bool:
        return z3.is_expr(x) and x.sort() == self._sort

    def from_int(self, x: z3.ExprRef) -> z3.ExprRef:
        return z3.fpToFP(self.RNE, z3.ToReal(x), self._sort)

    def add(self, a, b):
        return z3.fpAdd(self.RNE, a, b)

    def sub(self, a, b):
        return z3.fpSub(self.RNE, a, b)

    def mul(self, a, b):
        return z3.fpMul(self.RNE, a, b)

    def div(self, a, b):
        return z3.fpDiv(self.RNE, a, b)

    def neg(self, a):
        return z3.fpNeg(a)

    def lt(self, a, b):
        return z3.fpLT(a, b)

    def le(self, a, b):
        return z3.fpLEQ(a, b)

    def eq(self, a, b):
        return z3.fpEQ(a, b)  # IEEE equality: -0 == +0, NaN != NaN (numpy's ==)

    def max(self, a, b):
        # numpy maximum / ONNX Max: NaN propagates; otherwise the larger (which zero wins a +-0 tie is unspecified).
        return z3.If(z3.fpIsNaN(a), a, z3.If(z3.fpIsNaN(b), b, z3.If(z3.fpLT(a, b), b, a)))

    def min(self, a, b):
        return z3.If(z3.fpIsNaN(a), a, z3.If(z3.fpIsNaN(b), b, z3.If(z3.fpLT(b, a), b, a)))


def fp_value(v: z3.ExprRef) -> float:
    """A z3 floating-point numeral as a Python float (exact: every format here fits in a double)."""
    if z3.is_fp_value(v):
        if v.isNaN():
            return float("nan")
        if v.isInf():
            return float("-inf") if v.isNegative() else float("inf")
        if v.isZero():
            return -0.0 if v.isNegative() else 0.0
        return float(Fraction(z3.simplify(z3.fpToReal(v)).as_fraction()))
    raise TypeError(f"not a floating-point numeral: {v}")


FLOAT32 = Float(8, 24, "float32")
FLOAT16 = Float(5, 11, "float16")
BFLOAT16 = Float(8, 8, "bfloat16")


class BitVec(_Ordered):
    """Signed ``width``-bit integers. ``mode``: 'wrap' (two's complement, a ring: every polynomial identity of
    the reals holds), 'saturate' (clamp to [-2^(w-1), 2^(w-1)-1] after every op, as DSP/NPU int kernels do) or
    'fixed' (Q(w-f).f: values are integers scaled by 2^-frac, a product is shifted right by frac - truncating,
    i.e. rounding toward -inf - and wraps)."""

    def __init__(self, width: int, mode: str = "wrap", frac: int = 0) -> None:
        if mode not in ("wrap", "saturate", "fixed"):
            raise ValueError(f"unknown bit-vector mode {mode!r}")
        self.width, self.mode, self.frac = width, mode, frac
        self.name = f"bv{width}-{mode}" + (f"-q{frac}" if mode == "fixed" else "")
        self._sort = z3.BitVecSort(width)

    def sort(self) -> z3.SortRef:
        return self._sort

    def var(self, name: str) -> z3.ExprRef:
        return z3.BitVec(name, self.width)

    def const(self, x: Any) -> z3.ExprRef:
        return z3.BitVecVal(round(float(x) * (1 << self.frac)), self.width)

    def owns(self, x: Any) -> bool:
        return z3.is_expr(x) and x.sort() == self._sort

    def from_int(self, x: z3.ExprRef) -> z3.ExprRef:
        return z3.Int2BV(x * (1 << self.frac), self.width)

    def _clamp(self, wide: z3.ExprRef) -> z3.ExprRef:
        w = wide.size()
        hi, lo = (1 << (self.width - 1)) - 1, -(1 << (self.width - 1))
        return z3.Extract(
            self.width - 1,
            0,
            z3.If(
                wide > z3.BitVecVal(hi, w),
                z3.BitVecVal(hi, w),
                z3.If(wide < z3.BitVecVal(lo, w), z3.BitVecVal(lo, w), wide),
            ),
        )

    def add(self, a, b):
        if self.mode == "saturate":
            return self._clamp(z3.SignExt(1, a) + z3.SignExt(1, b))
        return a + b

    def sub(self, a, b):
        if self.mode == "saturate":
            return self._clamp(z3.SignExt(1, a) - z3.SignExt(1, b))
        return a - b

    def mul(self, a, b):
        if self.mode == "saturate":
            return self._clamp(z3.SignExt(self.width, a) * z3.SignExt(self.width, b))
        if self.mode == "fixed":
            wide = z3.SignExt(self.width, a) * z3.SignExt(self.width, b)
            return z3.Extract(self.width - 1 + self.frac, self.frac, wide)  # arithmetic >> frac, then wrap
        return a * b

    def div(self, a, b):
        raise NotImplementedError("division is not part of the integer scan laws")

    def neg(self, a):
        return self.sub(z3.BitVecVal(0, self.width), a)


def model_value(model: z3.ModelRef, x: Any) -> Any:
    """A term's value in a model as plain Python: float (reals, IEEE formats), int (Int, signed bit-vectors),
    bool; a Python number is returned as is."""
    if not z3.is_expr(x):
        return x.item() if hasattr(x, "item") else x
    v = model.eval(x, model_completion=True)
    if z3.is_fp(v):
        return fp_value(v)
    if z3.is_bv(v):
        return v.as_signed_long()
    if z3.is_bool(v):
        return z3.is_true(v)
    if z3.is_int_value(v):
        return v.as_long()
    if z3.is_rational_value(v):
        return float(Fraction(v.as_fraction()))
    if z3.is_algebraic_value(v):
        return float(v.approx(20).as_fraction())
    return str(v)
