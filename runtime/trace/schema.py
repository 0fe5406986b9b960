"""The lmstep trace format, version 1: encoding of values, the header, and reading a file back.

Values in the spirit of the ITF (Apalache/Quint): floats as float32 bit patterns {"f32": "0x3f000000"} so they
round-trip exactly in any language, integers that may exceed 2^53 as {"#bigint": "123"}, arrays as sha256
digests. Line 1 is {"#meta": {...}}; every later line is one op with "#meta": {"index": i} and a "kind".
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import attrs
import numpy as np

from lmstep.spec.errors import LmstepError

from ..codec import CodecError, f32_from_bits, f32_hex
from ..stepper.measure import array_sha256, digests

FORMAT = "lmstep-trace"
VERSION = 1
KINDS = ("prefill", "step", "fork")


class TraceError(LmstepError):
    """A trace file that cannot be read: not JSON, another format, a newer version, a missing field."""


def f32(x: float) -> dict[str, str]:
    return f32_hex(x)


def from_f32(v: Any, where: str) -> float:
    if not isinstance(v, dict) or not isinstance(v.get("f32"), str):
        raise TraceError(f'{where}: expected {{"f32": "0x..."}}, got {v!r}')
    try:
        return f32_from_bits(v["f32"])
    except CodecError as err:
        raise TraceError(f"{where}: {err}") from None


def bigint(n: int) -> dict[str, str]:
    return {"#bigint": str(int(n))}


def from_bigint(v: Any, where: str) -> int:
    if not isinstance(v, dict) or not isinstance(v.get("#bigint"), str) or not v["#bigint"].lstrip("-").isdigit():
        raise TraceError(f'{where}: expected {{"#bigint": "123"}}, got {v!r}')
    return int(v["#bigint"])


def weights_sha256(model: Any) -> str:
    """The model's weights digest (SPEC.md §9): the spec's Model and the onnxruntime model both provide it."""
    return model.weights_digest()


def header(model: Any, seed: int, top: int) -> dict[str, Any]:
    """Line 1. ``model`` is the spec model (a runtime wrapper exposes it as ``.spec``)."""
    spec = getattr(model, "spec", model)
    config = attrs.asdict(spec.config) if attrs.has(type(spec.config)) else dict(vars(spec.config))
    s = spec.sampler
    return {
        "#meta": {
            "format": FORMAT,
            "format_version": VERSION,
            "description": "lmstep golden trace: one op per line; see docs/trace-format.md",
            "generator": "lmstep",
            "model": {"name": spec.name, "arch": spec.arch, "config": config, "weights_sha256": weights_sha256(spec)},
            "sampler": {"temperature": f32(s.temperature), "top_k": s.top_k, "top_p": f32(s.top_p)},
            "seed": bigint(seed),
            "top": top,
        }
    }


def logits_record(logits: np.ndarray, top: int) -> dict[str, Any]:
    """Shape, sha256 of all rows, and the ``top`` largest logits of the last row (sampler rank order)."""
    z = np.asarray(logits, np.float32)
    last = z.reshape(-1, z.shape[-1])[-1]
    order = np.argsort(-last, kind="stable")[:top]
    return {
        "shape": list(z.shape),
        "sha256": array_sha256(z),
        "top": [{"id": int(i), "logit": f32(float(last[i]))} for i in order],
    }


def state_record(state: Any) -> dict[str, Any]:
    return {
        "pos": state.pos,
        "digest": state.digest(),
        "tensors": [
            {"name": t.name, "shape": list(t.shape), "dtype": t.dtype, "sha256": t.sha256} for t in digests(state)
        ],
    }


def dumps(lines: list[dict[str, Any]]) -> str:
    return "".join(json.dumps(line, separators=(",", ":")) + "\n" for line in lines)


def read(path: str | Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(header meta, ops) from a trace file, checking the structure every reader relies on."""
    p = Path(path)
    if not p.is_file():
        raise TraceError(f"no trace file {p}")
    lines = [line for line in p.read_text(encoding="utf-8").splitlines()]
    records = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            records.append((n, json.loads(line)))
        except json.JSONDecodeError as err:
            raise TraceError(f"{p}:{n}: not JSON ({err.msg})") from None
    if not records or not isinstance(records[0][1], dict) or "#meta" not in records[0][1]:
        raise TraceError(f'{p}: the first line must be the {{"#meta": ...}} header of an {FORMAT} file')
    meta = records[0][1]["#meta"]
    if meta.get("format") != FORMAT:
        raise TraceError(f"{p}: format is {meta.get('format')!r}, not {FORMAT!r}")
    version = meta.get("format_version")
    if not isinstance(version, int) or version > VERSION:
        raise TraceError(f"{p}: format_version {version!r} is not one this lmstep reads (1..{VERSION}); upgrade lmstep")
    ops = []
    for n, op in records[1:]:
        where = f"{p}:{n}"
        if not isinstance(op, dict) or op.get("kind") not in KINDS:
            raise TraceError(f'{where}: an op needs "kind" in {", ".join(KINDS)}')
        index = op.get("#meta", {}).get("index") if isinstance(op.get("#meta"), dict) else None
        if index != len(ops):
            raise TraceError(f'{where}: expected "#meta": {{"index": {len(ops)}}}, got {op.get("#meta")!r}')
        frm = op.get("from")
        if not isinstance(frm, int) or not -1 <= frm < len(ops):
            raise TraceError(f'{where}: "from" must be -1 or the index of an earlier op, got {frm!r}')
        op["_where"] = where  # for messages; never written back
        ops.append(op)
    return meta, ops
