"""``lmstep export``: write a model's step and unrolled ONNX graphs (plus genai_config.json) to a folder."""

from __future__ import annotations

import typer

HELP = """Export a model to ONNX: step.onnx (decode + sampler), model.onnx (unrolled, genai's decoder).

\b
The folder runs with `--runtime onnx` (or `--model FOLDER`) and, for transformers,
under onnxruntime-genai. Every graph passes onnx.checker's full check.
\b
Examples:
  lmstep export --model tiny-llama --out out/tiny-llama
  lmstep export -m path/to/hf-checkpoint -o out/my-model --external
  lmstep generate -m out/tiny-llama --prompt "Hello"
"""


def register(app: typer.Typer) -> None:
    @app.command("export", help=HELP)
    def export(
        model: str = typer.Option(
            ..., "--model", "-m", help="Built-in name (see `lmstep models`) or checkpoint folder."
        ),
        out: str = typer.Option(
            ..., "--out", "-o", help="Folder to create in an existing folder (must not exist, or be empty)."
        ),
        external: bool = typer.Option(
            None, "--external/--inline", help="Weights as ONNX external data (default: when they total >= 16 MiB)."
        ),
        force: bool = typer.Option(
            False, "--force", help="Replace an earlier export's files in --out (never other files or folders)."
        ),
    ) -> None:
        from rich.console import Console

        from lmstep.runtime.folder import exported_files, write_folder
        from lmstep.spec import load

        console = Console(stderr=True)
        spec_model = load(model)
        with console.status(f"exporting {model}") as status:
            path = write_folder(
                spec_model, out, external=external, force=force, progress=lambda msg: status.update(f"{model}: {msg}")
            )
        files = ", ".join(sorted(exported_files(path)))  # what this export wrote, not the user's other files
        typer.echo(f"exported {model} ({spec_model.arch}) to {path}: {files}")
