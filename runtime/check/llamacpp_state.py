"""Read llama.cpp's per-sequence state (``llama_state_seq_get_data``) into the spec's state arrays.

The byte layout is llama.cpp's (src/llama-context.cpp ``state_seq_get_data``, then the memory's ``state_write`` in
src/llama-kv-cache.cpp or src/llama-memory-recurrent.cpp), all little-endian:

    u32 io magic 0xaf143cd8, i32 the sequence id; then

    attention (KV cache):  u32 n_stream, then per stream: u32 cell_count and, when cells > 0,
        cell_count x (i32 pos, u32 n_seq_id, n_seq_id x i32 seq_id)
        u32 v_trans, u32 n_layer
        n_layer x (i32 k_type, u64 k_row_bytes, cell_count rows)                     keys, a row per cell
        v_trans = 0: n_layer x (i32 v_type, u64 v_row_bytes, cell_count rows)
        v_trans = 1: n_layer x (i32 v_type, u32 v_elem_bytes, u32 n_embd_v, n_embd_v x cell_count elements)
    recurrent (Mamba):     u32 cell_count, cell_count x (i32 pos, u32 n_seq_id, ids), u32 s_trans, u32 n_layer,
        n_layer x (i32 r_type, u64 r_row_bytes, rows)   conv window, ggml [W-1, E] = numpy [E, W-1], oldest first
        n_layer x (i32 s_type, u64 s_row_bytes, rows)   SSM state, ggml [N, E] = numpy [E, N]

Rows are ordered by cell, which need not be the position order: they are sorted by each cell's position. Any
deviation (a size that does not add up, an unknown element type, bytes left over) means this llama.cpp writes
another layout: an ImplementationError saying so, never a silent misreading.
"""

from __future__ import annotations

import struct
from typing import Any

import numpy as np

from lmstep.runtime.ggufio.families import keys_to_spec

from .protocol import ImplementationError

IO_MAGIC = 0xAF143CD8
DTYPES = {0: np.dtype("<f4"), 1: np.dtype("<f2"), 30: np.dtype("<u2")}  # f32, f16, bf16 (widened below)


class _Reader:
    def __init__(self, data: bytes):
        self.data, self.at = data, 0

    def take(self, fmt: str) -> Any:
        n = struct.calcsize(fmt)
        if self.at + n > len(self.data):
            raise _layout(f"ends at byte {len(self.data)}, expected more at {self.at}")
        (value,) = struct.unpack_from(fmt, self.data, self.at)
        self.at += n
        return value

    def array(self, type_id: int, count: int) -> np.ndarray:
        if type_id not in DTYPES:
            raise _layout(f"element type {type_id} is not f32/f16/bf16")
        dt = DTYPES[type_id]
        n = count * dt.itemsize
        if self.at + n > len(self.data):
            raise _layout(f"{count} elements overrun the buffer")
        raw = np.frombuffer(self.data, dt, count, self.at)
        self.at += n
        if type_id == 30:  # bfloat16: the high half of a float32
            return (raw.astype(np.uint32) << 16).view(np.float32)
        return raw.astype(np.float32)


def _layout(detail: str) -> ImplementationError:
    return ImplementationError(f"llama.cpp's sequence state has a layout this adapter does not read: {detail}")


def parse_state(data: bytes, model: Any, pos: int, interleaved: bool) -> dict[str, np.ndarray]:
    r = _Reader(data)
    magic = r.take("<I")
    if magic != IO_MAGIC:
        raise _layout(f"starts with {magic:#x}, not llama.cpp's io magic {IO_MAGIC:#x}")
    r.take("<i")
    out = _recurrent(r, model, pos) if model.arch == "mamba" else _attention(r, model, pos, interleaved)
    if r.at != len(data):
        raise _layout(f"{len(data) - r.at} bytes left over after the last layer")
    return out


def _meta(r: _Reader, cells: int) -> list[int]:
    positions = []
    for _ in range(cells):
        positions.append(r.take("<i"))
        for _ in range(r.take("<I")):
            r.take("<i")
    return positions


def _attention(r: _Reader, model: Any, pos: int, interleaved: bool) -> dict[str, np.ndarray]:
    cfg = model.config
    heads = getattr(cfg, "num_key_value_heads", None) or cfg.n_head
    d = cfg.head_dim
    n_layer = getattr(cfg, "num_hidden_layers", None) or cfg.n_layer
    streams = r.take("<I")
    out: dict[str, np.ndarray] = {}
    found = False
    for _ in range(streams):
        cells = r.take("<I")
        if cells == 0:
            continue
        if found:
            raise _layout("the sequence spans two streams")
        found = True
        order = np.argsort(_meta(r, cells), kind="stable")
        v_trans, layers = r.take("<I"), r.take("<I")
        if layers != n_layer:
            raise _layout(f"{layers} layers, the model has {n_layer}")
        for i in range(layers):
            k_type, row = r.take("<i"), r.take("<Q")
            k = r.array(k_type, cells * heads * d).reshape(cells, heads, d)[order]
            if row != heads * d * DTYPES.get(k_type, np.dtype("<f4")).itemsize:
                raise _layout(f"key rows of {row} bytes, expected {heads} heads x {d}")
            k = keys_to_spec(k) if interleaved else k
            out[f"past_key_values.{i}.key"] = np.ascontiguousarray(k.transpose(1, 0, 2)[None])
        for i in range(layers):
            v_type = r.take("<i")
            if v_trans:
                r.take("<I")
                if r.take("<I") != heads * d:
                    raise _layout("transposed values of another width")
                v = r.array(v_type, heads * d * cells).reshape(heads * d, cells).T
            else:
                r.take("<Q")
                v = r.array(v_type, cells * heads * d).reshape(cells, heads * d)
            v = v[order].reshape(cells, heads, d)
            out[f"past_key_values.{i}.value"] = np.ascontiguousarray(v.transpose(1, 0, 2)[None])
    if not found:
        shape = (1, heads, 0, d)
        for i in range(n_layer):
            out[f"past_key_values.{i}.key"] = np.zeros(shape, np.float32)
            out[f"past_key_values.{i}.value"] = np.zeros(shape, np.float32)
    return out


def _recurrent(r: _Reader, model: Any, pos: int) -> dict[str, np.ndarray]:
    cfg = model.config
    e, w, n = cfg.intermediate_size, cfg.conv_kernel, cfg.state_size
    cells = r.take("<I")
    out: dict[str, np.ndarray] = {}
    if cells == 0:  # nothing consumed yet: the spec's zero state
        for i in range(cfg.num_hidden_layers):
            out[f"past_key_values.{i}.conv_state"] = np.zeros((1, e, w - 1), np.float32)
            out[f"past_key_values.{i}.recurrent_state"] = np.zeros((1, e, n), np.float32)
        return out
    if cells != 1:
        raise _layout(f"{cells} recurrent cells for one sequence")
    _meta(r, cells)
    r.take("<I")
    layers = r.take("<I")
    if layers != cfg.num_hidden_layers:
        raise _layout(f"{layers} layers, the model has {cfg.num_hidden_layers}")
    for name, shape in (("conv_state", (e, w - 1)), ("recurrent_state", (e, n))):
        for i in range(layers):
            t, row = r.take("<i"), r.take("<Q")
            a = r.array(t, shape[0] * shape[1])
            if row != a.size * DTYPES[t].itemsize:
                raise _layout(f"{name} rows of {row} bytes, expected {shape}")
            out[f"past_key_values.{i}.{name}"] = a.reshape(1, *shape)
    return out
