"""Our weights as a transformers model (the peer in bench_runtime.py). Needs the `hf` extra (torch, transformers).

Layouts: we store linear weights [in, out]; nn.Linear is [out, in]; GPT-2's Conv1D is [in, out] as ours;
Mamba's conv1d weight is [E, 1, W] where ours is [W, E].
"""

from __future__ import annotations

from typing import Any

import numpy as np


def to_transformers(model: Any) -> Any:
    import torch

    build = {"llama": _llama, "gpt2": _gpt2, "mamba": _mamba, "mamba2": _mamba2}[model.arch]
    hf, state = build(model.config, model.weights) if model.arch != "mamba2" else _mamba2(model)
    tensors = {k: torch.from_numpy(np.ascontiguousarray(v, np.float32)) for k, v in state.items()}
    missing, unexpected = hf.load_state_dict(tensors, strict=False)
    missing = [k for k in missing if not k.endswith("lm_head.weight")]  # tied heads load with the embedding
    if missing or unexpected:
        raise AssertionError(f"weight mapping incomplete: missing {missing}, unexpected {unexpected}")
    if getattr(hf.config, "tie_word_embeddings", False):
        hf.tie_weights()
    return hf.eval()


def _llama(cfg: Any, w: Any):
    from transformers import LlamaConfig, LlamaForCausalLM

    hf = LlamaForCausalLM(
        LlamaConfig(
            vocab_size=cfg.vocab_size,
            hidden_size=cfg.hidden_size,
            intermediate_size=cfg.intermediate_size,
            num_hidden_layers=cfg.num_hidden_layers,
            num_attention_heads=cfg.num_attention_heads,
            num_key_value_heads=cfg.num_key_value_heads,
            head_dim=cfg.head_dim,
            max_position_embeddings=cfg.max_position_embeddings,
            rms_norm_eps=cfg.rms_norm_eps,
            rope_theta=cfg.rope_theta,
            attention_bias=cfg.attention_bias,
            mlp_bias=cfg.mlp_bias,
            tie_word_embeddings=cfg.tie_word_embeddings,
        )
    )
    sd = {"model.embed_tokens.weight": w.embed_tokens, "model.norm.weight": w.norm}
    if w.lm_head is not None:
        sd["lm_head.weight"] = w.lm_head.T
    for i, layer in enumerate(w.layers):
        p = f"model.layers.{i}."
        sd[p + "input_layernorm.weight"] = layer.input_layernorm
        sd[p + "post_attention_layernorm.weight"] = layer.post_attention_layernorm
        for name, mod in [("q", "self_attn"), ("k", "self_attn"), ("v", "self_attn"), ("o", "self_attn")]:
            sd[f"{p}{mod}.{name}_proj.weight"] = getattr(layer, f"{name}_proj").T
            if getattr(layer, f"{name}_bias") is not None:
                sd[f"{p}{mod}.{name}_proj.bias"] = getattr(layer, f"{name}_bias")
        for name in ("gate", "up", "down"):
            sd[f"{p}mlp.{name}_proj.weight"] = getattr(layer, f"{name}_proj").T
            if getattr(layer, f"{name}_bias") is not None:
                sd[f"{p}mlp.{name}_proj.bias"] = getattr(layer, f"{name}_bias")
    return hf, sd


def _gpt2(cfg: Any, w: Any):
    from transformers import GPT2Config, GPT2LMHeadModel

    hf = GPT2LMHeadModel(
        GPT2Config(
            vocab_size=cfg.vocab_size,
            n_embd=cfg.n_embd,
            n_layer=cfg.n_layer,
            n_head=cfg.n_head,
            n_positions=cfg.n_positions,
            n_inner=cfg.n_inner,
            layer_norm_epsilon=cfg.layer_norm_epsilon,
            activation_function="gelu_new",
            bos_token_id=None,
            eos_token_id=None,
        )
    )
    sd = {
        "transformer.wte.weight": w.wte,
        "transformer.wpe.weight": w.wpe,
        "transformer.ln_f.weight": w.ln_f_weight,
        "transformer.ln_f.bias": w.ln_f_bias,
    }
    for i, layer in enumerate(w.layers):
        p = f"transformer.h.{i}."
        sd |= {
            p + "ln_1.weight": layer.ln_1_weight,
            p + "ln_1.bias": layer.ln_1_bias,
            p + "attn.c_attn.weight": layer.c_attn_weight,
            p + "attn.c_attn.bias": layer.c_attn_bias,
            p + "attn.c_proj.weight": layer.attn_c_proj_weight,
            p + "attn.c_proj.bias": layer.attn_c_proj_bias,
            p + "ln_2.weight": layer.ln_2_weight,
            p + "ln_2.bias": layer.ln_2_bias,
            p + "mlp.c_fc.weight": layer.c_fc_weight,
            p + "mlp.c_fc.bias": layer.c_fc_bias,
            p + "mlp.c_proj.weight": layer.mlp_c_proj_weight,
            p + "mlp.c_proj.bias": layer.mlp_c_proj_bias,
        }
    return hf, sd


def _mamba(cfg: Any, w: Any):
    from transformers import MambaConfig, MambaForCausalLM

    hf = MambaForCausalLM(
        MambaConfig(
            vocab_size=cfg.vocab_size,
            hidden_size=cfg.hidden_size,
            state_size=cfg.state_size,
            num_hidden_layers=cfg.num_hidden_layers,
            expand=cfg.intermediate_size // cfg.hidden_size,
            time_step_rank=cfg.time_step_rank,
            conv_kernel=cfg.conv_kernel,
            layer_norm_epsilon=cfg.layer_norm_epsilon,
            use_bias=cfg.use_bias,
            use_conv_bias=cfg.use_conv_bias,
            tie_word_embeddings=cfg.tie_word_embeddings,
        )
    )
    sd = {"backbone.embeddings.weight": w.embeddings, "backbone.norm_f.weight": w.norm_f}
    if w.lm_head is not None:
        sd["lm_head.weight"] = w.lm_head.T
    for i, layer in enumerate(w.layers):
        p = f"backbone.layers.{i}."
        sd |= {
            p + "norm.weight": layer.norm,
            p + "mixer.in_proj.weight": layer.in_proj.T,
            p + "mixer.conv1d.weight": layer.conv1d_weight.T[:, None, :],
            p + "mixer.x_proj.weight": layer.x_proj.T,
            p + "mixer.dt_proj.weight": layer.dt_proj.T,
            p + "mixer.dt_proj.bias": layer.dt_proj_bias,
            p + "mixer.A_log": layer.A_log,
            p + "mixer.D": layer.D,
            p + "mixer.out_proj.weight": layer.out_proj.T,
        }
        if layer.conv1d_bias is not None:
            sd[p + "mixer.conv1d.bias"] = layer.conv1d_bias
        if layer.in_proj_bias is not None:
            sd[p + "mixer.in_proj.bias"] = layer.in_proj_bias
            sd[p + "mixer.out_proj.bias"] = layer.out_proj_bias
    return hf, sd


def _mamba2(model: Any):
    """Mamba-2 through the checkpoint loader's own name table (spec/hf_names.py), inverted."""
    from transformers import Mamba2Config, Mamba2ForCausalLM

    from lmstep.spec import hf_names

    cfg = model.config
    fields = ("vocab_size", "hidden_size", "state_size", "num_hidden_layers", "num_heads", "head_dim", "expand")
    fields += ("n_groups", "conv_kernel", "chunk_size", "time_step_limit", "layer_norm_epsilon", "use_bias")
    fields += ("use_conv_bias", "tie_word_embeddings")
    hf = Mamba2ForCausalLM(Mamba2Config(**{f: getattr(cfg, f) for f in fields}))
    sd = {}
    for ours, a in model.named_weights().items():
        name, layout = hf_names.hf_name("mamba2", ours)
        sd[name] = a.T if layout == "linear" else a.T[:, None, :] if layout == "conv" else a
    return hf, sd


if __name__ == "__main__":
    import argparse

    argparse.ArgumentParser(
        description=__doc__.splitlines()[0], epilog="A helper of bench_runtime.py and bench_checkpoint_decode.py: "
        "nothing to run on its own."
    ).parse_args()  # fmt: skip
    print("benchmarks/hf_peer.py is a helper module; run benchmarks/bench_runtime.py")
