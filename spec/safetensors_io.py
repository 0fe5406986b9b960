"""A reader for the safetensors format, written from its specification so the spec needs numpy only.

Layout of a ``.safetensors`` file (https://github.com/huggingface/safetensors, "Format"):

    [8 bytes]  N, unsigned little-endian 64-bit: the header's length in bytes
    [N bytes]  a UTF-8 JSON object {name: {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]}, ...}
               with an optional "__metadata__": {str: str}; it may be padded with trailing spaces
    [rest]     the data buffer; offsets are relative to its start; values are little-endian, row-major

The file is the only thing we trust less than the network: every number in the header is checked before it is
used (header length against the file size, offsets inside the buffer, byte length == prod(shape) * itemsize,
tensors neither overlapping nor leaving gaps), with the same rules the reference library applies, so a file one
accepts the other accepts too. Nothing is ever unpickled.

The data buffer is memory-mapped read-only. ``raw(name)`` is a view of a tensor's bytes in the map (no copy:
the operating system reads its pages when they are first touched); ``read(name)`` is a private copy;
``release(name)`` drops a tensor's pages from this process's resident memory (they stay in the page cache and
come back if touched again), so a loader that copies tensors out one by one holds one tensor's pages, not the
file's. A view keeps the map alive; the file must not change while a view is in use (as with any mapped file).
"""

from __future__ import annotations

import json
import mmap
import os
from collections.abc import Iterable
from typing import Any

import numpy as np

from .errors import CheckpointError

# The reference library refuses headers over 100 MB (safetensors/src/tensor.rs, MAX_HEADER_SIZE); so do we, so a
# corrupt length cannot make us allocate gigabytes before the check that the file is that long.
MAX_HEADER_SIZE = 100_000_000

# Format dtype -> numpy dtype, explicitly little-endian. BF16 has no numpy dtype: it is read as its raw uint16
# bits and widened by :func:`to_float32`. The 8-bit float formats are listed to name them in the refusal.
DTYPES: dict[str, np.dtype] = {
    "BOOL": np.dtype("|b1"),
    "U8": np.dtype("|u1"),
    "I8": np.dtype("|i1"),
    "I16": np.dtype("<i2"),
    "U16": np.dtype("<u2"),
    "I32": np.dtype("<i4"),
    "U32": np.dtype("<u4"),
    "I64": np.dtype("<i8"),
    "U64": np.dtype("<u8"),
    "F16": np.dtype("<f2"),
    "BF16": np.dtype("<u2"),
    "F32": np.dtype("<f4"),
    "F64": np.dtype("<f8"),
}
UNSUPPORTED_DTYPES = ("F8_E4M3", "F8_E5M2", "F8_E8M0", "F4", "F6_E2M3", "F6_E3M2", "C64")
FLOAT_DTYPES = ("F16", "BF16", "F32", "F64")


class TensorInfo:
    """One header entry, validated: where its bytes are and how to read them."""

    __slots__ = ("name", "dtype", "shape", "begin", "end")

    def __init__(self, name: str, dtype: str, shape: tuple[int, ...], begin: int, end: int):
        self.name, self.dtype, self.shape, self.begin, self.end = name, dtype, shape, begin, end

    def __repr__(self) -> str:
        return f"TensorInfo({self.name!r}, {self.dtype}, {self.shape}, [{self.begin}, {self.end}))"


class SafetensorsFile:
    """An open ``.safetensors`` file: ``.tensors`` (name -> TensorInfo), ``.metadata``, ``read(name)``."""

    def __init__(self, path: str | os.PathLike):
        self.path = os.fspath(path)
        try:
            size = os.path.getsize(self.path)
            with open(self.path, "rb") as f:
                head = f.read(8)
                if len(head) < 8:
                    self._fail(f"is {size} bytes, too short for the 8-byte header length; the file is truncated")
                n = int.from_bytes(head, "little")
                if n > MAX_HEADER_SIZE:
                    self._fail(f"declares a {n}-byte header (limit {MAX_HEADER_SIZE}); the file is corrupt")
                if 8 + n > size:
                    self._fail(f"declares a {n}-byte header but is only {size} bytes; the file is truncated")
                raw = f.read(n)
        except OSError as err:
            raise CheckpointError(
                f"{self.path}: cannot read ({err.strerror or err}); check the path and permissions"
            ) from None
        self.data_start = 8 + n
        self.data_size = size - self.data_start
        self.metadata, self.tensors = self._parse_header(raw)
        self._map: mmap.mmap | None = None

    # -- header -------------------------------------------------------------------------------------------
    def _fail(self, problem: str) -> None:
        raise CheckpointError(f"{self.path}: {problem}")

    def _parse_header(self, raw: bytes) -> tuple[dict[str, str], dict[str, TensorInfo]]:
        if not raw.startswith(b"{"):
            self._fail("header does not start with '{'; this is not a safetensors file")
        try:
            header = json.loads(raw.decode("utf-8"), object_pairs_hook=_no_duplicate_keys)
        except (UnicodeDecodeError, ValueError) as err:
            self._fail(f"header is not valid UTF-8 JSON ({err}); the file is corrupt")
        if not isinstance(header, dict):
            self._fail("header is not a JSON object; the file is corrupt")
        metadata = header.pop("__metadata__", None) or {}
        if not isinstance(metadata, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()
        ):
            self._fail("__metadata__ must map strings to strings; the file is corrupt")
        tensors = {name: self._parse_entry(name, entry) for name, entry in header.items()}
        self._check_layout(tensors.values())
        return metadata, tensors

    def _parse_entry(self, name: str, entry: Any) -> TensorInfo:
        if not isinstance(entry, dict) or set(entry) != {"dtype", "shape", "data_offsets"}:
            self._fail(f"tensor {name!r}: header entry must have exactly dtype, shape and data_offsets")
        dtype, shape, offsets = entry["dtype"], entry["shape"], entry["data_offsets"]
        if dtype in UNSUPPORTED_DTYPES:
            self._fail(
                f"tensor {name!r} has dtype {dtype}, which lmstep does not "
                "read; save the checkpoint in float32, float16 or bfloat16"
            )
        if dtype not in DTYPES:
            self._fail(f"tensor {name!r} has unknown dtype {dtype!r}; the file is corrupt or from a newer format")
        if not isinstance(shape, list) or not all(_is_count(d) for d in shape):
            self._fail(f"tensor {name!r}: shape must be a list of non-negative integers, got {shape!r}")
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(_is_count(x) for x in offsets)):
            self._fail(f"tensor {name!r}: data_offsets must be [begin, end] integers, got {offsets!r}")
        begin, end = offsets
        if not begin <= end <= self.data_size:
            self._fail(
                f"tensor {name!r}: data_offsets [{begin}, {end}] lie outside the {self.data_size}-byte data buffer"
            )
        expected = int(np.prod(shape, dtype=object)) * DTYPES[dtype].itemsize
        if end - begin != expected:
            self._fail(f"tensor {name!r}: {dtype}{shape} needs {expected} bytes but data_offsets span {end - begin}")
        return TensorInfo(name, dtype, tuple(shape), begin, end)

    def _check_layout(self, infos: Iterable[TensorInfo]) -> None:
        # Sorted by offset, each tensor must start where the previous one ended and the last must end at the end of
        # the file: this rules out overlaps (two names for one storage) and unaccounted bytes.
        pos = 0
        for info in sorted(infos, key=lambda i: (i.begin, i.end)):
            if info.begin != pos:
                kind = (
                    "overlaps the previous tensor" if info.begin < pos else f"leaves a gap of {info.begin - pos} bytes"
                )
                self._fail(f"tensor {info.name!r} at byte {info.begin} {kind}; the file is corrupt")
            pos = info.end
        if pos != self.data_size:
            self._fail(
                f"tensors cover {pos} of the {self.data_size} data bytes; the file is corrupt or has trailing bytes"
            )

    # -- data ---------------------------------------------------------------------------------------------
    def raw(self, name: str) -> np.ndarray:
        """The tensor ``name`` as a read-only view of the mapped file, native-endian (BF16 as raw uint16 bits).

        No copy is made except on a big-endian host, where little-endian data is converted once."""
        info = self.tensors[name]
        dtype = DTYPES[info.dtype]
        if info.end == info.begin:
            out = np.zeros(info.shape, dtype.newbyteorder("="))
            out.flags.writeable = False
            return out
        count = (info.end - info.begin) // dtype.itemsize
        view = np.frombuffer(self._mapped(), dtype=dtype, count=count, offset=self.data_start + info.begin)
        view = view.reshape(info.shape)
        if not view.dtype.isnative:
            view = view.astype(dtype.newbyteorder("="))
            view.flags.writeable = False
        return view

    def read(self, name: str) -> np.ndarray:
        """The tensor ``name`` as a fresh native-endian array of its own dtype (BF16 as raw uint16 bits)."""
        return np.array(self.raw(name))

    def read_float32(self, name: str) -> np.ndarray:
        return to_float32(self.raw(name), self.tensors[name].dtype)

    def release(self, name: str) -> None:
        """Drop the pages of tensor ``name`` from this process's resident memory (whole pages inside the tensor
        only, so a neighbour's pages stay; a no-op where the platform has no madvise)."""
        info = self.tensors[name]
        if self._map is None or not hasattr(mmap, "MADV_DONTNEED"):
            return
        start = -(-(self.data_start + info.begin) // mmap.PAGESIZE) * mmap.PAGESIZE
        stop = (self.data_start + info.end) // mmap.PAGESIZE * mmap.PAGESIZE
        if stop > start:
            self._map.madvise(mmap.MADV_DONTNEED, start, stop - start)

    def _mapped(self) -> mmap.mmap:
        if self._map is None:
            try:
                with open(self.path, "rb") as f:
                    self._map = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
            except (OSError, ValueError) as err:
                raise CheckpointError(
                    f"{self.path}: cannot map the file ({err}); check the path and permissions"
                ) from None
        return self._map


def to_float32(a: np.ndarray, dtype: str, out: np.ndarray | None = None) -> np.ndarray:
    """Widen a float tensor read with format dtype ``dtype`` to float32 (into ``out``, a float32 array of a's shape,
    when given; else a fresh array).

    BF16 is the top half of a float32 (1 sign, 8 exponent, 7 mantissa bits), so shifting its bits left by 16 is
    exact; F16 -> F32 is exact too. F64 rounds to nearest, as any float32 computation would.
    """
    if dtype not in FLOAT_DTYPES:
        raise ValueError(f"not a float dtype: {dtype}")
    if out is None:
        out = np.empty(a.shape, np.float32)
    if dtype == "BF16":
        # Widened then shifted in place in one buffer: ~3x faster than ``(a.astype(np.uint32) << 16)``, which
        # allocates twice (measured 3.8 vs 13.6 ms for a 2048 x 5632 matrix).
        bits = out.view(np.uint32)
        np.copyto(bits, a)
        np.left_shift(bits, 16, out=bits)
    else:
        np.copyto(out, a, casting="same_kind" if dtype == "F64" else "safe")
    return out


def read_safetensors(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Every tensor in the file, each in its own dtype (BF16 as uint16 bits): a convenience for tests and tools."""
    f = SafetensorsFile(path)
    return {name: f.read(name) for name in f.tensors}


def _is_count(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool) and x >= 0


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise ValueError(f"duplicate key {k!r}")
        out[k] = v
    return out
