"""Validators shared by the architectures' ``Config`` classes (attrs frozen, Hugging Face field names)."""

from __future__ import annotations

import math
from typing import Any

import attrs

from .errors import ConfigError


def positive_int(inst: Any, attr: attrs.Attribute, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ConfigError(f"{type(inst).__name__}.{attr.name} must be a positive integer, got {value!r}")


def positive_float(inst: Any, attr: attrs.Attribute, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ConfigError(f"{type(inst).__name__}.{attr.name} must be a positive finite number, got {value!r}")


def boolean(inst: Any, attr: attrs.Attribute, value: Any) -> None:
    if not isinstance(value, bool):
        raise ConfigError(f"{type(inst).__name__}.{attr.name} must be true or false, got {value!r}")


def require(cond: bool, message: str) -> None:
    if not cond:
        raise ConfigError(message)


def int_field(default: Any = attrs.NOTHING) -> Any:
    return attrs.field(default=default, validator=positive_int)


def float_field(default: Any = attrs.NOTHING) -> Any:
    return attrs.field(default=default, converter=_to_float, validator=positive_float)


def bool_field(default: Any = attrs.NOTHING) -> Any:
    return attrs.field(default=default, validator=boolean)


def _to_float(v: Any) -> Any:
    return float(v) if isinstance(v, int) and not isinstance(v, bool) else v
