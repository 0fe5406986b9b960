"""Checkpoint folders that must be refused, each with one line naming the file and the problem, beside a
control that differs only in the offending part and loads; and older / alternative layouts that must load and
still match transformers. Every case edits a copy of a fixture from tests/fixtures/hf/."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest
import safetensors.numpy as st
from hf_fixtures import folder
from test_checkpoints import deviations

from lmstep.spec import CheckpointError, ConfigError, load


@pytest.fixture
def copy(tmp_path):
    def make(name: str) -> str:
        dst = tmp_path / name
        shutil.copytree(folder(name), dst)
        return str(dst)

    return make


def edit_config(path: str, **changes) -> None:
    """Set (or, with value ``DELETE``, remove) fields of ``path``/config.json."""
    cfg_path = os.path.join(path, "config.json")
    cfg = json.load(open(cfg_path))
    for k, v in changes.items():
        if v is DELETE:
            cfg.pop(k, None)
        else:
            cfg[k] = v
    json.dump(cfg, open(cfg_path, "w"))


DELETE = object()


def edit_tensors(path: str, fn) -> None:
    """Rewrite ``path``/model.safetensors with ``fn(tensors)`` (a dict it may change in place)."""
    file = os.path.join(path, "model.safetensors")
    tensors = dict(st.load_file(file))
    fn(tensors)
    st.save_file(tensors, file, metadata={"format": "pt"})


def refused(err: pytest.ExceptionInfo, file: str, *fragments: str) -> None:
    message = str(err.value)
    assert "\n" not in message, message
    assert message.startswith(file), message
    for fragment in fragments:
        assert fragment in message, message


# -- config.json: (fixture, refused edit, accepted edit of the same field, words the message must contain) ------
RELLAMA = {
    "rope_type": "llama3",
    "factor": 8.0,
    "rope_theta": 500000.0,
    "low_freq_factor": 1.0,
    "high_freq_factor": 4.0,
    "original_max_position_embeddings": 32,
}
CONFIG_CASES = {
    "unknown-architecture": (
        "gpt2-base",
        {"architectures": ["BertForMaskedLM"]},
        {"architectures": ["GPT2LMHeadModel"]},
        ["BertForMaskedLM", "not supported"],
    ),
    "base-model-class": (
        "llama-mha-tied",
        {"architectures": ["LlamaModel"]},
        {"architectures": DELETE},
        ["LlamaModel"],
    ),
    "model-type-mismatch": ("gpt2-base", {"model_type": "llama"}, {"model_type": "gpt2"}, ["disagrees"]),
    "no-model-type": (
        "gpt2-base",
        {"model_type": DELETE, "architectures": DELETE},
        {"architectures": DELETE},
        ["model_type"],
    ),
    "rope-scaling": (
        "llama-gqa-theta-sharded",
        {"rope_parameters": {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 16}},
        {"rope_parameters": RELLAMA},
        ["yarn", '"default", "linear", "llama3"'],
    ),
    "legacy-rope-scaling": (
        "llama-gqa-theta-sharded",
        {"rope_scaling": {"type": "dynamic", "factor": 2.0}},
        {"rope_scaling": {"type": "linear", "factor": 2.0}},
        ["dynamic"],
    ),
    "llama3-missing-key": (
        "llama3-rope-gqa",
        {"rope_parameters": {k: v for k, v in RELLAMA.items() if k != "low_freq_factor"}},
        {"rope_parameters": RELLAMA},
        ["low_freq_factor", "lacks"],
    ),
    "llama3-bad-frequency-band": (
        "llama3-rope-gqa",
        {"rope_parameters": RELLAMA | {"high_freq_factor": 1.0}},
        {"rope_parameters": RELLAMA},
        ["high_freq_factor > low_freq_factor"],
    ),
    "rope-extra-key": (
        "qwen3-gqa-headdim",
        {"rope_parameters": {"rope_type": "default", "rope_theta": 1e6, "factor": 2.0}},
        {"rope_parameters": {"rope_type": "linear", "rope_theta": 1e6, "factor": 2.0}},
        ["factor", "does not use"],
    ),
    "phi3-longrope": (
        "phi3-gqa",
        {"rope_scaling": {"type": "su", "short_factor": [1.0] * 4, "long_factor": [2.0] * 4}},
        {"rope_scaling": None},
        ["longrope", "phi3"],
    ),
    "phi3-llama3": ("phi3-gqa", {"rope_parameters": RELLAMA}, {"rope_parameters": None}, ["llama3", "phi3"]),
    "phi3-window": ("phi3-gqa", {"sliding_window": 32}, {"sliding_window": 64}, ["sliding_window=32", "64"]),
    "phi3-attention-bias": ("phi3-gqa", {"attention_bias": True}, {"attention_bias": False}, ["attention_bias"]),
    "qwen2-window": (
        "qwen2-gqa-window-sharded",
        {"sliding_window": 16},
        {"sliding_window": 64},
        ["sliding_window=16", "[1]", "max_position_embeddings=64"],
    ),
    "qwen2-layer-types-without-window": (
        "qwen2-gqa-window-sharded",
        {"use_sliding_window": False, "layer_types": ["full_attention", "sliding_attention"]},
        {"use_sliding_window": False, "layer_types": ["full_attention", "full_attention"]},
        ["sliding_attention", "use_sliding_window"],
    ),
    "qwen2-mrope": ("qwen2-mqa-tied-linear-bf16", {"use_mrope": True}, {"use_mrope": False}, ["use_mrope"]),
    "qwen-partial-rotary": (
        "qwen3-gqa-headdim",
        {"partial_rotary_factor": 0.5},
        {"partial_rotary_factor": 1.0},
        ["partial_rotary_factor", "qwen3"],
    ),
    "gemma-exact-gelu": (
        "gemma-mqa-headdim",
        {"hidden_activation": "gelu"},
        {"hidden_activation": "gelu_pytorch_tanh"},
        ["hidden_activation"],
    ),
    "gemma-act": ("gemma-mqa-headdim", {"hidden_act": "silu"}, {"hidden_act": "gelu"}, ["hidden_act", "silu"]),
    "gemma-bidirectional": (
        "gemma-mqa-headdim",
        {"use_bidirectional_attention": True},
        {"use_bidirectional_attention": False},
        ["use_bidirectional_attention"],
    ),
    "partial-rotary": (
        "llama-gqa-theta-sharded",
        {"partial_rotary_factor": 0.5},
        {"partial_rotary_factor": 1.0},
        ["partial_rotary_factor"],
    ),
    "llama-act": ("llama-mha-tied", {"hidden_act": "gelu"}, {"hidden_act": "silu"}, ["hidden_act", "gelu"]),
    "gpt2-act": (
        "gpt2-base",
        {"activation_function": "relu"},
        {"activation_function": "gelu_pytorch_tanh"},
        ["activation_function", "relu"],
    ),
    "gpt2-layer-scaling": (
        "gpt2-base",
        {"scale_attn_by_inverse_layer_idx": True},
        {"scale_attn_by_inverse_layer_idx": False},
        ["scale_attn_by_inverse_layer_idx"],
    ),
    "gpt2-unscaled": ("gpt2-base", {"scale_attn_weights": False}, {"scale_attn_weights": True}, ["scale_attn_weights"]),
    "gpt2-untied": (
        "gpt2-base",
        {"tie_word_embeddings": False},
        {"tie_word_embeddings": True},
        ["tie_word_embeddings"],
    ),
    "gpt2-cross-attention": (
        "gpt2-base",
        {"add_cross_attention": True},
        {"add_cross_attention": False},
        ["add_cross_attention"],
    ),
    "mamba-act": ("mamba-base", {"hidden_act": "gelu"}, {"hidden_act": "silu"}, ["hidden_act"]),
    "mamba-inner": (
        "mamba-base",
        {"intermediate_size": 48},
        {"intermediate_size": DELETE},
        ["intermediate_size", "expand"],
    ),
    "mamba-layernorm": ("mamba-base", {"rms_norm": False}, {"rms_norm": True}, ["rms_norm"]),
    "quantized": (
        "llama-mha-tied",
        {"quantization_config": {"quant_method": "gptq"}},
        {},
        ["quantization_config", "dequantize"],
    ),
    "unknown-field": ("mamba-base", {"my_new_gate": True}, {"initializer_range": 0.5}, ["my_new_gate"]),
    "encoder-decoder": (
        "gpt2-base",
        {"is_encoder_decoder": True},
        {"is_encoder_decoder": False},
        ["is_encoder_decoder"],
    ),
    "true-is-not-1": ("llama-mha-tied", {"attention_bias": 1}, {"attention_bias": False}, ["attention_bias"]),
    "heads-not-multiple": (
        "llama-gqa-theta-sharded",
        {"num_key_value_heads": 3},
        {"num_key_value_heads": 2},
        ["num_key_value_heads"],
    ),
    "wrong-type": ("gpt2-base", {"n_layer": "2"}, {"n_layer": 2}, ["n_layer"]),
    # Mistral: the window must be a positive integer or null; fields MistralConfig does not have are refused
    # (its projections have no biases; layer_types is what transformers' MistralModel ignores with a warning).
    "mistral-window-zero": ("mistral-gqa-window4", {"sliding_window": 0}, {"sliding_window": 64}, ["sliding_window"]),
    "mistral-window-text": (
        "mistral-gqa-window4",
        {"sliding_window": "4"},
        {"sliding_window": None},
        ["sliding_window", "'4'"],
    ),
    "mistral-bias": ("mistral-gqa-window4", {"attention_bias": False}, {}, ["attention_bias", "unknown field"]),
    "mistral-layer-types": (
        "mistral-gqa-window4",
        {"layer_types": ["sliding_attention", "full_attention"]},
        {},
        ["layer_types", "unknown field"],
    ),
    "mistral-act": ("mistral-no-window-f16", {"hidden_act": "gelu"}, {"hidden_act": "silu"}, ["hidden_act", "gelu"]),
    "mamba2-act": ("mamba2-groups-chunk4", {"hidden_act": "gelu"}, {"hidden_act": "silu"}, ["hidden_act"]),
    "mamba2-norm-before-gate": (
        "mamba2-groups-chunk4",
        {"norm_before_gate": True},
        {"norm_before_gate": False},
        ["norm_before_gate"],
    ),
    "mamba2-heads-times-head-dim": (
        "mamba2-groups-chunk4",
        {"head_dim": 4},
        {"head_dim": 8},
        ["num_heads * head_dim", "expand * hidden_size"],
    ),
    "mamba2-groups-not-dividing-heads": (
        "mamba2-groups-chunk4",
        {"n_groups": 3},
        {"n_groups": 2},
        ["n_groups", "num_heads"],
    ),
    "mamba2-time-step-limit": (
        "mamba2-groups-chunk4",
        {"time_step_limit": [0.1, 0.01]},
        {"time_step_limit": [0.0, 1e30]},
        ["time_step_limit"],
    ),
}


@pytest.mark.parametrize("case", sorted(CONFIG_CASES))
def test_config_refused_in_one_line_and_control_loads(copy, case):
    name, bad, good, words = CONFIG_CASES[case]
    path = copy(name)
    edit_config(path, **good)
    load(path)  # control: the same field with a supported value
    edit_config(path, **bad)
    with pytest.raises(ConfigError) as err:
        load(path)
    refused(err, os.path.join(path, "config.json"), *words)


def test_config_not_json(copy):
    path = copy("gpt2-base")
    open(os.path.join(path, "config.json"), "w").write('{"model_type": "gpt2",')
    with pytest.raises(ConfigError) as err:
        load(path)
    refused(err, os.path.join(path, "config.json"), "not valid JSON")


def test_config_missing(copy):
    path = copy("gpt2-base")
    os.remove(os.path.join(path, "config.json"))
    with pytest.raises(ConfigError) as err:
        load(path)
    refused(err, os.path.join(path, "config.json"), "not found")


# -- weights -----------------------------------------------------------------------------------------------
Q = "model.layers.0.self_attn.q_proj.weight"


def _drop(t):
    del t[Q]


def _reshape(t):
    t[Q] = t[Q][:, :-1].copy()


def _ints(t):
    t[Q] = t[Q].astype(np.int64)


def _nan(t):
    t[Q] = t[Q].copy()
    t[Q][3, 4] = np.nan


def _inf(t):
    t[Q] = t[Q].copy()
    t[Q][0, 1] = -np.inf


def _extra_bias(t):  # attention_bias is false in this config: a stored bias would be silently dropped
    t["model.layers.0.self_attn.q_proj.bias"] = np.zeros(32, np.float32)


def _other_lm_head(t):  # tie_word_embeddings=true, but the stored output projection is not the embedding
    t["lm_head.weight"] = t["model.embed_tokens.weight"] + 1


TENSOR_CASES = {
    "missing": (_drop, CheckpointError, [Q, "missing"]),
    "wrong-shape": (_reshape, CheckpointError, [Q, "shape [32, 31]", "[32, 32]"]),
    "int-dtype": (_ints, CheckpointError, [Q, "I64"]),
    "nan": (_nan, CheckpointError, [Q, "NaN"]),
    "inf": (_inf, CheckpointError, [Q]),
    "unexpected-bias": (_extra_bias, CheckpointError, ["q_proj.bias", "unexpected"]),
    "untied-lm-head": (_other_lm_head, CheckpointError, ["lm_head.weight", "tie_word_embeddings"]),
}


@pytest.mark.parametrize("case", sorted(TENSOR_CASES))
def test_bad_tensor_refused_in_one_line(copy, case):
    fn, exc, words = TENSOR_CASES[case]
    path = copy("llama-mha-tied")
    edit_tensors(path, lambda t: None)  # control: rewritten by the same code, unchanged, it loads
    load(path)
    edit_tensors(path, fn)
    with pytest.raises(exc) as err:
        load(path)
    refused(err, path, *words)


def test_tied_checkpoint_with_identical_lm_head_loads_and_matches(copy):
    path = copy("llama-mha-tied")
    edit_tensors(path, lambda t: t.__setitem__("lm_head.weight", t["model.embed_tokens.weight"].copy()))
    assert deviations(load(path), "llama-mha-tied") == []


@pytest.mark.parametrize("pickled", ["pytorch_model.bin", "model.pt", "pytorch_model.bin.index.json"])
def test_pickled_weights_are_refused_unopened(copy, pickled):
    path = copy("mamba-base")
    os.remove(os.path.join(path, "model.safetensors"))
    open(os.path.join(path, pickled), "wb").write(b"\x80\x04 not even a pickle")
    with pytest.raises(CheckpointError) as err:
        load(path)
    refused(err, path, pickled, "never opens", "save_pretrained", "safe_serialization=True")


def test_no_weights_at_all(copy):
    path = copy("mamba-base")
    os.remove(os.path.join(path, "model.safetensors"))
    with pytest.raises(CheckpointError) as err:
        load(path)
    refused(err, path, "model.safetensors")


# -- sharded checkpoints -----------------------------------------------------------------------------------
SHARDED = "llama-gqa-theta-sharded"


def _index(path: str) -> dict:
    return json.load(open(os.path.join(path, "model.safetensors.index.json")))


def _write_index(path: str, index: dict) -> None:
    json.dump(index, open(os.path.join(path, "model.safetensors.index.json"), "w"))


def test_shard_missing(copy):
    path = copy(SHARDED)
    shard = sorted(set(_index(path)["weight_map"].values()))[-1]
    os.remove(os.path.join(path, shard))
    with pytest.raises(CheckpointError) as err:
        load(path)
    refused(err, os.path.join(path, "model.safetensors.index.json"), shard, "not in")


def test_index_maps_tensor_to_the_wrong_shard(copy):
    path = copy(SHARDED)
    index = _index(path)
    shards = sorted(set(index["weight_map"].values()))
    name = next(n for n, s in index["weight_map"].items() if s == shards[0])
    index["weight_map"][name] = shards[1]
    _write_index(path, index)
    with pytest.raises(CheckpointError) as err:
        load(path)
    refused(err, os.path.join(path, shards[0]), name, "does not map")


def test_index_shard_outside_the_folder(copy):
    path = copy(SHARDED)
    index = _index(path)
    name = next(iter(index["weight_map"]))
    index["weight_map"][name] = "../elsewhere.safetensors"
    _write_index(path, index)
    with pytest.raises(CheckpointError) as err:
        load(path)
    refused(err, os.path.join(path, "model.safetensors.index.json"), "inside the folder")


def test_sharded_and_single_file_give_the_same_model(copy):
    path = copy(SHARDED)
    tensors = {}
    for shard in sorted(set(_index(path)["weight_map"].values())):
        tensors.update(st.load_file(os.path.join(path, shard)))
        os.remove(os.path.join(path, shard))
    os.remove(os.path.join(path, "model.safetensors.index.json"))
    st.save_file(tensors, os.path.join(path, "model.safetensors"))
    assert load(path).weights == load(folder(SHARDED)).weights


# -- older and alternative layouts that transformers also loads: they must still match it -------------------
def test_legacy_llama_config_fields(copy):
    """transformers 4.x wrote rope_theta at top level with rope_scaling null and no rope_parameters."""
    path = copy(SHARDED)
    edit_config(
        path, rope_parameters=DELETE, rope_theta=500000.0, rope_scaling=None, torch_dtype="float32", dtype=DELETE
    )
    assert load(path).config.rope_theta == 500000.0
    assert deviations(load(path), SHARDED) == []


def test_llama_defaults_for_null_fields(copy):
    """head_dim absent -> hidden / heads; num_key_value_heads null -> heads; rope absent -> theta 10000."""
    path = copy("llama-mha-tied")
    edit_config(path, head_dim=DELETE, num_key_value_heads=None, rope_parameters=DELETE)
    cfg = load(path).config
    assert (cfg.head_dim, cfg.num_key_value_heads, cfg.rope_theta) == (8, 4, 10000.0)
    assert deviations(load(path), "llama-mha-tied") == []


def test_gpt2_original_openai_layout(copy):
    """OpenAI's gpt2 upload: no transformer. prefix, n_inner null, causal-mask buffers stored as attn.bias."""
    path = copy("gpt2-base")
    edit_config(path, n_inner=None, n_ctx=64)

    def openai_layout(t):
        for k in list(t):
            t[k.removeprefix("transformer.")] = t.pop(k)
        for i in range(2):
            t[f"h.{i}.attn.bias"] = np.tril(np.ones((1, 1, 64, 64), np.float32))

    edit_tensors(path, openai_layout)
    assert load(path).config.n_inner == 128
    assert deviations(load(path), "gpt2-base") == []


def test_mamba_ssm_era_config_fields(copy):
    """state-spaces/mamba-*-hf configs carry the original mamba_ssm names next to transformers' own."""
    path = copy("mamba-base")
    edit_config(
        path,
        d_model=32,
        n_layer=2,
        fused_add_norm=True,
        rms_norm=True,
        ssm_cfg={},
        pad_vocab_size_multiple=8,
        time_step_rank="auto",
        intermediate_size=DELETE,
    )
    assert load(path).config.time_step_rank == 2  # ceil(32 / 16)
    assert deviations(load(path), "mamba-base") == []
    edit_config(path, n_layer=3)
    with pytest.raises(ConfigError) as err:
        load(path)
    refused(err, os.path.join(path, "config.json"), "n_layer", "disagrees")


# Configs as transformers 4.x and the original uploads wrote them (top-level rope_theta, rope_scaling instead of
# rope_parameters, fields transformers 5 dropped): each must load to the same model, matching the recorded outputs.
LLAMA3_LEGACY = {"factor": 4.0, "low_freq_factor": 1.0, "high_freq_factor": 2.0, "original_max_position_embeddings": 16}
LEGACY_FAMILY_CONFIGS = {
    "llama3-rope-scaling": (  # Llama 3.1's own config.json layout
        "llama3-rope-gqa",
        dict(rope_parameters=DELETE, rope_theta=100.0, rope_scaling={"rope_type": "llama3", **LLAMA3_LEGACY}),
    ),
    "llama3-original-context-at-top-level": (  # inert beside the dict's (transformers reads the dict's)
        "llama3-rope-gqa",
        dict(original_max_position_embeddings=999),
    ),
    "qwen2-4x": (  # Qwen2.5's layout: a window that use_sliding_window leaves off, no layer_types
        "qwen2-gqa-window-sharded",
        dict(
            rope_parameters=DELETE,
            rope_theta=1e6,
            rope_scaling=None,
            use_sliding_window=False,
            sliding_window=32768,
            max_window_layers=21,
            layer_types=DELETE,
        ),
    ),
    "gemma-1.1": (  # google/gemma-1.1-2b-it: hidden_act "gelu" next to hidden_activation
        "gemma-gqa-bias-legacy-act-bf16-sharded",
        dict(rope_parameters=DELETE, rope_theta=10000.0, rope_scaling=None, hidden_activation="gelu_pytorch_tanh"),
    ),
    "phi3-mini": (  # microsoft/Phi-3-mini's fields, with no window and no RoPE scaling
        "phi3-partial-rotary-tied-bf16",
        dict(
            rope_parameters=DELETE,
            rope_theta=10000.0,
            rope_scaling=None,
            partial_rotary_factor=0.5,
            attention_bias=False,
            auto_map={"AutoConfig": "configuration_phi3.Phi3Config"},
        ),
    ),
}


@pytest.mark.parametrize("case", sorted(LEGACY_FAMILY_CONFIGS))
def test_older_family_configs_load_and_match(copy, case):
    name, changes = LEGACY_FAMILY_CONFIGS[case]
    path = copy(name)
    edit_config(path, **changes)
    assert load(path).config == load(folder(name)).config
    assert deviations(load(path), name) == []


def test_phi3_fused_tensor_of_the_wrong_size_is_refused(copy):
    """The split of qkv_proj depends on the config's heads: a fused tensor that does not fit is named."""
    path = copy("phi3-gqa")
    name = "model.layers.0.self_attn.qkv_proj.weight"
    edit_tensors(path, lambda t: None)
    load(path)  # control
    edit_tensors(path, lambda t: t.__setitem__(name, t[name][:-8].copy()))
    with pytest.raises(CheckpointError) as err:
        load(path)
    refused(err, path, name, "[56, 32]", "[64, 32]")


def test_mamba2_special_floats_and_inert_fields(copy):
    """transformers 5 writes inf as {"__float__": "Infinity"}, older versions as the bare Infinity that Python's json
    reads; both mean the default limit (no clamp). time_step_rank and the initialisation ranges are inert (no
    computation of Mamba-2 reads them). Control: a limit that binds changes the logits (the fixture's checks fail)."""
    path = copy("mamba2-groups-chunk4")
    assert load(path).config.time_step_limit == (0.0, float("inf"))  # the {"__float__": "Infinity"} spelling
    raw = open(os.path.join(path, "config.json")).read()
    cfg = json.loads(raw)
    cfg["time_step_limit"] = [0.0, float("inf")]
    open(os.path.join(path, "config.json"), "w").write(json.dumps(cfg))  # writes the bare Infinity
    assert "Infinity" in open(os.path.join(path, "config.json")).read()
    edit_config(path, time_step_rank=99, time_step_min=0.5, time_step_floor=0.2, rescale_prenorm_residual=True)
    assert deviations(load(path), "mamba2-groups-chunk4") == []
    edit_config(path, time_step_limit=[0.0, 0.01])
    assert deviations(load(path), "mamba2-groups-chunk4") != []
