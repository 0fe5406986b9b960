"""Shared by the fuzz tests: type-confused edits of JSON documents, byte-level damage, and the contract every
command must keep on any input (tests/test_fuzz.py, tests/test_fuzz_cli.py).

An edit picks one place in a valid document (any key of any object, any element of any list, at any depth) and
replaces the value there with one of a fixed set of wrong-typed values, deletes it, or adds an unknown key; or it
damages the bytes (truncation anywhere, at a line boundary, binary inserted). The replacement values are the ones
that broke readers before: null, lists, objects, booleans (an int in Python), huge and negative integers, bad hex,
non-UTF-8 text, NaN and infinities, deep nesting. They are a fixed list, so a fuzzed ``impl`` or ``--model`` never
names a program that could run.
"""

from __future__ import annotations

import json
import math
from typing import Any

from hypothesis import strategies as st

from lmstep.runtime.cli import main

CONFUSED: list[Any] = [
    None,
    True,
    False,
    0,
    -1,
    1,
    2**31,
    2**64,
    2**70,
    -(2**63) - 1,
    int("9" * 400),
    0.5,
    1e308,
    -0.0,
    math.nan,
    math.inf,
    -math.inf,
    "",
    "x",
    "0xzz",
    "0x1234567g",
    "0x+1234567",
    "\x00\x7f\ufffd",
    "\u0663",  # a non-ASCII digit (int() would take it)
    "9" * 50,
    "../../etc/passwd",
    [],
    [1],
    [None],
    [[[[[]]]]],
    {},
    {"f32": "0xzzzzzzzz"},
    {"f32": 1},
    {"f32": "0x7fc00000"},
    {"#bigint": "-1"},
    {"#bigint": "1e5"},
    {"#bigint": "9" * 60},
    {"#bigint": None},
]


def paths(doc: Any, prefix: tuple = ()) -> list[tuple]:
    """Every place in a JSON value: keys of objects and indices of lists, at any depth (the root excluded)."""
    out = []
    if isinstance(doc, dict):
        for k, v in doc.items():
            out.append(prefix + (k,))
            out.extend(paths(v, prefix + (k,)))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            out.append(prefix + (i,))
            out.extend(paths(v, prefix + (i,)))
    return out


def _parent(doc: Any, path: tuple) -> Any:
    for key in path[:-1]:
        doc = doc[key]
    return doc


def edit(doc: Any, data: st.DataObject) -> tuple[Any, str]:
    """A copy of ``doc`` with one type-confused edit drawn from ``data``; and what was done (for messages)."""
    doc = json.loads(json.dumps(doc))
    where = paths(doc)
    if not where:
        return data.draw(st.sampled_from(CONFUSED)), "root replaced"
    path = data.draw(st.sampled_from(where))
    parent = _parent(doc, path)
    how = data.draw(st.sampled_from(["replace", "replace", "replace", "delete", "add"]))
    if how == "replace":
        parent[path[-1]] = data.draw(st.sampled_from(CONFUSED))
    elif how == "delete":
        del parent[path[-1]]
    elif isinstance(parent, dict):
        parent["unknown-key"] = data.draw(st.sampled_from(CONFUSED))
    else:
        parent.append(data.draw(st.sampled_from(CONFUSED)))
    return doc, f"{how} at {path!r}"


def damage(raw: bytes, data: st.DataObject) -> tuple[bytes, str]:
    """Byte-level damage: cut anywhere, cut at a line boundary, binary inserted, or the whole file binary."""
    how = data.draw(st.sampled_from(["cut", "cut-line", "insert", "binary", "empty"]))
    if how == "cut":
        return raw[: data.draw(st.integers(0, max(len(raw) - 1, 0)))], how
    if how == "cut-line":
        lines = raw.splitlines(keepends=True)
        return b"".join(lines[: data.draw(st.integers(0, max(len(lines) - 1, 0)))]), how
    if how == "insert":
        i = data.draw(st.integers(0, len(raw)))
        return raw[:i] + data.draw(st.binary(min_size=1, max_size=16)) + raw[i:], how
    if how == "binary":
        return data.draw(st.binary(max_size=300)), how
    return b"", how


def dumps_lines(lines: list[Any]) -> bytes:
    return "".join(json.dumps(line) + "\n" for line in lines).encode()


def cli(capsys, argv: list[str], what: str) -> tuple[int, str, str]:
    """Run the real entry point and check the contract: exit 0, 1 or 2; a usage or input error is exactly one
    line on stderr starting 'lmstep: error:'; never a traceback, never an internal error."""
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    assert code in (0, 1, 2), f"exit {code} on {what}: {err[-500:]}"
    ours = out.split("stderr of the implementation")[0]  # a program under check may print its own traceback
    assert "Traceback" not in ours + err and "internal error" not in err, f"{what}: {err[-800:]} {ours[-800:]}"
    if code == 2:
        assert err.count("\n") == 1 and err.startswith("lmstep: error: "), f"{what}: {err!r}"
    return code, out, err
