"""Build the checkpoint fixtures in tests/fixtures/hf/ and record what transformers computes for them.

    pip install -e '.[hf]'                 # torch==2.13.0, transformers, safetensors
    python tools/make_fixtures.py          # rewrites tests/fixtures/hf/
    python tools/make_fixtures.py NAME ..  # rewrites only these fixtures (the others keep their recorded bytes)

Each fixture is a small randomly initialised transformers model (tools/hf_random.py), saved with
``save_pretrained`` as a checkpoint folder (config.json + model.safetensors, or shards + index), plus:
- expected.json: the token sequences, the greedy prompts and transformers' greedy continuations
  (``generate(do_sample=False)``), the versions of transformers and torch, and the attention implementation;
- expected.safetensors: transformers' float32 logits, ``logits.{i}`` [len, V] for sequence i (one forward
  pass), and ``decode_logits.{j}`` [steps, V] for greedy prompt j (the scores ``generate`` computed step by
  step with its cache; without it where a fixture says ``"cache": False``, recorded as ``greedy_cache``).
The reference logits always come from the checkpoint as saved, reloaded in float32, so a bfloat16 or float16
fixture is compared on exactly the weights lmstep reads. The tests (tests/test_checkpoints.py) need no torch.
"""

from __future__ import annotations

import json
import os
import shutil
import sys

import numpy as np
import torch
import transformers
from safetensors.numpy import save_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from hf_random import build  # noqa: E402

ROOT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests", "fixtures", "hf")
STEPS = 12  # greedy tokens per prompt
SEQ_LENS = (1, 6, 17)  # one token, a short and a longer sequence (17: not a power of two, for Mamba's scan)

# name -> (architecture, config, how it is saved). Several configs per architecture, each exercising fields
# that change the math; one bfloat16, one float16, two sharded, one with a tokenizer.
FIXTURES: dict[str, tuple[str, dict, dict]] = {
    "gpt2-base": ("gpt2", dict(vocab_size=0, n_embd=32, n_layer=2, n_head=4, n_positions=64), {"tokenizer": True}),
    "gpt2-ninner-bf16": (
        "gpt2",
        dict(
            vocab_size=80,
            n_embd=24,
            n_layer=3,
            n_head=2,
            n_positions=48,
            n_inner=40,
            activation_function="gelu_pytorch_tanh",
            layer_norm_epsilon=1e-3,
        ),
        {"dtype": torch.bfloat16},
    ),
    "llama-gqa-theta-sharded": (
        "llama",
        dict(
            vocab_size=72,
            hidden_size=32,
            intermediate_size=56,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            rope_theta=500000.0,
            rms_norm_eps=1e-5,
            max_position_embeddings=64,
        ),
        {"max_shard_size": 24_000},
    ),
    "llama-mha-tied": (
        "llama",
        dict(
            vocab_size=64,
            hidden_size=32,
            intermediate_size=48,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=4,
            tie_word_embeddings=True,
            max_position_embeddings=64,
        ),
        {},
    ),
    "llama-mqa-headdim-bias-bf16": (
        "llama",
        dict(
            vocab_size=70,
            hidden_size=32,
            intermediate_size=40,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=1,
            head_dim=12,
            attention_bias=True,
            mlp_bias=True,
            rope_theta=100.0,
            rms_norm_eps=1e-4,
            max_position_embeddings=64,
        ),
        {"dtype": torch.bfloat16},
    ),
    "mamba-base": (
        "mamba",
        dict(vocab_size=64, hidden_size=32, state_size=8, num_hidden_layers=2, expand=2, conv_kernel=4),
        {},
    ),
    "mamba-bias-rank-f16-sharded": (
        "mamba",
        dict(
            vocab_size=60,
            hidden_size=24,
            state_size=4,
            num_hidden_layers=2,
            expand=3,
            conv_kernel=3,
            time_step_rank=5,
            use_bias=True,
            use_conv_bias=False,
            tie_word_embeddings=False,
            layer_norm_epsilon=1e-4,
        ),
        {"dtype": torch.float16, "max_shard_size": 20_000},
    ),
    # The Llama-style families (SPEC.md §5). Llama 3.x RoPE past the original context: head_dim 16 and theta 100
    # give wavelengths 6.3 (< 16/2: kept), 11.2 (between: interpolated) and 19.9 .. 353 (> 16/1: divided by 4),
    # and the 17-token sequence and the greedy continuations run past original_max_position_embeddings = 16.
    "llama3-rope-gqa": (
        "llama",
        dict(
            vocab_size=64,
            hidden_size=32,
            intermediate_size=48,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            head_dim=16,
            max_position_embeddings=64,
            rope_parameters=dict(
                rope_type="llama3",
                rope_theta=100.0,
                factor=4.0,
                low_freq_factor=1.0,
                high_freq_factor=2.0,
                original_max_position_embeddings=16,
            ),
        ),
        {},
    ),
    "llama-linear-rope-mqa-f16": (
        "llama",
        dict(
            vocab_size=48,
            hidden_size=24,
            intermediate_size=40,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=1,
            max_position_embeddings=64,
            rope_parameters=dict(rope_type="linear", rope_theta=1000.0, factor=2.5),
        ),
        {"dtype": torch.float16},
    ),
    # Qwen2: layer 1 slides a window of 64 >= max_position_embeddings, which lmstep accepts as the same math.
    "qwen2-gqa-window-sharded": (
        "qwen2",
        dict(
            vocab_size=64,
            hidden_size=32,
            intermediate_size=48,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            max_position_embeddings=64,
            use_sliding_window=True,
            sliding_window=64,
            max_window_layers=1,
            rope_parameters=dict(rope_type="default", rope_theta=1e6),
        ),
        {"max_shard_size": 20_000},
    ),
    "qwen2-mqa-tied-linear-bf16": (
        "qwen2",
        dict(
            vocab_size=56,
            hidden_size=24,
            intermediate_size=40,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=1,
            max_position_embeddings=48,
            tie_word_embeddings=True,
            rope_parameters=dict(rope_type="linear", rope_theta=10000.0, factor=2.0),
        ),
        {"dtype": torch.bfloat16},
    ),
    "qwen3-gqa-headdim": (
        "qwen3",
        dict(
            vocab_size=64,
            hidden_size=32,
            intermediate_size=48,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            head_dim=12,
            max_position_embeddings=64,
            rope_parameters=dict(rope_type="default", rope_theta=1e6),
        ),
        {},
    ),
    "qwen3-mqa-tied-bias-llama3-f16-sharded": (
        "qwen3",
        dict(
            vocab_size=56,
            hidden_size=24,
            intermediate_size=40,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=1,
            head_dim=8,
            attention_bias=True,
            tie_word_embeddings=True,
            max_position_embeddings=64,
            rope_parameters=dict(
                rope_type="llama3",
                rope_theta=100.0,
                factor=8.0,
                low_freq_factor=1.0,
                high_freq_factor=4.0,
                original_max_position_embeddings=32,
            ),
        ),
        {"dtype": torch.float16, "max_shard_size": 16_000},
    ),
    # Gemma: width 24, so sqrt(24) = 4.898979... is not exact in float32 (nor bfloat16).
    "gemma-mqa-headdim": (
        "gemma",
        dict(
            vocab_size=64,
            hidden_size=24,
            intermediate_size=40,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=1,
            head_dim=16,
            max_position_embeddings=64,
        ),
        {},
    ),
    "gemma-gqa-bias-legacy-act-bf16-sharded": (
        "gemma",
        dict(
            vocab_size=56,
            hidden_size=32,
            intermediate_size=40,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            head_dim=8,
            attention_bias=True,
            hidden_act="gelu",  # the first Gemma uploads' value, which GemmaConfig reads as the tanh GELU
            rms_norm_eps=1e-5,
            max_position_embeddings=64,
        ),
        {"dtype": torch.bfloat16, "max_shard_size": 16_000},
    ),
    "phi3-gqa": (
        "phi3",
        dict(
            vocab_size=64,
            hidden_size=32,
            intermediate_size=48,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            max_position_embeddings=64,
            original_max_position_embeddings=64,
        ),
        {},
    ),
    "phi3-partial-rotary-tied-bf16": (
        "phi3",
        dict(
            vocab_size=56,
            hidden_size=32,
            intermediate_size=40,
            num_hidden_layers=2,
            num_attention_heads=2,
            num_key_value_heads=2,
            partial_rotary_factor=0.5,
            tie_word_embeddings=True,
            max_position_embeddings=64,
            original_max_position_embeddings=64,
        ),
        {"dtype": torch.bfloat16},
    ),
    # Mamba-2: fixed seeds (not the position in this table), so adding fixtures elsewhere changes none of these.
    "mamba2-groups-chunk4": (  # 8 heads sharing B, C in 2 groups; chunks of 4 (the 6- and 17-token sequences cross)
        "mamba2",
        dict(vocab_size=64, hidden_size=32, num_heads=8, head_dim=8, state_size=8, num_hidden_layers=2, n_groups=2)
        | {"chunk_size": 4},
        {"seed": 50},
    ),
    "mamba2-tied-bias-f16-sharded": (  # one group, chunks of 5, in/out biases without a conv bias, tied, conv 3
        "mamba2",
        dict(
            vocab_size=60,
            hidden_size=24,
            num_heads=4,
            head_dim=12,
            state_size=4,
            num_hidden_layers=2,
            n_groups=1,
            chunk_size=5,
            conv_kernel=3,
            use_bias=True,
            use_conv_bias=False,
            tie_word_embeddings=True,
            layer_norm_epsilon=1e-4,
        ),
        {"seed": 51, "dtype": torch.float16, "max_shard_size": 8_000},
    ),
    # A time_step_limit that binds. transformers clamps dt in its chunked forward but not in its cached decode
    # (mamba2_selective_state_update takes no limit), so its cached generate computes another model: the greedy
    # reference is generate(use_cache=False), every step a full forward (docs/checkpoints.md).
    "mamba2-limit-groups4-bf16": (
        "mamba2",
        dict(
            vocab_size=48,
            hidden_size=16,
            num_heads=4,
            head_dim=8,
            state_size=8,
            num_hidden_layers=2,
            n_groups=4,
            chunk_size=3,
            time_step_limit=(0.0, 0.05),
        ),
        {"seed": 52, "dtype": torch.bfloat16, "cache": False},
    ),
}
# Mistral: windows shorter than the sequences (17 and 40 tokens) and than the greedy runs (up to 17 positions), so
# every comparison crosses the window; one without a window (null: full attention). "seed" fixes the weights
# whatever the fixture's place in this table; "seq_lens" replaces SEQ_LENS.
FIXTURES |= {
    "mistral-gqa-window4": (
        "mistral",
        dict(
            vocab_size=72,
            hidden_size=32,
            intermediate_size=56,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            sliding_window=4,
            max_position_embeddings=64,
        ),
        {"seed": 1501, "seq_lens": (1, 6, 17, 40)},
    ),
    "mistral-mqa-tied-headdim-window7-bf16-sharded": (
        "mistral",
        dict(
            vocab_size=64,
            hidden_size=32,
            intermediate_size=48,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=1,
            head_dim=12,
            tie_word_embeddings=True,
            sliding_window=7,
            rope_theta=500000.0,
            rms_norm_eps=1e-5,
            max_position_embeddings=64,
        ),
        {"seed": 1502, "seq_lens": (1, 6, 17, 40), "dtype": torch.bfloat16, "max_shard_size": 24_000},
    ),
    "mistral-no-window-f16": (
        "mistral",
        dict(
            vocab_size=70,
            hidden_size=24,
            intermediate_size=40,
            num_hidden_layers=3,
            num_attention_heads=2,
            num_key_value_heads=2,
            sliding_window=None,
            rms_norm_eps=1e-4,
            max_position_embeddings=64,
        ),
        {"seed": 1503, "dtype": torch.float16},
    ),
}

CORPUS = (
    "the quick brown fox jumps over the lazy dog. a step is a pure function of state, input and rand. "
    "hello world, hello state. the model is written down as an equation, and the equation is checked. "
)


def make_tokenizer():
    """A tiny BPE tokenizer (Metaspace, as SentencePiece models spell spaces) trained on CORPUS."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    alphabet = sorted(set(CORPUS.replace(" ", "\u2581")))
    tok.train_from_iterator(
        [CORPUS] * 4, trainers.BpeTrainer(vocab_size=96, special_tokens=["<unk>"], initial_alphabet=alphabet)
    )
    return tok


def main(names: list[str]) -> None:
    """``python tools/make_fixtures.py [NAME ...]``: rewrite every fixture, or only the named ones."""
    torch.set_num_threads(1)
    unknown = sorted(set(names) - set(FIXTURES))
    if unknown:
        sys.exit(f"unknown fixture {unknown[0]!r}; choose from: {', '.join(FIXTURES)}")
    if not names and os.path.isdir(ROOT):
        shutil.rmtree(ROOT)
    for index, (name, (arch, config, how)) in enumerate(FIXTURES.items()):
        if names and name not in names:
            continue
        seed = how.get("seed", index)
        folder = os.path.join(ROOT, name)
        if os.path.isdir(folder):
            shutil.rmtree(folder)
        tok = make_tokenizer() if how.get("tokenizer") else None
        if tok is not None:
            config = dict(config, vocab_size=tok.get_vocab_size())
        # No eos: generate must not stop early, and bos/eos ids must lie inside the tiny vocabularies.
        config = dict(config, bos_token_id=None, eos_token_id=None, pad_token_id=None)
        model = build(arch, 1000 + seed, **config)
        model.to(how.get("dtype", torch.float32)).save_pretrained(
            folder, max_shard_size=how.get("max_shard_size", "50GB")
        )
        os.remove(os.path.join(folder, "generation_config.json"))  # lmstep reads config.json only
        if tok is not None:
            tok.save(os.path.join(folder, "tokenizer.json"))
        record(folder, arch, config, tok, seed, how.get("seq_lens", SEQ_LENS), cache=how.get("cache", True))
        files = sorted(os.listdir(folder))
        size = sum(os.path.getsize(os.path.join(folder, f)) for f in files)
        print(f"{name:<30} {size / 1024:7.1f} KiB  {', '.join(files)}")
    total = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(ROOT) for f in fs)
    print(f"total {total / 1024:.1f} KiB")


def record(
    folder: str, arch: str, config: dict, tok, seed: int, seq_lens: tuple[int, ...] = SEQ_LENS, cache: bool = True
) -> None:
    ref = transformers.AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    vocab = ref.config.vocab_size
    rng = np.random.default_rng(seed)
    sequences = [rng.integers(0, vocab, n).tolist() for n in seq_lens]
    prompts = [sequences[1][:3], rng.integers(0, vocab, 5).tolist()]
    arrays: dict[str, np.ndarray] = {}
    with torch.no_grad():
        for i, seq in enumerate(sequences):
            arrays[f"logits.{i}"] = ref(torch.tensor([seq])).logits[0].float().numpy()
        greedy = []
        prompt_text = None
        if tok is not None:
            prompt_text = "hello state"
            prompts.append(tok.encode(prompt_text).ids)
        for j, prompt in enumerate(prompts):
            out = ref.generate(
                torch.tensor([prompt]),
                attention_mask=torch.ones(1, len(prompt), dtype=torch.long),
                max_new_tokens=STEPS,
                do_sample=False,
                eos_token_id=None,
                pad_token_id=0,
                output_logits=True,
                return_dict_in_generate=True,
                use_cache=cache,
            )
            new = out.sequences[0, len(prompt) :].tolist()
            assert len(new) == STEPS, new
            greedy.append({"prompt": prompt, "tokens": new})
            arrays[f"decode_logits.{j}"] = torch.cat(out.logits, 0).float().numpy()  # [STEPS, V]
    expected = {
        "about": "transformers' outputs for this checkpoint; written "
        "by tools/make_fixtures.py, read by tests/test_checkpoints.py",
        "architecture": arch,
        "versions": {"transformers": transformers.__version__, "torch": torch.__version__},
        "attn_implementation": getattr(ref.config, "_attn_implementation", None),
        "greedy_cache": cache,
        "sequences": sequences,
        "greedy": greedy,
    }
    if tok is not None:
        expected["prompt_text"] = prompt_text
        expected["greedy_text"] = tok.decode(greedy[-1]["prompt"] + greedy[-1]["tokens"])
    with open(os.path.join(folder, "expected.json"), "w") as fh:
        json.dump(expected, fh, indent=1)
        fh.write("\n")
    save_file(arrays, os.path.join(folder, "expected.safetensors"))


if __name__ == "__main__":
    main(sys.argv[1:])
