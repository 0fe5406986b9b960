"""The checkpoint fixtures of tests/fixtures/hf/ and how far lmstep's logits are from transformers' on them.

    python tests/hf_fixtures.py     # prints the error table that docs/checkpoints.md records

No torch: the reference logits were recorded by tools/make_fixtures.py. Errors are measured three ways per
fixture, each over every sequence and every position:
- unrolled:  ``model.unrolled(seq)`` vs transformers' one forward pass over ``seq``;
- recurrent: ``model.step`` token by token vs the same forward pass;
- decode:    ``model.step`` along transformers' greedy continuation vs the logits ``generate`` computed with its
             KV / SSM cache at each step.
``abs`` is max |ours - theirs|; ``rel`` is the spec's one error metric, ``rel_err(ours, theirs)`` = that divided
by max(1, max |theirs|) of the same sequence (SPEC.md §8: logits have no natural unit, so the error is stated
relative to their scale).
"""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np

from lmstep.spec import Model, load
from lmstep.spec.conformance import rel_err
from lmstep.spec.safetensors_io import read_safetensors

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "hf")
NAMES = sorted(n for n in os.listdir(ROOT) if os.path.isfile(os.path.join(ROOT, n, "expected.json")))


def folder(name: str) -> str:
    return os.path.join(ROOT, name)


def expected(name: str) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    with open(os.path.join(ROOT, name, "expected.json")) as fh:
        meta = json.load(fh)
    return meta, read_safetensors(os.path.join(ROOT, name, "expected.safetensors"))


def stepped_logits(model: Model, tokens: list[int]) -> np.ndarray:
    """Logits [len, V] from the recurrent form: one ``step`` per token (rand is unused by the logits)."""
    state, rows = model.init_state(), []
    for t in tokens:
        state, out = model.step(state, t, 0.0)
        rows.append(out.logits)
    return np.stack(rows)


def errors(model: Model, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> dict[str, tuple[float, float]]:
    """{form: (max abs error, max relative error)} over all of a fixture's sequences."""
    pairs: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {"unrolled": [], "recurrent": [], "decode": []}
    for i, seq in enumerate(meta["sequences"]):
        ref = arrays[f"logits.{i}"]
        pairs["unrolled"].append((np.asarray(model.unrolled(seq)), ref))
        pairs["recurrent"].append((stepped_logits(model, seq), ref))
    for j, g in enumerate(meta["greedy"]):
        # generate's step k scores the token after prompt + tokens[:k]: the logits of positions len(prompt)-1 ...
        full = g["prompt"] + g["tokens"]
        ours = stepped_logits(model, full[:-1])[len(g["prompt"]) - 1 :]
        pairs["decode"].append((ours, arrays[f"decode_logits.{j}"]))
    out = {}
    for form, ps in pairs.items():
        out[form] = (
            max(float(np.abs(a - b).max()) for a, b in ps),
            max(rel_err(a, b) for a, b in ps),
        )
    return out


def main() -> None:
    print(f"{'fixture':<30} {'form':<10} {'max abs':>9} {'max rel':>9}  greedy")
    for name in NAMES:
        meta, arrays = expected(name)
        model = load(folder(name))
        greedy = all(model.generate(g["prompt"], len(g["tokens"])) == g["tokens"] for g in meta["greedy"])
        for form, (a, r) in errors(model, meta, arrays).items():
            print(f"{name:<30} {form:<10} {a:9.2e} {r:9.2e}  {'identical' if greedy else 'DIFFERENT'}")


if __name__ == "__main__":
    main()
