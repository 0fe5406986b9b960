"""A compiled algorithm as a checkpoint folder that transformers and lmstep load as they are.

    config.json          GPT2LMHeadModel's config (spec/hf_config.py reads it; transformers' from_pretrained too)
    model.safetensors    the float32 weights under transformers' tensor names (spec/hf_names.py)
    algorithm.json       the contract: token ids of the symbols, BOS, SEP, EOS; max_len; prompt and answer shape
    tokenizer.json       a word-level tokenizer naming the tokens (symbols by their digits, <bos>, <sep>, <eos>)

The folder is written into a temporary sibling and renamed into place: a reader never sees half a folder, and
an existing folder is only replaced with ``force`` and only if it is an earlier compiled algorithm.
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from lmstep.spec import hf_names
from lmstep.spec.errors import InputError

from . import ALGORITHMS, Algorithm, compile_algorithm

CONTRACT = "algorithm.json"
FORMAT, FORMAT_VERSION = "lmstep-algorithm", 1


def config_json(algo: Algorithm) -> dict[str, Any]:
    cfg = algo.model.config
    return {
        "architectures": ["GPT2LMHeadModel"],
        "model_type": "gpt2",
        "vocab_size": cfg.vocab_size,
        "n_embd": cfg.n_embd,
        "n_layer": cfg.n_layer,
        "n_head": cfg.n_head,
        "n_positions": cfg.n_positions,
        "n_inner": cfg.n_inner,
        "layer_norm_epsilon": cfg.layer_norm_epsilon,
        "activation_function": "gelu_new",  # the tanh approximation (SPEC.md §4), as lmstep computes it
        "tie_word_embeddings": True,
        "bos_token_id": algo.bos,
        "eos_token_id": algo.eos,  # transformers' generate stops there
        "attn_pdrop": 0.0,
        "embd_pdrop": 0.0,
        "resid_pdrop": 0.0,
        "dtype": "float32",
    }


def contract(algo: Algorithm) -> dict[str, Any]:
    example = [3, 1, 2][: algo.max_len] if algo.symbols > 3 else [0] * min(3, algo.max_len)
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "algorithm": algo.name,
        "description": ALGORITHMS[algo.name][2],
        "symbols": [str(v) for v in range(algo.symbols)],
        "symbol_ids": list(range(algo.symbols)),
        "bos": algo.bos,
        "sep": algo.sep,
        "eos": algo.eos,
        "vocab_size": algo.model.vocab_size,
        "max_len": algo.max_len,
        "prompt": "BOS x_1 .. x_n SEP: n symbol ids, 0 <= n <= max_len",
        "continuation": "greedy decoding (temperature 0) continues with y_1 .. y_n EOS",
        "example": {"prompt": algo.prompt(example), "continuation": algo.answer(example)},
        "weights_sha256": algo.model.weights_digest(),
        "residual_stream": algo.stream.names(),
        "construction": "docs/algorithms.md in the lmstep repository",
        "proof": f"lmstep compile {algo.name} ... --check proves this folder: every prompt within max_len",
    }


def tokenizer_json(algo: Algorithm) -> str:
    """A word-level tokenizers file: the symbols by their digits and <bos>, <sep>, <eos> as special tokens, split
    on whitespace, so prompts can be written as text (``--prompt "<bos> 3 1 2 <sep>"``) and the stepper and traces
    show token names instead of ids. Transformers' ``PreTrainedTokenizerFast(tokenizer_file=...)`` reads it too."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    names = [str(v) for v in range(algo.symbols)] + ["<bos>", "<sep>", "<eos>"]
    tok = Tokenizer(models.WordLevel({name: i for i, name in enumerate(names)}, unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.add_special_tokens(names[algo.symbols :])
    return tok.to_str()


def write_safetensors(path: Path, tensors: dict[str, np.ndarray]) -> None:
    """The safetensors format (8-byte little-endian header length, JSON header, raw little-endian data), F32 only;
    tensors in name order, back to back, as spec/safetensors_io.py and the safetensors library read it."""
    header: dict[str, Any] = {"__metadata__": {"format": "pt"}}  # transformers checks the format is "pt"
    blobs, offset = [], 0
    for name in sorted(tensors):
        data = np.ascontiguousarray(tensors[name], dtype="<f4").tobytes()
        header[name] = {
            "dtype": "F32",
            "shape": list(tensors[name].shape),
            "data_offsets": [offset, offset + len(data)],
        }
        blobs.append(data)
        offset += len(data)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text)
        for blob in blobs:
            f.write(blob)


def hf_tensors(algo: Algorithm) -> dict[str, np.ndarray]:
    out = {}
    for ours, array in algo.model.named_weights().items():
        name, layout = hf_names.hf_name(algo.model.arch, ours)
        out[name] = array.T if layout == "linear" else array  # GPT-2's Conv1D weights are already [in, out]
    return out


def write_folder(algo: Algorithm, out: str | os.PathLike, force: bool = False) -> Path:
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        if not force:
            raise InputError(f"{out} exists and is not empty; choose a new --out folder or pass --force to replace it")
        if not (out / CONTRACT).is_file():
            raise InputError(
                f"{out} has no {CONTRACT}: --force only replaces a compiled algorithm, never other folders"
            )
    if not out.parent.is_dir():
        raise InputError(f"cannot write {out}: folder {out.parent} does not exist; create it first")
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)  # mkdtemp's 0700 would make the folder private to us
    try:
        (tmp / "config.json").write_text(json.dumps(config_json(algo), indent=2) + "\n")
        write_safetensors(tmp / "model.safetensors", hf_tensors(algo))
        (tmp / CONTRACT).write_text(json.dumps(contract(algo), indent=2) + "\n")
        (tmp / "tokenizer.json").write_text(tokenizer_json(algo) + "\n")
        if out.exists():  # replaced only after the new one is complete; an empty folder is simply replaced
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old.", dir=out.parent))
            os.rename(out, old / "folder")
            os.rename(tmp, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def read_folder(folder: str | os.PathLike) -> Algorithm:
    """The algorithm a compiled folder computes, on the weights in that folder (loaded by lmstep's checkpoint
    reader, greedy): what ``--check`` proves is the folder, not a fresh construction."""
    from lmstep.spec import load

    path = Path(folder) / CONTRACT
    try:
        meta = json.loads(path.read_text())
    except FileNotFoundError:
        raise InputError(
            f"{folder} has no {CONTRACT}: not a compiled algorithm; write one with `lmstep compile`"
        ) from None
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise InputError(f"{path} is not valid JSON ({err}); compile the folder again") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT or meta.get("format_version") != FORMAT_VERSION:
        raise InputError(f"{path} is not a {FORMAT} v{FORMAT_VERSION} contract; compile the folder again")
    if not isinstance(meta.get("symbols"), list):
        raise InputError(f"{path}: needs a list of symbols; compile the folder again")
    fresh = compile_algorithm(meta.get("algorithm"), len(meta["symbols"]), meta.get("max_len"))
    model = load(folder)
    if model.arch != "gpt2" or model.vocab_size != fresh.model.vocab_size:
        raise InputError(f"{folder}: config.json does not fit {CONTRACT} (vocabulary {model.vocab_size})")
    return Algorithm(fresh.name, fresh.symbols, fresh.max_len, model, fresh.stream, fresh.expected)
