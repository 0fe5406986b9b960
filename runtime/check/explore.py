"""Hypothesis exploration, after the coverage run: random programs of operations, each run from a fresh session.

A program is a list of abstract steps (a kind and four integers) that a Driver turns into operations: the integers
pick a usable session, a chunk length (mostly 1-12 tokens, sometimes one straddling 16, 32 or 64, or a sliding
window's edge), a seed for the chunk's tokens and the decode's rand, and the decode's sampler settings and aim
(probes.py). Programs are drawn, not shrunk, by Hypothesis (derandomized, so a check is reproducible); a failing
run is shrunk as data by shrink.py. Every run counts once: ``runs`` in the report is 1 (the coverage run) plus the
programs run here.
"""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from .coverage import window_edges
from .driver import Driver, tokens
from .probes import DISTRIBUTION, SETTINGS

SHORT = tuple(range(1, 13))
AROUND = (15, 16, 17, 31, 32, 33, 63, 64, 65)


def kinds(caps: frozenset[str]) -> list[str]:
    out = ["run", "run", "run", "decode", "decode", "decode", "init", "causality", "determinism", "distribution"]
    out += ["fork"] if "fork" in caps else []
    out += ["batch", "batch"] if "batch" in caps else []
    out += ["release"] if "release" in caps else []
    return out


def programs(caps: frozenset[str], steps: int) -> st.SearchStrategy[list[tuple[Any, ...]]]:
    word = st.integers(0, 2**32 - 1)
    step = st.tuples(st.sampled_from(kinds(caps)), word, word, word, word)
    return st.lists(step, min_size=1, max_size=steps)


def run(d: Driver, program: list[tuple[Any, ...]]) -> None:
    vocab = d.vocab
    drawn = False
    around = AROUND + window_edges(d.ex.model.config)  # a sliding window's edges too
    d.run(d.init(), tokens(0, 1 + len(program) % 5, vocab))
    for kind, a, b, c, e in program:
        if not d.live:
            d.init()
        sid = d.live[a % len(d.live)]
        n = SHORT[b % len(SHORT)] if b % 5 else around[(b // 5) % len(around)]
        if kind == "run" and d.room(sid) >= n:
            d.run(sid, tokens(c, n, vocab))
        elif kind == "decode":
            d.decode(sid, c % vocab, e, pick=b)
        elif kind == "init":
            d.init()
        elif kind == "fork":
            d.fork(sid)
        elif kind == "release" and len(d.live) > 1:
            d.release(sid)
        elif kind == "batch" and len(d.live) >= 2:
            group = sorted({d.live[(a + i * (c | 1)) % len(d.live)] for i in range(2 + b % 2)})
            if len(group) >= 2:
                d.batch(group, [tokens(c + i, SHORT[(b >> (4 * i)) % 12], vocab) for i in range(len(group))])
        elif kind == "determinism":
            d.determinism(sid, tokens(c, 1 + b % 12, vocab), e % vocab, c, pick=b)
        elif kind == "causality":
            d.causality(tokens(c, 1 + b % 8, vocab), tokens(e, 1 + (b >> 8) % 4, vocab))
        elif kind == "distribution" and not drawn and b % 8 == 0:  # 200 decodes: rare (the coverage run has one)
            drawn = True
            settings = SETTINGS[b % len(SETTINGS)][0] if d.ex.impl.v2 else d.ex.model.sampler
            d.distribution(sid, c % vocab, e, settings if settings.temperature > 0 else DISTRIBUTION)
