"""The ``lmstep`` command. Each subcommand lives in ``commands/<name>.py`` and registers itself on ``app``."""

from __future__ import annotations

import importlib
import sys

import click
import typer

from lmstep.spec.errors import LmstepError

HELP = """lmstep: an LLM written down as an equation, step(state, input, rand) -> (state', output).

\b
Examples:
  lmstep models
  lmstep step --model tiny-llama --prompt "Hello" --steps 8
  lmstep generate --model tiny-gpt2 --tokens 72,105 --steps 16 --seed 1 --temperature 0.8 --json
"""

# Subcommand modules, in help order; each defines register(app).
COMMANDS = ["models", "step", "generate", "prove"]

app = typer.Typer(
    help=HELP,
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
_registered = False


def _register() -> None:
    global _registered
    if not _registered:
        for name in COMMANDS:
            importlib.import_module(f"lmstep.runtime.commands.{name}").register(app)
        _registered = True


def main(argv: list[str] | None = None) -> int:
    """Entry point: user errors print one line to stderr and exit with status 2."""
    _register()
    try:
        rc = app(args=argv, prog_name="lmstep", standalone_mode=False)  # click returns typer.Exit's code here
    except LmstepError as err:
        print(f"lmstep: error: {err}", file=sys.stderr)
        return 2
    except click.exceptions.Abort:
        print("lmstep: aborted", file=sys.stderr)
        return 130
    except click.exceptions.ClickException as err:
        err.show()
        return err.exit_code
    except click.exceptions.Exit as err:
        return err.exit_code
    except KeyboardInterrupt:
        print("lmstep: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    return rc if isinstance(rc, int) else 0


def entry() -> None:
    sys.exit(main())


if __name__ == "__main__":
    entry()
