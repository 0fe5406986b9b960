"""The interactive stepper: read a key, apply it to the session value, redraw. The only terminal-facing part.

Keys come from typer.getchar (click's: raw mode, one read) and line prompts from rich's Console.input, so no escape
codes or termios handling are written here. ``apply_key`` is pure apart from the ``ask`` callback, so the
key bindings are testable without a terminal.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rich.console import Console
from rich.text import Text

from lmstep.spec.errors import LmstepError

from . import render
from .measure import diff_states
from .session import Session
from .text import token_text

Ask = Callable[[str], str]

# Arrow keys arrive as one escape sequence (xterm and the VT100 application-mode variants).
FORWARD = {"n", " ", "\x1b[C", "\x1bOC", "l"}
BACK = {"b", "\x1b[D", "\x1bOD", "h"}
QUIT = {"q", "\x1b", "\x04"}


def split_keys(chunk: str) -> list[str]:
    """One read can hold several keys when typed fast: an escape sequence is one key, other chars one each."""
    return [chunk] if chunk.startswith("\x1b") else list(chunk)


def apply_key(session: Session, key: str, ask: Ask) -> tuple[Session, Any, bool]:
    """(new session, message to show under the state or None, quit?)."""
    try:
        if key in FORWARD:
            return session.forward(), None, False
        if key in BACK:
            if session.index == 0:
                return session, Text("already at the initial state", style="yellow"), False
            return session.back(), None, False
        if key in QUIT:
            return session, None, True
        if key == "?":
            return session, render.help_view(), False
        if key == "t":
            if len(session.branches) == 1:
                return session, Text("only one branch: press f to fork", style="yellow"), False
            return session.switch(session.branch + 1), None, False
        if key == "f":
            return _fork(session, ask)
        if key == "d":
            return _diff(session, ask)
        if key == "w":
            return _write(session, ask)
        return session, Text(f"unknown key {key!r}; press ? for help", style="yellow"), False
    except (LmstepError, OSError) as err:  # shown under the state; the session (every branch) carries on
        return session, Text(f"error: {err}", style="red"), False


def _fork(session: Session, ask: Ask) -> tuple[Session, Any, bool]:
    answer = ask("fork: new seed (e.g. 7), or forced token as #ID or 'c' (Enter cancels): ").strip()
    if not answer:
        return session, Text("fork cancelled"), False
    if answer.isdigit():
        new = session.fork(seed=int(answer))
    else:
        new = session.fork(token=parse_token(session.model, answer))
    b = new.branches[new.branch]
    return (
        new,
        Text(
            f"forked branch {new.branch} from branch {session.branch} at position {session.index}: {b.note}",
            style="green",
        ),
        False,
    )


def parse_token(model: Any, answer: str) -> int:
    """'#101' -> 101; a quoted token as the screen writes it ('e', '\\n', '\\x99') -> its id."""
    if answer.startswith("#") and answer[1:].isdigit():
        return int(answer[1:])
    if len(answer) >= 3 and answer[0] == answer[-1] and answer[0] in "'\"":
        shown = {token_text(model, t): t for t in range(min(model.vocab_size, 256))}
        if answer[1:-1] in shown:
            return shown[answer[1:-1]]
    raise LmstepError(f"not a seed or token: {answer!r}; type e.g. 7 (seed), #101 (token id) or 'e' (token text)")


def _diff(session: Session, ask: Ask) -> tuple[Session, Any, bool]:
    b, i = session.diff_target()
    answer = ask(f"diff against branch:position (Enter = {b}:{i}): ").strip()
    if answer:
        b, i = parse_address(answer, session.branch)
    a, other = session.current.state, session.entry(b, i).state
    label_a = f"{session.branch}:{session.index}"
    return session, render.diff_view(label_a, f"{b}:{i}", a, other, diff_states(a, other)), False


def _write(session: Session, ask: Ask) -> tuple[Session, Any, bool]:
    """Save every branch's computed transitions as a trace (forks included) for `lmstep replay`."""
    from lmstep.runtime.trace import record

    path = ask("write the session as a trace to (Enter cancels): ").strip()
    if not path:
        return session, Text("write cancelled"), False
    ops = record.session_ops(session, render.TOP)
    record.save(path, session.model, session.branches[0].seed, render.TOP, ops)
    return session, Text(f"wrote {path}: {len(ops)} ops; check it with: lmstep replay {path}", style="green"), False


def parse_address(answer: str, branch: int) -> tuple[int, int]:
    """'B:P' -> (B, P); 'P' -> (current branch, P)."""
    parts = answer.split(":")
    if len(parts) > 2 or not all(p.strip().isdigit() for p in parts):
        raise LmstepError(f"not a position: {answer!r}; type P or B:P, e.g. 3 or 1:3")
    nums = [int(p) for p in parts]
    return (branch, nums[0]) if len(nums) == 1 else (nums[0], nums[1])


def run(session: Session, console: Console, read_key: Callable[[], str] | None = None) -> Session:
    """Draw, read a key, apply it, until q. Runs on the alternate screen so the shell's scrollback is kept."""
    import typer

    read_key = read_key or (lambda: typer.getchar(echo=False))
    message: Any = None
    with console.screen(hide_cursor=False):
        while True:
            console.clear()
            console.print(render.screen(session, message))
            try:
                chunk = read_key()
            except EOFError:
                break
            done = False
            for key in split_keys(chunk):
                session, message, done = apply_key(session, key, lambda prompt: console.input(prompt))
                if done:
                    break
            if done:
                break
    e = session.current
    console.print(f"left at branch {session.branch}, position {e.state.pos}, state digest {e.state.digest()}")
    return session
