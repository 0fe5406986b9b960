"""The coverage run: a fixed schedule of operations the checker runs first, so that every declared capability and
every depth it promises is exercised by construction, before Hypothesis explores (explore.py).

Depth comes from chunks, not from decodes (a decode per position would cost the spec a step each): one main
session consumes chunks whose lengths straddle powers of two (15, 16, 31, 33, 63, 65, 127, 129, 255, 257, 511,
513, 1023, 1025) with one aimed decode after each, until it has passed ``depth`` (512 in the quick profile, 2048
in the thorough one, or the context limit), so cache blocks, pages and capacities of 16, 32, 64, ... 1024 are
crossed both inside a chunk and by a decode. Beside it, on every engine that offers them: a fork (immutable
engines too) continued with a chunk and a decode; a resume of an old handle (immutable); a batch of three
sessions at different positions with different lengths (with or without "immutable"); a release; causality
across 32; the same decode twice (determinism); 200 draws from one state (the sampler's distribution). Each decode
uses the next entry of probes.SETTINGS with its aimed rand. A sliding-window model (SPEC.md §5) also gets a
session whose chunks end just before, at and just after the window's edge and then cross it inside one chunk
(W - 1, W, W + 1, 2W + 1), where the window fits in four times the depth (thorough: Mistral 7B's 4096).
"""

from __future__ import annotations

from collections.abc import Iterator

from .driver import Driver, tokens
from .probes import DISTRIBUTION

LENGTHS = (15, 16, 31, 33, 63, 65, 127, 129, 255, 257, 511, 513, 1023, 1025)
DEPTH = {"quick": 512, "thorough": 2048}


def run(d: Driver, depth: int, seed0: int = 0) -> None:
    vocab = d.vocab
    seed = iter(range(1000 + 10**6 * seed0, 10**6 * (seed0 + 1)))
    a = d.init()
    fresh = None
    for i, n in enumerate(LENGTHS):
        n = min(n, d.room(a) - 2)
        if n < 1:
            break
        a = d.run(a, tokens(next(seed), n, vocab))
        a = d.decode(a, next(seed) % vocab, next(seed))
        if i == 2:
            a, fresh = side_work(d, a, seed)
            first = 1 << max(4, (depth // 2).bit_length() - 1)  # a first chunk across half the depth: 257, 1025
            d.release(d.run(d.init(), tokens(next(seed), min(first + 1, d.ex.limit), vocab)))
        if d.pos(a) > depth:
            break
    caps = d.caps
    edges = window_edges(d.ex.model.config)
    if edges and edges[1] <= 4 * depth:
        w = d.init()
        for n in edges:
            n = min(n, d.room(w) - 2)
            if n < 1:
                break
            w = d.decode(d.run(w, tokens(next(seed), n, vocab)), next(seed) % vocab, next(seed))
        if "release" in caps and w in d.ex.sessions:
            d.release(w)
    d.determinism(a if {"immutable", "fork"} & caps else None, tokens(next(seed), 20, vocab), 7, next(seed))
    if fresh is not None and fresh in d.ex.sessions:
        d.distribution(fresh, 3, next(seed), DISTRIBUTION if d.ex.impl.v2 else d.ex.model.sampler)


def window_edges(config: object) -> tuple[int, ...]:
    """Chunk lengths around a sliding window W: W - 1, W, W + 1, 2W + 1 (empty without a window)."""
    w = getattr(config, "sliding_window", None)
    return (w - 1, w, w + 1, 2 * w + 1) if w else ()


def side_work(d: Driver, a: int, seed: Iterator[int]) -> tuple[int, int]:
    """With the main session at 65: two continuations of one state, a resume, a fresh session, a batch, a release
    and causality. Forks and resumes use a side session, so the main line's comparisons stay those of the split
    and recurrent laws. Returns the main session and a fresh one (both possibly renumbered by the batch)."""
    vocab, caps = d.vocab, d.caps
    f = d.decode(d.run(d.init(), tokens(next(seed), 15, vocab)), next(seed) % vocab, next(seed))  # at 16
    old = f
    f = d.decode(d.run(f, tokens(next(seed), 16, vocab)), next(seed) % vocab, next(seed))  # at 33
    branch = d.fork(f) if "fork" in caps else None
    if branch is not None:
        # two continuations of one state, interleaved: the fork writes a chunk across 48 first, then the original
        # its own from the same state (a cache appended in place would overwrite the fork's rows), then both decode
        branch = d.run(branch, tokens(next(seed), 17, vocab))
        f = d.run(f, tokens(next(seed), 31, vocab))
        branch = d.decode(branch, next(seed) % vocab, next(seed))
        f = d.decode(f, next(seed) % vocab, next(seed))
    if "immutable" in caps and old in d.ex.sessions:  # resume a handle used before
        d.decode(d.run(old, tokens(next(seed), 17, vocab)), next(seed) % vocab, next(seed))
    fresh = d.run(d.init(), tokens(next(seed), 7, vocab))
    fresh = d.decode(fresh, next(seed) % vocab, next(seed))
    if "batch" in caps:  # three sequences at different positions (65, ~50 or 16, 8) with chunks of 3, 16 and 9
        third = branch if branch is not None else old if old in d.ex.sessions else d.init()
        new = d.batch([a, third, fresh], [tokens(next(seed), n, vocab) for n in (3, 16, 9)])
        if new is not None:
            a, third, fresh = new
            branch = third if branch is not None else None
    if "release" in caps:  # the side sessions are done with
        for s in (branch, f):
            if s is not None and s in d.ex.sessions:
                d.release(s)
    d.causality(tokens(next(seed), 33, vocab), tokens(next(seed), 9, vocab))
    return a, fresh
