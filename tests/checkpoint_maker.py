"""Random Llama checkpoints written without torch, in transformers' format (config.json + safetensors, sharded
with an index), for tests that need one larger than the committed fixtures (memory measurements) or in bfloat16
across several shards. transformers never reads these; the layout rules are those of spec/hf_names.py (nn.Linear
weights stored [out, in]), which tests/test_checkpoints.py checks against transformers on the fixtures."""

from __future__ import annotations

import json
import os

import ml_dtypes
import numpy as np
import safetensors.numpy as st

DTYPES = {"bfloat16": ml_dtypes.bfloat16, "float16": np.float16, "float32": np.float32}


def write_llama(
    path: str | os.PathLike,
    *,
    vocab: int = 96,
    hidden: int = 32,
    intermediate: int = 48,
    layers: int = 3,
    heads: int = 4,
    kv_heads: int = 2,
    dtype: str = "bfloat16",
    shards: int = 3,
    seed: int = 0,
) -> str:
    """Write a LlamaForCausalLM checkpoint (untied, no biases) to ``path``; returns ``path``."""
    rng = np.random.default_rng(seed)
    head_dim = hidden // heads
    shapes = {"model.embed_tokens.weight": (vocab, hidden), "lm_head.weight": (vocab, hidden)}
    for i in range(layers):
        p = f"model.layers.{i}."
        shapes |= {p + "input_layernorm.weight": (hidden,), p + "post_attention_layernorm.weight": (hidden,)}
        shapes |= {p + "self_attn.q_proj.weight": (heads * head_dim, hidden)}
        shapes |= {p + f"self_attn.{x}_proj.weight": (kv_heads * head_dim, hidden) for x in "kv"}
        shapes |= {p + "self_attn.o_proj.weight": (hidden, heads * head_dim)}
        shapes |= {p + f"mlp.{x}_proj.weight": (intermediate, hidden) for x in ("gate", "up")}
        shapes |= {p + "mlp.down_proj.weight": (hidden, intermediate)}
    shapes["model.norm.weight"] = (hidden,)
    tensors = {}
    for name, shape in shapes.items():
        if len(shape) == 1:  # norm weights around 1
            value = 1.0 + 0.2 * rng.standard_normal(shape)
        elif "embed" in name:
            value = rng.standard_normal(shape)
        else:  # [out, in]: variance 1 / fan_in keeps activations and logits in range
            value = rng.standard_normal(shape) * (2.0 / np.sqrt(shape[1]))
        tensors[name] = np.asarray(value, np.float32).astype(DTYPES[dtype])
    os.makedirs(path, exist_ok=True)
    names = list(tensors)
    groups = [names[i::shards] for i in range(shards)]
    if shards == 1:
        st.save_file(tensors, os.path.join(path, "model.safetensors"))
    else:
        weight_map = {}
        for k, group in enumerate(groups):
            file = f"model-{k + 1:05d}-of-{shards:05d}.safetensors"
            st.save_file({n: tensors[n] for n in group}, os.path.join(path, file))
            weight_map |= dict.fromkeys(group, file)
        with open(os.path.join(path, "model.safetensors.index.json"), "w") as f:
            json.dump({"metadata": {}, "weight_map": weight_map}, f)
    config = {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "dtype": dtype,
        "vocab_size": vocab,
        "hidden_size": hidden,
        "intermediate_size": intermediate,
        "num_hidden_layers": layers,
        "num_attention_heads": heads,
        "num_key_value_heads": kv_heads,
        "head_dim": head_dim,
        "hidden_act": "silu",
        "max_position_embeddings": 256,
        "rms_norm_eps": 1e-5,
        "rope_parameters": {"rope_theta": 10000.0, "rope_type": "default"},
        "attention_bias": False,
        "mlp_bias": False,
        "tie_word_embeddings": False,
        "bos_token_id": None,
        "eos_token_id": None,
        "pad_token_id": None,
    }
    with open(os.path.join(path, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
    return str(path)


def checkpoint_bytes(path: str | os.PathLike) -> int:
    return sum(os.path.getsize(os.path.join(path, f)) for f in os.listdir(path) if f.endswith(".safetensors"))
