"""``lmstep compile``: write a checkpoint folder whose constructed weights compute an algorithm."""

from __future__ import annotations

import typer

HELP = """Compile an algorithm into GPT-2 weights: a checkpoint folder (config.json, model.safetensors,
algorithm.json) that lmstep and transformers load as it is. Greedy decoding of BOS x_1 .. x_n SEP
continues with the answer and EOS. Token ids: symbols 0..k-1, BOS = k, SEP = k+1, EOS = k+2.

\b
Algorithms: sort (small integers, by counting), reverse.
--check proves the written folder: every prompt of 0..max-len symbols through the spec,
each greedy decision by more than any float32 rounding (minutes at --max-len 8).
\b
Examples:
  lmstep compile sort --out out/sort
  lmstep generate -m out/sort --tokens 4,3,1,2,1,5 --steps 5   # -> 1,1,2,3,6
  lmstep compile reverse --out out/rev --symbols 3 --max-len 6 --check
  lmstep step -m out/rev --tokens 3,0,1,2,4 --steps 4     # where each head attends
"""


def register(app: typer.Typer) -> None:
    @app.command("compile", help=HELP)
    def compile_(
        algorithm: str = typer.Argument(..., help="sort or reverse."),
        out: str = typer.Option(..., "--out", "-o", help="Folder to create (must not exist, or be empty)."),
        symbols: int = typer.Option(4, "--symbols", "-k", help="Alphabet size k: symbols 0..k-1."),
        max_len: int = typer.Option(8, "--max-len", help="The bound: prompts of at most this many symbols."),
        force: bool = typer.Option(False, "--force", help="Replace an earlier compiled folder (never other folders)."),
        check: bool = typer.Option(False, "--check", help="Then prove the folder on every prompt within the bound."),
    ) -> None:
        from lmstep.runtime.algorithms import compile_algorithm
        from lmstep.runtime.algorithms.folder import read_folder, write_folder

        algo = compile_algorithm(algorithm, symbols, max_len)
        path = write_folder(algo, out, force=force)
        cfg = algo.model.config
        params = sum(a.size for a in algo.model.named_weights().values())
        files = ", ".join(sorted(p.name for p in path.iterdir()))
        typer.echo(
            f"compiled {algorithm} (GPT-2: {cfg.n_layer} layers, width {cfg.n_embd}, {cfg.n_head} head, "
            f"MLP {cfg.n_inner}, {params} parameters; {symbols} symbols, max_len {max_len}) to {path}: {files}"
        )
        if check:
            from lmstep.proofs.exhaustive import check as check_all

            report = check_all(read_folder(path))
            typer.echo(report.summary())
            if not report.ok:
                raise typer.Exit(1)
