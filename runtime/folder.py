"""An exported model folder: what is in it, how it is written (atomically) and how it is read back.

lmstep.json        manifest: format version, arch, config, name, weights digest, IO names, opset, files written
step.onnx          the step graph (decode + sampler)
model.onnx         the unrolled graph (genai's decoder: any number of new tokens after the state)
weights.data       ONNX external data shared by both graphs (written when the weights are large)
genai_config.json  onnxruntime-genai's config (transformers only; see docs/runtime.md for Mamba)
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import onnx

from lmstep.spec.arrays import tree_leaves
from lmstep.spec.config import from_json, to_json
from lmstep.spec.errors import LmstepError
from lmstep.spec.model import ARCHITECTURES, Model

from . import contract as io
from .codec import brief
from .genai import genai_config
from .graph_ops import OPSET

FORMAT = "lmstep-onnx"
FORMAT_VERSION = 1
EXPORTER_VERSION = 1  # bump when the graphs change for the same model: invalidates cached exports
MANIFEST, STEP_FILE, UNROLLED_FILE, WEIGHTS_FILE, GENAI_FILE = (
    "lmstep.json",
    "step.onnx",
    "model.onnx",
    "weights.data",
    "genai_config.json",
)
# Weights go to external data when they total at least this much (small models stay one self-contained file
# each). Tensors under export.MIN_EXTERNAL_TENSOR bytes stay inline.
EXTERNAL_TOTAL_BYTES = 16 << 20
# A protobuf message cannot exceed 2 GiB, so a graph with its weights inline must stay well below that.
MAX_INLINE_BYTES = 1 << 30


class ExportFolderError(LmstepError):
    """A folder that is not an lmstep export, or one that is incomplete."""


def code_digest() -> str:
    """The source of everything a graph is built from: the whole spec and the exporting modules. A change to
    the spec's equations changes the graphs, so it must not hit a stale cached export."""
    import lmstep.spec

    spec_dir, here = Path(lmstep.spec.__file__).parent, Path(__file__).parent
    files = sorted(spec_dir.glob("*.py")) + [
        here / f for f in ("graph_ops.py", "export.py", "contract.py", "genai.py", "folder.py")
    ]
    h = hashlib.sha256()
    for f in files:
        h.update(f.name.encode() + b"\0" + f.read_bytes())
    return h.hexdigest()


def export_key(model: Model) -> str:
    """Cache key: everything that determines the exported files."""
    desc = json.dumps(
        {
            "arch": model.arch,
            "config": to_json(model.config),
            "weights": model.weights_digest(),
            "exporter": EXPORTER_VERSION,
            "code": code_digest(),
            "opset": OPSET,
            "onnx": onnx.__version__,
            "spox": spox_version(),
        },
        sort_keys=True,
    )
    return hashlib.sha256(desc.encode()).hexdigest()[:24]


def spox_version() -> str:
    from importlib.metadata import version

    return version("spox")


def manifest(model: Model) -> dict[str, Any]:
    arch, cfg = model.arch, model.config
    state = list(io.state_shapes(arch, cfg))
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "exporter_version": EXPORTER_VERSION,
        "opset": OPSET,
        "name": model.name,
        "arch": arch,
        "config": to_json(cfg),
        "weights_sha256": model.weights_digest(),
        "graphs": {"step": STEP_FILE, "unrolled": UNROLLED_FILE},
        "io": {
            "state_inputs": state,
            "state_outputs": [io.present_of(n) for n in state],
            "positions": io.HAS_POSITIONS[arch],
            "sampler_inputs": list(io.SAMPLER_INPUTS),
            "token_output": io.TOKEN_OUTPUT,
        },
    }


def write_folder(
    model: Model,
    out: str | os.PathLike,
    *,
    external: bool | None = None,
    progress: Callable[[str], None] | None = None,
    force: bool = False,
) -> Path:
    """Export ``model`` into folder ``out``, whose parent must exist (no folder tree is created behind the user's
    back). ``out`` must not exist or be empty; with ``force`` it may be an earlier lmstep export, whose files
    (those its manifest lists) are replaced: the user's other files in it are left alone.

    Everything is written in a temporary sibling folder first, so a failed export leaves ``out`` untouched. A new
    folder is then renamed into place whole (a reader never sees half of it); an earlier export gets the new
    files one by one, each atomically, the manifest last, then loses the old files the new export does not have.
    """
    from .export import build_step, build_unrolled, write_weights

    out = Path(out)
    if not str(out).strip() or out.name in ("", ".", ".."):
        raise ExportFolderError(f"--out {str(out)!r} names no new folder; give one, e.g. --out out/my-model")
    replace = False
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        if not force:
            raise ExportFolderError(
                f"{out} exists and is not empty; choose a new --out folder or pass --force to replace an export"
            )
        if not is_export_folder(out):
            raise ExportFolderError(
                f"{out} is not an lmstep export; --force only replaces exports, never other folders"
            )
        replace = True
    if not out.parent.is_dir():
        raise ExportFolderError(
            f"cannot create {out}: folder {out.parent} does not exist; create it first (mkdir -p {out.parent})"
        )
    say = progress or (lambda msg: None)
    total = sum(arr.nbytes for _, arr in tree_leaves(model.weights))  # float32 bytes
    if external is None:
        external = total >= EXTERNAL_TOTAL_BYTES
    if not external and total > MAX_INLINE_BYTES:
        raise ExportFolderError(
            f"the weights are {total / 2**30:.1f} GiB as float32, too large to keep inline in a graph (protobuf "
            "stops at 2 GiB); export them as external data (--external)"
        )
    try:
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    except OSError as err:
        raise ExportFolderError(f"cannot write in {out.parent} ({err.strerror or err})") from None
    try:
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes it 0700; a folder the user creates gets the umask's mode
        written = [STEP_FILE, UNROLLED_FILE]
        placed = {}
        if external:  # first, one tensor at a time: the graphs below only reference the file
            say(f"writing {total / 2**20:.1f} MiB of weights as external data")
            placed = write_weights(model, tmp / WEIGHTS_FILE, say)
            written.append(WEIGHTS_FILE)
        say("building step graph")
        step = build_step(model, placed, WEIGHTS_FILE)
        say("building unrolled graph")
        unrolled = build_unrolled(model, placed=placed, location=WEIGHTS_FILE)
        for proto, name in ((step, STEP_FILE), (unrolled, UNROLLED_FILE)):
            say(f"writing {name}")
            onnx.save_model(proto, tmp / name)
        config = genai_config(model)
        if config is not None:
            (tmp / GENAI_FILE).write_text(json.dumps(config, indent=2) + "\n")
            written.append(GENAI_FILE)
        (tmp / MANIFEST).write_text(json.dumps(manifest(model) | {"files": written + [MANIFEST]}, indent=2) + "\n")
        say("checking graphs (onnx.checker, full)")
        for name in (STEP_FILE, UNROLLED_FILE):
            onnx.checker.check_model(str(tmp / name), full_check=True)
        if replace:
            _replace_export(tmp, out, written)
        else:
            if out.exists():  # an empty folder: the new one takes its place
                out.rmdir()
            os.rename(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    shutil.rmtree(tmp, ignore_errors=True)
    return out


def _replace_export(new: Path, out: Path, written: list[str]) -> None:
    """Move the files of export ``new`` into the earlier export ``out`` (manifest last), then remove the files
    the earlier export wrote that the new one does not have. Nothing else in ``out`` is touched."""
    old_files = set(exported_files(out))
    for name in written:  # graphs and weights first, so the old manifest never names a missing file
        os.replace(new / name, out / name)
    os.replace(new / MANIFEST, out / MANIFEST)
    for name in sorted(old_files - set(written) - {MANIFEST}):
        try:
            (out / name).unlink()
        except FileNotFoundError:
            pass


def exported_files(folder: str | os.PathLike) -> list[str]:
    """The files an export wrote: its manifest's "files" list (exports before it listed them: the fixed names
    they could write). Only plain names inside the folder are believed."""
    try:
        listed = json.loads((Path(folder) / MANIFEST).read_text()).get("files")
    except (OSError, ValueError, AttributeError):
        listed = None
    if not isinstance(listed, list):
        return [MANIFEST, STEP_FILE, UNROLLED_FILE, WEIGHTS_FILE, GENAI_FILE]
    return [n for n in listed if isinstance(n, str) and n and Path(n).name == n and n not in (".", "..")]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def read_manifest(folder: str | os.PathLike) -> dict[str, Any]:
    folder = Path(folder)
    path = folder / MANIFEST
    if not path.is_file():
        raise ExportFolderError(f"{folder} has no {MANIFEST}: not an lmstep export; create one with `lmstep export`")
    try:
        m = json.loads(path.read_bytes().decode("utf-8"))
    except OSError as err:
        raise ExportFolderError(f"{path}: cannot read ({err.strerror or err})") from None
    except (ValueError, RecursionError) as err:  # not UTF-8, not JSON, a number too long, nesting too deep
        why = " ".join(str(err).split())[:80]
        raise ExportFolderError(f"{path} is not valid JSON ({why}); re-export the model with `lmstep export`") from None
    version = m.get("format_version") if isinstance(m, dict) else None
    if not isinstance(m, dict) or m.get("format") != FORMAT or isinstance(version, bool) or version != FORMAT_VERSION:
        raise ExportFolderError(f"{path} is not an {FORMAT} v{FORMAT_VERSION} manifest; re-export with this lmstep")
    if not isinstance(m.get("arch"), str) or m["arch"] not in ARCHITECTURES:
        raise ExportFolderError(f"{path} names unknown architecture {brief(m.get('arch'))}; re-export with this lmstep")
    for key, kind in (("name", str), ("weights_sha256", str), ("config", dict)):
        if (key in m or key == "config") and not isinstance(m.get(key), kind):
            raise ExportFolderError(f"{path}: {key!r} must be a {kind.__name__}; re-export the model")
    for name in (STEP_FILE, UNROLLED_FILE):
        if not (folder / name).is_file():
            raise ExportFolderError(f"{folder} lacks {name}: the export is incomplete; export it again")
    return m


def config_from_manifest(m: dict[str, Any]) -> Any:
    try:
        return ARCHITECTURES[m["arch"]].Config(**from_json(m["config"]))
    except (TypeError, KeyError, ValueError) as err:
        raise ExportFolderError(
            f"the manifest's config does not fit {m['arch']} ({' '.join(str(err).split())[:120]}); re-export the model"
        ) from None


def is_export_folder(path: str | os.PathLike) -> bool:
    return Path(path, MANIFEST).is_file()
