"""The ``lmstep`` command. Each subcommand lives in ``commands/<name>.py`` and registers itself on ``app``."""

from __future__ import annotations

import importlib
import os
import sys

import typer

from lmstep.spec.errors import LmstepError

HELP = """lmstep: an LLM written down as an equation, step(state, input, rand) -> (state', output).

\b
Examples:
  lmstep models
  lmstep step --model tiny-llama --prompt "Hello" --steps 8
  lmstep trace -m tiny-llama --prompt "Hello" --steps 8 --out t.jsonl && lmstep replay t.jsonl
  lmstep generate -m tiny-gpt2 --tokens 72,105 --steps 16 --seed 1 -T 0.8 --json
  lmstep export -m tiny-llama --out out/tl && lmstep generate -m out/tl --prompt "Hi"
  lmstep check -m tiny-llama --impl cmd:"python my_engine.py" --out cex.json
"""

# Subcommand modules, in help order; each defines register(app).
COMMANDS = ["models", "step", "trace", "replay", "generate", "export", "check", "prove", "laws", "compile"]

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


def version() -> str:
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as installed

    try:
        return installed("lmstep")
    except PackageNotFoundError:
        return "unknown (not installed)"


@app.callback(invoke_without_command=True)
def _root(
    show_version: bool = typer.Option(False, "--version", help="Print lmstep's version and exit.", is_eager=True),
) -> None:
    if show_version:
        typer.echo(f"lmstep {version()}")
        raise typer.Exit(0)


def main(argv: list[str] | None = None) -> int:
    """Entry point: every error is one line on stderr, never a traceback. Exit status (docs/checking.md): 0 ok,
    1 a check failed or a replay diverged, 2 a usage or input error (also a file that cannot be read or
    written), 130 interrupted."""
    _register()
    try:
        from lmstep.runtime.threads import apply_policy

        apply_policy()  # one BLAS thread unless the user chose (runtime/threads.py)
        # Without standalone mode, typer returns the code of a raised typer.Exit instead of raising it.
        code = app(args=argv, prog_name="lmstep", standalone_mode=False)
    except LmstepError as err:
        print(f"lmstep: error: {_one_line(str(err))}", file=sys.stderr)
        return 2
    except OSError as err:  # a file the command reads or writes: unreadable, unwritable, a folder, a full disk
        if isinstance(err, BrokenPipeError):
            return 0
        where = f"{err.filename}: " if err.filename else ""
        print(f"lmstep: error: {where}{err.strerror or err}", file=sys.stderr)
        return 2
    except MemoryError:
        print("lmstep: error: out of memory (an input too large for this machine?)", file=sys.stderr)
        return 2
    except typer.Exit as err:
        return err.exit_code
    except (typer.Abort, KeyboardInterrupt):
        print("lmstep: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    except Exception as err:
        # Usage errors (unknown option, bad value, missing --model) come from click, which typer may vendor:
        # recognise them by their interface rather than by a class from one of the two packages.
        if not (hasattr(err, "format_message") and hasattr(err, "exit_code")):
            return _internal_error(err)
        if type(err).__name__ == "NoArgsIsHelpError":  # bare `lmstep` or `lmstep CMD`: the help is the answer
            print(err.format_message())
            return 0
        ctx = getattr(err, "ctx", None)
        hint = f" (see '{ctx.command_path} --help')" if ctx is not None else ""
        print(f"lmstep: error: {' '.join(err.format_message().split())}{hint}", file=sys.stderr)
        return err.exit_code
    return code if isinstance(code, int) else 0


def _one_line(text: str) -> str:
    return " ".join(text.split()) if "\n" in text else text


def _internal_error(err: BaseException) -> int:
    """A bug in lmstep, not in the input: one line that says so, the traceback only when asked for."""
    if os.environ.get("LMSTEP_TRACEBACK"):
        raise err
    print(
        f"lmstep: internal error: {type(err).__name__}: {_one_line(str(err))[:300]} (a bug in lmstep; "
        "LMSTEP_TRACEBACK=1 shows where)",
        file=sys.stderr,
    )
    return 2


def entry() -> None:
    try:
        code = main()
    except BrokenPipeError:  # the reader left (e.g. `| head`): silence the exit-time flush, as click does
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        code = 1
    sys.exit(code)


if __name__ == "__main__":
    entry()
