"""The ONNX input/output contract of exported graphs: names, dtypes and shapes, in one place.

Names follow onnxruntime-genai's decoder contract (docs/design.md §7) so ``model.onnx`` also runs there:

    inputs   input_ids [batch, seq] int64
             attention_mask [batch, total] int64       (transformers only: 1 = real key, 0 = padding)
             position_ids [batch, seq] int64           (transformers only; an SSM has no positions)
             past_key_values.{i}.key / .value          [batch, kv_heads, past, head_dim] float32
                                                       (Mistral: past = min(pos, W - 1), see below)
             past_key_values.{i}.conv_state            [batch, E, W-1] float32   (Mamba)
             past_key_values.{i}.recurrent_state       [batch, E, N] float32     (Mamba)
             past_key_values.{i}.conv_state            [batch, E + 2GN, W-1]     (Mamba-2: x, B and C)
             past_key_values.{i}.recurrent_state       [batch, H, P, N]          (Mamba-2: one [P, N] per head)
    outputs  logits [batch, seq, vocab] float32
             present.{i}.key / .value / .conv_state / .recurrent_state   (the state after these tokens)

A sliding-window model (Mistral, SPEC.md §5) keeps its state bounded without a ring buffer or an index input:
the state is the keys and values of the last min(pos, W - 1) positions, oldest first (their positions are
implied: pos - past .. pos - 1, with pos = the first position_ids entry). attention_mask may cover the whole
sequence ([batch, pos + seq], as onnxruntime-genai sends it): the graphs read its last past + seq columns.
- step.onnx takes the state and presents the state: present.* = the last min(pos + 1, W - 1) rows of [past; new],
  so the decode loop's memory stays bounded at position 10000 as at 64. Its query attends to every row of
  [past; new] (the spec's recurrent form: the bounded state is the window), so its past must be the state.
- model.onnx (the band mask) also accepts a longer past that ends at pos - 1: rows older than the window fall
  outside the band.
  It is onnxruntime-genai's decoder, and genai allocates every present as [batch, kv_heads, past + seq,
  head_dim] (its default KV cache; its "sliding_window" section describes fixed-shape ring buffers that the
  graph would have to slide itself): present.* = [past; new] whole, the window applied by the mask, memory
  growing as in genai's own Mistral exports. The state after it is its last W - 1 rows (:func:`kept_state`;
  lmstep.runtime.OnnxModel keeps only those).

The step graph (``step.onnx``) is that contract with seq = 1, plus the sampler's inputs and output:

    inputs   rand [batch] float32 in [0, 1);  temperature [] float32;  top_k [] int64;  top_p [] float32
    outputs  token [batch] int64
"""

from __future__ import annotations

from typing import Any

import numpy as np

from lmstep.spec.model import STATE_KINDS

# Symbolic dimension names (genai's spelling).
BATCH, SEQ, PAST, TOTAL = "batch_size", "sequence_length", "past_sequence_length", "total_sequence_length"

SAMPLER_INPUTS = {
    "rand": (np.float32, (BATCH,)),
    "temperature": (np.float32, ()),
    "top_k": (np.int64, ()),
    "top_p": (np.float32, ()),
}
TOKEN_OUTPUT = "token"

HAS_POSITIONS = {"llama": True, "gpt2": True, "mamba": False, "mamba2": False}
# Architectures whose state is fixed-size tensors (conv window + SSM state), not a KV cache that grows.
RECURRENT = ("mamba", "mamba2")


def past_name(layer: int, kind: str) -> str:
    return f"past_key_values.{layer}.{kind}"


def state_shapes(arch: str, cfg: Any, batch: Any = BATCH, past: Any = PAST) -> dict[str, tuple[Any, ...]]:
    """Each state input's name and shape (dims may be symbolic names), in layer order."""
    if arch == "mamba":
        e = cfg.intermediate_size
        per_layer = {"conv_state": (batch, e, cfg.conv_kernel - 1), "recurrent_state": (batch, e, cfg.state_size)}
    elif arch == "mamba2":
        per_layer = {
            "conv_state": (batch, cfg.conv_dim, cfg.conv_kernel - 1),
            "recurrent_state": (batch, cfg.num_heads, cfg.head_dim, cfg.state_size),
        }
    else:
        kv_heads = cfg.num_key_value_heads if arch == "llama" else cfg.n_head
        per_layer = {kind: (batch, kv_heads, past, cfg.head_dim) for kind in STATE_KINDS[arch]}
    return {past_name(i, kind): shape for i in range(n_layers(arch, cfg)) for kind, shape in per_layer.items()}


def n_layers(arch: str, cfg: Any) -> int:
    return cfg.n_layer if arch == "gpt2" else cfg.num_hidden_layers


def kept_rows(cfg: Any) -> int | None:
    """Rows of each past_key_values tensor a state keeps: W - 1 for a sliding window, else None (all)."""
    return getattr(cfg, "kept_keys", None)


def kept_state(cfg: Any, state: dict[str, Any]) -> dict[str, Any]:
    """A state from model.onnx's present.* (numpy arrays): for a sliding window its last W - 1 rows (contract above),
    otherwise unchanged."""
    keep = kept_rows(cfg)
    if keep is None:
        return state
    return {name: a[:, :, a.shape[2] - min(keep, a.shape[2]) :] for name, a in state.items()}


def present_of(past: str) -> str:
    """past_key_values.{i}.{kind} -> present.{i}.{kind}: the output that becomes this input at the next call."""
    return "present." + past[len("past_key_values.") :]


def empty_state(arch: str, cfg: Any) -> dict[str, np.ndarray]:
    """The initial state for one sequence: empty KV caches (past = 0) or zero SSM states, as numpy arrays."""
    return {name: np.zeros(shape, np.float32) for name, shape in state_shapes(arch, cfg, 1, 0).items()}


def contract_feeds(arch: str, ids: np.ndarray, pos: int) -> dict[str, np.ndarray]:
    """input_ids [1, S] at positions pos.. -> the contract's token inputs (all keys real, no padding)."""
    feeds = {"input_ids": ids}
    if HAS_POSITIONS[arch]:
        n = ids.shape[1]
        feeds["attention_mask"] = np.ones((1, pos + n), np.int64)
        feeds["position_ids"] = np.arange(pos, pos + n, dtype=np.int64)[None, :]
    return feeds


def sampler_feeds(sampler: Any) -> dict[str, np.ndarray]:
    """A spec ``Sampler`` as the step graph's sampler inputs (rand excluded)."""
    return {
        "temperature": np.array(sampler.temperature, np.float32),
        "top_k": np.array(sampler.top_k, np.int64),
        "top_p": np.array(sampler.top_p, np.float32),
    }
