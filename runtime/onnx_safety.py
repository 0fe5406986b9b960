"""Checks on an ONNX file before onnxruntime opens it: external data stays inside the model folder, and the
graph has the IO contract lmstep will feed (contract.py). Each problem is one ``ExportFolderError`` line.

External data is where a downloaded model could reach outside its folder: a tensor's ``location`` may be an
absolute path, contain ``..``, or be a symbolic link that leaves the folder. All three are refused, as are
offsets or lengths past the end of the data file, before any byte is read.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import onnx

from .contract import HAS_POSITIONS, SAMPLER_INPUTS, TOKEN_OUTPUT, present_of, state_shapes
from .folder import ExportFolderError

ELEM = {onnx.TensorProto.FLOAT: "float32", onnx.TensorProto.INT64: "int64"}


def _initializers(graph: onnx.GraphProto) -> Iterator[onnx.TensorProto]:
    yield from graph.initializer
    for node in graph.node:
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.TENSOR:
                yield attr.t
            for g in [attr.g] if attr.type == onnx.AttributeProto.GRAPH else list(attr.graphs):
                yield from _initializers(g)


def check_external_data(proto: onnx.ModelProto, folder: Path, file: str) -> None:
    root = folder.resolve()
    for t in _initializers(proto.graph):
        if t.data_location != onnx.TensorProto.EXTERNAL:
            continue
        info = {e.key: e.value for e in t.external_data}
        loc = info.get("location", "")
        where = f"{folder / file}: tensor {t.name!r} keeps its data in {loc!r}"
        if not loc or os.path.isabs(loc) or Path(loc).drive or ".." in Path(loc).parts:
            raise ExportFolderError(f"{where}: external data must be a relative path inside the model folder; refusing")
        target = (folder / loc).resolve()  # resolves symbolic links too
        if root != target and root not in target.parents:
            raise ExportFolderError(f"{where}, which leaves the model folder (a link?); refusing")
        if not target.is_file():
            raise ExportFolderError(f"{where}, which does not exist; copy the whole exported folder")
        try:
            offset, length = int(info.get("offset", 0)), int(info.get("length", -1))
        except ValueError:
            raise ExportFolderError(f"{where} with a non-numeric offset or length; re-export the model") from None
        if offset < 0 or (length >= 0 and offset + length > target.stat().st_size):
            raise ExportFolderError(
                f"{where} at bytes {offset}..{offset + length}, past the file's end; the file is truncated"
            )


def expected_io(arch: str, cfg: Any, step: bool) -> tuple[dict[str, str], dict[str, str]]:
    """The inputs and outputs lmstep feeds/reads for a graph: name -> element type."""
    inputs = {"input_ids": "int64"}
    if HAS_POSITIONS[arch]:
        inputs |= {"attention_mask": "int64", "position_ids": "int64"}
    states = state_shapes(arch, cfg)
    inputs |= {name: "float32" for name in states}
    outputs = {"logits": "float32"} | {present_of(name): "float32" for name in states}
    if step:
        inputs |= {
            name: ("float32" if dtype.__name__ == "float32" else "int64") for name, (dtype, _) in SAMPLER_INPUTS.items()
        }
        outputs[TOKEN_OUTPUT] = "int64"
    return inputs, outputs


def check_io_contract(proto: onnx.ModelProto, path: Path, arch: str, cfg: Any, step: bool) -> None:
    want_in, want_out = expected_io(arch, cfg, step)
    for kind, have_values, want in (("input", proto.graph.input, want_in), ("output", proto.graph.output, want_out)):
        have = {v.name: ELEM.get(v.type.tensor_type.elem_type, "other") for v in have_values}
        missing = [n for n in want if n not in have]
        if missing:
            more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
            raise ExportFolderError(
                f"{path}: the graph has no {kind} {missing[0]!r}{more} that lmstep's IO contract needs; re-export it"
            )
        wrong = [n for n in want if have[n] != want[n]]
        if wrong:
            n = wrong[0]
            raise ExportFolderError(f"{path}: {kind} {n!r} is {have[n]}, the contract says {want[n]}; re-export it")
    extra = [v.name for v in proto.graph.input if v.name not in want_in and not _has_initializer(proto, v.name)]
    if extra:
        raise ExportFolderError(
            f"{path}: the graph needs input {extra[0]!r}, which lmstep's IO contract does not provide"
        )


def _has_initializer(proto: onnx.ModelProto, name: str) -> bool:
    return any(t.name == name for t in proto.graph.initializer)


def verify_graph_file(folder: Path, file: str, arch: str, cfg: Any, step: bool) -> onnx.ModelProto:
    """Both checks, reading the protobuf without its external data; returns that protobuf."""
    path = folder / file
    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as err:  # protobuf raises its own DecodeError types
        raise ExportFolderError(
            f"{path}: not a readable ONNX file ({type(err).__name__}); re-export the model"
        ) from None
    check_external_data(proto, folder, file)
    check_io_contract(proto, path, arch, cfg, step)
    return proto
