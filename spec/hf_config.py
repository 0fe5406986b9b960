"""Hugging Face ``config.json`` -> (architecture, our ``Config``), refusing what we do not implement.

Every field of a checkpoint's config falls in exactly one of three groups, per architecture:
- **mapped**: it sets a field of our ``Config``; defaults are transformers' own (read from transformers 5.24's
  ``configuration_*.py``; derived ones say how they are derived);
- **checked**: it changes the math and we implement only some values (``expect``): any other value is refused;
- **inert**: it cannot change the logits of a causal LM run in float32 (dropout, initialisation, token ids,
  generation defaults, bookkeeping).
A field in none of the groups is refused too: we cannot tell whether it changes the outputs, so we do not guess.
"""

from __future__ import annotations

import functools
import json
import math
import os
from collections.abc import Callable
from typing import Any

from . import gpt2, llama, mamba, mamba2, rope
from .config import from_json
from .errors import ConfigError

ARCHITECTURES = {
    "GPT2LMHeadModel": "gpt2",
    "LlamaForCausalLM": "llama",
    "MambaForCausalLM": "mamba",
    "Qwen2ForCausalLM": "qwen2",
    "Qwen3ForCausalLM": "qwen3",
    "GemmaForCausalLM": "gemma",
    "Phi3ForCausalLM": "phi3",
    "MistralForCausalLM": "mistral",
    "Mamba2ForCausalLM": "mamba2",
}
MODEL_TYPES = {
    "gpt2": "gpt2",
    "llama": "llama",
    "mamba": "mamba",
    "qwen2": "qwen2",
    "qwen3": "qwen3",
    "gemma": "gemma",
    "phi3": "phi3",
    "mistral": "mistral",
    "mamba2": "mamba2",
}
# Families that another architecture's code runs: the Llama-style ones are spec/llama.py with switches.
FAMILY_ARCH = {"qwen2": "llama", "qwen3": "llama", "gemma": "llama", "phi3": "llama", "mistral": "llama"}

# Fields of transformers' PretrainedConfig and generation defaults that older configs carry: none changes the
# logits. dtype / torch_dtype only say how the weights were stored: we always compute in float32.
INERT_COMMON = frozenset(
    {
        "_name_or_path",
        "architectures",
        "model_type",
        "transformers_version",
        "dtype",
        "torch_dtype",
        "use_cache",
        "return_dict",
        "output_attentions",
        "output_hidden_states",
        "torchscript",
        "chunk_size_feed_forward",
        "bos_token_id",
        "eos_token_id",
        "pad_token_id",
        "sep_token_id",
        "decoder_start_token_id",
        "id2label",
        "label2id",
        "num_labels",
        "problem_type",
        "finetuning_task",
        "tokenizer_class",
        "prefix",
        "task_specific_params",
        "initializer_range",
        "_attn_implementation",
        "attn_implementation",
        "is_decoder",
        "cross_attention_hidden_size",
        "max_length",
        "min_length",
        "do_sample",
        "early_stopping",
        "num_beams",
        "num_beam_groups",
        "diversity_penalty",
        "temperature",
        "top_k",
        "top_p",
        "typical_p",
        "repetition_penalty",
        "length_penalty",
        "no_repeat_ngram_size",
        "encoder_no_repeat_ngram_size",
        "bad_words_ids",
        "num_return_sequences",
        "output_scores",
        "return_dict_in_generate",
        "forced_bos_token_id",
        "forced_eos_token_id",
        "remove_invalid_values",
        "exponential_decay_length_penalty",
        "suppress_tokens",
        "begin_suppress_tokens",
    }
)
# Fields of PretrainedConfig that would change the model, with the only value a plain causal LM has.
CHECKED_COMMON = {"is_encoder_decoder": False, "tie_encoder_decoder": False, "pruned_heads": {}}


class Fields:
    """The fields of one config.json; records which were looked at so the rest can be refused by name."""

    def __init__(self, raw: dict[str, Any], path: str, arch: str):
        self.raw, self.path, self.arch, self.used = raw, path, arch, set(INERT_COMMON)
        for key, value in CHECKED_COMMON.items():
            self.expect(key, (value,), value)
        self.expect(
            "quantization_config",
            (None,),
            None,
            ", quantized weights; dequantize and save in float32, float16 or bfloat16",
        )

    def error(self, problem: str) -> ConfigError:
        return ConfigError(f"{self.path}: {problem}")

    def take(self, key: str, default: Any, *, null_is_default: bool = False) -> Any:
        """The value of ``key``; ``default`` when absent (or null, where transformers' own default is None).

        Every field has transformers' default, as in transformers: a config.json that omits one gets the default,
        and a mismatch with the weights then shows up as a shape error naming the tensor."""
        self.used.add(key)
        if key not in self.raw or (null_is_default and self.raw[key] is None):
            return default
        return self.raw[key]

    def alias(self, key: str, other: str, default: Any) -> Any:
        """``key``, also accepted under the name ``other``; when both are present they must agree."""
        if other in self.raw and key in self.raw and not _same(self.raw[key], self.raw[other]):
            raise self.error(f"{key}={self.raw[key]!r} disagrees with {other}={self.raw[other]!r}; make them equal")
        self.used.add(other)
        return self.take(key, self.raw[other] if other in self.raw else default)

    def expect(self, key: str, allowed: tuple[Any, ...], default: Any, why: str = "") -> Any:
        """A field that changes the math where lmstep implements only the ``allowed`` values."""
        value = self.take(key, default)
        if not any(_same(value, a) for a in allowed):
            shown = " or ".join(json.dumps(a) for a in allowed)
            raise self.error(
                f"{key}={json.dumps(value)} is not supported by lmstep's {self.arch} (only {shown}){why}; "
                "it changes the model's outputs, so the checkpoint is refused"
            )
        return value

    def inert(self, *keys: str) -> None:
        self.used.update(keys)

    def finish(self) -> None:
        unknown = sorted(set(self.raw) - self.used)
        if unknown:
            raise self.error(
                f"unknown field {unknown[0]!r} for a {self.arch} checkpoint; lmstep does not guess whether it changes "
                "the outputs: remove it from config.json if it does not"
            )


def _same(a: Any, b: Any) -> bool:
    """Equality where true != 1 (JSON keeps them apart; Python's == does not)."""
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    return a == b


# -- GPT-2: transformers GPT2Config ----------------------------------------------------------------------------
def gpt2_config(f: Fields) -> gpt2.Config:
    n_embd = f.alias("n_embd", "hidden_size", 768)  # GPT2Config.attribute_map aliases
    f.expect(
        "activation_function", ("gelu_new", "gelu_pytorch_tanh"), "gelu_new", ", both the tanh approximation of GELU"
    )
    f.expect("scale_attn_weights", (True,), True, ", scores divided by sqrt(head_dim)")
    f.expect("scale_attn_by_inverse_layer_idx", (False,), False)
    f.expect("add_cross_attention", (False,), False)
    f.expect("tie_word_embeddings", (True,), True, ", the output projection is the token embedding")
    # reorder_and_upcast_attn only changes the order and precision of the score product in half precision: in
    # float32 it is the same computation. n_ctx is an old alias that transformers no longer reads. The summary_*
    # fields and dropouts belong to training or to other heads.
    f.inert(
        "reorder_and_upcast_attn",
        "n_ctx",
        "attn_pdrop",
        "embd_pdrop",
        "resid_pdrop",
        "summary_activation",
        "summary_first_dropout",
        "summary_proj_to_labels",
        "summary_type",
        "summary_use_proj",
    )
    return gpt2.Config(
        vocab_size=f.take("vocab_size", 50257),
        n_embd=n_embd,
        n_layer=f.alias("n_layer", "num_hidden_layers", 12),
        n_head=f.alias("n_head", "num_attention_heads", 12),
        n_positions=f.alias("n_positions", "max_position_embeddings", 1024),
        n_inner=f.take("n_inner", 4 * n_embd if isinstance(n_embd, int) else None, null_is_default=True),  # GPT2Block
        layer_norm_epsilon=f.take("layer_norm_epsilon", 1e-5),
    )


# -- The Llama-style families: transformers' Llama, Qwen2, Qwen3, Gemma, Phi3 and Mistral configs ---------------
# Each maps to spec/llama.py's Config with its family's switches (SPEC.md §5). Defaults per family, read from
# transformers 5.24's configuration_{llama,qwen2,qwen3,gemma,phi3,mistral}.py. head_dim None: hidden // heads (Qwen2
# and Phi3 have no head_dim field, but their attention reads ``getattr(config, "head_dim", hidden // heads)``, so
# a head_dim in config.json is honoured). kv None: as many kv heads as heads; a null num_key_value_heads means the
# same, except for Gemma, whose config has no such rule (a null is refused as not an integer).
DEFAULTS: dict[str, dict[str, Any]] = {
    "llama": dict(vocab=32000, hidden=4096, inter=11008, layers=32, heads=32, kv=None, head_dim=None, ctx=2048),
    "qwen2": dict(vocab=151936, hidden=4096, inter=22016, layers=32, heads=32, kv=32, head_dim=None, ctx=32768),
    "qwen3": dict(vocab=151936, hidden=4096, inter=22016, layers=32, heads=32, kv=32, head_dim=128, ctx=32768),
    "gemma": dict(vocab=256000, hidden=3072, inter=24576, layers=28, heads=16, kv=16, head_dim=256, ctx=8192),
    "phi3": dict(vocab=32064, hidden=3072, inter=8192, layers=32, heads=32, kv=None, head_dim=None, ctx=4096),
    "mistral": dict(vocab=32000, hidden=4096, inter=14336, layers=32, heads=32, kv=8, head_dim=None, ctx=4096 * 32),
}
EPS = {"phi3": 1e-5}  # rms_norm_eps; 1e-6 for the others
# The RoPE types each family's transformers code computes, of those lmstep implements (spec/rope.py). Phi3's
# config accepts only "default" and "longrope" (its older names "su" and "yarn" become "longrope").
ROPE_TYPES = {"llama": ("default", "linear", "llama3"), "phi3": ("default",), "mistral": ("default",)}
ROPE_KEYS = {  # the keys of rope_parameters each type reads (transformers' _validate_*_rope_parameters)
    "default": {"rope_type", "type", "rope_theta", "partial_rotary_factor"},
    "linear": {"rope_type", "type", "rope_theta", "partial_rotary_factor", "factor"},
    "llama3": {"rope_type", "type", "rope_theta", "partial_rotary_factor", *rope.LLAMA3_KEYS},
}


def decoder_config(f: Fields, family: str) -> llama.Config:
    """config.json of a Llama-style family -> llama.Config with that family's switches."""
    d = DEFAULTS[family]
    hidden, heads = f.take("hidden_size", d["hidden"]), f.take("num_attention_heads", d["heads"])
    head_dim = f.take("head_dim", d["head_dim"], null_is_default=True)
    ctx = f.take("max_position_embeddings", d["ctx"])
    switches: dict[str, Any] = {}
    if family == "gemma":
        # GemmaConfig turns the legacy "gelu" of the first Gemma uploads into the tanh approximation; transformers
        # 4 read hidden_activation instead (5 ignores it), so a value that would disagree is refused.
        f.expect("hidden_act", ("gelu_pytorch_tanh", "gelu"), "gelu_pytorch_tanh", ", GeGLU with tanh GELU")
        f.expect("hidden_activation", (None, "gelu_pytorch_tanh"), None, ", GeGLU with tanh GELU")
        f.expect("use_bidirectional_attention", (None, False), None, ", causal attention")
        switches |= dict(hidden_act="gelu_pytorch_tanh", norm_unit_offset=True, scale_embeddings=True)
    else:
        f.expect("hidden_act", ("silu",), "silu", ", the SwiGLU gate")
    if family in ("llama", "qwen3", "gemma"):
        switches["attention_bias"] = f.take("attention_bias", False)  # q, k, v and o
    elif family == "phi3":
        f.expect("attention_bias", (False,), False, ", Phi-3's projections have no biases")
    if family == "llama":
        switches["mlp_bias"] = f.take("mlp_bias", False)
    if family == "qwen2":
        switches["qkv_bias"] = True  # Qwen2Attention: q, k, v with biases, o without, whatever the config says
        f.expect("use_mrope", (False,), False, ", multimodal RoPE sections (Qwen2-VL)")
    if family == "qwen3":
        switches["qk_norm"] = True
    if family in ("qwen2", "qwen3"):
        _qwen_windows(f, ctx, d)
    if family == "mistral":
        # MistralConfig: no attention_bias / mlp_bias (MistralAttention and MistralMLP have no biases: a
        # config.json carrying them is refused as unknown); sliding_window null: full attention. layer_types
        # (alternating windows) is what transformers' MistralModel ignores with a warning: refused as unknown,
        # so lmstep never guesses.
        switches["sliding_window"] = f.take("sliding_window", 4096)
    if family == "phi3":
        window = f.take("sliding_window", None)
        if window is not None and not (isinstance(window, int) and window >= ctx):
            raise _window_error(f, f"sliding_window={json.dumps(window)}", ctx)
        # auto_map names remote-code classes that transformers' own Phi3 replaces; the dropouts are training only
        f.inert("resid_pdrop", "embd_pdrop", "auto_map")
    # attention_dropout: training only; pretraining_tp: transformers 5 no longer reads it
    f.inert("attention_dropout", *(("pretraining_tp",) if family == "llama" else ()))
    return llama.Config(
        vocab_size=f.take("vocab_size", d["vocab"]),
        hidden_size=hidden,
        intermediate_size=f.take("intermediate_size", d["inter"]),
        num_hidden_layers=f.take("num_hidden_layers", d["layers"]),
        num_attention_heads=heads,
        num_key_value_heads=_kv_heads(f, d["kv"], heads, family),
        head_dim=_div(hidden, heads) if head_dim is None else head_dim,
        max_position_embeddings=ctx,
        rms_norm_eps=f.take("rms_norm_eps", EPS.get(family, 1e-6)),
        tie_word_embeddings=f.take("tie_word_embeddings", family == "gemma"),
        model_type=family,
        **switches,
        **_rope(f, family, ctx),
    )


def _kv_heads(f: Fields, default: Any, heads: Any, family: str) -> Any:
    kv = f.take("num_key_value_heads", default)
    return heads if kv is None and family != "gemma" else kv


def _qwen_windows(f: Fields, ctx: Any, d: dict[str, Any]) -> None:
    """Qwen2/Qwen3 slide a window over the layers ``layer_types`` marks "sliding_attention" (by default the layers
    from max_window_layers on), and only when use_sliding_window: the window is ``sliding_window`` keys. Accepted
    when no layer slides, or the window covers every position (>= max_position_embeddings): the same math."""
    use = f.expect("use_sliding_window", (False, True), False)
    window = f.take("sliding_window", 4096) if use else None  # Qwen2Config: None unless use_sliding_window
    f.inert("sliding_window")  # so without use_sliding_window it is read by nothing
    first = f.take("max_window_layers", 28)
    layers = f.raw.get("num_hidden_layers", d["layers"])
    kinds = f.take("layer_types", None)
    if kinds is None and isinstance(layers, int) and isinstance(first, int):
        kinds = ["sliding_attention" if window is not None and i >= first else "full_attention" for i in range(layers)]
    if not (isinstance(kinds, list) and all(k in ("full_attention", "sliding_attention") for k in kinds)):
        raise f.error(f'layer_types must list "full_attention" or "sliding_attention" per layer, got {kinds!r}')
    if len(kinds) != layers:
        raise f.error(f"layer_types lists {len(kinds)} layers, but num_hidden_layers is {layers}; make them agree")
    sliding = [i for i, k in enumerate(kinds) if k == "sliding_attention"]
    if sliding and window is None:
        raise f.error(
            f"layer_types marks layers {sliding} sliding_attention, but use_sliding_window is false (no window); "
            'transformers cannot run that either: mark them "full_attention" or set the window'
        )
    if sliding and not (isinstance(window, int) and isinstance(ctx, int) and window >= ctx):
        raise _window_error(f, f"sliding_window={json.dumps(window)} on layers {sliding}", ctx)


def _window_error(f: Fields, what: str, ctx: Any) -> ConfigError:
    return f.error(
        f"{what} is not supported by lmstep's {f.arch} (only no window, or one of at least "
        f"max_position_embeddings={ctx}): a window shorter than the context changes the outputs of longer "
        "sequences, so the checkpoint is refused"
    )


def _rope(f: Fields, family: str, ctx: Any) -> dict[str, Any]:
    """RoPE parameters from transformers 5's ``rope_parameters`` or the older ``rope_theta`` + ``rope_scaling``.

    As transformers' ``convert_rope_params_to_dict``: a non-null rope_scaling wins over rope_parameters; keys
    inside the dict win over top-level ones; theta defaults to 10000. A llama3 dict without
    original_max_position_embeddings takes max_position_embeddings (``standardize_rope_params``). A top-level
    original_max_position_embeddings is inert: Phi3Config's own field is read only by longrope (refused), and
    for the other families it becomes an attribute after the dict was standardised, so the dict's value stands
    (measured with transformers 5.25: a top-level 16 beside a dict's 999 leaves 999).
    """
    scaling, params = f.take("rope_scaling", None), f.take("rope_parameters", None)
    top_theta, top_factor = f.take("rope_theta", None), f.take("partial_rotary_factor", None)
    f.inert("original_max_position_embeddings")
    params = scaling or params or {}
    name = "rope_scaling" if scaling else "rope_parameters"
    if not isinstance(params, dict):
        raise f.error(f"{name} must be an object or null, got {json.dumps(params)}")
    kind = params.get("rope_type", params.get("type", "default"))
    if family == "phi3" and kind in ("su", "yarn"):
        kind = "longrope"  # Phi3Config's renaming of its older configs
    allowed = ROPE_TYPES.get(family, ROPE_TYPES["llama"])
    if kind not in allowed:
        shown = ", ".join(json.dumps(a) for a in allowed)
        raise f.error(
            f"{name} has rope_type {json.dumps(kind)}, which lmstep's {family} does not implement (only {shown}); "
            "it changes the model's outputs, so the checkpoint is refused"
        )
    extra = sorted(set(params) - ROPE_KEYS[kind])
    if extra:
        raise f.error(f"{name} has field {extra[0]!r}, which {kind} RoPE does not use; remove it or fix rope_type")
    factor = params.get("partial_rotary_factor", 1.0 if top_factor is None else top_factor)
    if family != "phi3" and not _same(factor, 1.0):
        raise f.error(
            f"partial_rotary_factor={json.dumps(factor)} is not supported by lmstep's {family} (only 1: its "
            "transformers code rotates the whole head); it changes the model's outputs, so the checkpoint is refused"
        )
    out: dict[str, Any] = {
        "rope_theta": params.get("rope_theta", 10000.0 if top_theta is None else top_theta),
        "partial_rotary_factor": factor,
        "rope_type": kind,
    }
    for key in ROPE_KEYS[kind] & set(rope.LLAMA3_KEYS):
        if key == "original_max_position_embeddings":
            out[key] = params.get(key, ctx)
        elif key not in params:
            raise f.error(f"{name} of rope_type {json.dumps(kind)} lacks {key!r}; transformers needs it too")
        else:
            out[key] = params[key]
    return out


# -- Mamba: transformers MambaConfig ---------------------------------------------------------------------------
def mamba_config(f: Fields) -> mamba.Config:
    hidden = f.alias("hidden_size", "d_model", 768)  # d_model / n_layer: the original mamba_ssm names
    if not _positive(hidden, int):
        raise f.error(f"hidden_size must be a positive integer, got {json.dumps(hidden)}")
    expand = f.take("expand", 2)
    if not _positive(expand, (int, float)) or int(expand * hidden) < 1:
        raise f.error(f"expand must be a positive number, got {json.dumps(expand)}")
    inner = int(expand * hidden)  # MambaConfig.__post_init__ always recomputes intermediate_size this way
    saved_inner = f.take("intermediate_size", inner)
    if not _same(saved_inner, inner):
        raise f.error(
            f"intermediate_size={saved_inner!r} disagrees with expand * hidden_size = {inner}; make them equal"
        )
    rank = f.take("time_step_rank", "auto")
    f.expect("hidden_act", ("silu",), "silu", ", the conv activation and the output gate")
    f.expect("rms_norm", (True,), True)  # mamba_ssm name: transformers always uses RMSNorm
    f.expect("ssm_cfg", ({}, None), None)  # mamba_ssm per-layer overrides: transformers reads none
    # residual_in_fp32: we compute in float32 throughout. time_step_* and rescale_prenorm_residual only shape the
    # initialisation; use_mambapy / use_associative_scan / fused_add_norm choose an implementation of the same
    # math; pad_vocab_size_multiple was already applied to vocab_size.
    f.inert(
        "residual_in_fp32",
        "rescale_prenorm_residual",
        "time_step_scale",
        "time_step_min",
        "time_step_max",
        "time_step_init_scheme",
        "time_step_floor",
        "use_mambapy",
        "use_associative_scan",
        "fused_add_norm",
        "pad_vocab_size_multiple",
    )
    return mamba.Config(
        vocab_size=f.take("vocab_size", 50280),
        hidden_size=hidden,
        state_size=f.take("state_size", 16),
        num_hidden_layers=f.alias("num_hidden_layers", "n_layer", 32),
        intermediate_size=inner,
        time_step_rank=math.ceil(hidden / 16) if rank == "auto" else rank,
        conv_kernel=f.take("conv_kernel", 4),
        layer_norm_epsilon=f.take("layer_norm_epsilon", 1e-5),
        use_bias=f.take("use_bias", False),
        use_conv_bias=f.take("use_conv_bias", True),
        tie_word_embeddings=f.take("tie_word_embeddings", True),
    )


# -- Mamba-2: transformers Mamba2Config -------------------------------------------------------------------------
def mamba2_config(f: Fields) -> mamba2.Config:
    f.expect("hidden_act", ("silu",), "silu", ", the conv activation")
    f.expect("rms_norm", (True,), True)  # transformers 4.x name: Mamba2 always uses (gated) RMSNorm
    # mamba_ssm's option; transformers' Mamba2 always gates before its norm: norm(y * silu(z)).
    f.expect("norm_before_gate", (False,), False, ", the gate is applied before the grouped RMSNorm")
    # residual_in_fp32: we compute in float32 throughout. time_step_rank is stored by transformers' Mamba2 but read
    # by no computation (Mamba-2 has no dt projection); time_step_min/max/floor and rescale_prenorm_residual only
    # shape the initialisation.
    f.inert(
        "residual_in_fp32",
        "time_step_rank",
        "time_step_min",
        "time_step_max",
        "time_step_floor",
        "rescale_prenorm_residual",
    )
    return mamba2.Config(
        vocab_size=f.take("vocab_size", 32768),
        hidden_size=f.take("hidden_size", 4096),
        state_size=f.take("state_size", 128),
        num_hidden_layers=f.take("num_hidden_layers", 64),
        num_heads=f.take("num_heads", 128),
        head_dim=f.take("head_dim", 64),
        expand=f.take("expand", 2),
        n_groups=f.take("n_groups", 8),
        conv_kernel=f.take("conv_kernel", 4),
        # chunk_size does not change the math over the reals (proofs/ssd.py), only the float32 order of the
        # unrolled form: lmstep chunks as the checkpoint does.
        chunk_size=f.take("chunk_size", 256),
        time_step_limit=f.take("time_step_limit", (0.0, math.inf)),
        layer_norm_epsilon=f.take("layer_norm_epsilon", 1e-5),
        use_bias=f.take("use_bias", False),
        use_conv_bias=f.take("use_conv_bias", True),
        tie_word_embeddings=f.take("tie_word_embeddings", False),
    )


MAPPERS: dict[str, Callable[[Fields], Any]] = {"gpt2": gpt2_config, "mamba": mamba_config}
MAPPERS |= {family: functools.partial(decoder_config, family=family) for family in DEFAULTS}
MAPPERS["mamba2"] = mamba2_config


def read_config(path: str | os.PathLike) -> tuple[str, Any]:
    """``config.json`` at ``path`` -> (our architecture name, its ``Config``); ConfigError naming the file."""
    path = os.fspath(path)
    try:
        with open(path, encoding="utf-8") as fh:
            raw = json.load(fh)
    except FileNotFoundError:
        raise ConfigError(
            f"{path}: not found; a checkpoint folder needs the config.json that save_pretrained writes"
        ) from None
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise ConfigError(f"{path}: not valid JSON ({err}); fix or regenerate config.json") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: must hold a JSON object, got {type(raw).__name__}")
    raw = from_json(raw)  # {"__float__": "Infinity"}, as transformers 5 writes inf (e.g. Mamba-2's time_step_limit)
    family = detect_architecture(raw, path)
    fields = Fields(raw, path, family)
    try:
        cfg = MAPPERS[family](fields)
    except ConfigError as err:
        if str(err).startswith(path):
            raise
        raise ConfigError(f"{path}: {err}") from None  # a Config validator's message, now naming the file
    fields.finish()
    return FAMILY_ARCH.get(family, family), cfg


def detect_architecture(raw: dict[str, Any], path: str) -> str:
    """From ``architectures`` (the class save_pretrained wrote) or else ``model_type``; both must agree."""
    names, model_type = raw.get("architectures"), raw.get("model_type")
    arch = None
    if names is not None:
        if not (isinstance(names, list) and len(names) == 1 and isinstance(names[0], str)):
            raise ConfigError(f"{path}: architectures must list exactly one class name, got {json.dumps(names)}")
        if names[0] not in ARCHITECTURES:
            raise ConfigError(
                f"{path}: architecture {names[0]!r} is not supported; lmstep loads {', '.join(ARCHITECTURES)}"
            )
        arch = ARCHITECTURES[names[0]]
    if model_type is not None:
        if not isinstance(model_type, str) or model_type not in MODEL_TYPES:
            raise ConfigError(
                f"{path}: model_type {model_type!r} is not supported; lmstep loads {', '.join(MODEL_TYPES)}"
            )
        if arch is not None and MODEL_TYPES[model_type] != arch:
            raise ConfigError(
                f"{path}: model_type {model_type!r} disagrees with architectures {raw['architectures'][0]!r}"
            )
        arch = MODEL_TYPES[model_type]
    if arch is None:
        raise ConfigError(
            f'{path}: has neither architectures nor model_type; add "model_type": one of {", ".join(MODEL_TYPES)}'
        )
    return arch


def _positive(x: Any, types: Any) -> bool:
    return isinstance(x, types) and not isinstance(x, bool) and x > 0


def _div(a: Any, b: Any) -> Any:
    return a // b if isinstance(a, int) and isinstance(b, int) and b > 0 else None
