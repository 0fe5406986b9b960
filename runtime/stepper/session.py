"""The stepper's core: a pure session value. Every operation returns a new Session; nothing is mutated.

A session is a set of branches. A branch is a tuple of entries where ``entries[i].state.pos == i``: entry 0
is the initial state and entry i+1 is ``model.step(entries[i].state, entries[i].next, rand)``. States are
immutable values, so going back is just moving the index, and a fork shares its parent's entries before the
fork point (a tuple of references, no copies).

The token at position p is sampled with ``rand_for(seed, p)``; the input consumed at position p is the
prompt's token while p is inside the prompt, else the token sampled at p (or a token forced by a fork).
"""

from __future__ import annotations

from typing import Any

import attrs

from lmstep.spec import rand_for
from lmstep.spec.errors import InputError
from lmstep.spec.rand import check_seed

# Where an entry's next input comes from.
PROMPT, SAMPLED, FORCED = "prompt", "sampled", "forced"


@attrs.frozen
class Entry:
    state: Any  # the state after this entry's transition (entry 0: model.init_state())
    next: int  # the token the next transition consumes, at position state.pos
    source: str  # PROMPT, SAMPLED or FORCED: why ``next`` is that token
    input: int | None = None  # the token this transition consumed, at position state.pos - 1 (None at entry 0)
    rand: float | None = None  # the rand that sampled position state.pos (None at entry 0)
    output: Any = None  # StepOutput: logits over position state.pos and the sampled token (None at entry 0)


@attrs.frozen
class Branch:
    name: str  # "main", "fork 1", ...
    seed: int
    prompt: tuple[int, ...]  # inputs decided by position: the prompt (a forced fork keeps only the part before it)
    entries: tuple[Entry, ...]
    parent: int | None = None  # the branch this one was forked from
    fork_at: int | None = None  # the entry index it was forked at
    note: str = ""  # how it differs from its parent, e.g. "seed 7" or "forced #120 at 3"
    forced: bool = False  # forked by forcing a token (else by a new seed)


@attrs.frozen
class Session:
    model: Any
    branches: tuple[Branch, ...]
    branch: int = 0  # the current branch
    index: int = 0  # the current entry on it

    @staticmethod
    def start(model: Any, prompt: list[int], seed: int) -> Session:
        seed = checked_seed(seed)
        if not prompt:
            raise InputError("the prompt is empty: give at least one token")
        for t in prompt:
            if not 0 <= t < model.vocab_size:
                raise InputError(
                    f"token id {t} is outside the vocabulary [0, {model.vocab_size}); use ids below {model.vocab_size}"
                )
        root = Entry(model.init_state(), prompt[0], PROMPT)
        return Session(model, (Branch("main", seed, tuple(prompt), (root,)),))

    # -- reading ---------------------------------------------------------------------------------------------
    @property
    def current(self) -> Entry:
        return self.entries[self.index]

    @property
    def entries(self) -> tuple[Entry, ...]:
        return self.branches[self.branch].entries

    @property
    def seed(self) -> int:
        return self.branches[self.branch].seed

    def entry(self, branch: int, index: int) -> Entry:
        if not 0 <= branch < len(self.branches):
            raise InputError(f"no branch {branch}; branches are 0..{len(self.branches) - 1}")
        entries = self.branches[branch].entries
        if not 0 <= index < len(entries):
            raise InputError(f"branch {branch} has positions 0..{len(entries) - 1}, not {index}")
        return entries[index]

    def inputs(self) -> list[int]:
        """The tokens consumed on the current branch up to the current entry."""
        return [e.input for e in self.entries[1 : self.index + 1]]

    def diff_target(self) -> tuple[int, int]:
        """The entry a diff compares against by default: the same position on the parent branch (or the newest
        fork) when there is one, else the previous entry on this branch."""
        here = self.branches[self.branch]
        other = here.parent if here.parent is not None else (len(self.branches) - 1 if len(self.branches) > 1 else None)
        if other is not None and other != self.branch:
            return other, min(self.index, len(self.branches[other].entries) - 1)
        return self.branch, max(self.index - 1, 0)

    # -- moving ----------------------------------------------------------------------------------------------
    def forward(self) -> Session:
        """One transition: revisit the next entry if it exists, else compute it with model.step."""
        if self.index + 1 < len(self.entries):
            return attrs.evolve(self, index=self.index + 1)
        here = self.branches[self.branch]
        e = self.current
        pos = e.state.pos
        rand = rand_for(here.seed, pos + 1)
        state, out = self.model.step(e.state, e.next, rand)
        if pos + 1 < len(here.prompt):
            nxt, source = here.prompt[pos + 1], PROMPT
        else:
            nxt, source = out.token, SAMPLED
        new = Entry(state, nxt, source, e.next, rand, out)
        return self._replace_branch(attrs.evolve(here, entries=here.entries + (new,)), index=self.index + 1)

    def advance(self, steps: int) -> Session:
        s = self
        for _ in range(steps):
            s = s.forward()
        return s

    def back(self) -> Session:
        return attrs.evolve(self, index=max(self.index - 1, 0))

    def switch(self, branch: int) -> Session:
        """Go to ``branch`` at the same position (or its last entry if it is shorter)."""
        b = branch % len(self.branches)
        return attrs.evolve(self, branch=b, index=min(self.index, len(self.branches[b].entries) - 1))

    def fork(self, seed: int | None = None, token: int | None = None) -> Session:
        """A new branch from the current entry, made current; the current branch is left as it is.

        ``seed``: the token at this position is re-sampled from the same logits with ``rand_for(seed, pos)``
        (inside the prompt the prompt still decides the input) and later positions use the new seed.
        ``token``: the next input becomes ``token`` and the rest of the prompt is dropped.
        """
        if (seed is None) == (token is None):
            raise InputError("fork with exactly one of a seed or a forced token")
        here = self.branches[self.branch]
        e = self.current
        pos = e.state.pos
        if token is not None:
            if not 0 <= token < self.model.vocab_size:
                raise InputError(f"token id {token} is outside the vocabulary [0, {self.model.vocab_size})")
            new = attrs.evolve(e, next=token, source=FORCED)
            prompt = tuple(here.prompt[:pos])  # the forced token itself lives in the entry's ``next``
            note = f"forced #{token} at {pos}"
        else:
            new_seed = checked_seed(seed)
            prompt = here.prompt
            note = f"seed {new_seed}"
            new = e
            if e.output is not None:  # re-sample this position with the new seed's rand
                rand = rand_for(new_seed, pos)
                out = attrs.evolve(e.output, token=self.model.sample(e.output.logits, rand))
                new = attrs.evolve(e, rand=rand, output=out, next=out.token if e.source == SAMPLED else e.next)
            seed = new_seed
        branch = Branch(
            f"fork {len(self.branches)}",
            here.seed if seed is None else seed,
            prompt,
            here.entries[: self.index] + (new,),
            parent=self.branch,
            fork_at=self.index,
            note=note,
            forced=token is not None,
        )
        return attrs.evolve(self, branches=self.branches + (branch,), branch=len(self.branches))

    def _replace_branch(self, branch: Branch, index: int) -> Session:
        branches = self.branches[: self.branch] + (branch,) + self.branches[self.branch + 1 :]
        return attrs.evolve(self, branches=branches, index=index)


def checked_seed(seed: Any) -> int:
    """The seed as an int, or the spec's one-line InputError with the hint spelled as the CLI option."""
    try:
        return check_seed(seed)
    except InputError as err:
        raise InputError(str(err).replace("; pass e.g. seed=0", "; e.g. --seed 0")) from None
