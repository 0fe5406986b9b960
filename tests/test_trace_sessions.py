"""Any interactive session, written as a trace (the stepper's `w`), replays bitwise: forks by seed and by forced
token, from any branch, at any position, after moving back and forth."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from lmstep.runtime.stepper.session import Session
from lmstep.runtime.trace import record, schema
from lmstep.runtime.trace import replay as rp
from lmstep.spec import load

MODEL = load("tiny-mamba", temperature=0.9, top_k=30)
moves = st.lists(
    st.one_of(
        st.just(("forward",)),
        st.just(("back",)),
        st.tuples(st.just("switch"), st.integers(0, 4)),
        st.tuples(st.just("seed"), st.integers(0, 2**64 - 1)),
        st.tuples(st.just("token"), st.integers(0, 255)),
    ),
    max_size=14,
)


def play(session: Session, steps: list[tuple]) -> Session:
    for move in steps:
        if move[0] == "forward":
            session = session.forward()
        elif move[0] == "back":
            session = session.back()
        elif move[0] == "switch":
            session = session.switch(move[1])
        elif move[0] == "seed":
            session = session.fork(seed=move[1])
        else:
            session = session.fork(token=move[1])
    return session


def replayed(tmp_path, session: Session) -> list:
    path = tmp_path / "s.jsonl"
    ops = record.session_ops(session, 3)
    record.save(path, MODEL, session.branches[0].seed, 3, ops, force=True)
    meta, ops = schema.read(path)
    return rp.replay(meta, ops, MODEL, rp.Tolerance())


@settings(max_examples=60)
@given(prompt=st.lists(st.integers(0, 255), min_size=1, max_size=4), seed=st.integers(0, 2**64 - 1), steps=moves)
def test_any_session_replays_bitwise(tmp_path_factory, prompt, seed, steps):
    session = play(Session.start(MODEL, prompt, seed).forward(), steps)
    results = replayed(tmp_path_factory.mktemp("s"), session)
    assert all(r.level == rp.BITWISE for r in results), [(r.index, r.headline) for r in results if r.problems]


def test_forced_fork_before_the_seed_fork_it_inherits(tmp_path):
    """The case the property found: fork by seed, go back two positions on that branch, force a token. The
    forced branch samples with the new seed, which its op chain never passes; without the seed fork recorded in
    front of its forced fork (the negative control below drops it) the replay diverges at the next step."""
    session = Session.start(MODEL, [72, 105], 3).advance(3)
    session = session.fork(seed=9).forward().back().back().fork(token=65).forward()
    assert all(r.level == rp.BITWISE for r in replayed(tmp_path, session))

    ops = record.session_ops(session, 3)
    reseed = next(i for i, op in enumerate(ops) if op["kind"] == "fork" and "seed" in op and op["pos"] == 2)
    dropped = ops[:reseed] + ops[reseed + 1 :]
    for i, op in enumerate(dropped):  # renumber, and point the forced fork at the reseed op's own "from"
        op["#meta"]["index"] = i
        if op["from"] == reseed:
            op["from"] = ops[reseed]["from"]
        elif op["from"] > reseed:
            op["from"] -= 1
    path = tmp_path / "dropped.jsonl"
    record.save(path, MODEL, 3, 3, dropped, force=True)
    meta, read_ops = schema.read(path)
    results = rp.replay(meta, read_ops, MODEL, rp.Tolerance())
    assert any(r.level == rp.DIVERGED and "rand" in r.headline for r in results)
