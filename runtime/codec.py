"""Bit-exact JSON encodings shared by the JSON-lines protocol, the counterexample traces and the golden traces.

- a float32 scalar:  {"f32": "0x3f000000"}   (its IEEE-754 bit pattern; DESIGN.md §4, ITF style)
- a float32 array:   {"dtype": "f32", "shape": [2, 3], "b64": "<base64 of little-endian bytes, C order>"}
"""

from __future__ import annotations

import base64
import struct
from typing import Any

import numpy as np

from lmstep.spec.errors import LmstepError

_HEX_DIGITS = frozenset("0123456789abcdefABCDEF")


class CodecError(LmstepError):
    """A JSON value that is not a valid encoding."""


def f32_bits(x: float) -> str:
    """The float32 bit pattern of ``x`` (rounded to float32 first) as '0x' + 8 lowercase hex digits."""
    return f"0x{struct.unpack('<I', struct.pack('<f', float(np.float32(x))))[0]:08x}"


def f32_from_bits(text: Any) -> float:
    """Inverse of :func:`f32_bits`: the float32 value (as a Python float) with that bit pattern."""
    # Exactly 8 hex digits: int(..., 16) alone would also take "+1234567", " 1234567" and "1_234567".
    if not isinstance(text, str) or len(text) != 10 or text[:2] != "0x" or not set(text[2:]) <= _HEX_DIGITS:
        raise CodecError(f"expected '0x' and 8 hex digits, got {str(text)[:40]!r}")
    bits = int(text[2:], 16)
    return struct.unpack("<f", struct.pack("<I", bits))[0]


def f32_hex(x: float) -> dict[str, str]:
    return {"f32": f32_bits(x)}


def f32_value(obj: Any) -> float:
    if isinstance(obj, (int, float)) and not isinstance(obj, bool):
        return float(_as_f32(np.asarray(obj, dtype=np.float64)))
    if not isinstance(obj, dict) or "f32" not in obj:
        raise CodecError(f'expected a number or {{"f32": "0x........"}}, got {str(obj)[:60]}')
    return f32_from_bits(obj["f32"])


def encode_array(a: Any) -> dict[str, Any]:
    arr = np.ascontiguousarray(a, dtype="<f4")
    return {"dtype": "f32", "shape": list(arr.shape), "b64": base64.b64encode(arr.tobytes()).decode("ascii")}


def decode_array(obj: Any) -> np.ndarray:
    """The inverse of encode_array; also accepts nested lists of numbers (convenient for hand-written peers)."""
    if isinstance(obj, list):
        try:
            wide = np.asarray(obj, dtype=np.float64)
        except (TypeError, ValueError, OverflowError):
            raise CodecError("array given as a list must contain only numbers, nested evenly") from None
        return _as_f32(wide)
    try:
        if obj.get("dtype") != "f32":
            raise CodecError(f'unsupported array dtype {obj.get("dtype")!r}; use "f32"')
        shape = [int(n) for n in obj["shape"]]
        raw = base64.b64decode(obj["b64"], validate=True)
    except CodecError:
        raise
    except (AttributeError, KeyError, TypeError, ValueError):
        raise CodecError('expected {"dtype": "f32", "shape": [...], "b64": "..."}') from None
    if any(n < 0 for n in shape) or len(raw) != 4 * int(np.prod(shape, dtype=np.int64)):
        raise CodecError(f"array bytes ({len(raw)}) do not match shape {shape} of float32")
    return np.frombuffer(raw, dtype="<f4").reshape(shape).astype(np.float32)


def _as_f32(wide: np.ndarray) -> np.ndarray:
    """float64 -> float32, refusing finite values that float32 cannot hold (they would silently become inf)."""
    if (np.isfinite(wide) & (np.abs(wide) > np.finfo(np.float32).max)).any():
        raise CodecError("a number is outside the float32 range; send float32 values")
    return wide.astype(np.float32)
