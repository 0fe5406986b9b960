"""``lmstep step``: show each transition state -> state' of a generation."""

from __future__ import annotations

import json
from typing import Optional

import numpy as np
import typer

from . import options as opt

HELP = """Step through a generation, one transition at a time.

\b
Each line: position, input token, the rand used, top candidates with probabilities,
the sampled token, and a digest of the new state.
\b
Examples:
  lmstep step -m tiny-llama --prompt "Hi" --steps 8
  lmstep step -m tiny-mamba --tokens 1,2,3 --temperature 0.8 --seed 7 --json
  lmstep step -m tiny-gpt2 --prompt "Hi" --runtime onnx --provider cpu
"""


def register(app: typer.Typer) -> None:
    @app.command("step", help=HELP)
    def step(
        model: str = opt.Model,
        prompt: Optional[str] = opt.Prompt,
        tokens: Optional[str] = opt.Tokens,
        steps: int = opt.Steps,
        seed: int = opt.Seed,
        temperature: float = opt.Temperature,
        top_k: int = opt.TopK,
        top_p: float = opt.TopP,
        as_json: bool = opt.Json,
        runtime: Optional[str] = opt.Runtime,
        provider: str = opt.Provider,
    ) -> None:
        from lmstep.runtime.modelref import decode_tokens
        from lmstep.spec import rand_for
        from lmstep.spec.rand import check_seed

        check_seed(seed)
        m = opt.open_for_command(model, runtime, provider, temperature=temperature, top_k=top_k, top_p=top_p)
        ids = opt.prompt_ids(m, "Hello" if prompt is None and tokens is None else prompt, tokens)
        state = m.init_state()
        feed = list(ids)
        for i in range(len(ids) - 1 + steps):
            token = feed[i]
            rand = rand_for(seed, state.pos + 1)
            state, out = m.step(state, token, rand)
            if i >= len(ids) - 1:
                feed.append(out.token)
            probs = _softmax(out.logits / (temperature if temperature > 0 else 1.0))
            top = np.argsort(-probs, kind="stable")[:3]
            row = {
                "pos": state.pos - 1, "input": token, "rand": rand, "token": out.token if i >= len(ids) - 1 else None,
                "top": [[int(t), float(probs[t])] for t in top], "state": state.digest(),
            }
            if as_json:
                typer.echo(json.dumps(row))
            else:
                cands = "  ".join(f"{decode_tokens(m, [int(t)])!r}:{probs[t]:.2f}" for t in top)
                sampled = "" if row["token"] is None else f"-> {decode_tokens(m, [out.token])!r}"
                typer.echo(
                    f"pos {row['pos']:>4}  in {decode_tokens(m, [token])!r:<8} rand {rand:.6f}  "
                    f"top {cands}  {sampled:<10} state {row['state']}"
                )


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max())
    return e / e.sum()
