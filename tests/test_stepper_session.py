"""The stepper's session value and key bindings, without a terminal."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from lmstep.runtime.stepper import keys
from lmstep.runtime.stepper.measure import diff_states, top_candidates
from lmstep.runtime.stepper.session import FORCED, PROMPT, SAMPLED, Session
from lmstep.runtime.trace import record, replay, schema
from lmstep.spec import InputError, load, rand_for

MODEL = load("tiny-gpt2", temperature=0.9)
PROMPT_IDS = list(b"Hi")


def start(seed: int = 3) -> Session:
    return Session.start(MODEL, PROMPT_IDS, seed)


def test_forward_is_model_step_and_back_is_the_earlier_value():
    s = start().advance(4)
    e = s.current
    prev = s.entries[3]
    state, out = MODEL.step(prev.state, prev.next, rand_for(3, 4))
    assert e.state == state and e.output.token == out.token and e.rand == rand_for(3, 4)
    assert [x.source for x in s.entries] == [PROMPT, PROMPT, SAMPLED, SAMPLED, SAMPLED]
    back = s.back().back()
    assert back.current is s.entries[2] and back.forward().current is s.entries[3]  # history is reused, not recomputed
    assert start().back().index == 0


def test_fork_with_a_seed_resamples_and_leaves_the_parent_alone():
    s = start().advance(2)
    before = [e.state.digest() for e in s.entries]
    f = s.fork(seed=7).advance(3)
    assert (f.branch, len(f.branches)) == (1, 2) and f.branches[1].entries[0] is s.entries[0]
    at_fork = f.branches[1].entries[2]
    assert at_fork.output.token == MODEL.sample(s.current.output.logits, rand_for(7, 2)) != s.current.output.token
    assert at_fork.state is s.current.state
    assert [e.state.digest() for e in f.branches[0].entries] == before
    again = f.switch(0).advance(3)  # the parent continues as if no fork happened
    assert again.current.state == start().advance(5).current.state


def test_fork_with_a_forced_token_drops_the_rest_of_the_prompt():
    s = start().advance(1).fork(token=ord("x"))
    assert s.current.next == ord("x") and s.current.source == FORCED and s.branches[1].prompt == (72,)
    s = s.forward()
    assert s.current.input == ord("x") and s.current.source == SAMPLED
    with pytest.raises(InputError):
        start().fork(token=999)
    with pytest.raises(InputError):
        start().fork(seed=-1)


def test_diff_is_zero_for_equal_states_and_nonzero_for_diverged():
    s = start().advance(3)
    f = s.fork(token=0).forward()
    same = diff_states(s.current.state, f.branches[1].entries[3].state)
    assert all(d.equal and d.max_abs == 0 for d in same)
    diverged = diff_states(s.forward().current.state, f.current.state)
    assert not any(d.equal for d in diverged) and all(d.max_abs > 0 for d in diverged)
    shorter = diff_states(s.entries[1].state, s.current.state)  # different lengths: compared on the common prefix
    assert all(not d.equal and d.max_abs == 0 for d in shorter)


def test_top_candidates_follow_the_sampler_rank_order():
    logits = np.array([1.0, 3.0, 3.0, -1.0], np.float32)
    top = top_candidates(logits, 0.0, 3)
    assert [c.token for c in top] == [1, 2, 0] and abs(sum(c.prob for c in top_candidates(logits, 0.5, 4)) - 1) < 1e-12


def test_keys_apply_to_the_session():
    answers = iter(["7", "", "0:1", "#65", "nonsense"])

    def ask(prompt):
        return next(answers)

    s = start()
    s, msg, done = keys.apply_key(s, "b", ask)
    assert "already at the initial state" in str(msg)
    s, _, _ = keys.apply_key(s, "n", ask)
    s, _, _ = keys.apply_key(s, "\x1b[C", ask)
    assert s.index == 2
    s, msg, _ = keys.apply_key(s, "f", ask)
    assert s.branch == 1 and "seed 7" in str(msg)
    _, msg, _ = keys.apply_key(s, "d", ask)  # Enter: against the parent at this position
    assert "identical states" in msg.renderables[0].plain
    _, msg, _ = keys.apply_key(s, "d", ask)
    assert (
        "1:2" in msg.renderables[0].plain
        and "0:1" in msg.renderables[0].plain
        and "states differ" in msg.renderables[0].plain
    )
    s, msg, _ = keys.apply_key(s, "f", ask)
    assert s.current.next == 65
    _, msg, _ = keys.apply_key(s, "f", ask)
    assert "not a seed or token" in str(msg)
    assert keys.apply_key(s, "q", ask)[2] and "unknown key" in str(keys.apply_key(s, "z", ask)[1])
    assert keys.split_keys("nn") == ["n", "n"] and keys.split_keys("\x1b[D") == ["\x1b[D"]


def test_parse_token_reads_what_the_screen_writes():
    assert keys.parse_token(MODEL, "'\\n'") == 10 and keys.parse_token(MODEL, "'\\x99'") == 153
    assert keys.parse_token(MODEL, '"a"') == 97 and keys.parse_token(MODEL, "#200") == 200


def test_a_session_with_forks_replays_bitwise():
    s = start().advance(3).fork(seed=5).advance(2).switch(0).back().fork(token=33).advance(2)
    ops = record.session_ops(s, 5)
    assert [op["kind"] for op in ops] == ["step"] * 3 + ["fork", "step", "step", "fork", "step", "step"]
    results = replay.replay(
        schema.header(MODEL, 3, 5)["#meta"], [dict(op, _where="op") for op in ops], MODEL, replay.Tolerance()
    )
    assert [r.level for r in results] == ["bitwise"] * len(ops)


ACTIONS = st.lists(st.sampled_from(["n", "n", "b", "t", "fork-seed", "fork-token"]), max_size=14)


@given(ACTIONS)
def test_entries_are_positions_and_history_never_changes(actions):
    s = start()
    seen: dict[tuple[int, int], str] = {}
    for a in actions:
        if a == "fork-seed":
            s = s.fork(seed=len(s.branches) + 10)
        elif a == "fork-token":
            s = s.fork(token=len(s.branches))
        else:
            s = {"n": s.forward, "b": s.back, "t": lambda s=s: s.switch(s.branch + 1)}[a]()
        for b, branch in enumerate(s.branches):
            for i, e in enumerate(branch.entries):
                assert e.state.pos == i
                assert seen.setdefault((b, i), e.state.digest()) == e.state.digest()
