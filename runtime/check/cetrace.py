"""Counterexample traces: the shrunk operation sequence of a failed check, as one versioned JSON file.

Schema (``lmstep-counterexample``, version 2; documented in docs/checking.md):

    {"format": "lmstep-counterexample", "version": 2,
     "model": {"name", "arch", "weights_digest", "sampler": {"temperature", "top_k", "top_p"}},
     "impl": "the --impl value", "required_level": "L1",
     "failure": {"law", "message"},
     "skip_laws": ["batch", ...],   (optional: checker laws the check dropped on purpose, --skip-law)
     "environment": {...},   (version 2: where lmstep ran the spec side: runtime/environment.py)
     "ops": [{"op": "init", "new": 0}, {"op": "run", "session": 0, "new": 1, "tokens": [...]}, ...]}

Version 1 files (without "environment") are still read. Rands and sampler settings inside ops are float32 bit
patterns ({"f32": "0x..."}), so a replay is bit-exact in any language. :func:`read` checks the type of every field a
replay uses, so any file either reads or gives one InputError line.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import attrs
import numpy as np

from lmstep.spec import Model, load
from lmstep.spec.conformance import STATE_FACTOR, bound, rel_err
from lmstep.spec.errors import CheckpointError, InputError, LmstepError

from ..codec import brief, f32_value
from ..environment import differences, record
from .levels import Grade, parse_level
from .lockstep import LAWS, Executor, NotApplicable, Seen, needed
from .protocol import ImplementationError
from .recorder import Failure

FORMAT, VERSION = "lmstep-counterexample", 2
MAX_BYTES = 256 << 20  # read whole; a larger file is refused


def to_json(model: Model, impl_spec: str, report: Any) -> dict[str, Any]:
    s = model.sampler
    return {
        "format": FORMAT,
        "version": VERSION,
        "model": {
            "name": model.name,
            "arch": model.arch,
            "weights_digest": model.weights_digest(),
            "sampler": {"temperature": s.temperature, "top_k": s.top_k, "top_p": s.top_p},
        },
        "impl": impl_spec,
        "required_level": report.required.name,
        "failure": {"law": report.failed_law, "message": report.message},
        "skip_laws": list(report.skipped),
        "environment": record(model),
        "ops": report.counterexample or [],
    }


def is_counterexample(path: Path) -> bool:
    """True when the file is a JSON object of this format (golden traces are JSON lines with a #meta header)."""
    try:
        with open(path, "rb") as f:
            head = f.read(200)
    except OSError:
        return False
    return b'"format"' in head and FORMAT.encode() in head


def read(path: Path) -> dict[str, Any]:
    try:
        p = Path(path)
        if p.stat().st_size > MAX_BYTES:
            raise InputError(f"{path}: larger than {MAX_BYTES >> 20} MiB; not a counterexample lmstep reads")
        doc = json.loads(p.read_bytes().decode("utf-8"))
    except OSError as err:
        raise InputError(f"{path}: cannot read ({err.strerror or err})") from None
    except UnicodeDecodeError:
        raise InputError(f"{path}: not a text file (not UTF-8); a counterexample is one JSON object") from None
    except (ValueError, RecursionError) as err:  # not JSON; a number too long; nesting too deep
        raise InputError(f"{path}: not valid JSON ({' '.join(str(err).split())[:100]})") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise InputError(f"{path}: not an {FORMAT} file")
    version = doc.get("version")
    if isinstance(version, bool) or version not in (1, VERSION):
        raise InputError(f"{path}: {FORMAT} version {_short(version)} is not supported; this lmstep reads 1..{VERSION}")
    for key in ("model", "impl", "ops"):
        if key not in doc:
            raise InputError(f"{path}: the field {key!r} is missing")
    if not isinstance(doc["impl"], str) or not doc["impl"].strip():
        raise InputError(f'{path}: impl must be the --impl text, e.g. "onnx", got {_short(doc["impl"])}')
    model = doc["model"]
    if not isinstance(model, dict) or not isinstance(model.get("name"), str):
        raise InputError(f"{path}: model must be an object with a name (string), got {_short(model)}")
    sampler = model.get("sampler", {})
    if not isinstance(sampler, dict):
        raise InputError(f"{path}: model.sampler must be an object, got {_short(sampler)}")
    for key, ok in (("temperature", _is_number), ("top_k", _is_int), ("top_p", _is_number)):
        if key in sampler and not ok(sampler[key]):
            raise InputError(f"{path}: model.sampler.{key} must be a number, got {_short(sampler[key])}")
    if not isinstance(model.get("weights_digest", ""), str):
        raise InputError(f"{path}: model.weights_digest must be a string")
    if not isinstance(doc["ops"], list) or not all(isinstance(op, dict) and "op" in op for op in doc["ops"]):
        raise InputError(f"{path}: ops must be a list of objects with an 'op' field")
    if "required_level" in doc and doc["required_level"] not in ("L0", "L1", "L2", "L3"):
        raise InputError(f"{path}: required_level must be one of L0, L1, L2, L3")
    if "environment" in doc and not isinstance(doc["environment"], dict):
        raise InputError(f"{path}: environment must be an object")
    skip = doc.get("skip_laws", [])
    if not isinstance(skip, list) or not all(isinstance(n, str) and n in LAWS for n in skip):
        raise InputError(f"{path}: skip_laws must be a list of checker laws ({', '.join(LAWS)})")
    return doc


def _short(v: Any, n: int = 60) -> str:
    return brief(v, n)


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return (isinstance(v, (int, float)) and not isinstance(v, bool)) or (isinstance(v, dict) and "f32" in v)


def environment_note(doc: dict[str, Any], model: Model) -> str:
    """One line when the spec side runs in another numeric environment than the one the file records (the
    comparison is at the required level either way; only an L0 requirement needs the same one)."""
    recorded = doc.get("environment")
    if not isinstance(recorded, dict):
        return "the counterexample does not record the environment it was found in (version 1)"
    changed = differences(recorded, record(model))
    if not changed:
        return ""
    return "found in another numeric environment (" + "; ".join(changed[:3]) + "): bits may differ, levels should not"


def open_model(doc: dict[str, Any]) -> Model:
    info = doc["model"]
    s = info.get("sampler", {}) if isinstance(info, dict) else None
    if not isinstance(info, dict) or not isinstance(info.get("name"), str) or not isinstance(s, dict):
        raise InputError("the counterexample's model section needs a name (string) and sampler settings (object)")
    try:
        temperature, top_p = f32_value(s.get("temperature", 0.0)), f32_value(s.get("top_p", 1.0))
    except LmstepError as err:
        raise InputError(f"the counterexample's sampler settings: {err}") from None
    model = load(info["name"], temperature=temperature, top_k=s.get("top_k", 0), top_p=top_p)
    if info.get("weights_digest") not in (None, model.weights_digest()):
        raise CheckpointError(
            f"model {info['name']!r} here has different weights than the counterexample was found with"
        )
    return model


_INT, _TOKENS = "int", "tokens"
OP_FIELDS = {  # the schema of each operation record: field -> kind
    "init": {"new": _INT},
    "run": {"session": _INT, "new": _INT, "tokens": _TOKENS},
    "decode": {"session": _INT, "new": _INT, "token": _INT, "rand": "f32"},
    "fork": {"session": _INT, "new": _INT},
    "release": {"session": _INT},
    "run_batch": {"sessions": "ints", "new": "ints", "tokens": "token_lists"},
    "repeat": {"session": _INT, "token": _INT, "rand": "f32"},
    "twice": {"tokens": _TOKENS, "token": _INT, "rand": "f32"},
    "causality": {"tokens": _TOKENS, "extra": _TOKENS},
    "distribution": {"session": _INT, "token": _INT, "rands": "f32s"},
}
SAMPLED = ("decode", "repeat", "twice", "distribution")  # may carry "sampler" settings (protocol 2)


def validate_ops(ops: Any, vocab: int) -> None:
    """One clear line for the first malformed operation record (before anything runs)."""
    if not isinstance(ops, list):
        raise InputError("ops must be a list of operation objects")

    def is_int(v: Any) -> bool:
        return isinstance(v, int) and not isinstance(v, bool)

    def token_ok(v: Any) -> bool:
        return is_int(v) and 0 <= v < vocab

    checks = {
        _INT: is_int,
        "ints": lambda v: isinstance(v, list) and all(map(is_int, v)),
        _TOKENS: lambda v: isinstance(v, list) and len(v) > 0 and all(map(token_ok, v)),
        "token_lists": lambda v: (
            isinstance(v, list) and all(isinstance(c, list) and c and all(map(token_ok, c)) for c in v)
        ),
        "f32": lambda v: _f32_ok(v),
        "f32s": lambda v: isinstance(v, list) and len(v) > 0 and all(map(_f32_ok, v)),
    }
    for i, op in enumerate(ops):
        kind = op.get("op") if isinstance(op, dict) else None
        if not isinstance(kind, str) or kind not in OP_FIELDS:
            raise InputError(f"op {i}: unknown operation {_short(kind)}; known: {', '.join(OP_FIELDS)}")
        for field, want in OP_FIELDS[kind].items():
            if not checks[want](op.get(field)):
                raise InputError(f"op {i} ({kind}): field {field!r} is missing or not {want.replace('_', ' ')}")
        if kind in SAMPLED and not token_ok(op["token"]):
            raise InputError(f"op {i} ({kind}): token {op['token']} is outside the vocabulary [0, {vocab})")
        if kind in SAMPLED and "sampler" in op:
            _check_sampler(op["sampler"], f"op {i} ({kind})")
        if kind == "run_batch" and not len(op["sessions"]) == len(op["new"]) == len(op["tokens"]):
            raise InputError(f"op {i} (run_batch): sessions, new and tokens must have the same length")


def _check_sampler(obj: Any, where: str) -> None:
    from .lockstep import sampler_from

    if not isinstance(obj, dict) or set(obj) != {"temperature", "top_k", "top_p"} or not _is_int(obj["top_k"]):
        raise InputError(f"{where}: sampler must be {{temperature, top_k, top_p}} with an integer top_k")
    try:
        sampler_from(obj)
    except LmstepError as err:
        raise InputError(f"{where}: sampler settings: {err}") from None


def _f32_ok(v: Any) -> bool:
    try:
        x = f32_value(v)
    except LmstepError:
        return False
    return 0.0 <= x < 1.0


@attrs.frozen
class OpResult:
    index: int
    op: str
    status: str  # "ok", "diverged", "skipped", "error"
    detail: str = ""
    layer: str = ""  # the first state tensor (past_key_values.{layer}.*) that differs, when known


def replay(doc: dict[str, Any], model: Model, impl: Any) -> list[OpResult]:
    """Re-run every op on the spec and ``impl``; stop at the first divergence and locate it by layer."""
    validate_ops(doc["ops"], model.vocab_size)
    required = parse_level(doc.get("required_level", "L1"))

    def grade(law: str, g: Grade, where: str, seen: Seen) -> None:
        if g.level < needed(law, required):
            raise Failure(law, g, where, required)

    ex, out = Executor(model, impl, grade, frozenset(doc.get("skip_laws", []))), []
    for i, op in enumerate(doc["ops"]):
        try:
            ex.apply(op, f"op {i} {op['op']}")
        except NotApplicable as err:
            out.append(OpResult(i, op["op"], "skipped", f"not applicable ({err})"))
            continue
        except ImplementationError as err:
            out.append(OpResult(i, op["op"], "error", str(err)))
            break
        except Failure as err:
            out.append(OpResult(i, op["op"], "diverged", str(err), _first_layer(ex, op)))
            break
        out.append(OpResult(i, op["op"], "ok"))
    try:
        ex.close()
    except ImplementationError:
        pass
    return out


def _first_layer(ex: Executor, op: dict[str, Any]) -> str:
    """The first layer whose state differs after the failing op, by comparing every state tensor in order."""
    new = op.get("new")
    sessions = [new] if isinstance(new, int) else list(new or [])
    if "state" not in ex.impl.capabilities:
        return "(the implementation does not expose its state; only the output is compared)"
    for sid in sessions:
        s = ex.sessions.get(sid)
        if s is None:
            continue
        got, want, wide = ex.impl.state(s.handle), s.spec.arrays(), s.wide.arrays()
        for name in sorted(want, key=_layer_order):
            if name not in got or rel_err(np.asarray(got[name]), want[name]) > bound(
                want[name], wide[name], STATE_FACTOR
            ):
                return name
        return "every layer's state agrees: the divergence is in the output (logits or sampling)"
    return ""


def _layer_order(name: str) -> tuple[int, str]:
    parts = name.split(".")
    return (int(parts[1]) if len(parts) > 2 and parts[1].isdigit() else 0, name)


__all__ = ["FORMAT", "VERSION", "OpResult", "f32_value", "is_counterexample", "open_model", "read", "replay", "to_json"]
