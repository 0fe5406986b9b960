"""How a session looks: the interactive screen (rich renderables), the piped text block and the --json record.

Token text goes into rich ``Text`` objects, never markup strings, so a token like '[' cannot be read as markup.
"""

from __future__ import annotations

from typing import Any

from rich.console import Group
from rich.rule import Rule
from rich.table import Table
from rich.text import Text

from ..codec import f32_bits as f32_hex
from . import attention
from .measure import TensorDiff, by_layer, summarize, top_candidates
from .session import Entry, Session
from .text import token_text, tokens_text

TOP = 5  # candidates shown per transition
MAX_LAYERS = 8  # state rows shown on screen; deeper models get a "... n more layers" line

KEYS = "n/→ step  b/← back  f fork  t branch  d diff  w write trace  ? help  q quit"

HELP = """\
Keys
  n, space, →   step forward (revisits history when you went back)
  b, ←          step back: states are values, so back shows the exact earlier state
  f             fork here: a number is a new seed (re-samples this position);
                #ID or 'c' forces the next input token (and drops the rest of the prompt)
  t             switch to the next branch, at the same position
  d             diff this state against another: Enter = the other branch at this
                position (or the previous position); or B:P = branch B, position P
  w             write every branch as a trace file (lmstep replay checks it)
  ?             this help        q  quit
A transition at position p consumes the input token at p and samples position p+1
with rand_for(seed, p+1); inside the prompt the prompt decides the next input."""


def quoted(model: Any, token: int) -> str:
    return f"{token} '{token_text(model, token)}'"


def sampler_text(model: Any) -> str:
    s = model.sampler
    if s.temperature == 0:
        return "greedy (T=0, rand unused)"
    return f"T={s.temperature:g} top-k={s.top_k or 'all'} top-p={s.top_p:g}"


# -- the interactive screen ----------------------------------------------------------------------------------
def screen(session: Session, message: Any = None) -> Group:
    model, e = session.model, session.current
    here = session.branches[session.branch]
    title = f"lmstep step · {model.name or model.arch} · {sampler_text(model)} · seed {here.seed}"
    branch = f"branch {session.branch} ({here.name}{', ' + here.note if here.note else ''})"
    parts: list[Any] = [
        Rule(Text(title), style="bold"),
        Text(f"{branch} · position {e.state.pos} of {len(here.entries) - 1} computed"),
    ]
    parts.append(_text_line(session))
    parts.append(_transition(model, e, here.seed))
    parts.append(_state(e.state))
    if message is not None:
        parts.append(message)
    parts.append(Rule(style="dim"))
    parts.append(Text(KEYS, style="dim"))  # a line, not the rule's title, so a narrow terminal wraps it
    return Group(*parts)


def _text_line(session: Session) -> Text:
    model, e = session.model, session.current
    line = Text("text  ")
    line.append(tokens_text(model, session.inputs()))
    line.append(token_text(model, e.next), style="reverse")
    line.append(f"  ← next input ({e.source})", style="dim")
    return line


def _transition(model: Any, e: Entry, seed: int) -> Any:
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    pos = e.state.pos
    if e.output is None:
        grid.add_row(
            "transition", Text(f"none yet: the initial state, position 0 (press n to consume {quoted(model, e.next)})")
        )
        return grid
    grid.add_row("transition", Text(f"consumed {quoted(model, e.input)} at position {pos - 1}, sampled position {pos}"))
    grid.add_row("rand", Text(f"{e.rand:.7f} (f32 {f32_hex(e.rand)}) = rand_for({seed}, {pos})"))
    grid.add_row("sampled", Text(f"{quoted(model, e.output.token)}   next input: {quoted(model, e.next)} ({e.source})"))
    top = Table(box=None, padding=(0, 2), show_edge=False)
    for col in ("rank", "id", "text", "prob", "logit"):
        top.add_column(col, justify="left" if col == "text" else "right")
    for r, c in enumerate(top_candidates(e.output.logits, model.sampler.temperature, TOP)):
        style = "bold" if c.token == e.output.token else None
        top.add_row(
            str(r),
            str(c.token),
            Text(f"'{token_text(model, c.token)}'"),
            f"{c.prob:.3f}",
            f"{c.logit:.4f}",
            style=style,
        )
    grid.add_row("top", top)
    heads = attention.for_entry(model, e)
    if heads:
        grid.add_row("attend", Text(attention.summary(heads)))
    return grid


def _state(state: Any) -> Any:
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    grid.add_row("state", Text(f"pos {state.pos}  digest {state.digest()}"))
    table = Table(box=None, padding=(0, 2), show_edge=False)
    for col in ("layer", "tensor", "shape", "L2 norm", "sha256"):
        table.add_column(col, justify="right" if col in ("layer", "L2 norm") else "left")
    layers = by_layer(summarize(state))
    for i, tensors in list(layers.items())[:MAX_LAYERS]:
        for j, t in enumerate(tensors):
            table.add_row(
                str(i) if j == 0 else "", t.name.split(".", 2)[2], str(list(t.shape)), f"{t.norm:.4f}", t.sha256[:12]
            )
    if len(layers) > MAX_LAYERS:
        table.add_row("", f"... {len(layers) - MAX_LAYERS} more layers", "", "", "")
    grid.add_row("", table)
    return grid


def diff_view(label_a: str, label_b: str, a: Any, b: Any, diffs: list[TensorDiff]) -> Any:
    same = all(d.equal for d in diffs) and a.pos == b.pos
    table = Table(box=None, padding=(0, 2), show_edge=False, title_justify="left")
    for col in ("past_key_values.", "shape A", "shape B", "max |A-B|", ""):
        table.add_column(col)
    for d in diffs:
        table.add_row(
            d.name.removeprefix("past_key_values."),
            str(list(d.shape_a)),
            str(list(d.shape_b)),
            f"{d.max_abs:.3e}",
            "equal" if d.equal else "DIFFERS",
        )
    verdict = "identical states" if same else "states differ"
    head = Text(
        f"diff  A = {label_a} (digest {a.digest()})  vs  B = {label_b} (digest {b.digest()}): {verdict}", style="bold"
    )
    return Group(head, table)


def help_view() -> Text:
    return Text(HELP)


# -- piped output ---------------------------------------------------------------------------------------------
def plain_block(model: Any, e: Entry, seed: int) -> str:
    """A few lines per transition for logs and pipes: no colour, no escape codes."""
    pos = e.state.pos
    top = " | ".join(
        f"{c.token} '{token_text(model, c.token)}' {c.prob:.3f}"
        for c in top_candidates(e.output.logits, model.sampler.temperature, TOP)
    )
    lines = [
        f"pos {pos - 1}  in {quoted(model, e.input)}  rand {e.rand:.7f} ({f32_hex(e.rand)})  "
        f"-> sampled {quoted(model, e.output.token)}  next {quoted(model, e.next)} ({e.source})",
        f"  top    {top}",
    ]
    heads = attention.for_entry(model, e)
    if heads:
        lines.append(f"  attend {attention.summary(heads)}")
    lines += [f"  state  pos {pos}  digest {e.state.digest()}"]
    for i, tensors in by_layer(summarize(e.state)).items():
        cells = "  ".join(f"{t.name.split('.', 2)[2]} {list(t.shape)} |{t.norm:.4f}|" for t in tensors)
        lines.append(f"    layer {i}  {cells}")
    return "\n".join(lines)


def json_record(model: Any, e: Entry, seed: int) -> dict[str, Any]:
    """One --json line: the transition entries[i-1] -> entries[i] (floats are the exact float32 values)."""
    pos = e.state.pos
    return {
        "pos": pos - 1,
        "input": e.input,
        "input_text": token_text(model, e.input),
        "rand": e.rand,
        "rand_f32": f32_hex(e.rand),
        "seed": seed,
        "top": [
            {"id": c.token, "text": token_text(model, c.token), "prob": c.prob, "logit": c.logit}
            for c in top_candidates(e.output.logits, model.sampler.temperature, TOP)
        ],
        "sampled": e.output.token,
        "sampled_text": token_text(model, e.output.token),
        "next": e.next,
        "next_source": e.source,
        "attention": [
            {"layer": v.layer, "head": v.head, "top": v.top, "weight": float(v.weights[v.top])}
            for v in attention.for_entry(model, e)
        ],
        "state": {
            "pos": pos,
            "digest": e.state.digest(),
            "tensors": [
                {"name": t.name, "shape": list(t.shape), "norm": t.norm, "sha256": t.sha256} for t in summarize(e.state)
            ],
        },
    }
