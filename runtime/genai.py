"""genai_config.json for onnxruntime-genai, which runs ``model.onnx`` (the unrolled graph) as its decoder.

Written for the transformer architectures: for the Llama-style decoder, genai's model type of the same name as the
family (llama, qwen2, qwen3, gemma, phi3, mistral: each a decoder-only type of genai 0.18 that runs this same
contract; the family's math is inside model.onnx), and genai's generic "decoder" type for GPT-2 (genai's "gpt2"
type expects the older GPT-2 export layout with other input names; measured with genai 0.18: "decoder" runs our
contract and gives our greedy tokens). Not for Mamba: genai 0.18 has no plain-SSM model type; its recurrent-state
support is tied to the hybrid architectures it knows.
"""

from __future__ import annotations

from typing import Any

from lmstep.spec.model import Model

GENAI_TYPES = {"llama": "llama", "gpt2": "decoder"}


def genai_type(model: Model) -> str:
    """genai's model type: a Llama-style model with a sliding window is genai's "mistral" (the window is inside
    model.onnx, so genai needs no "sliding_window" section, which describes fixed-shape ring buffers it would slide;
    docs/runtime.md)."""
    if getattr(model.config, "sliding_window", None) is not None:
        return "mistral"
    return model.config.model_type if model.arch == "llama" else GENAI_TYPES[model.arch]


def genai_config(model: Model, eos_token_id: int | None = None) -> dict[str, Any] | None:
    if model.arch not in GENAI_TYPES:
        return None
    cfg = model.config
    if model.arch == "llama":
        heads, kv_heads, hidden, layers = (
            cfg.num_attention_heads,
            cfg.num_key_value_heads,
            cfg.hidden_size,
            cfg.num_hidden_layers,
        )
    else:
        heads, kv_heads, hidden, layers = cfg.n_head, cfg.n_head, cfg.n_embd, cfg.n_layer
    # The built-in byte models have no end-of-text token: the last id stands in, so generation runs to max_length
    # unless that byte is produced.
    eos = cfg.vocab_size - 1 if eos_token_id is None else eos_token_id
    return {
        "model": {
            "type": genai_type(model),
            "vocab_size": cfg.vocab_size,
            "context_length": cfg.context_limit,
            "bos_token_id": 0,
            "eos_token_id": eos,
            "pad_token_id": eos,
            "decoder": {
                "filename": "model.onnx",
                "session_options": {"log_id": "onnxruntime-genai", "provider_options": []},
                "head_size": cfg.head_dim,
                "hidden_size": hidden,
                "num_attention_heads": heads,
                "num_key_value_heads": kv_heads,
                "num_hidden_layers": layers,
                "inputs": {
                    "input_ids": "input_ids",
                    "attention_mask": "attention_mask",
                    "position_ids": "position_ids",
                    "past_key_names": "past_key_values.%d.key",
                    "past_value_names": "past_key_values.%d.value",
                },
                "outputs": {
                    "logits": "logits",
                    "present_key_names": "present.%d.key",
                    "present_value_names": "present.%d.value",
                },
            },
        },
        "search": {
            "do_sample": False,
            "num_beams": 1,
            "num_return_sequences": 1,
            "max_length": cfg.context_limit,
            "min_length": 0,
            # Our present is Concat(past, new): a new, longer tensor, not a shared fixed-size buffer.
            "past_present_share_buffer": False,
            "repetition_penalty": 1.0,
            "temperature": 1.0,
            "top_k": 1,
            "top_p": 1.0,
        },
    }
