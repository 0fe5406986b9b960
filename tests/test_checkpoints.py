"""Every checkpoint fixture loaded with ``load(folder)`` computes what transformers computed for it (recorded by
tools/make_fixtures.py; no torch here): logits in the unrolled and recurrent forms, and greedy tokens. Each
check has a negative control: a plausible loader bug applied to the same fixture must fail the same check."""

from __future__ import annotations

import json
import math

import attrs
import numpy as np
import pytest
from hf_fixtures import NAMES, errors, expected, folder

from lmstep.runtime.cli import main
from lmstep.spec import InputError, Model, load, safetensors_io

# Tolerance on logits, relative to the largest |logit| of the sequence (python tests/hf_fixtures.py prints the
# measured table, recorded in docs/checkpoints.md). Measured over all 7 fixtures, unrolled, recurrent and cached
# decode alike: at most 9.6e-7, i.e. ~8 float32 epsilons (1.19e-7) of the logits' scale. Both sides compute in
# float32 with different summation orders (numpy/BLAS matmuls vs torch kernels, explicit softmax vs SDPA, a
# parallel vs a sequential scan in Mamba), so each reduction may round differently by a few ulps and 2-3 layers
# compound them. 1e-5 leaves 10x headroom for other BLAS builds and CPUs; every loader bug in the negative
# controls below moves the logits by at least 0.19 of their scale (measured), four orders of magnitude beyond it.
RTOL = 1e-5


def deviations(model: Model, name: str) -> list[str]:
    """What differs from transformers on fixture ``name``: logit forms beyond RTOL and greedy mismatches."""
    meta, arrays = expected(name)
    bad = [
        f"{form} logits off by {rel:.1e} of their scale"
        for form, (_, rel) in errors(model, meta, arrays).items()
        if rel > RTOL
    ]
    for g in meta["greedy"]:
        ours = model.generate(g["prompt"], len(g["tokens"]))
        if ours != g["tokens"]:
            bad.append(f"greedy after {g['prompt']}: {ours} != {g['tokens']}")
    return bad


@pytest.mark.parametrize("name", NAMES)
def test_fixture_matches_transformers(name):
    assert deviations(load(folder(name)), name) == []


@pytest.mark.parametrize("name", NAMES)
def test_greedy_choices_are_not_near_ties(name):
    """Greedy equality is only a fair check where transformers' top two logits are further apart than the
    logits may differ (2 * RTOL of the scale, one RTOL per side). Measured minimum gap over all fixtures:
    6.4e-4 of the scale, 64x RTOL, so the greedy checks cannot flip on a rounding difference."""
    _, arrays = expected(name)
    for key, logits in arrays.items():
        if key.startswith("decode_logits"):
            assert not near_ties(logits).any(), key


def near_ties(logits: np.ndarray) -> np.ndarray:
    """Rows [steps, V] whose top two logits are within 2 * RTOL of the row's scale, max(1, max|logit|) (rel_err's)."""
    top2 = np.sort(logits, axis=-1)[:, -2:]
    return top2[:, 1] - top2[:, 0] <= 2 * RTOL * np.maximum(1.0, np.abs(logits).max(axis=-1))


def test_control_near_tie_is_flagged():
    rows = np.array([[3.0, 3.0 + 1e-5, -1.0], [3.0, 2.0, -1.0]], np.float32)
    assert near_ties(rows).tolist() == [True, False]


def test_fixtures_cover_the_issue():
    """The fixture set exercises what the issue asks for (so a regenerated set cannot silently drop a case)."""
    configs = {n: json.load(open(f"{folder(n)}/config.json")) for n in NAMES}
    arch = {n: c["model_type"] for n, c in configs.items()}
    families = ("gpt2", "llama", "mamba", "qwen2", "qwen3", "gemma", "phi3", "mistral", "mamba2")
    assert set(families) <= set(arch.values())
    assert all(sum(a == x for a in arch.values()) >= 2 for x in families)
    llama = [c for c in configs.values() if c["model_type"] == "llama"]
    assert any(c["num_key_value_heads"] < c["num_attention_heads"] for c in llama)  # GQA
    assert any(c["rope_parameters"]["rope_theta"] != 10000.0 for c in llama)
    assert any(c["head_dim"] != c["hidden_size"] // c["num_attention_heads"] for c in llama)
    assert {c["tie_word_embeddings"] for c in llama} == {True, False}
    assert any(c["attention_bias"] and c["mlp_bias"] for c in llama)
    assert any(c["n_inner"] not in (None, 4 * c["n_embd"]) for c in configs.values() if c["model_type"] == "gpt2")
    mamba = [c for c in configs.values() if c["model_type"] == "mamba"]
    assert {(c["use_bias"], c["use_conv_bias"]) for c in mamba} >= {(False, True), (True, False)}
    assert any(c["time_step_rank"] != -(-c["hidden_size"] // 16) for c in mamba)
    mistral = {n: c for n, c in configs.items() if c["model_type"] == "mistral"}
    windows = [(c["sliding_window"], max(map(len, expected(n)[0]["sequences"]))) for n, c in mistral.items()]
    assert sum(w is not None and 4 * w <= longest for w, longest in windows) >= 2  # far past the window
    assert any(w is None for w, _ in windows)  # null: full attention
    assert any(c["num_key_value_heads"] == 1 for c in mistral.values()) and any(
        1 < c["num_key_value_heads"] < c["num_attention_heads"] for c in mistral.values()
    )  # MQA and GQA
    mamba2 = [c for c in configs.values() if c["model_type"] == "mamba2"]
    assert {c["n_groups"] == 1 for c in mamba2} == {True, False}  # B, C and the gated norm shared by all heads or not
    assert len({c["chunk_size"] for c in mamba2}) >= 2 and all(c["chunk_size"] < 17 for c in mamba2)
    assert {(c["use_bias"], c["use_conv_bias"]) for c in mamba2} >= {(False, True), (True, False)}
    assert {c["tie_word_embeddings"] for c in mamba2} == {True, False}
    assert len({c["layer_norm_epsilon"] for c in mamba2}) >= 2
    assert any(c["time_step_limit"][1] != {"__float__": "Infinity"} for c in mamba2)  # a limit that binds
    dtypes = {c["dtype"] for c in configs.values()}
    assert {"float32", "bfloat16", "float16"} <= dtypes
    assert sum("-sharded" in n for n in NAMES) >= 2
    _cover_the_llama_style_families(configs)


def _cover_the_llama_style_families(configs: dict[str, dict]) -> None:
    """Issue 15: llama3 RoPE past the original context and linear RoPE; per family GQA and MQA, tied and untied
    where the family allows both, and each family's own feature in a non-trivial setting."""
    kinds = {c.get("model_type"): [] for c in configs.values()}
    for n, c in configs.items():
        kinds[c["model_type"]].append((n, c))
    rope = [(n, c["rope_parameters"]) for n, c in configs.items() if "rope_parameters" in c]
    longest = max(len(s) for n, _ in rope for s in expected(n)[0]["sequences"])
    assert any(r["rope_type"] == "llama3" and longest > r["original_max_position_embeddings"] for _, r in rope)
    assert {r["rope_type"] for n, r in rope if n.startswith(("llama", "qwen"))} >= {"default", "linear", "llama3"}
    for family in ("qwen2", "qwen3", "gemma", "phi3"):
        cs = [c for _, c in kinds[family]]
        assert any(c["num_key_value_heads"] == 1 for c in cs) or family == "phi3", family
        assert any(1 < c["num_key_value_heads"] < c["num_attention_heads"] for c in cs), family  # GQA
        assert {c["tie_word_embeddings"] for c in cs} == ({True} if family == "gemma" else {True, False}), family
    qwen2, qwen3, gemma, phi3 = ([c for _, c in kinds[f]] for f in ("qwen2", "qwen3", "gemma", "phi3"))
    assert any(c["use_sliding_window"] and c["sliding_window"] >= c["max_position_embeddings"] for c in qwen2)
    assert any(c["head_dim"] * c["num_attention_heads"] != c["hidden_size"] for c in qwen3)
    assert any(c["attention_bias"] for c in qwen3)
    assert any(c["head_dim"] * c["num_attention_heads"] != c["hidden_size"] for c in gemma)
    assert any(math.sqrt(c["hidden_size"]) != int(math.sqrt(c["hidden_size"])) for c in gemma)  # scale not exact
    assert any(c["rope_parameters"].get("partial_rotary_factor", 1.0) < 1 for c in phi3)


# -- negative controls: plausible loader bugs, each caught by the same check ----------------------------------
def _evolve_layer(model: Model, i: int, **changes) -> Model:
    layers = list(model.weights.layers)
    layers[i] = attrs.evolve(layers[i], **changes)
    return attrs.evolve(model, weights=attrs.evolve(model.weights, layers=tuple(layers)))


def _no_transpose(model: Model) -> Model:  # an nn.Linear / Conv1D weight taken without (or with a stray) transpose
    w = model.weights.layers[0]
    field = "o_proj" if model.arch == "llama" else "attn_c_proj_weight"
    return _evolve_layer(model, 0, **{field: getattr(w, field).T.copy()})


def _swap_q_k(model: Model) -> Model:  # q_proj and k_proj mixed up (same shape when kv heads == heads)
    w = model.weights.layers[1]
    return _evolve_layer(model, 1, q_proj=w.k_proj, k_proj=w.q_proj)


def _gpt2_qkv_order(model: Model) -> Model:  # c_attn split as (k, q, v) instead of (q, k, v)
    w, c = model.weights.layers[0], model.config.n_embd
    order = np.r_[c : 2 * c, 0:c, 2 * c : 3 * c]
    return _evolve_layer(model, 0, c_attn_weight=w.c_attn_weight[:, order], c_attn_bias=w.c_attn_bias[order])


def _default_rope_theta(model: Model) -> Model:  # rope_theta from rope_parameters ignored: default 10000
    return attrs.evolve(model, config=attrs.evolve(model.config, rope_theta=10000.0))


def _conv_reshaped(model: Model) -> Model:  # Conv1d [E, 1, W] reshaped to [W, E] instead of transposed
    w = model.weights.layers[0]
    k, e = w.conv1d_weight.shape  # E: Mamba's inner width, Mamba-2's conv channels (x, B and C)
    return _evolve_layer(model, 0, conv1d_weight=w.conv1d_weight.T.reshape(e, 1, k).reshape(k, e).copy())


def _dt_bias_dropped(model: Model) -> Model:  # Mamba-2's mixer.dt_bias not read (zeros)
    return _evolve_layer(model, 1, dt_bias=np.zeros_like(model.weights.layers[1].dt_bias))


def _gated_norm_from_block_norm(model: Model) -> Model:  # mixer.norm.weight mistaken for the block's norm.weight
    w = model.weights.layers[0]
    return _evolve_layer(model, 0, gated_norm=np.resize(w.norm, w.gated_norm.shape).astype(np.float32))


def _dropped_bias(model: Model) -> Model:  # a bias silently dropped (as if attention_bias were ignored)
    return _evolve_layer(model, 0, v_bias=None)


def _config(**changes):
    return lambda model: attrs.evolve(model, config=attrs.evolve(model.config, **changes))


_PLAIN_ROPE = dict(
    rope_type="default", factor=None, low_freq_factor=None, high_freq_factor=None, original_max_position_embeddings=None
)


def _gate_up_swapped(model: Model) -> Model:  # Phi-3's gate_up_proj split as [up; gate] instead of [gate; up]
    w = model.weights.layers[0]
    return _evolve_layer(model, 0, gate_proj=w.up_proj, up_proj=w.gate_proj)


def _qkv_split_as_kqv(model: Model) -> Model:  # Phi-3's qkv_proj read with k's rows first (MHA: equal blocks)
    w = model.weights.layers[1]
    return _evolve_layer(model, 1, q_proj=w.k_proj, k_proj=w.q_proj)


def _qk_norms_swapped(model: Model) -> Model:  # Qwen3's q_norm and k_norm weights exchanged
    w = model.weights.layers[0]
    return _evolve_layer(model, 0, q_norm=w.k_norm, k_norm=w.q_norm)


def _window_ignored(model: Model) -> Model:  # sliding_window not read: full attention
    return attrs.evolve(model, config=attrs.evolve(model.config, sliding_window=None))


def _window_off_by_one(model: Model) -> Model:  # the window read as W + 1 keys per query (state W, not W - 1)
    return attrs.evolve(model, config=attrs.evolve(model.config, sliding_window=model.config.sliding_window + 1))


CONTROLS = {
    "no-transpose-llama": ("llama-mha-tied", _no_transpose),
    "no-transpose-gpt2": ("gpt2-base", _no_transpose),
    "swapped-q-k": ("llama-mha-tied", _swap_q_k),
    "gpt2-qkv-order": ("gpt2-ninner-bf16", _gpt2_qkv_order),
    "wrong-rope-theta": ("llama-gqa-theta-sharded", _default_rope_theta),
    "conv-reshaped": ("mamba-base", _conv_reshaped),
    "mamba2-conv-reshaped": ("mamba2-groups-chunk4", _conv_reshaped),
    "mamba2-dt-bias-dropped": ("mamba2-tied-bias-f16-sharded", _dt_bias_dropped),
    "mamba2-gated-norm-confused": ("mamba2-limit-groups4-bf16", _gated_norm_from_block_norm),
    "dropped-bias": ("llama-mqa-headdim-bias-bf16", _dropped_bias),
    # the Llama-style families: each family's feature ignored or read wrongly by a loader
    "llama3-rope-ignored": ("llama3-rope-gqa", _config(**_PLAIN_ROPE)),
    "linear-rope-ignored": ("qwen2-mqa-tied-linear-bf16", _config(**_PLAIN_ROPE)),
    "qwen2-bias-dropped": ("qwen2-gqa-window-sharded", _dropped_bias),
    "qwen3-qk-norms-swapped": ("qwen3-gqa-headdim", _qk_norms_swapped),
    "gemma-norm-without-offset": ("gemma-mqa-headdim", _config(norm_unit_offset=False)),
    "gemma-embeddings-unscaled": ("gemma-gqa-bias-legacy-act-bf16-sharded", _config(scale_embeddings=False)),
    "gemma-geglu-read-as-swiglu": ("gemma-mqa-headdim", _config(hidden_act="silu")),
    "phi3-gate-up-swapped": ("phi3-gqa", _gate_up_swapped),
    "phi3-qkv-split-order": ("phi3-partial-rotary-tied-bf16", _qkv_split_as_kqv),
    "phi3-full-rotary": ("phi3-partial-rotary-tied-bf16", _config(partial_rotary_factor=1.0)),
    "window-ignored": ("mistral-gqa-window4", _window_ignored),
    "window-off-by-one": ("mistral-mqa-tied-headdim-window7-bf16-sharded", _window_off_by_one),
}


@pytest.mark.parametrize("control", sorted(CONTROLS))
def test_control_loader_bug_fails_the_check(control):
    name, bug = CONTROLS[control]
    found = deviations(bug(load(folder(name))), name)
    assert any("unrolled" in d for d in found) and any("recurrent" in d for d in found), found
    assert any(d.startswith("greedy") for d in found), found


def test_control_bf16_read_as_f16_fails_the_check(monkeypatch):
    """The bits of a bfloat16 checkpoint reinterpreted as float16: a dtype bug in the reader itself."""
    widen = safetensors_io.to_float32
    monkeypatch.setattr(
        safetensors_io,
        "to_float32",
        lambda a, dtype, out=None: widen(a.view(np.float16), "F16", out) if dtype == "BF16" else widen(a, dtype, out),
    )
    try:
        found = deviations(load(folder("llama-mqa-headdim-bias-bf16")), "llama-mqa-headdim-bias-bf16")
    except InputError as err:  # values out of float16's range make inf / NaN logits, which the sampler refuses
        found = [str(err)]
    assert found


# -- the CLI, through its real entry point ---------------------------------------------------------------------
@pytest.mark.parametrize(
    "name",
    [
        "gpt2-base",
        "llama-gqa-theta-sharded",
        "mamba-bias-rank-f16-sharded",
        "mistral-gqa-window4",
        "mamba2-tied-bias-f16-sharded",
    ],
)
def test_generate_tokens_json_matches_transformers_greedy(name, capsys):
    g = expected(name)[0]["greedy"][0]
    argv = [
        "generate",
        "--model",
        folder(name),
        "--tokens",
        ",".join(map(str, g["prompt"])),
        "--steps",
        str(len(g["tokens"])),
        "--json",
    ]
    assert main(argv) == 0
    assert json.loads(capsys.readouterr().out)["tokens"] == g["tokens"]


def test_generate_prompt_text_uses_the_tokenizer(capsys):
    meta = expected("gpt2-base")[0]
    g = meta["greedy"][-1]  # the prompt that make_fixtures encoded with the same tokenizer.json
    assert (
        main(["generate", "-m", folder("gpt2-base"), "--prompt", meta["prompt_text"], "--steps", str(len(g["tokens"]))])
        == 0
    )
    assert capsys.readouterr().out.strip() == meta["greedy_text"]
    assert main(["generate", "-m", folder("gpt2-base"), "--prompt", meta["prompt_text"], "--steps", "3", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["prompt_tokens"] == g["prompt"] and out["tokens"] == g["tokens"][:3]


def test_generate_sampling_flags_on_a_checkpoint(capsys):
    name = "mamba-base"
    argv = [
        "generate",
        "-m",
        folder(name),
        "--tokens",
        "1,2,3",
        "--steps",
        "9",
        "--seed",
        "5",
        "--temperature",
        "0.9",
        "--top-k",
        "20",
        "--top-p",
        "0.9",
        "--json",
    ]
    assert main(argv) == 0
    tokens = json.loads(capsys.readouterr().out)["tokens"]
    model = load(folder(name), temperature=0.9, top_k=20, top_p=0.9)
    assert tokens == model.generate([1, 2, 3], 9, seed=5) and len(tokens) == 9


def test_prompt_without_tokenizer_is_refused_in_one_line(capsys):
    assert main(["generate", "-m", folder("mamba-base"), "--prompt", "hi", "--steps", "2"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no tokenizer.json" in err and "--tokens" in err


# -- the spec's loader stands alone ------------------------------------------------------------------------------
PROBE = """
import sys
{pre}
from lmstep.spec import load
load({folder!r}).unrolled([1, 2, 3])
heavy = {{'torch', 'transformers', 'safetensors', 'tokenizers', 'ml_dtypes'}}
print(sorted({{m.split('.')[0] for m in sys.modules}} & heavy))
"""


@pytest.mark.parametrize("pre, foreign", [("", []), ("import safetensors", ["safetensors"])], ids=["spec", "control"])
def test_loading_a_checkpoint_imports_only_numpy_and_attrs(pre, foreign):
    """The spec reads safetensors itself; the control shows the probe does see a library that was imported."""
    import subprocess
    import sys

    code = PROBE.format(pre=pre, folder=folder("llama-mqa-headdim-bias-bf16"))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == repr(foreign)


def test_builtin_name_is_not_mistaken_for_a_folder(tmp_path, monkeypatch, capsys):
    """A folder called like a built-in in the working directory: the built-in (byte-level) model still runs."""
    (tmp_path / "tiny-gpt2").mkdir()
    monkeypatch.chdir(tmp_path)
    assert main(["generate", "-m", "tiny-gpt2", "--prompt", "Hi", "--steps", "2", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["prompt_tokens"] == [72, 105]
    # Control: named by its path, the same folder is taken as a checkpoint (and refused: it has no config.json).
    assert main(["generate", "-m", str(tmp_path / "tiny-gpt2"), "--tokens", "1", "--steps", "2"]) == 2
    assert "config.json: not found" in capsys.readouterr().err
