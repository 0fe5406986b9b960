"""One copy of an export's weights for both of its onnxruntime sessions, and the memory they need.

An export folder has two graphs (step.onnx, model.onnx) over the same weights. Opened plainly, each
onnxruntime session reads the external data into its own buffers, and the CPU MatMul kernel then prepacks every
weight matrix into a third layout per session: measured on a 124M-parameter GPT-2, two sessions held 1.07 GB
for 0.5 GB of weights (2.1x), 1.41 GB with shared initializers but prepacking on. Here the weights file is
memory-mapped once, read-only, and every external float32 initializer is handed to both sessions as an OrtValue
over its slice of the map (``SessionOptions.add_initializer``: "useful when you want to share the same
initializer across sessions", onnxruntime's C API docs), with prepacking off (session.py). The operating system
reads each page when a kernel first touches it, and both sessions read the same pages.

Cost of prepacking off, measured on one 2048 x 5632 MatMul (1 thread): decode (M = 1) 2.35 vs 2.24 ms, prefill
(M = 256) 72 vs 63 ms; the alternative, a prepacked copy per session, doubles the memory.

A tied output projection is ``MatMul(x, Transpose(E))`` in the spec's graph. onnxruntime folds the Transpose of
a constant into a new initializer, one per session (2 x 154 MB for GPT-2 small's embedding). On the CPU the
session graph therefore gets that Transpose's output as an input instead, bound on every call to one
transposed copy made here and shared by both sessions (the graphs in the folder are unchanged; a transpose is
exact, so this computes what the folded graph computes). Multiplying by E with transB instead of a copy
(com.microsoft FusedMatMul) was measured 1.9x slower for one token (17.8 vs 9.4 ms at 768 x 50257).
"""

from __future__ import annotations

import mmap
import os
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

from lmstep.spec.errors import LmstepError
from lmstep.spec.hf_names import transposed

# Room for onnxruntime's own buffers (activations, KV cache, arenas) beyond the weights, and for the interpreter.
WORKING_FRACTION = 0.1
WORKING_BYTES = 256 << 20


class OutOfMemoryError(LmstepError):
    """The model does not fit in the memory available now."""


class SharedWeights:
    """The external float32 initializers of an export's graphs as OrtValues over one read-only map of each data
    file. Keep this object alive as long as any session that uses its values."""

    def __init__(self, folder: Path, protos: list[onnx.ModelProto]):
        self.folder = folder
        self.values: dict[str, ort.OrtValue] = {}
        self.mapped_bytes = 0
        self._arrays: dict[str, np.ndarray] = {}
        self._where: dict[str, tuple[mmap.mmap, int, int]] = {}  # name -> (its map, offset, length)
        self._transposed: dict[str, ort.OrtValue] = {}
        maps: dict[str, mmap.mmap] = {}
        for proto in protos:
            for t in proto.graph.initializer:
                if t.name in self.values or t.data_location != onnx.TensorProto.EXTERNAL:
                    continue
                info = {e.key: e.value for e in t.external_data}
                offset, length = int(info.get("offset", 0)), int(info.get("length", -1))
                count = int(np.prod(t.dims, dtype=np.int64))
                # Only what we can map exactly: float32, length as the shape says. onnxruntime reads anything else
                # itself (and reports what is wrong with it).
                if t.data_type != onnx.TensorProto.FLOAT or length != 4 * count or offset % 4:
                    continue
                loc = info["location"]  # already checked to lie inside the folder (onnx_safety.check_external_data)
                if loc not in maps:
                    with open(folder / loc, "rb") as f:
                        maps[loc] = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
                    self.mapped_bytes += len(maps[loc])
                arr = np.frombuffer(maps[loc], np.float32, count, offset).reshape(tuple(t.dims))
                self._arrays[t.name] = arr
                self._where[t.name] = (maps[loc], offset, length)
                self.values[t.name] = ort.OrtValue.ortvalue_from_numpy(arr)  # no copy: a view of the map

    def for_graph(self, proto: onnx.ModelProto) -> dict[str, ort.OrtValue]:
        return {t.name: self.values[t.name] for t in proto.graph.initializer if t.name in self.values}

    def session_graph(
        self, proto: onnx.ModelProto, path: Path, changed: bool = False
    ) -> tuple[str | bytes, dict[str, ort.OrtValue], dict[str, ort.OrtValue]]:
        """(what onnxruntime opens, initializers to add, inputs to bind on every call) for graph ``proto`` read from
        ``path`` (``changed``: proto is a variant of the file, see greedy.py): the file itself, or, when the graph
        transposes a shared weight, a copy in which each such Transpose's output is an input bound to one
        transposed copy of the weight shared by every session."""
        folds = [n for n in proto.graph.node if _transposes_matrix(n) and self._is_matrix(n.input[0])]
        if not folds:
            return (proto.SerializeToString() if changed else str(path)), self.for_graph(proto), {}
        graph = onnx.ModelProto()
        graph.CopyFrom(proto)
        bound: dict[str, ort.OrtValue] = {}
        for node in folds:
            weight = node.input[0]
            if weight not in self._transposed:
                self._transposed[weight] = ort.OrtValue.ortvalue_from_numpy(transposed(self._arrays[weight]))
                self._release(weight)  # read once for the copy; the graphs read only a few rows of it (Gather)
            bound[node.output[0]] = self._transposed[weight]
            dims = list(self._arrays[weight].shape[::-1])
            graph.graph.input.append(onnx.helper.make_tensor_value_info(node.output[0], onnx.TensorProto.FLOAT, dims))
        keep = [n for n in graph.graph.node if not (_transposes_matrix(n) and n.output[0] in bound)]
        del graph.graph.node[:]
        graph.graph.node.extend(keep)
        return graph.SerializeToString(), self.for_graph(graph), bound

    def _release(self, name: str) -> None:
        """Drop weight ``name``'s pages from this process's resident memory (they stay in the page cache and are
        read again where touched), whole pages inside it only."""
        mm, offset, length = self._where[name]
        start = -(-offset // mmap.PAGESIZE) * mmap.PAGESIZE
        stop = (offset + length) // mmap.PAGESIZE * mmap.PAGESIZE
        if stop > start and hasattr(mmap, "MADV_DONTNEED"):
            mm.madvise(mmap.MADV_DONTNEED, start, stop - start)

    def _is_matrix(self, name: str) -> bool:
        return name in self._arrays and self._arrays[name].ndim == 2

    @property
    def transposed_bytes(self) -> int:
        return sum(int(np.prod(v.shape())) * 4 for v in self._transposed.values())


def _transposes_matrix(node: onnx.NodeProto) -> bool:
    perm = [list(a.ints) for a in node.attribute if a.name == "perm"]
    return node.op_type == "Transpose" and node.domain in ("", "ai.onnx") and perm in ([], [[1, 0]])


def bytes_needed(protos: list[onnx.ModelProto], shared: SharedWeights) -> int:
    """About how much memory the sessions of ``protos`` need: the shared weights once, each graph's inline
    initializers once per session, one copy of every weight a graph transposes (SharedWeights.session_graph),
    plus working room."""
    need = shared.mapped_bytes
    transposed: dict[str, int] = {}
    for proto in protos:
        sizes = {t.name: _nbytes(t) for t in proto.graph.initializer}
        need += sum(n for name, n in sizes.items() if name not in shared.values)
        transposed |= {n.input[0]: sizes.get(n.input[0], 0) for n in proto.graph.node if _transposes_matrix(n)}
    need += sum(transposed.values())
    return int(need * (1 + WORKING_FRACTION)) + WORKING_BYTES


def _nbytes(t: onnx.TensorProto) -> int:
    itemsize = onnx.helper.tensor_dtype_to_np_dtype(t.data_type).itemsize
    return int(np.prod(t.dims, dtype=np.int64)) * itemsize


def available_bytes() -> int | None:
    """Memory available to a new allocation without swapping (Linux: MemAvailable), or None where unknown."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def check_fits(need: int, what: str, fix: str) -> None:
    """Raise OutOfMemoryError (one line naming the memory needed) when ``need`` bytes are more than is available.

    Mapped weights would not crash the process when memory runs short, they would be read from disk again and
    again (thrashing, hours per token); refusing up front with the numbers is the useful answer."""
    have = available_bytes()
    if have is not None and need > have:
        raise OutOfMemoryError(
            f"{what} needs about {need / 2**30:.1f} GiB of memory, but only {have / 2**30:.1f} GiB is available; {fix}"
        )
