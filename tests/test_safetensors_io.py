"""spec/safetensors_io.py against the reference ``safetensors`` library: same tensors on files it writes, and the
same verdict (refuse) on corrupt files, each refusal one line naming the file."""

from __future__ import annotations

import json
import struct

import ml_dtypes
import numpy as np
import pytest
import safetensors.numpy as st
from hypothesis import given
from hypothesis import strategies as hst

from lmstep.spec.errors import CheckpointError
from lmstep.spec.safetensors_io import SafetensorsFile, read_safetensors, to_float32

# Every dtype the reader supports, as the library's numpy API spells it (bf16 through ml_dtypes).
NUMPY_DTYPES = {
    "BOOL": np.bool_,
    "U8": np.uint8,
    "I8": np.int8,
    "I16": np.int16,
    "U16": np.uint16,
    "I32": np.int32,
    "U32": np.uint32,
    "I64": np.int64,
    "U64": np.uint64,
    "F16": np.float16,
    "BF16": ml_dtypes.bfloat16,
    "F32": np.float32,
    "F64": np.float64,
}


def _random(dtype: str, shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    if dtype == "BOOL":
        return rng.integers(0, 2, shape).astype(bool)
    info = np.iinfo(NUMPY_DTYPES[dtype]) if dtype[0] in "IU" else None
    if info is not None:
        return rng.integers(info.min, info.max, shape, dtype=NUMPY_DTYPES[dtype], endpoint=True)
    return np.asarray(rng.standard_normal(shape) * 100).astype(NUMPY_DTYPES[dtype])


@given(
    specs=hst.lists(
        hst.tuples(hst.sampled_from(sorted(NUMPY_DTYPES)), hst.lists(hst.integers(0, 4), max_size=3).map(tuple)),
        min_size=1,
        max_size=6,
    ),
    seed=hst.integers(0, 2**32 - 1),
)
def test_reader_matches_library_on_every_dtype(tmp_path_factory, specs, seed):
    rng = np.random.default_rng(seed)
    tensors = {f"t{i}.{d}": _random(d, shape, rng) for i, (d, shape) in enumerate(specs)}
    path = tmp_path_factory.mktemp("st") / "x.safetensors"
    st.save_file(tensors, str(path), metadata={"format": "np", "note": "ünïcode"})
    ours, theirs = SafetensorsFile(path), st.load_file(str(path))
    assert ours.metadata == {"format": "np", "note": "ünïcode"}
    assert set(ours.tensors) == set(theirs)
    for name, ref in theirs.items():
        dtype = name.split(".")[1]
        got = ours.read(name)
        assert ours.tensors[name].dtype == dtype and got.shape == ref.shape
        if dtype == "BF16":  # we hand out raw bits; the library hands out ml_dtypes values: compare both ways
            assert np.array_equal(got, ref.view(np.uint16))
            assert np.array_equal(to_float32(got, "BF16"), ref.astype(np.float32))
        else:
            assert got.dtype == ref.dtype and np.array_equal(got, ref)
        if dtype in ("F16", "F32", "F64"):
            assert np.array_equal(ours.read_float32(name), ref.astype(np.float32))


def test_bf16_widening_is_exact_for_all_65536_bit_patterns():
    bits = np.arange(1 << 16, dtype=np.uint16)
    ours = to_float32(bits, "BF16")
    ref = bits.view(ml_dtypes.bfloat16).astype(np.float32)
    assert np.array_equal(ours, ref, equal_nan=True)
    assert np.array_equal(np.isnan(ours), np.isnan(ref))
    # Negative control: the plausible slip of shifting by 15 instead of 16 is caught by the same comparison.
    wrong = (bits.astype(np.uint32) << 15).view(np.float32)
    assert not np.array_equal(wrong, ref, equal_nan=True)


def test_f16_widening_is_exact_for_all_65536_bit_patterns():
    """Against IEEE 754 binary16 decoded by hand: (-1)^s * 2^(e-15) * (1 + m/1024), subnormals 2^-14 * m/1024."""
    bits = np.arange(1 << 16, dtype=np.uint16)
    s, e, m = (bits >> 15).astype(np.float64), ((bits >> 10) & 0x1F).astype(np.int64), (bits & 0x3FF).astype(np.float64)
    with np.errstate(over="ignore"):
        value = np.where(e == 0, np.ldexp(m / 1024, -14), np.ldexp(1 + m / 1024, e - 15)) * (1 - 2 * s)
    value = np.where(e == 31, np.where(m == 0, np.copysign(np.inf, 1 - 2 * s), np.nan), value)
    assert np.array_equal(to_float32(bits.view(np.float16), "F16"), value.astype(np.float32), equal_nan=True)


# -- corrupt files ---------------------------------------------------------------------------------------------
def _file(tmp_path, header, data: bytes = b"", length: int | None = None, raw: bytes | None = None):
    """A file with ``header`` (or ``raw`` header bytes), its length (or ``length``; -1: no length at all), ``data``."""
    body = raw if raw is not None else json.dumps(header).encode()
    path = tmp_path / "bad.safetensors"
    prefix = b"" if length == -1 else struct.pack("<Q", len(body) if length is None else length)
    path.write_bytes(prefix + body + data)
    return path


GOOD = {"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}
# (case id, header, data, header-length override, raw header bytes, message fragment, library refuses too)
CORRUPT = [
    ("truncated-length", None, b"", -1, b"{}", "too short", True),
    ("header-past-end", GOOD, b"\0" * 8, 10_000, None, "truncated", True),
    ("huge-header", GOOD, b"", 200_000_000, None, "corrupt", True),
    ("not-json", None, b"", None, b"{nope", "not valid UTF-8 JSON", True),
    ("not-object", None, b"", None, b"[1, 2]", "does not start with", True),
    (
        "unknown-dtype",
        {"a": {"dtype": "F17", "shape": [1], "data_offsets": [0, 4]}},
        b"\0" * 4,
        None,
        None,
        "unknown dtype",
        True,
    ),
    (
        "fp8",
        {"a": {"dtype": "F8_E4M3", "shape": [4], "data_offsets": [0, 4]}},
        b"\0" * 4,
        None,
        None,
        "does not read",
        False,
    ),
    (
        "shape-vs-bytes",
        {"a": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}},
        b"\0" * 8,
        None,
        None,
        "needs 12 bytes",
        True,
    ),
    (
        "offsets-outside",
        {"a": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}},
        b"\0" * 8,
        None,
        None,
        "outside",
        True,
    ),
    (
        "overlap",
        {
            "a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
            "b": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]},
        },
        b"\0" * 8,
        None,
        None,
        "overlaps",
        True,
    ),
    ("gap", {"a": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}}, b"\0" * 8, None, None, "gap", True),
    ("trailing-bytes", GOOD, b"\0" * 12, None, None, "trailing", True),
    (
        "negative-shape",
        {"a": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 0]}},
        b"",
        None,
        None,
        "non-negative",
        True,
    ),
    ("missing-offsets", {"a": {"dtype": "F32", "shape": [0]}}, b"", None, None, "exactly dtype", True),
    ("bad-metadata", {"__metadata__": {"k": 1}, **GOOD}, b"\0" * 8, None, None, "__metadata__", True),
    (
        "duplicate-name",
        None,
        b"\0" * 8,
        None,
        b'{"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}, '
        b'"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}',
        "duplicate key",
        False,
    ),
]


@pytest.mark.parametrize("case", CORRUPT, ids=[c[0] for c in CORRUPT])
def test_corrupt_file_is_refused_in_one_line(tmp_path, case):
    _, header, data, length, raw, fragment, library_refuses = case
    path = _file(tmp_path, header, data, length, raw)
    with pytest.raises(CheckpointError) as err:
        read_safetensors(path)
    message = str(err.value)
    assert "\n" not in message and message.startswith(str(path)) and fragment in message, message
    if library_refuses:  # the reference library agrees that the file is bad
        with pytest.raises(Exception):  # noqa: B017 - the library's own error types vary by version
            st.load_file(str(path))


def test_control_well_formed_file_is_read(tmp_path):
    """Negative control for the corrupt cases: the same writer with a consistent header gives a readable file."""
    path = _file(tmp_path, GOOD, np.array([1.5, -2], "<f4").tobytes())
    assert np.array_equal(read_safetensors(path)["a"], [1.5, -2])
    assert np.array_equal(st.load_file(str(path))["a"], [1.5, -2])


def test_header_padding_with_spaces_is_accepted(tmp_path):
    path = _file(tmp_path, None, np.ones(2, "<f4").tobytes(), raw=json.dumps(GOOD).encode() + b"    ")
    assert np.array_equal(read_safetensors(path)["a"], [1, 1])
    assert np.array_equal(st.load_file(str(path))["a"], [1, 1])


def test_missing_file_is_one_line(tmp_path):
    with pytest.raises(CheckpointError, match="cannot read"):
        SafetensorsFile(tmp_path / "absent.safetensors")
