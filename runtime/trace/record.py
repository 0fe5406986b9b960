"""Making trace lines: from a generation (one prefill op, then step ops) or from a stepper session (step ops
for every branch, a fork op where a branch starts)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import attrs

from lmstep.spec import rand_for

from ..stepper.session import SAMPLED, Entry, Session
from ..stepper.text import token_text, tokens_text
from . import schema


def _op(index: int, kind: str, frm: int, pos: int, **fields: Any) -> dict[str, Any]:
    return {"#meta": {"index": index}, "kind": kind, "from": frm, "pos": pos, **fields}


def prefill_op(
    model: Any,
    index: int,
    frm: int,
    pos: int,
    tokens: Sequence[int],
    rand: float,
    logits: Any,
    token: int,
    state: Any,
    top: int,
) -> dict[str, Any]:
    return _op(
        index,
        "prefill",
        frm,
        pos,
        tokens=list(tokens),
        rand=schema.f32(rand),
        logits=schema.logits_record(logits, top),
        token=token,
        state=schema.state_record(state),
        text=tokens_text(model, list(tokens)) + " -> " + token_text(model, token),
    )


def step_op(model: Any, index: int, frm: int, e: Entry, top: int) -> dict[str, Any]:
    """The transition that produced entry ``e`` (e.state.pos - 1 -> e.state.pos)."""
    return _op(
        index,
        "step",
        frm,
        e.state.pos - 1,
        input=e.input,
        rand=schema.f32(e.rand),
        logits=schema.logits_record(e.output.logits, top),
        token=e.output.token,
        state=schema.state_record(e.state),
        text=token_text(model, e.input) + " -> " + token_text(model, e.output.token),
    )


def fork_op(model: Any, index: int, frm: int, e: Entry, seed: int | None) -> dict[str, Any]:
    """A branch starting at entry ``e``: a new seed (re-sampling this position) or a forced next token."""
    if seed is None:
        return _op(index, "fork", frm, e.state.pos, force=e.next, text="forced " + token_text(model, e.next))
    fields: dict[str, Any] = {"seed": schema.bigint(seed)}
    if e.output is not None:
        fields.update(
            rand=schema.f32(e.rand), token=e.output.token, text="re-sampled " + token_text(model, e.output.token)
        )
    return _op(index, "fork", frm, e.state.pos, **fields)


def generation_ops(
    model: Any, prompt: Sequence[int], steps: int, seed: int, top: int, on_op: Any = None
) -> list[dict[str, Any]]:
    """What ``model.generate(prompt, steps, seed)`` computes: one prefill op (sampling the first token), then
    ``steps - 1`` step ops; ``on_op`` is called after each op (for progress)."""
    state, logits = model.prefill(model.init_state(), prompt)
    rand = rand_for(seed, state.pos)
    token = model.sample(logits[-1], rand)
    ops = [prefill_op(model, 0, -1, 0, prompt, rand, logits, token, state, top)]
    for i in range(1, max(steps, 1)):
        if on_op:
            on_op()
        rand = rand_for(seed, state.pos + 1)
        state, out = model.step(state, token, rand)
        ops.append(step_op(model, i, i - 1, Entry(state, out.token, SAMPLED, token, rand, out), top))
        token = out.token
    if on_op:
        on_op()
    return ops


def session_ops(session: Session, top: int) -> list[dict[str, Any]]:
    """Every computed transition of every branch; entry 0 of the main branch is the initial state (from -1).

    A branch's ops chain back through "from" to where it forked, and the seed a replay uses is the latest fork
    seed on that chain. A branch forced off another branch *before* that branch's own seed fork inherits the
    newer seed although its chain never passes that fork, so its fork is preceded by a seed fork of its own."""
    model = session.model
    ops: list[dict[str, Any]] = []
    seeds: list[int] = []  # the seed in effect after each op, as a replay derives it
    where: dict[tuple[int, int], int] = {}  # (branch, entry index) -> index of the op that made that state

    def ref(b: int, i: int) -> int:
        branch = session.branches[b]
        if branch.parent is not None and i < branch.fork_at:
            return ref(branch.parent, i)
        return where.get((b, i), -1)

    def add(op: dict[str, Any], seed: int) -> None:
        ops.append(op)
        seeds.append(seed)

    root_seed = session.branches[0].seed
    for b, branch in enumerate(session.branches):
        first = 1
        if branch.parent is not None:
            e = branch.entries[branch.fork_at]
            frm = ref(branch.parent, branch.fork_at)
            if branch.forced and (seeds[frm] if frm >= 0 else root_seed) != branch.seed:
                add(_reseed_op(model, len(ops), frm, e, branch.seed), branch.seed)
                frm = len(ops) - 1
            where[(b, branch.fork_at)] = len(ops)
            add(fork_op(model, len(ops), frm, e, None if branch.forced else branch.seed), branch.seed)
            first = branch.fork_at + 1
        for i in range(first, len(branch.entries)):
            where[(b, i)] = len(ops)
            frm = ref(b, i - 1)
            add(step_op(model, len(ops), frm, branch.entries[i], top), seeds[frm] if frm >= 0 else root_seed)
    return ops


def _reseed_op(model: Any, index: int, frm: int, e: Entry, seed: int) -> dict[str, Any]:
    """A seed fork at entry ``e`` that re-samples its token with ``seed`` (what a replay will check)."""
    if e.output is None:
        return fork_op(model, index, frm, e, seed)
    rand = rand_for(seed, e.state.pos)
    return fork_op(
        model,
        index,
        frm,
        attrs.evolve(e, rand=rand, output=attrs.evolve(e.output, token=model.sample(e.output.logits, rand))),
        seed,
    )


def save(path: Any, model: Any, seed: int, top: int, ops: list[dict[str, Any]], force: bool = False) -> None:
    """Header + ops + end record, written atomically; an existing file is an error unless ``force``."""
    from ..files import write_atomic

    if not ops:
        from lmstep.spec.errors import InputError

        raise InputError("nothing to write: no transition has been computed yet (step forward first)")
    write_atomic(path, schema.dumps([schema.header(model, seed, top)] + ops + [schema.end(len(ops))]), force=force)
