"""Checking a trace: re-run every op on a model and compare, op by op.

Each op reaches one level: "bitwise" (token, rand, logits sha256 and state digests all equal), "close" (only
with a tolerance: the same token and rand, the recorded top logits within atol + rtol*|x|; digests may
differ), or "diverged". Inputs are taken from the trace, so one divergence does not hide the next op's
result; states chain through "from" as the replayer computed them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs
import numpy as np

from lmstep.spec import rand_for
from lmstep.spec.errors import LmstepError

from ..codec import brief
from ..codec import f32_bits as f32_hex
from ..stepper.measure import array_sha256, digests
from . import schema
from .schema import TraceError

BITWISE, CLOSE, DIVERGED = "bitwise", "close", "diverged"


@attrs.frozen
class Tolerance:
    atol: float = 0.0
    rtol: float = 0.0

    @property
    def bitwise(self) -> bool:
        return self.atol == 0 and self.rtol == 0

    def close(self, ours: float, theirs: float) -> bool:
        return abs(ours - theirs) <= self.atol + self.rtol * abs(theirs)


@attrs.frozen
class Problem:
    text: str
    tolerable: bool  # a difference a tolerance may accept (bits, not meaning); False: a real divergence


@attrs.frozen
class OpResult:
    index: int
    kind: str
    pos: int
    level: str
    problems: tuple[Problem, ...] = ()

    @property
    def headline(self) -> str:
        """The first real divergence, else the first difference."""
        hard = [p for p in self.problems if not p.tolerable]
        return (hard or list(self.problems) or [Problem("", True)])[0].text


def open_traced_model(meta: dict[str, Any], runtime: str | None = None, provider: str | None = None) -> Any:
    """The model named in the header, with the header's sampler settings, on ``runtime`` (default: the one the
    trace records, if lmstep has it) and ``provider`` (default: the recorded one if available here, else auto)."""
    from lmstep.runtime.modelref import RUNTIMES, open_model
    from lmstep.runtime.session import ProviderError, resolve_provider

    where = "trace header"
    model = meta.get("model")
    sampler = meta.get("sampler")
    if not isinstance(model, dict) or not isinstance(model.get("name"), str) or not isinstance(sampler, dict):
        raise TraceError(f'{where}: needs "model": {{"name": ...}} and "sampler"')
    if runtime is None and meta.get("runtime") in RUNTIMES:
        runtime = meta["runtime"]
    if provider is None:
        provider = "auto"
        if isinstance(meta.get("provider"), str):
            try:
                resolve_provider(meta["provider"])
                provider = meta["provider"]
            except ProviderError:  # recorded on a device this machine lacks: the environment then differs
                pass
    top_k = sampler.get("top_k", 0)
    return open_model(
        model["name"],
        runtime=runtime,
        provider=provider,
        temperature=schema.from_f32(sampler.get("temperature"), f"{where} sampler.temperature"),
        top_k=top_k if isinstance(top_k, int) and not isinstance(top_k, bool) else 0,
        top_p=schema.from_f32(sampler.get("top_p"), f"{where} sampler.top_p"),
    )


def identity_problems(meta: dict[str, Any], model: Any) -> list[str]:
    """Why this model is not the one the trace was recorded with (empty when it is)."""
    ours = schema.model_record(model)
    theirs = meta["model"]
    return [
        f"model {key} differs from the trace's: {_short(ours[key])} != {_short(theirs.get(key))}"
        for key in ("arch", "config", "weights_sha256")
        if key in theirs and theirs[key] != ours[key]
    ]


def _short(v: Any, n: int = 120) -> str:
    return brief(v, n)


def comparison(
    meta: dict[str, Any], model: Any, atol: float | None, rtol: float | None, bitwise: bool
) -> tuple[Tolerance, str]:
    """How to compare, and one line saying so: bits where the environment that computed the trace matches this
    one (SPEC.md §8: bitwise identity holds for the same computation on the same kernels), else the checker's
    L1 tolerance for the architecture (spec/conformance.py FORMS), unless the user said otherwise."""
    from lmstep.spec.conformance import FORMS

    from ..environment import differences, record

    if atol is not None or rtol is not None:
        tol = Tolerance(atol or 0.0, rtol or 0.0)
        return (
            tol,
            "comparing bitwise (as asked)"
            if tol.bitwise
            else f"comparing at atol {tol.atol:g}, rtol {tol.rtol:g} (as asked)",
        )
    if bitwise:
        return Tolerance(), "comparing bitwise (as asked with --bitwise)"
    recorded = meta.get("environment")
    if not isinstance(recorded, dict):
        return Tolerance(), (
            "comparing bitwise: the trace does not record the environment it was computed in (format version 1); "
            "--atol/--rtol allow rounding differences"
        )
    changed = differences(recorded, record(model))
    if not changed:
        return Tolerance(), "comparing bitwise: the numeric environment matches the trace's"
    arch = getattr(model, "arch", None)
    t = FORMS.get(arch, max(FORMS.values()))
    shown = "; ".join(changed[:3]) + (f"; {len(changed) - 3} more" if len(changed) > 3 else "")
    return Tolerance(t, t), (
        f"comparing at the L1 tolerance of {arch} (atol = rtol = {t:g}), not bitwise: the numeric environment "
        f"differs from the trace's ({shown}); --bitwise insists on bits"
    )


def replay(
    meta: dict[str, Any],
    ops: list[dict[str, Any]],
    model: Any,
    tol: Tolerance,
    on_op: Callable[[], None] | None = None,
) -> list[OpResult]:
    seed0 = schema.from_bigint(meta.get("seed"), "trace header seed")
    states: list[Any] = []  # state after op i, as this replay computed it
    last_logits: list[np.ndarray | None] = []  # the logits row op i sampled from (a fork: its from-op's)
    seeds: list[int] = []  # the seed in effect after op i
    results = []
    for i, op in enumerate(ops):
        frm = op["from"]
        start = model.init_state() if frm < 0 else states[frm]
        seed = seed0 if frm < 0 else seeds[frm]
        logits_in = None if frm < 0 else last_logits[frm]
        problems: list[Problem] = []
        try:
            state, logits, seed = _run(op, model, start, seed, logits_in, tol, problems)
        except LmstepError as err:  # e.g. a token outside the vocabulary: the op cannot run at all
            if isinstance(err, TraceError):
                raise
            problems.append(Problem(f"the op does not run: {err}", False))
            state, logits = start, logits_in
        states.append(state)
        last_logits.append(logits)
        seeds.append(seed)
        results.append(OpResult(i, op["kind"], int(op.get("pos", -1)), _level(problems, tol), tuple(problems)))
        if on_op:
            on_op()
    return results


def _level(problems: list[Problem], tol: Tolerance) -> str:
    if not problems:
        return BITWISE
    if not tol.bitwise and all(p.tolerable for p in problems):
        return CLOSE
    return DIVERGED


def _field(op: dict[str, Any], name: str) -> Any:
    if name not in op:
        raise TraceError(f'{op["_where"]}: a {op["kind"]} op needs "{name}"')
    return op[name]


def _run(
    op: dict[str, Any], model: Any, state: Any, seed: int, logits_in: Any, tol: Tolerance, problems: list[Problem]
) -> tuple[Any, Any, int]:
    """Compute one op from ``state``; append what differs from the trace. -> (state', sampled logits row, seed)."""
    kind, where = op["kind"], op["_where"]
    pos = _field(op, "pos")
    if pos != state.pos:
        problems.append(Problem(f"op starts at position {pos} but its from-state is at position {state.pos}", False))
    if kind == "fork":
        if "force" in op:
            return state, logits_in, seed
        seed = schema.from_bigint(_field(op, "seed"), f"{where} seed")
        if "rand" in op and logits_in is not None:
            rand = _check_rand(op, seed, state.pos, problems)
            _check_token(model.sample(logits_in, rand), op, problems)
        return state, logits_in, seed
    if kind == "prefill":
        tokens = _field(op, "tokens")
        rand = _check_rand(op, seed, state.pos + len(tokens), problems)
        new_state, logits = model.prefill(state, tokens)
        row = logits[-1]
    else:
        rand = _check_rand(op, seed, state.pos + 1, problems)
        new_state, out = model.step(state, _field(op, "input"), rand)
        logits = row = out.logits
    _check_logits(np.asarray(logits, np.float32), _field(op, "logits"), where, tol, problems)
    _check_token(model.sample(row, rand), op, problems)
    _check_state(new_state, _field(op, "state"), problems)
    return new_state, row, seed


def _check_rand(op: dict[str, Any], seed: int, position: int, problems: list[Problem]) -> float:
    """The trace's rand (used, so the sampler is checked on its own), compared with rand_for(seed, position)."""
    rand = schema.from_f32(_field(op, "rand"), f"{op['_where']} rand")
    expected = f32_hex(rand_for(seed, position))
    if f32_hex(rand) != expected:
        problems.append(Problem(f"rand {f32_hex(rand)} != rand_for({seed}, {position}) = {expected}", False))
    return rand


def _check_token(ours: int, op: dict[str, Any], problems: list[Problem]) -> None:
    theirs = _field(op, "token")
    if ours != theirs:
        problems.append(Problem(f"sampled token {ours} != trace {theirs}", False))


def _check_logits(ours: np.ndarray, rec: Any, where: str, tol: Tolerance, problems: list[Problem]) -> None:
    if not isinstance(rec, dict) or not isinstance(rec.get("top"), list):
        raise TraceError(f'{where}: "logits" needs "shape", "sha256" and "top"')
    if list(ours.shape) != rec.get("shape"):
        problems.append(Problem(f"logits shape {list(ours.shape)} != trace {rec.get('shape')}", False))
        return
    last = ours.reshape(-1, ours.shape[-1])[-1]
    for rank, t in enumerate(rec["top"]):
        theirs = schema.from_f32(t.get("logit"), f"{where} logits.top[{rank}]")
        token = t.get("id")
        if not isinstance(token, int) or not 0 <= token < last.shape[0]:
            problems.append(Problem(f"top[{rank}] names token {token!r}, outside the vocabulary", False))
            continue
        mine = float(last[token])
        if f32_hex(mine) != f32_hex(theirs):
            problems.append(
                Problem(
                    f"logit of token {token} (top[{rank}]) {f32_hex(mine)} != trace {f32_hex(theirs)} "
                    f"(|diff| {abs(mine - theirs):.3g})",
                    tol.close(mine, theirs),
                )
            )
    ids = [int(i) for i in np.argsort(-last, kind="stable")[: len(rec["top"])]]
    if ids != [t.get("id") for t in rec["top"]]:
        problems.append(Problem(f"top ids {ids} != trace {[t.get('id') for t in rec['top']]}", True))
    if array_sha256(ours) != rec.get("sha256"):
        problems.append(Problem("logits sha256 differs from the trace's", True))


def _check_state(state: Any, rec: Any, problems: list[Problem]) -> None:
    if not isinstance(rec, dict):
        raise TraceError('an op\'s "state" must be an object with pos, digest and tensors')
    if state.pos != rec.get("pos"):
        problems.append(Problem(f"state position {state.pos} != trace {rec.get('pos')}", False))
    if state.digest() == rec.get("digest"):
        return
    theirs = {t.get("name"): t for t in rec.get("tensors", []) if isinstance(t, dict)}
    for t in digests(state):
        other = theirs.get(t.name)
        if other is None or list(t.shape) != other.get("shape") or t.sha256 != other.get("sha256"):
            what = (
                "missing from the trace"
                if other is None
                else (
                    f"shape {list(t.shape)} != trace {other.get('shape')}"
                    if list(t.shape) != other.get("shape")
                    else "sha256 differs"
                )
            )
            problems.append(Problem(f"state differs: first tensor {t.name} ({what})", True))
            return
    problems.append(Problem(f"state digest {state.digest()} != trace {rec.get('digest')}", True))
