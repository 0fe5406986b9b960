"""How a mutant is built: source edits of the spec's own functions, compiled into a private copy of lmstep.spec.

A mutant must differ from the spec by exactly one named bug, while the spec in the same process stays untouched
(tests, proofs and the checker run the two side by side). So an :class:`Edit` replaces one piece of text, which
must occur exactly once in the current source of one function, and the edited source is compiled into a private
copy of the whole ``lmstep.spec`` package: every module is executed again under a private package name, so an
edit of ``layers.causal_mask`` reaches ``llama`` and ``gpt2`` as a bug in the real file would, and nothing is
patched. If the spec is rewritten so the text no longer occurs, building the mutant fails loudly instead of
silently testing something else. A bug that is not in the spec's code (an engine that aliases its forks, or keeps
a rand from the previous call) has no edits; the checker builds it as an override of its engine
(``Mutant.engine``, runtime/check/engines.py).

The catalogue itself is lmstep/mutants.py.
"""

from __future__ import annotations

import ast
import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import itertools
import sys
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import attrs

from lmstep.spec.laws import BY_ID

SPEC = "lmstep.spec"
KINDS = ("model code", "state handling", "sampling", "randomness", "numerics", "sessions", "caches")


class MutantError(Exception):
    """A mutant that cannot be built from the current source (the edited text is gone or ambiguous)."""


@attrs.frozen
class Edit:
    """Replace ``old`` by ``new`` in the source of ``target``: "module.function" or "module.Class.method" of
    lmstep.spec, or a full dotted path ("lmstep.runtime.module.function", then that module alone is copied).
    A multi-line ``new`` is indented like the line ``old`` starts on."""

    target: str
    old: str
    new: str

    def split(self) -> tuple[str, str]:
        """(module, qualname): ("lmstep.spec.layers", "causal_mask")."""
        return split_target(self.target)


def split_target(target: str) -> tuple[str, str]:
    """ "layers.causal_mask" -> ("lmstep.spec.layers", "causal_mask"); a full dotted path is split at its module."""
    if not target.startswith("lmstep."):
        module, _, qualname = target.partition(".")
        return f"{SPEC}.{module}", qualname
    parts = target.split(".")
    for cut in range(len(parts) - 1, 1, -1):
        name = ".".join(parts[:cut])
        if importlib.util.find_spec(name) is not None:
            return name, ".".join(parts[cut:])
    raise MutantError(f"edit target {target!r}: no module found")


@attrs.frozen
class Mutant:
    """One deliberately broken variant of the spec, declared once and shared by the tests (negative controls),
    the proofs (``~`` obligations) and the checker (``--impl mutant:NAME``).

    name      the id (``lmstep check --impl mutant:NAME``)
    breaks    ids of the laws (lmstep.spec.laws) the bug must violate
    kind      the bug class, one of KINDS
    bug       what is wrong, one line
    edits     source edits of spec functions (empty for a bug that lives only in an engine)
    engine    the checker's implementation around the mutated spec (runtime/check/engines.py ENGINES)
    models    built-in models that show the bug; the checker runs it on the first
    sampler   sampler settings that make the bug observable
    checked   the checker's catalogue includes it (test_check_catalogue asserts that the default quick check, at
              ``level``, catches it by a checker law that checks one of ``breaks``)
    level     the level the checker's catalogue requires to catch it: "L1" (the default check) or "L0" for a
              bug that differs from the spec only within float32 rounding (a correct independent engine's
              differences look the same, so only bitwise conformance can tell)
    conforms_at  a positive control, not a bug: the checker must pass it at this level (e.g. "L2" for a float16
              KV cache) and fail it at the level above
    observable  float32 arithmetic shows it; False for bugs only the exact (real-number) proofs see
    only_checker  laws of ``breaks`` that only the checker's workload shows (forks interleaved with chunks); every
              other law of kind "law" in ``breaks`` is checked on the mutant by tests/test_spec_mutants.py
    """

    name: str
    breaks: tuple[str, ...] = attrs.field(converter=tuple)
    kind: str = attrs.field(validator=attrs.validators.in_(KINDS))
    bug: str
    edits: tuple[Edit, ...] = attrs.field(default=(), converter=tuple)
    engine: str = "model"
    models: tuple[str, ...] = attrs.field(default=("tiny-llama",), converter=tuple)
    sampler: Mapping[str, Any] = attrs.field(factory=dict, eq=False, hash=False)
    checked: bool = True
    observable: bool = True
    only_checker: tuple[str, ...] = attrs.field(default=(), converter=tuple)
    level: str = attrs.field(default="L1", validator=attrs.validators.in_(("L0", "L1")))
    conforms_at: str | None = attrs.field(default=None, validator=attrs.validators.in_((None, "L2", "L3")))

    def __attrs_post_init__(self) -> None:
        unknown = [law for law in self.breaks if law not in BY_ID]
        if unknown or not self.breaks or not set(self.only_checker) <= set(self.breaks):
            raise MutantError(f"mutant {self.name}: breaks must name laws of lmstep.spec.laws, got {self.breaks}")
        if not self.edits and self.engine == "model":
            raise MutantError(f"mutant {self.name}: no edits and the plain engine would be the spec itself")

    def spec_level_laws(self) -> tuple[str, ...]:
        """The laws of ``breaks`` that tests/test_spec_mutants.py checks on this mutant (a spec-level control):
        those of kind "law", when every edit is in the spec and float32 shows the bug."""
        in_spec = all(e.split()[0].startswith(SPEC + ".") for e in self.edits)
        if not (self.edits and in_spec and self.observable):
            return ()
        return tuple(law for law in self.breaks if BY_ID[law].kind == "law" and law not in self.only_checker)

    @property
    def model(self) -> str:
        """The built-in model the checker runs it on."""
        return self.models[0]

    def mutated(self) -> Mutated:
        """The private modules with this mutant's edits (built once per process)."""
        return build(self.edits)

    def function(self, target: str) -> Any:
        """A function of the mutated spec, e.g. ``function("mamba._scan")``."""
        return self.mutated().function(target)

    def patches(self) -> list[tuple[Any, str, Any]]:
        """(live object, attribute, mutated function) for every edited function: what a test sets (with pytest's
        monkeypatch, undone after it) to show that live code, which looks the function up when it runs (the
        proofs, the property tests), follows a change of it. Everything else uses the private copy."""
        out = []
        for edit in self.edits:
            module, qualname = edit.split()
            *owner, name = qualname.split(".")
            obj: Any = importlib.import_module(module)
            for part in owner:
                obj = getattr(obj, part)
            out.append((obj, name, self.function(edit.target)))
        return out

    def apply(self, model: Any) -> Any:
        """``model`` (config, weights, sampler settings) as a Model of the mutated spec."""
        if not self.edits:
            return model
        cls = self.mutated().module(f"{SPEC}.model").Model
        return cls(**{f.name: getattr(model, f.name) for f in attrs.fields(type(model))})

    def load(self, name: str | None = None, **sampler: Any) -> Any:
        """A built-in model (the first of ``models`` by default) with this mutant's sampler settings, mutated."""
        from lmstep.spec import load

        return self.apply(load(name or self.model, **{**self.sampler, **sampler}))


class Mutated:
    """A private copy of lmstep.spec (and of any other edited module) with the edits applied."""

    def __init__(self, spec: ModuleType | None, clones: dict[str, ModuleType]):
        self.spec, self.clones = spec, clones

    def module(self, name: str) -> ModuleType:
        """The private module for ``name`` ("mamba", "lmstep.spec.mamba" or an edited non-spec module); any
        other module is the real one."""
        full = name if name.startswith("lmstep") else f"{SPEC}.{name}"
        if full in self.clones:
            return self.clones[full]
        if self.spec is not None and (full == SPEC or full.startswith(SPEC + ".")):
            return importlib.import_module(self.spec.__name__ + full[len(SPEC) :])
        return importlib.import_module(full)

    def function(self, target: str) -> Any:
        module, qualname = split_target(target)
        obj: Any = self.module(module)
        for part in qualname.split("."):
            obj = getattr(obj, part)
        return obj


def apply_edit(source: str, edit: Edit) -> str:
    """``source`` with ``edit`` applied inside the definition of its qualname (exactly one occurrence)."""
    _, qualname = edit.split()
    lines = source.splitlines(keepends=True)
    start, end = _span(ast.parse(source), qualname, edit.target)
    body = "".join(lines[start:end])
    count = body.count(edit.old)
    if count != 1:
        raise MutantError(f"mutant edit of {edit.target}: {edit.old!r} occurs {count} times there (want exactly 1)")
    line = body[: body.index(edit.old)].rsplit("\n", 1)[-1]
    indent = line[: len(line) - len(line.lstrip())]
    new = edit.new.replace("\n", "\n" + indent)
    return "".join(lines[:start]) + body.replace(edit.old, new) + "".join(lines[end:])


def _span(tree: ast.Module, qualname: str, target: str) -> tuple[int, int]:
    """0-based [start, end) lines of the definition ``qualname`` ("f", "Class.method") in ``tree``."""
    nodes: Sequence[ast.stmt] = tree.body
    found: ast.stmt | None = None
    for part in qualname.split("."):
        found = next(
            (
                n
                for n in nodes
                if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef) and n.name == part
            ),
            None,
        )
        if found is None:
            raise MutantError(f"mutant edit of {target}: no definition {part!r} in its module")
        nodes = found.body
    assert found is not None and found.end_lineno is not None
    first = min([found.lineno, *[d.lineno for d in getattr(found, "decorator_list", [])]])
    return first - 1, found.end_lineno


# -- private copies -------------------------------------------------------------------------------------------
class _Loader(importlib.abc.SourceLoader):
    """Loads a module from its file with edits applied (never from or to the bytecode cache)."""

    def __init__(self, path: Path, edits: Sequence[Edit]):
        self.path, self.edits = path, tuple(edits)

    def get_filename(self, fullname: str) -> str:
        return str(self.path)

    def get_data(self, path: str) -> bytes:
        source = Path(path).read_text(encoding="utf-8")
        for edit in self.edits:
            source = apply_edit(source, edit)
        return source.encode("utf-8")


class _Finder(importlib.abc.MetaPathFinder):
    """Serves the modules of the private spec packages ("_lmstep_mutant_<k>.<module>")."""

    def __init__(self) -> None:
        self.packages: dict[str, tuple[Path, dict[str, list[Edit]]]] = {}

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> importlib.machinery.ModuleSpec | None:
        package, _, sub = fullname.partition(".")
        if package not in self.packages or "." in sub:
            return None
        directory, edits = self.packages[package]
        file = directory / f"{sub or '__init__'}.py"
        if not file.is_file():
            return None
        loader = _Loader(file, edits.get(f"{SPEC}.{sub}" if sub else SPEC, []))
        search = [str(directory)] if not sub else None
        return importlib.util.spec_from_file_location(fullname, file, loader=loader, submodule_search_locations=search)


_FINDER = _Finder()
_LOCK = threading.Lock()
_BUILT: dict[tuple[Edit, ...], Mutated] = {}
_COUNTER = itertools.count()


def build(edits: Sequence[Edit]) -> Mutated:
    """The private modules for ``edits`` (cached: the same edits give the same modules)."""
    key = tuple(edits)
    with _LOCK:
        if key not in _BUILT:
            _BUILT[key] = _build(key)
        return _BUILT[key]


def _build(edits: tuple[Edit, ...]) -> Mutated:
    by_module: dict[str, list[Edit]] = {}
    for edit in edits:
        by_module.setdefault(edit.split()[0], []).append(edit)
    k = next(_COUNTER)
    spec_edits = {m: e for m, e in by_module.items() if m == SPEC or m.startswith(SPEC + ".")}
    spec = _private_spec(k, spec_edits) if spec_edits else None
    clones = {m: _clone(m, e, k) for m, e in by_module.items() if m not in spec_edits}
    return Mutated(spec, clones)


def _private_spec(k: int, edits: dict[str, list[Edit]]) -> ModuleType:
    import lmstep.spec
    import lmstep.spec.errors

    if _FINDER not in sys.meta_path:
        sys.meta_path.insert(0, _FINDER)
    name = f"_lmstep_mutant_{k}"
    _FINDER.packages[name] = (Path(lmstep.spec.__file__).parent, edits)
    if f"{SPEC}.errors" not in edits:  # one error hierarchy: the CLI reports a mutant's InputError like the spec's
        sys.modules[f"{name}.errors"] = lmstep.spec.errors
    return importlib.import_module(name)


def _clone(module: str, edits: list[Edit], k: int) -> ModuleType:
    real = importlib.import_module(module)
    path = Path(real.__file__ or "")
    spec = importlib.util.spec_from_file_location(f"{module}__mutant{k}", path, loader=_Loader(path, edits))
    if spec is None:
        raise MutantError(f"cannot copy {module}")
    copy = importlib.util.module_from_spec(spec)
    copy.__package__ = real.__package__  # relative imports resolve to the real siblings
    spec.loader.exec_module(copy)  # type: ignore[union-attr]
    return copy
