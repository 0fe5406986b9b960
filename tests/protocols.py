"""Signature parity between a typing.Protocol and the classes that implement it, by introspection.

Types differ by design between implementations (numpy arrays, spox Vars, Z3 terms), so what must agree is what
a caller relies on: the member names, and each method's parameter names, kinds and defaults."""

from __future__ import annotations

import inspect
from typing import Any


def members(protocol: type) -> dict[str, Any]:
    """The Protocol's public members: methods and properties by name (attributes as ``None``)."""
    out: dict[str, Any] = {name: None for name in getattr(protocol, "__annotations__", {}) if not name.startswith("_")}
    for name, value in vars(protocol).items():
        if not name.startswith("_") and (inspect.isfunction(value) or isinstance(value, property)):
            out[name] = value
    return out


def _shape(fn: Any) -> list[tuple[str, Any, Any]]:
    return [(p.name, p.kind, p.default) for p in inspect.signature(fn).parameters.values()]


def mismatches(protocol: type, cls: type, only: frozenset[str] | None = None) -> list[str]:
    """Every way ``cls`` differs from ``protocol`` (within ``only`` when given), one line each; [] when none."""
    problems = []
    for name, want in members(protocol).items():
        if only is not None and name not in only:
            continue
        declared = any(name in getattr(c, "__annotations__", {}) for c in cls.__mro__)  # an instance attribute
        if not hasattr(cls, name):
            if not (declared and not inspect.isfunction(want)):
                problems.append(f"{cls.__name__} lacks {name}")
            continue
        got = inspect.getattr_static(cls, name)
        if inspect.isfunction(want):
            if not callable(got):
                problems.append(f"{cls.__name__}.{name} is not a method")
            elif _shape(got) != _shape(want):
                problems.append(f"{cls.__name__}.{name}{inspect.signature(got)} != {name}{inspect.signature(want)}")
        elif isinstance(want, property) and callable(got) and not isinstance(got, property):
            problems.append(f"{cls.__name__}.{name} is a method, the protocol's is a property")
    return problems
