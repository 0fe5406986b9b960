"""A person at a terminal, for the interactive tests: lmstep runs in a pseudo-terminal (pexpect) and its output
is fed to a VT100 emulator (pyte), so assertions are about what the screen shows, not about escape codes."""

from __future__ import annotations

import os
import re
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pexpect
import pyte

# The console script beside this interpreter (a venv), else the one on PATH.
LMSTEP = (
    str(Path(sys.executable).parent / "lmstep")
    if (Path(sys.executable).parent / "lmstep").exists()
    else shutil.which("lmstep")
)


class Terminal:
    def __init__(self, args: list[str], rows: int = 40, cols: int = 120, cwd: str | None = None, program: str = LMSTEP):
        self.screen = pyte.Screen(cols, rows)
        self.stream = pyte.ByteStream(self.screen)
        env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES", "NO_COLOR")}
        env["TERM"] = "xterm-256color"
        self.child = pexpect.spawn(program, args, dimensions=(rows, cols), env=env, cwd=cwd)

    def text(self) -> str:
        return "\n".join(line.rstrip() for line in self.screen.display)

    def _pump(self, timeout: float) -> str | None:
        """Feed what arrives within ``timeout`` to the emulator: the bytes (b"" if none), None at exit."""
        try:
            data = self.child.read_nonblocking(1 << 16, timeout=timeout)
        except pexpect.TIMEOUT:
            return ""
        except pexpect.EOF:
            return None
        self.stream.feed(data)
        return data

    def wait_for(self, want: str | Callable[[str], bool], timeout: float = 8.0) -> str:
        """Read until the screen satisfies ``want`` and the output has gone quiet (a whole redraw arrived)."""
        check = want if callable(want) else (lambda text: want in text)
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            data = self._pump(0.05)
            if data is None:
                break
            if check(self.text()):
                while self._pump(0.15):  # the rest of this redraw, if any
                    pass
                if check(self.text()):
                    return self.text()
        raise AssertionError(f"screen never showed {want!r}; it shows:\n{self.text()}")

    def press(self, keys: str, then: str | Callable[[str], bool]) -> str:
        self.child.send(keys)
        return self.wait_for(then)

    def finish(self, timeout: float = 30) -> int:
        """Read to the end without pressing anything; the exit status."""
        while self._pump(timeout) is not None:
            pass
        self.child.close()
        return self.child.exitstatus

    def quit(self) -> int:
        self.child.send("q")
        self.child.expect(pexpect.EOF, timeout=8)
        self.child.close()
        return self.child.exitstatus


def field(text: str, pattern: str) -> str:
    """The first capture of ``pattern`` on the screen, e.g. field(t, r"digest ([0-9a-f]{16})")."""
    m = re.search(pattern, text)
    assert m, f"no {pattern!r} on the screen:\n{text}"
    return m.group(1)


def position(text: str) -> int:
    return int(field(text, r"· position (\d+) "))


def digest(text: str) -> str:
    return field(text, r"state\s+pos \d+\s+digest ([0-9a-f]{16})")
