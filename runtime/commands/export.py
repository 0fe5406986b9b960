"""``lmstep export``: write a model's step and unrolled ONNX graphs (plus genai_config.json) to a folder."""

from __future__ import annotations

import typer

HELP = """Export a model to ONNX: step.onnx (decode + sampler), model.onnx (unrolled, genai's decoder);
or, with --format gguf, to one float32 GGUF file for llama.cpp.

\b
The folder runs with `--runtime onnx` (or `--model FOLDER`) and, for transformers,
under onnxruntime-genai. Every graph passes onnx.checker's full check.
A GGUF holds the model's vocabulary (bytes for the built-ins, tokenizer.json),
or with --vocab ids one character per token id (for text-only servers).
\b
Examples:
  lmstep export --model tiny-llama --out out/tiny-llama
  lmstep export -m path/to/hf-checkpoint -o out/my-model --external
  lmstep export -m tiny-mamba --format gguf -o tiny-mamba.gguf
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
        fmt: str = typer.Option("onnx", "--format", help="onnx (a folder) or gguf (one file for llama.cpp)."),
        vocab: str = typer.Option(
            None, "--vocab", help="gguf: model (the model's own vocabulary) or ids (one character per id) [model]."
        ),
    ) -> None:
        from rich.console import Console

        from lmstep.runtime.folder import exported_files, write_folder
        from lmstep.spec import load
        from lmstep.spec.errors import InputError

        if fmt not in ("onnx", "gguf"):
            raise InputError(f"unknown --format {fmt!r}; use onnx or gguf")
        if fmt == "onnx" and vocab is not None:
            raise InputError("--vocab applies to --format gguf")
        if fmt == "gguf" and external is not None:
            raise InputError("--external/--inline apply to --format onnx; a GGUF holds its tensors itself")
        console = Console(stderr=True)
        if fmt == "gguf":
            from lmstep.runtime.files import check_writable
            from lmstep.runtime.ggufio import vocabulary, write_gguf

            check_writable(out, force)  # before loading the weights
            spec_model = load(model)
            vocabulary(spec_model, vocab or "model")  # a vocabulary it cannot write fails before the weights
            with console.status(f"exporting {model}"):
                path, voc = write_gguf(spec_model, out, vocab=vocab or "model", force=force)
            note = f"; {voc.note}" if voc.note else ""
            typer.echo(f"exported {model} ({spec_model.arch}) to {path}: GGUF float32, {voc.kind} vocabulary{note}")
            return
        spec_model = load(model)
        with console.status(f"exporting {model}") as status:
            path = write_folder(
                spec_model, out, external=external, force=force, progress=lambda msg: status.update(f"{model}: {msg}")
            )
        files = ", ".join(sorted(exported_files(path)))  # what this export wrote, not the user's other files
        typer.echo(f"exported {model} ({spec_model.arch}) to {path}: {files}")
