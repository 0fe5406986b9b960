"""Validators shared by the architectures' ``Config`` classes (attrs frozen, Hugging Face field names)."""

from __future__ import annotations

import math
from typing import Any

import attrs

from .errors import ConfigError


def positive_int(inst: object, attr: attrs.Attribute[int], value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ConfigError(f"{type(inst).__name__}.{attr.name} must be a positive integer, got {value!r}")


def positive_float(inst: object, attr: attrs.Attribute[float], value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ConfigError(f"{type(inst).__name__}.{attr.name} must be a positive finite number, got {value!r}")


def optional_positive_int(inst: object, attr: attrs.Attribute[int | None], value: object) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value <= 0):
        raise ConfigError(f"{type(inst).__name__}.{attr.name} must be a positive integer or null, got {value!r}")


def optional_positive_float(inst: object, attr: attrs.Attribute[float | None], value: object) -> None:
    if value is not None:
        positive_float(inst, attr, value)  # type: ignore[arg-type]


def boolean(inst: object, attr: attrs.Attribute[bool], value: object) -> None:
    if not isinstance(value, bool):
        raise ConfigError(f"{type(inst).__name__}.{attr.name} must be true or false, got {value!r}")


def require(cond: bool, message: str) -> None:
    if not cond:
        raise ConfigError(message)


def _to_float(v: object) -> object:
    return float(v) if isinstance(v, int) and not isinstance(v, bool) else v


# Options for the Config fields, spelled ``x: int = attrs.field(**POSITIVE_INT)`` (an attrs.field call, so that
# type checkers see which fields are required).
POSITIVE_INT: dict[str, Any] = {"validator": positive_int}
POSITIVE_FLOAT: dict[str, Any] = {"converter": _to_float, "validator": positive_float}
BOOLEAN: dict[str, Any] = {"validator": boolean}
# None: the configuration does not use the field (a window, a RoPE scaling parameter)
OPTIONAL_POSITIVE_INT: dict[str, Any] = {"validator": optional_positive_int}
OPTIONAL_POSITIVE_FLOAT: dict[str, Any] = {"converter": _to_float, "validator": optional_positive_float}


# transformers 5 writes inf and nan as {"__float__": "Infinity"} in config.json (JSON has no such numbers;
# PreTrainedConfig._encode_special_floats), older versions as a bare Infinity that only lenient readers accept.
_FLOAT_TAGS = {"Infinity": math.inf, "-Infinity": -math.inf, "NaN": math.nan}


def to_json(cfg: Any) -> dict[str, Any]:
    """A Config as standard JSON values (for traces and export manifests): tuples as lists, inf and nan tagged as
    transformers tags them (json.dumps would write the bare Infinity that strict JSON parsers reject)."""

    def plain(v: Any) -> Any:
        if isinstance(v, (tuple, list)):
            return [plain(x) for x in v]
        if isinstance(v, float) and not math.isfinite(v):
            return {"__float__": "NaN" if math.isnan(v) else "Infinity" if v > 0 else "-Infinity"}
        return v

    return {k: plain(v) for k, v in attrs.asdict(cfg, recurse=False).items()}


def from_json(obj: Any) -> Any:
    """The inverse of :func:`to_json`'s float tags, anywhere in a JSON value (transformers' _decode_special_floats)."""
    if isinstance(obj, dict):
        tag = obj.get("__float__") if set(obj) == {"__float__"} else None
        if isinstance(tag, str) and tag in _FLOAT_TAGS:
            return _FLOAT_TAGS[tag]
        return {k: from_json(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [from_json(v) for v in obj]
    return obj
