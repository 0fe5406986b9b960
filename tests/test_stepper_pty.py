"""The interactive stepper as a person uses it: keys into a pseudo-terminal, assertions on the screen."""

from __future__ import annotations

import re

from terminal import LMSTEP, Terminal, digest, field

from lmstep.runtime.cli import main

# T > 0 so the seed matters; the prompt "Hi" is two tokens, so position 2 is the first sampled token.
ARGS = ["step", "-m", "tiny-llama", "--prompt", "Hi", "-T", "0.9", "--seed", "3"]


def at(pos: int, branch: int = 0):
    return lambda text: f"branch {branch} " in text and f"· position {pos} " in text and "q quit" in text


def text_line(screen: str) -> str:
    return field(screen, r"(?m)^text  (.*?)  ← next input")


def test_step_forward_back_help_quit():
    t = Terminal(ARGS)
    s0 = t.wait_for(at(0))
    assert "initial state" in s0 and "[1, 2, 0, 16]" in s0  # empty KV cache shown per layer
    s1 = t.press("n", at(1))
    assert "consumed 72 'H' at position 0" in s1 and "rand_for(3, 1)" in s1
    assert re.search(r"(?m)^\s+0\s+key\s+\[1, 2, 1, 16\]", s1)  # per-layer shapes grow with the position
    s2 = t.press(" ", at(2))
    assert digest(s2) != digest(s1)
    back = t.press("b", at(1))
    assert digest(back) == digest(s1)  # back is the exact earlier state value
    assert t.press("\x1b[C", at(2)).count(digest(s2)) == 1  # → arrow steps forward again, to the same state
    assert "Keys" in t.press("?", "Keys")
    assert t.quit() == 0


def test_fork_with_another_seed_leaves_the_original_unchanged(tmp_path):
    t = Terminal(ARGS, cwd=str(tmp_path))
    t.wait_for(at(0))
    for p in (1, 2, 3, 4, 5):
        main_screen = t.press("n", at(p))
    main_text, main_digest = text_line(main_screen), digest(main_screen)
    for p in (4, 3, 2):
        t.press("b", at(p))
    main_at_2 = digest(t.text())
    t.press("f", "fork: new seed")
    forked = t.press("7\r", at(2, branch=1))  # seed 7 re-samples position 2 differently
    assert "forked branch 1 from branch 0 at position 2: seed 7" in forked
    assert "rand_for(7, 2)" in forked and digest(forked) == main_at_2  # same state, re-sampled token
    for p in (3, 4, 5):
        forked = t.press("n", at(p, branch=1))
    assert text_line(forked) != main_text  # another seed, another continuation
    assert text_line(forked)[:2] == main_text[:2] == "Hi"  # ... after the same prompt
    # diff against the parent at this position: the states diverged
    t.press("d", "diff against")
    diff = t.press("\r", "states differ")
    assert "DIFFERS" in diff and re.search(r"[1-9]\.\d+e[-+]\d+\s+DIFFERS", diff)
    # the original branch is unchanged: same text and digest at position 5
    original = t.press("t", at(5, branch=0))
    assert text_line(original) == main_text and digest(original) == main_digest
    # diff of two identical states: position 2 on both branches
    for p in (4, 3, 2):
        t.press("b", at(p))
    t.press("d", "diff against")
    same = t.press("1:2\r", "identical states")
    assert "DIFFERS" not in same and same.count("0.000e+00") == 4
    # write every branch as a trace; it replays bitwise
    t.press("w", "write the session")
    assert "wrote s.jsonl: 9 ops" in t.press("s.jsonl\r", "wrote s.jsonl")
    assert t.quit() == 0
    assert main(["replay", str(tmp_path / "s.jsonl")]) == 0


def test_fork_with_a_forced_token():
    t = Terminal(ARGS)
    t.wait_for(at(0))
    t.press("n", at(1))
    t.press("f", "fork: new seed")
    forced = t.press("'x'\r", at(1, branch=1))
    assert "forced #120 at 1" in forced and "next input: 120 'x' (forced)" in forced
    assert text_line(t.press("n", at(2, branch=1))).startswith("Hx")
    assert "not a seed or token" in (t.press("f", "fork: new seed"), t.press("zz\r", "not a seed"))[1]
    assert t.quit() == 0


def test_piped_output_is_not_interactive():
    """stdin a terminal but stdout a pipe: plain transitions, no screen, no waiting for keys."""
    t = Terminal(["-c", f"{LMSTEP} step -m tiny-gpt2 --prompt Hi --steps 2 | cat"], program="bash")
    assert t.finish() == 0
    screen = t.text()
    assert "q quit" not in screen
    assert [line.split()[1] for line in screen.splitlines() if line.startswith("pos ")] == ["0", "1", "2"]
