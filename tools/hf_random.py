"""Randomly initialised transformers models whose outputs are worth comparing (needs the ``hf`` extra).

transformers' own initialisation (normal(0, 0.02), LayerNorm/RMSNorm weights 1, biases 0) gives near-uniform
logits and all-zero biases, so a loader that dropped a bias or a norm weight would still "match". Here every
parameter is redrawn: matrices with variance gain^2 / fan_in, norm weights 1 + 0.2 N(0, 1), biases 0.2 N(0, 1),
embeddings N(0, 1). Mamba's A_log, D and dt bias keep their structured initialisation (S4D-real, skip = 1,
dt in [1e-3, 1e-1]; Mamba-2's per-head A_log and dt_bias alike) so the recurrence stays stable, but D gets noise too.

With tied embeddings the logits are LN(x) . E_t and x starts as E[token], so strong embeddings make every token
predict itself and greedy decoding repeats one token. Tied models therefore get embeddings of std 0.1 and a final
norm weight five times larger: the blocks decide the next token and the logits stay sharp (measured over 4
prompts x 12 greedy tokens: 3 to 10 distinct tokens per continuation instead of 1 to 2); Gemma, whose norms scale by
(1 + w), gets a final norm weight near 4 (scale ~5) instead. Shared by
tools/make_fixtures.py and benchmarks/bench_checkpoint_decode.py.
"""

from __future__ import annotations

import math

import torch
import transformers as tf

CLASSES = {
    "gpt2": (tf.GPT2Config, tf.GPT2LMHeadModel),
    "llama": (tf.LlamaConfig, tf.LlamaForCausalLM),
    "mamba": (tf.MambaConfig, tf.MambaForCausalLM),
    "qwen2": (tf.Qwen2Config, tf.Qwen2ForCausalLM),
    "qwen3": (tf.Qwen3Config, tf.Qwen3ForCausalLM),
    "gemma": (tf.GemmaConfig, tf.GemmaForCausalLM),
    "phi3": (tf.Phi3Config, tf.Phi3ForCausalLM),
    "mistral": (tf.MistralConfig, tf.MistralForCausalLM),
    "mamba2": (tf.Mamba2Config, tf.Mamba2ForCausalLM),
}
# Gemma's RMSNorm scales by (1 + w): its norm weights are drawn around 0 (scale ~1) instead of around 1.
UNIT_OFFSET_NORMS = {"gemma"}

# Output projections get a larger gain so the residual branches, not the input token, steer the logits (with
# tied embeddings a weak residual makes greedy decoding repeat the last token forever).
GAINS = {"c_proj": 2.0, "o_proj": 2.0, "down_proj": 2.0, "out_proj": 2.0, "lm_head": 3.0}

EMBEDDINGS = {"gpt2": "wte.weight", "mamba": "embeddings.weight"}
FINAL_NORMS = {"gpt2": "ln_f.weight", "mamba": "norm_f.weight"}
for _family in ("llama", "qwen2", "qwen3", "gemma", "phi3", "mistral"):
    EMBEDDINGS[_family], FINAL_NORMS[_family] = "embed_tokens.weight", "model.norm.weight"
EMBEDDINGS["mamba2"], FINAL_NORMS["mamba2"] = EMBEDDINGS["mamba"], FINAL_NORMS["mamba"]


def build(arch: str, seed: int, **config: object) -> torch.nn.Module:
    """A float32 ``<Arch>ForCausalLM`` in eval mode with strong random weights drawn from ``seed``."""
    config_cls, model_cls = CLASSES[arch]
    torch.manual_seed(seed)
    model = model_cls(config_cls(**config)).eval()
    gen = torch.Generator().manual_seed(seed)
    tied = model.config.tie_word_embeddings
    with torch.no_grad():
        for name, p in model.named_parameters():
            value = _draw(arch, name, p, gen)
            if tied and name.endswith(EMBEDDINGS[arch]):
                value = 0.1 * value
            if tied and name.endswith(FINAL_NORMS[arch]):
                value = value + 4.0 if arch in UNIT_OFFSET_NORMS else 5.0 * value
            p.copy_(value)
    return model


def _draw(arch: str, name: str, p: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    leaf = name.split(".")[-1]
    noise = torch.randn(p.shape, generator=gen)
    if leaf in ("A_log", "dt_bias") or name.endswith("dt_proj.bias"):
        return p.detach().clone()
    if leaf == "D":
        return 1.0 + 0.2 * noise
    if "norm" in name or ".ln_" in name or name.startswith("ln_"):
        offset = 0.0 if arch in UNIT_OFFSET_NORMS else 1.0
        return (offset + 0.2 * noise) if leaf == "weight" else 0.2 * noise
    if leaf == "bias":
        return 0.2 * noise
    if name.endswith(("wte.weight", "wpe.weight", "embed_tokens.weight", "embeddings.weight")):
        return noise
    fan_in = _fan_in(arch, name, p)
    gain = next((g for key, g in GAINS.items() if key in name), 1.0)
    return noise * (gain / math.sqrt(fan_in))


def _fan_in(arch: str, name: str, p: torch.Tensor) -> int:
    if arch == "gpt2":  # Conv1D stores [in, out]
        return p.shape[0]
    if "conv1d" in name:  # depthwise [E, 1, W]: each output sees W inputs
        return p.shape[-1]
    return p.shape[1]  # nn.Linear stores [out, in]
