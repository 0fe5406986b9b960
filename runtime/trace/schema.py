"""The lmstep trace format (docs/trace-format.md): encoding of values, the header, and reading a file back.

Values in the spirit of the ITF (Apalache/Quint): floats as float32 bit patterns {"f32": "0x3f000000"} so they
round-trip exactly in any language, integers that may exceed 2^53 as {"#bigint": "123"}, arrays as sha256
digests. Line 1 is {"#meta": {...}}; every later line is one op with "#meta": {"index": i} and a "kind"; in
version 2 the last line is {"#end": {"ops": n}}, so a file cut at a line boundary is detected, and the header
records the runtime, provider and numeric environment that computed it (runtime/environment.py).

The reader checks every field an op's replay uses, with its type, before anything runs: whatever a file holds,
reading it either succeeds or raises one TraceError line naming the line, the field and what was expected.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import attrs
import numpy as np

from lmstep.spec.config import to_json
from lmstep.spec.errors import LmstepError

from ..codec import CodecError, brief, f32_from_bits, f32_hex
from ..stepper.measure import array_sha256, digests

FORMAT = "lmstep-trace"
VERSION = 2  # 2: runtime, provider and environment in the header; the "#end" record. Version 1 files still read.
KINDS = ("prefill", "step", "fork")
END = "#end"
MAX_BYTES = 1 << 30  # a trace is read whole; a larger file is refused rather than exhausting memory


class TraceError(LmstepError):
    """A trace file that cannot be read: not JSON, another format, a newer version, a missing field."""


def f32(x: float) -> dict[str, str]:
    return f32_hex(x)


def from_f32(v: Any, where: str) -> float:
    if not isinstance(v, dict) or not isinstance(v.get("f32"), str):
        raise TraceError(f'{where}: expected {{"f32": "0x" and 8 hex digits}}, got {_short(v)}')
    try:
        return f32_from_bits(v["f32"])
    except CodecError as err:
        raise TraceError(f"{where}: {err}") from None


def bigint(n: int) -> dict[str, str]:
    return {"#bigint": str(int(n))}


def from_bigint(v: Any, where: str) -> int:
    text = v.get("#bigint") if isinstance(v, dict) else None
    if not isinstance(text, str) or not 0 < len(text) <= 40 or not text.removeprefix("-").isascii():
        text = None
    if text is None or not text.removeprefix("-").isdigit():
        raise TraceError(f'{where}: expected {{"#bigint": "123"}}, got {_short(v)}')
    return int(text)


def weights_sha256(model: Any) -> str:
    """The model's weights digest (SPEC.md §9): the spec's Model and the onnxruntime model both provide it."""
    return model.weights_digest()


def model_record(model: Any) -> dict[str, Any]:
    """The header's "model": name, arch, config and weights digest (a runtime wrapper exposes its spec model)."""
    spec = getattr(model, "spec", model)
    config = to_json(spec.config) if attrs.has(type(spec.config)) else dict(vars(spec.config))
    return {"name": spec.name, "arch": spec.arch, "config": config, "weights_sha256": weights_sha256(spec)}


def header(model: Any, seed: int, top: int) -> dict[str, Any]:
    """Line 1: the model, the sampler, the seed, and where it was computed (runtime, provider, environment)."""
    from ..environment import record

    s = getattr(model, "spec", model).sampler
    env = record(model)
    return {
        "#meta": {
            "format": FORMAT,
            "format_version": VERSION,
            "description": "lmstep golden trace: one op per line; see docs/trace-format.md",
            "generator": "lmstep",
            "model": model_record(model),
            "sampler": {"temperature": f32(s.temperature), "top_k": s.top_k, "top_p": f32(s.top_p)},
            "seed": bigint(seed),
            "top": top,
            "runtime": env["runtime"],
            "provider": env["provider"],
            "environment": env,
        }
    }


def end(ops: int) -> dict[str, Any]:
    """The last line (version 2): the number of ops, so a file cut after any complete line is detected."""
    return {END: {"ops": ops}}


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
    """(header meta, ops) from a trace file, checking everything a replay relies on (see the module docstring)."""
    p = Path(path)
    try:
        if not p.is_file():
            raise TraceError(f"no trace file {p}" if not p.exists() else f"{p} is not a file")
        if p.stat().st_size > MAX_BYTES:
            raise TraceError(f"{p}: larger than {MAX_BYTES >> 30} GiB; not a trace lmstep reads")
        raw = p.read_bytes()
    except OSError as err:
        raise TraceError(f"{p}: cannot read ({err.strerror or err})") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise TraceError(f"{p}: not a text file (byte {err.start} is not UTF-8); a trace is JSON lines") from None
    records = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            records.append((n, json.loads(line)))
        except json.JSONDecodeError as err:
            raise TraceError(f"{p}:{n}: not JSON ({err.msg})") from None
        except (ValueError, RecursionError) as err:  # a number too long to convert, nesting too deep
            raise TraceError(f"{p}:{n}: not JSON lmstep can read ({type(err).__name__}: {str(err)[:80]})") from None
    if not records or not isinstance(records[0][1], dict) or not isinstance(records[0][1].get("#meta"), dict):
        raise TraceError(f'{p}: the first line must be the {{"#meta": ...}} header of an {FORMAT} file')
    meta = records[0][1]["#meta"]
    if meta.get("format") != FORMAT:
        raise TraceError(f"{p}: format is {_short(meta.get('format'))}, not {FORMAT!r}")
    version = meta.get("format_version")
    if not _is_int(version) or not 1 <= version <= VERSION:
        raise TraceError(
            f"{p}: format_version {_short(version)} is not one this lmstep reads (1..{VERSION}); upgrade lmstep"
        )
    _check_header(meta, f"{p}:{records[0][0]}")
    body = records[1:]
    if version >= 2:
        if not body or not isinstance(body[-1][1], dict) or END not in body[-1][1]:
            last = f"line {body[-1][0]}" if body else "the header"
            raise TraceError(f'{p}: truncated: no {{"{END}": ...}} record after {last}; record the trace again')
        n, tail = body[-1]
        count = tail[END].get("ops") if isinstance(tail[END], dict) else None
        if not _is_int(count) or count != len(body) - 1:
            raise TraceError(
                f"{p}:{n}: the end record says {_short(count)} ops but the file holds {len(body) - 1}; "
                "it was cut or edited: record it again"
            )
        body = body[:-1]
    if not body:
        raise TraceError(f"{p}: the trace has a header but no ops: nothing to check")
    ops = []
    for n, op in body:
        where = f"{p}:{n}"
        if isinstance(op, dict) and END in op:
            raise TraceError(f'{where}: "{END}" must be the last line')
        _check_op(op, len(ops), where)
        op["_where"] = where  # for messages; never written back
        ops.append(op)
    return meta, ops


# -- checking records ---------------------------------------------------------------------------------------
_HEX = set("0123456789abcdef")


def _short(v: Any, n: int = 60) -> str:
    return brief(v, n)


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _need(ok: bool, where: str, field: str, what: str, got: Any) -> None:
    if not ok:
        raise TraceError(f"{where}: {field} must be {what}, got {_short(got)}")


def _nat(v: Any, limit: int = 1 << 62) -> bool:
    return _is_int(v) and 0 <= v < limit


def _sha(v: Any, length: int = 64) -> bool:
    return isinstance(v, str) and len(v) == length and set(v) <= _HEX


def _check_header(meta: dict[str, Any], where: str) -> None:
    model, sampler = meta.get("model"), meta.get("sampler")
    _need(isinstance(model, dict) and isinstance(model.get("name"), str), where, '"model"', '{"name": ...}', model)
    for key, ok in (("arch", lambda v: isinstance(v, str)), ("config", lambda v: isinstance(v, dict))):
        if key in model:
            _need(ok(model[key]), where, f"model.{key}", "a string" if key == "arch" else "an object", model[key])
    if "weights_sha256" in model:
        _need(isinstance(model["weights_sha256"], str), where, "model.weights_sha256", "a string", model)
    _need(isinstance(sampler, dict), where, '"sampler"', "an object", sampler)
    from_f32(sampler.get("temperature"), f"{where}: sampler.temperature")
    from_f32(sampler.get("top_p"), f"{where}: sampler.top_p")
    _need(_nat(sampler.get("top_k", 0)), where, "sampler.top_k", "an integer >= 0", sampler.get("top_k"))
    from_bigint(meta.get("seed"), f"{where}: seed")
    if "top" in meta:
        _need(_nat(meta["top"]) and meta["top"] >= 1, where, '"top"', "an integer >= 1", meta["top"])
    for key in ("runtime", "provider"):
        _need(meta.get(key) is None or isinstance(meta[key], str), where, f'"{key}"', "a string", meta.get(key))
    _need(meta.get("environment") is None or isinstance(meta["environment"], dict), where, '"environment"', "an object",
          meta.get("environment"))  # fmt: skip


def _check_op(op: Any, index: int, where: str) -> None:
    _need(isinstance(op, dict), where, "an op", "a JSON object", op)
    _need(op.get("kind") in KINDS, where, '"kind"', " or ".join(KINDS), op.get("kind"))
    got = op.get("#meta")
    _need(isinstance(got, dict) and _is_int(got.get("index")) and got["index"] == index, where, '"#meta"',
          f'{{"index": {index}}}', got)  # fmt: skip
    frm = op.get("from")
    _need(_is_int(frm) and -1 <= frm < index, where, '"from"', "-1 or the index of an earlier op", frm)
    _need(_nat(op.get("pos")), where, '"pos"', "an integer >= 0", op.get("pos"))
    kind = op["kind"]
    if kind == "fork":
        if "force" in op:
            _need(_nat(op["force"]), where, '"force"', "a token id (an integer >= 0)", op["force"])
            return
        from_bigint(op.get("seed"), f'{where}: a fork needs "force" or "seed";')
        if "rand" in op:
            from_f32(op["rand"], f"{where}: rand")
            _need(_nat(op.get("token")), where, '"token"', "a token id (an integer >= 0)", op.get("token"))
        return
    if kind == "prefill":
        tokens = op.get("tokens")
        _need(isinstance(tokens, list) and tokens and all(map(_nat, tokens)), where, '"tokens"',
              "a non-empty list of token ids", tokens)  # fmt: skip
    else:
        _need(_nat(op.get("input")), where, '"input"', "a token id (an integer >= 0)", op.get("input"))
    from_f32(op.get("rand"), f"{where}: rand")
    _need(_nat(op.get("token")), where, '"token"', "a token id (an integer >= 0)", op.get("token"))
    _check_logits(op.get("logits"), where)
    _check_state(op.get("state"), where)


def _check_logits(rec: Any, where: str) -> None:
    _need(isinstance(rec, dict), where, '"logits"', 'an object with "shape", "sha256" and "top"', rec)
    shape = rec.get("shape")
    _need(isinstance(shape, list) and 1 <= len(shape) <= 8 and all(map(_nat, shape)), where, "logits.shape",
          "a list of sizes", shape)  # fmt: skip
    _need(_sha(rec.get("sha256")), where, "logits.sha256", "64 hex digits", rec.get("sha256"))
    top = rec.get("top")
    _need(isinstance(top, list), where, "logits.top", "a list", top)
    for rank, t in enumerate(top):
        _need(isinstance(t, dict) and _nat(t.get("id")), where, f"logits.top[{rank}]", '{"id": int, "logit": f32}', t)
        from_f32(t.get("logit"), f"{where}: logits.top[{rank}].logit")


def _check_state(rec: Any, where: str) -> None:
    _need(isinstance(rec, dict), where, '"state"', 'an object with "pos", "digest" and "tensors"', rec)
    _need(_nat(rec.get("pos")), where, "state.pos", "an integer >= 0", rec.get("pos"))
    _need(_sha(rec.get("digest"), 16), where, "state.digest", "16 hex digits", rec.get("digest"))
    tensors = rec.get("tensors")
    _need(isinstance(tensors, list), where, "state.tensors", "a list", tensors)
    for i, t in enumerate(tensors):
        ok = (
            isinstance(t, dict)
            and isinstance(t.get("name"), str)
            and isinstance(t.get("shape"), list)
            and all(map(_nat, t["shape"]))
            and _sha(t.get("sha256"))
        )
        _need(ok, where, f"state.tensors[{i}]", '{"name": str, "shape": [int], "sha256": 64 hex digits}', t)
