"""``lmstep laws``: every law of the registry (lmstep.spec.laws) with its tests, proofs, checker law, export
tests and negative controls (runtime/law_index.py; docs/laws.md is its --markdown output)."""

from __future__ import annotations

import json

import typer

HELP = """List the laws: per law its statement, SPEC.md section, tests, proofs, checker law,
export tests and negative controls (mutants of the catalogue and marked tests).

\b
Tests are found in a source checkout (tests/, read, not run); an installed package lists the rest.
\b
Examples:
  lmstep laws
  lmstep laws unrolled-eq-recurrent
  lmstep laws --json
  lmstep laws --markdown > docs/laws.md
"""


def register(app: typer.Typer) -> None:
    @app.command("laws", help=HELP, short_help="List the laws and what tests, proves and checks each.")
    def laws(
        law: str | None = typer.Argument(None, help="Show only this law id."),
        as_json: bool = typer.Option(False, "--json", help="One JSON object: law id -> its entry."),
        as_markdown: bool = typer.Option(False, "--markdown", help="The docs/laws.md page."),
    ) -> None:
        from lmstep.runtime import law_index
        from lmstep.spec.errors import InputError
        from lmstep.spec.laws import BY_ID

        if as_json and as_markdown:
            raise InputError("--json and --markdown are two formats: choose one")
        if law is not None and law not in BY_ID:
            raise InputError(f"unknown law {law!r}; `lmstep laws` lists them: {', '.join(BY_ID)}")
        found = (law_index.ROOT / "tests").is_dir()
        index = law_index.build(law_index.ROOT if found else None)
        if law is not None:
            index = {law: index[law]}
        if as_json:
            typer.echo(json.dumps(law_index.as_json(index)))
        elif as_markdown:
            typer.echo(law_index.markdown(index), nl=False)
        else:
            typer.echo(law_index.text(index, found))
