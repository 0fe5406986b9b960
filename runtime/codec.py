"""Bit-exact JSON encodings shared by the JSON-lines protocol, the counterexample traces and the golden traces.

- a float32 scalar:  {"f32": "0x3f000000"}   (its IEEE-754 bit pattern; docs/design.md §5)
- a float32 array:   {"dtype": "f32", "shape": [2, 3], "b64": "<base64 of little-endian bytes, C order>"}
"""

from __future__ import annotations

import base64
import struct
from typing import Any

import numpy as np

from lmstep.spec.errors import LmstepError

_HEX_DIGITS = frozenset("0123456789abcdefABCDEF")


def brief(v: Any, n: int = 60) -> str:
    """A short repr for an error message, of any JSON value (a 5000-digit integer has no repr in Python >= 3.11)."""
    import reprlib

    r = reprlib.Repr()
    r.maxstring, r.maxother, r.maxlong = n, n, 30
    try:
        text = r.repr(v)
    except ValueError:
        text = f"<{type(v).__name__} too large to show>"
    return text if len(text) <= n else text[: n - 3] + "..."


class CodecError(LmstepError):
    """A JSON value that is not a valid encoding."""


def f32_bits(x: float) -> str:
    """The float32 bit pattern of ``x`` (rounded to float32 first) as '0x' + 8 lowercase hex digits."""
    return f"0x{struct.unpack('<I', struct.pack('<f', float(np.float32(x))))[0]:08x}"


def f32_from_bits(text: Any) -> float:
    """Inverse of :func:`f32_bits`: the float32 value (as a Python float) with that bit pattern."""
    # Exactly 8 hex digits: int(..., 16) alone would also take "+1234567", " 1234567" and "1_234567".
    if not isinstance(text, str) or len(text) != 10 or text[:2] != "0x" or not set(text[2:]) <= _HEX_DIGITS:
        raise CodecError(f"expected '0x' and 8 hex digits, got {brief(text, 40)}")
    bits = int(text[2:], 16)
    return struct.unpack("<f", struct.pack("<I", bits))[0]


def f32_hex(x: float) -> dict[str, str]:
    return {"f32": f32_bits(x)}


def f32_value(obj: Any) -> float:
    if isinstance(obj, (int, float)) and not isinstance(obj, bool):
        try:
            return float(_as_f32(np.asarray(obj, dtype=np.float64)))
        except OverflowError:  # an integer beyond float64
            raise CodecError("an integer outside the float32 range; send float32 values") from None
    if not isinstance(obj, dict) or "f32" not in obj:
        raise CodecError(f'expected a number or {{"f32": "0x........"}}, got {brief(obj)}')
    return f32_from_bits(obj["f32"])


def encode_array(a: Any) -> dict[str, Any]:
    arr = np.ascontiguousarray(a, dtype="<f4")
    return {"dtype": "f32", "shape": list(arr.shape), "b64": base64.b64encode(arr.tobytes()).decode("ascii")}


def decode_array(obj: Any) -> np.ndarray:
    """The inverse of encode_array; also accepts nested lists of numbers (convenient for hand-written peers)."""
    if isinstance(obj, list):
        try:
            wide = np.asarray(obj, dtype=np.float64)
        except (TypeError, ValueError, OverflowError, RecursionError):
            raise CodecError("array given as a list must contain only numbers, nested evenly") from None
        return _as_f32(wide)
    try:
        if obj.get("dtype") != "f32":
            raise CodecError(f'unsupported array dtype {brief(obj.get("dtype"))}; use "f32"')
        shape = obj["shape"]
        if not isinstance(shape, list) or not all(isinstance(n, int) and not isinstance(n, bool) for n in shape):
            raise CodecError(f"an array's shape must be a list of integers, got {brief(shape)}")
        raw = base64.b64decode(obj["b64"], validate=True)
    except CodecError:
        raise
    except (AttributeError, KeyError, TypeError, ValueError):
        raise CodecError('expected {"dtype": "f32", "shape": [...], "b64": "..."}') from None
    size = 1
    for n in shape:  # in Python integers: a product of int64s could wrap around to match the byte count
        size *= n
    if len(shape) > 32 or any(n < 0 for n in shape) or len(raw) != 4 * size:
        raise CodecError(f"array bytes ({len(raw)}) do not match shape {brief(shape)} of float32")
    return np.frombuffer(raw, dtype="<f4").reshape(shape).astype(np.float32)


def _as_f32(wide: np.ndarray) -> np.ndarray:
    """float64 -> float32, refusing finite values that float32 cannot hold (they would silently become inf)."""
    if (np.isfinite(wide) & (np.abs(wide) > np.finfo(np.float32).max)).any():
        raise CodecError("a number is outside the float32 range; send float32 values")
    return wide.astype(np.float32)
