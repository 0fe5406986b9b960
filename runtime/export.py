"""Build the ONNX graphs of a model from the spec's own functions (docs/design.md §1: one source of truth).

    step graph     = arch.decode(GraphOps, ...) then sampler.sample(GraphOps, ...)   -> step.onnx
    unrolled graph = unrolled_forward(model)(GraphOps, ...)                           -> model.onnx

where unrolled_forward is arch.forward, except that Mamba's runs the scan schedule of mamba_scan.py (the spec's
forward with a faster bracketing of the same scan; docs/runtime.md).

Nothing here restates the math: the graph is whatever the spec's code does when handed graph values. The only
glue is the IO contract (contract.py): genai's [batch, seq] inputs are squeezed to the spec's [batch] for the
step, and its int64 attention_mask becomes the spec's boolean key_mask.

Weights never pass through the graph builder: the spec's code sees a typed argument per weight, and the finished
graph gets one initializer per weight, either inline (small models) or pointing into the weights file that
``write_weights`` streams out one tensor at a time (folder.py). So no step ever holds the weights in a protobuf
(which cannot exceed 2 GB) or a second float32 copy of them in memory.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import numpy as np
import onnx
from onnx import numpy_helper
from onnx.external_data_helper import set_external_data
from spox import Tensor, Var, argument, build

from lmstep.spec.arrays import tree_leaves, tree_map
from lmstep.spec.model import Model
from lmstep.spec.sampler import sample

from . import contract as io
from . import mamba_scan
from .graph_ops import GRAPH, OPSET

PRODUCER = "lmstep"


class GraphCache:
    """One layer's key or value cache as a graph value: ``append`` is a Concat along the sequence axis, so the
    spec's ``k_all, k_cache = k_cache.append(k)`` yields the present tensor (it is both). A sliding-window cache
    (``keep`` = W - 1, as arrays.SeqBuffer) presents only the last ``keep`` rows of it (a Slice)."""

    def __init__(self, past: Var, keep: int | None = None):
        self.past, self.keep = past, keep

    def append(self, rows: Var) -> tuple[Var, Var]:
        all_rows = GRAPH.concat([self.past, rows], axis=2)
        if self.keep is None:
            return all_rows, all_rows
        kept = GRAPH.slice(all_rows, 2, -self.keep, None) if self.keep else GRAPH.slice(all_rows, 2, 0, 0)
        return all_rows, kept


# Where each external weight lives in the weights file: name -> (offset, length) in bytes.
Placement = dict[str, tuple[int, int]]
ALIGN = 4096  # external tensors start on page boundaries, so they can be memory-mapped in place
MIN_EXTERNAL_TENSOR = 1024  # smaller tensors stay inline in the graph even when the weights are external
WEIGHTS_LOCATION = "weights.data"  # folder.WEIGHTS_FILE


class WeightArgs:
    """The model's weights as graph arguments named by their dotted field path (``layers.0.q_proj``).

    spox's public API names a graph's inputs, not its initializers, so the weights enter :func:`spox.build` as
    named float32 inputs and :meth:`to_initializers` then turns each into an initializer of the same name (onnx's
    public helpers): the same graph as building them as constants, without spox internals. No weight is read
    here: an initializer is either inline (its float32 bytes, one tensor widened at a time) or a reference into
    the weights file :func:`write_weights` wrote (``placed``)."""

    def __init__(self, model: Model, placed: Placement | None = None, location: str = WEIGHTS_LOCATION):
        self.leaves = dict(tree_leaves(model.weights))  # arrays or StoredArrays (spec/stored.py), as they are
        self.placed, self.location = placed or {}, location
        self.args = {name: argument(Tensor(np.float32, tuple(a.shape))) for name, a in self.leaves.items()}
        names = iter(self.args)
        self.tree = tree_map(lambda _: self.args[next(names)], model.weights)  # tree_leaves' order

    def to_initializers(self, proto: onnx.ModelProto) -> onnx.ModelProto:
        """Each weight input of ``proto`` becomes an initializer (in order of first use by the graph's nodes, as spox
        orders constants; a weight no node reads is dropped)."""
        graph = proto.graph
        kept = [i for i in graph.input if i.name not in self.leaves]
        used = dict.fromkeys(name for node in graph.node for name in node.input if name in self.leaves)
        del graph.input[:]
        graph.input.extend(kept)
        graph.initializer.extend(self._initializer(name) for name in used)
        return proto

    def _initializer(self, name: str) -> onnx.TensorProto:
        leaf = self.leaves[name]
        if name not in self.placed:
            return numpy_helper.from_array(np.ascontiguousarray(leaf, np.float32), name)
        t = onnx.TensorProto(name=name, data_type=onnx.TensorProto.FLOAT, dims=list(leaf.shape), raw_data=b"")
        offset, length = self.placed[name]
        set_external_data(t, self.location, offset, length)  # (onnx insists on a raw_data field to replace)
        t.ClearField("raw_data")
        t.data_location = onnx.TensorProto.EXTERNAL
        return t


def write_weights(model: Model, path: str | os.PathLike, say: Callable[[str], None] | None = None) -> Placement:
    """Stream every weight of at least MIN_EXTERNAL_TENSOR bytes into ``path`` as float32, each page-aligned, one
    tensor widened at a time (a bf16 checkpoint is never widened as a whole). Both graphs reference this one file."""
    placed: Placement = {}
    leaves = tree_leaves(model.weights)
    with open(path, "wb") as f:
        for i, (name, leaf) in enumerate(leaves):
            if leaf.nbytes < MIN_EXTERNAL_TENSOR:
                continue
            f.write(b"\0" * (-f.tell() % ALIGN))
            data = np.ascontiguousarray(leaf, "<f4")
            placed[name] = (f.tell(), data.nbytes)
            f.write(memoryview(data).cast("B"))
            del data
            if say is not None and i % 16 == 0:
                say(f"writing weights: {f.tell() / 2**30:.2f} GiB ({i + 1}/{len(leaves)} tensors)")
    return placed


def _state_args(model: Model) -> dict[str, Var]:
    return {
        name: argument(Tensor(np.float32, shape)) for name, shape in io.state_shapes(model.arch, model.config).items()
    }


def _spec_cache(model: Model, past: dict[str, Var], bounded: bool = True) -> tuple:
    """The per-layer cache tuple that the spec's decode/forward expect, over graph values. ``bounded``: a
    sliding-window cache presents only its last W - 1 rows (step.onnx); model.onnx presents [past; new] whole,
    as onnxruntime-genai allocates it (contract.py)."""
    values = list(past.values())
    pairs = [tuple(values[i : i + 2]) for i in range(0, len(values), 2)]
    if model.arch in io.RECURRENT:
        return tuple(pairs)
    keep = io.kept_rows(model.config) if bounded else None  # Mistral: W - 1
    return tuple((GraphCache(k, keep), GraphCache(v, keep)) for k, v in pairs)


def _contract_inputs(model: Model, seq: Any) -> dict[str, Var]:
    args = {"input_ids": argument(Tensor(np.int64, (io.BATCH, seq)))}
    if io.HAS_POSITIONS[model.arch]:
        args["attention_mask"] = argument(Tensor(np.int64, (io.BATCH, io.TOTAL)))
        args["position_ids"] = argument(Tensor(np.int64, (io.BATCH, seq)))
    return args


def _key_mask(args: dict[str, Var]) -> Var | None:
    mask = args.get("attention_mask")
    return None if mask is None else GRAPH.cast(mask, np.bool_)


def _presents(past: dict[str, Var], cache: tuple) -> dict[str, Var]:
    flat = [t for pair in cache for t in pair]
    return {io.present_of(name): value for name, value in zip(past, flat)}


def build_step(model: Model, placed: Placement | None = None, location: str = WEIGHTS_LOCATION) -> onnx.ModelProto:
    """step(state, input_ids [B, 1], rand [B], sampler settings) -> logits [B, 1, V], token [B], present.*

    Weights inline, except those in ``placed`` (see :func:`write_weights`), which reference ``location``."""
    weights = WeightArgs(model, placed, location)
    w = weights.tree
    args = _contract_inputs(model, 1)
    past = _state_args(model)
    sampler_args = {name: argument(Tensor(dtype, shape)) for name, (dtype, shape) in io.SAMPLER_INPUTS.items()}
    token = GRAPH.squeeze(args["input_ids"], 1)
    position = GRAPH.squeeze(args["position_ids"], 1) if "position_ids" in args else token  # SSM: unused
    logits, cache = model.module.decode(
        GRAPH, model.config, w, token, position, _spec_cache(model, past), _key_mask(args)
    )
    next_token = sample(
        GRAPH, logits, sampler_args["rand"], sampler_args["temperature"], sampler_args["top_k"], sampler_args["top_p"]
    )
    outputs = {"logits": GRAPH.unsqueeze(logits, 1), io.TOKEN_OUTPUT: next_token} | _presents(past, cache)
    proto = build(args | past | sampler_args | weights.args, outputs)
    return _finish(weights.to_initializers(proto), model, "step")


def unrolled_forward(model: Model) -> Callable[..., Any]:
    """The forward function model.onnx is built from (and that the tests run on numpy to compare it bitwise)."""
    return mamba_scan.forward if model.arch == "mamba" else model.module.forward


def build_unrolled(
    model: Model,
    forward: Callable[..., Any] | None = None,
    placed: Placement | None = None,
    location: str = WEIGHTS_LOCATION,
) -> onnx.ModelProto:
    """prefill: input_ids [B, S] after the state -> logits [B, S, V], present.* (genai's decoder contract).
    ``forward``: the function to build from (default :func:`unrolled_forward`; a test builds the spec's own).
    Weights as in :func:`build_step`."""
    weights = WeightArgs(model, placed, location)
    w = weights.tree
    args = _contract_inputs(model, io.SEQ)
    past = _state_args(model)
    position = args.get("position_ids", args["input_ids"])  # an SSM ignores positions (spec: accepted, unused)
    logits, cache = (forward or unrolled_forward(model))(
        GRAPH, model.config, w, args["input_ids"], position, _spec_cache(model, past, bounded=False), _key_mask(args)
    )
    proto = build(args | past | weights.args, {"logits": logits} | _presents(past, cache))
    return _finish(weights.to_initializers(proto), model, "unrolled")


def _finish(proto: onnx.ModelProto, model: Model, kind: str) -> onnx.ModelProto:
    proto.producer_name = PRODUCER
    proto.doc_string = (
        f"lmstep {kind} graph of {model.name or model.arch}: "
        f"{model.arch}.{'decode + sampler' if kind == 'step' else 'forward'}"
        + (" (scan schedule: lmstep.runtime.mamba_scan)" if kind == "unrolled" and model.arch == "mamba" else "")
    )
    onnx.helper.set_model_props(proto, {"lmstep.arch": model.arch, "lmstep.graph": kind})
    if [(o.domain, o.version) for o in proto.opset_import] != [("", OPSET)]:
        raise AssertionError(f"graph uses opsets {proto.opset_import}, expected only ai.onnx {OPSET}")
    return proto
