"""The ONNX input/output contract of exported graphs: names, dtypes and shapes, in one place.

Names follow onnxruntime-genai's decoder contract (docs/design.md §7) so ``model.onnx`` also runs there:

    inputs   input_ids [batch, seq] int64
             attention_mask [batch, total] int64       (transformers only: 1 = real key, 0 = padding)
             position_ids [batch, seq] int64           (transformers only; an SSM has no positions)
             past_key_values.{i}.key / .value          [batch, kv_heads, past, head_dim] float32
             past_key_values.{i}.conv_state            [batch, E, W-1] float32   (Mamba)
             past_key_values.{i}.recurrent_state       [batch, E, N] float32     (Mamba)
             past_key_values.{i}.conv_state            [batch, E + 2GN, W-1]     (Mamba-2: x, B and C)
             past_key_values.{i}.recurrent_state       [batch, H, P, N]          (Mamba-2: one [P, N] per head)
    outputs  logits [batch, seq, vocab] float32
             present.{i}.key / .value / .conv_state / .recurrent_state   (the state after these tokens)

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
