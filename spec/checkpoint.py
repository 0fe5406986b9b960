"""Load a Hugging Face checkpoint folder as a ``Model``: config.json + model.safetensors (or sharded with
model.safetensors.index.json), for the architectures of spec/hf_config.py (GPT-2, the Llama-style families
including Mistral, Mamba).

    config.json        -> hf_config.read_config: architecture + Config, refusing what we do not implement
    *.safetensors      -> safetensors_io: validated, memory-mapped
    tensor names       -> hf_names: HF name and layout for each of our parameters
    stored format      -> stored: float32 used in place; bf16 / f16 / f64 kept as stored, widened on use

Memory (the point of streaming, measured in benchmarks/bench_real_sizes.py): a tensor already in our layout
(embeddings, norms, biases, GPT-2's Conv1D matrices) stays a view of the mapped file, read when used. A
transformers ``nn.Linear`` weight is stored [out, in] and ours is [in, out]: the same matmul on the transposed
view gives different bits for one token (BLAS picks another gemv kernel), so it is transposed once here, in its
stored format (a bf16 matrix stays 2 bytes a value), and the file's pages are released after each tensor. The
model therefore holds about the checkpoint's size, never a float32 copy of it.

Every expected tensor must be present with the shape the config implies, be a float type, and be finite;
a tensor the config does not use is refused (a bias with attention_bias=false would otherwise be dropped
silently and change the outputs). Pickled weights (.bin/.pt/.pth) are refused, never opened.
"""

from __future__ import annotations

import json
import os

import numpy as np

from . import gpt2, hf_names
from .errors import CheckpointError
from .hf_config import read_config
from .model import ARCHITECTURES, Config, Model
from .safetensors_io import FLOAT_DTYPES, SafetensorsFile, to_float32
from .sampler import Sampler
from .stored import ArrayLike, Scratch, float32_leaf

WEIGHTS_FILE = "model.safetensors"
INDEX_FILE = "model.safetensors.index.json"
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")
CONVERT_HINT = (
    'convert it once with: python -c "from transformers import AutoModelForCausalLM as M; '
    "M.from_pretrained('{d}').save_pretrained('{d}', safe_serialization=True)\""
)


def load_checkpoint(path: str | os.PathLike, sampler: Sampler = Sampler()) -> Model:
    """A ``Model`` from a checkpoint folder; its ``name`` is the folder's absolute path (the tokenizer is found
    there). Raises ConfigError / CheckpointError with one line naming the file, the problem and the fix."""
    folder = os.path.abspath(os.fspath(path))
    arch, cfg = read_config(os.path.join(folder, "config.json"))
    tensors = TensorSource(folder)
    params = read_params(arch, cfg, tensors)
    return Model(arch, cfg, ARCHITECTURES[arch].weights_from_dict(cfg, params), sampler, name=folder)


class TensorSource:
    """Every tensor of a checkpoint folder, by name, from one file or from the shards an index lists."""

    def __init__(self, folder: str):
        single, index = os.path.join(folder, WEIGHTS_FILE), os.path.join(folder, INDEX_FILE)
        if os.path.isfile(single):  # transformers looks for the single file first, too
            self.where = single
            f = SafetensorsFile(single)
            self.files = dict.fromkeys(f.tensors, f)
        elif os.path.isfile(index):
            self.where = index
            self.files = _open_shards(folder, index)
        else:
            raise CheckpointError(_no_weights_message(folder))

    def names(self) -> list[str]:
        return list(self.files)


def _open_shards(folder: str, index: str) -> dict[str, SafetensorsFile]:
    try:
        with open(index, encoding="utf-8") as fh:
            weight_map = json.load(fh).get("weight_map")
    except (OSError, UnicodeDecodeError, ValueError, AttributeError) as err:
        raise CheckpointError(f"{index}: not a valid index ({err}); regenerate it with save_pretrained") from None
    if not isinstance(weight_map, dict) or not all(isinstance(v, str) for v in weight_map.values()):
        raise CheckpointError(f'{index}: needs a "weight_map" object of tensor name -> shard file name')
    shards: dict[str, SafetensorsFile] = {}
    for shard in sorted(set(weight_map.values())):
        if os.path.basename(shard) != shard or shard in (".", "..") or not shard.endswith(".safetensors"):
            raise CheckpointError(f"{index}: shard {shard!r} must be a .safetensors file name inside the folder")
        if not os.path.isfile(os.path.join(folder, shard)):
            raise CheckpointError(f"{index}: lists shard {shard!r}, which is not in {folder}; copy it there")
        shards[shard] = SafetensorsFile(os.path.join(folder, shard))
    files: dict[str, SafetensorsFile] = {}
    for shard, f in shards.items():
        for name in f.tensors:  # the index and the shards must tell the same story
            if weight_map.get(name) != shard:
                raise CheckpointError(f"{f.path}: holds tensor {name!r}, which {INDEX_FILE} does not map to this shard")
            files[name] = f
    for name, shard in weight_map.items():
        if name not in files:
            raise CheckpointError(f"{index}: maps tensor {name!r} to {shard}, which does not contain it")
    return files


def _no_weights_message(folder: str) -> str:
    entries = sorted(os.listdir(folder))
    pickled = [e for e in entries if e.endswith(PICKLE_SUFFIXES) or e.endswith(".bin.index.json")]
    if pickled:
        return (
            f"{folder}: has only pickled weights ({pickled[0]}), which lmstep never opens (unpickling can run code); "
            + CONVERT_HINT.format(d=folder)
        )
    return (
        f"{folder}: has neither {WEIGHTS_FILE} nor {INDEX_FILE}; save "
        "the model with save_pretrained(safe_serialization=True)"
    )


def read_params(arch: str, cfg: Config, src: TensorSource) -> dict[str, ArrayLike]:
    """Our parameters (float32 values, our layout) from the checkpoint's tensors, every name and shape checked.
    Float32 tensors are read-only arrays; other formats are StoredArrays, widened where the model uses them."""
    family = hf_names.family(arch, cfg)
    in_file = hf_names.with_base_prefix(family, src.names())  # canonical HF name -> name in the file
    params: dict[str, ArrayLike] = {}
    used: set[str] = set()
    scratch = Scratch()  # the model's widening buffers (stored.py)
    last: tuple[str, np.ndarray] | None = None  # a fused tensor (Phi-3) is checked once for its consecutive blocks
    for ours, shape in ARCHITECTURES[arch].param_shapes(cfg).items():
        hf, layout = hf_names.hf_name(family, ours, cfg)
        if hf not in in_file:
            raise CheckpointError(
                f"{src.where}: tensor {hf!r} is missing, but config.json needs it (shape "
                f"{list(hf_names.hf_shape(shape, layout))}); the weights do not match config.json"
            )
        name = in_file[hf]
        if last is None or last[0] != hf:
            last = (hf, _checked(src, name, hf_names.hf_shape(shape, layout)))
        raw = last[1]
        f = src.files[name]
        if layout != "copy":  # a private copy in our layout (a block of rows, for a fused tensor); pages not needed
            raw = hf_names.to_ours(raw, layout)
            raw.flags.writeable = False  # ours alone: frozen in place, not copied again
            f.release(name)  # a fused tensor's next block maps its pages in again (read-only view, same bits)
        params[ours] = float32_leaf(raw, f.tensors[name].dtype, scratch)
        used.add(hf)
    tied = isinstance(cfg, gpt2.Config) or cfg.tie_word_embeddings  # untied, lm_head was read above like any parameter
    if tied and hf_names.LM_HEAD in in_file:  # a tied checkpoint may still store the (identical) output projection
        emb, head = in_file[hf_names.EMBEDDING[family]], in_file[hf_names.LM_HEAD]
        emb_file = src.files[emb]
        head_raw = _checked(src, head, emb_file.tensors[emb].shape)
        if not _same_values(
            head_raw, src.files[head].tensors[head].dtype, emb_file.raw(emb), emb_file.tensors[emb].dtype
        ):
            fix = (
                "set tie_word_embeddings to false" if arch != "gpt2" else "lmstep's GPT-2 supports tied embeddings only"
            )
            raise CheckpointError(
                f"{src.files[head].path}: {head} differs from {emb}, but config.json ties them "
                f"(tie_word_embeddings=true); {fix}"
            )
        src.files[head].release(head)
        emb_file.release(emb)
        used.add(hf_names.LM_HEAD)
    for hf in sorted(set(in_file) - used):
        if not hf_names.IGNORED[family].fullmatch(hf):
            raise CheckpointError(
                f"{src.files[in_file[hf]].path}: unexpected tensor {in_file[hf]!r}, which config.json does not use "
                "(e.g. a bias with attention_bias=false); fix config.json or remove the tensor"
            )
    return params


def _checked(src: TensorSource, name: str, shape: tuple[int, ...]) -> np.ndarray:
    """The stored data of tensor ``name`` (a read-only view of the mapped file), after checking that it is a float
    tensor of ``shape`` with no NaN or infinite value."""
    f = src.files[name]
    info = f.tensors[name]
    if info.dtype not in FLOAT_DTYPES:
        raise CheckpointError(
            f"{f.path}: tensor {name!r} has dtype {info.dtype}; weights must be F32, F16, BF16 or F64"
        )
    if info.shape != tuple(shape):
        raise CheckpointError(
            f"{f.path}: tensor {name!r} has shape {list(info.shape)}, but config.json implies {list(shape)}; "
            "the weights do not match config.json"
        )
    raw = f.raw(name)
    bad = count_nonfinite(raw, info.dtype)
    f.release(name)  # the check read every page; the model reads them again only when (and if) it uses them
    if bad:
        raise CheckpointError(f"{f.path}: tensor {name!r} has {bad} NaN or infinite values; the checkpoint is corrupt")
    return raw


# Values checked or compared per chunk, so a check never holds a widened copy of a large tensor (4 MB of float32).
CHUNK = 1 << 20


def count_nonfinite(raw: np.ndarray, fmt: str) -> int:
    """How many values of stored data ``raw`` (safetensors dtype ``fmt``) are NaN or infinite once widened to
    float32. BF16 and F16 are read from their bits (all-ones exponent); F64 counts values that overflow float32."""
    flat = raw.reshape(-1)
    bad = 0
    for i in range(0, flat.size, CHUNK):
        part = flat[i : i + CHUNK]
        if fmt in ("BF16", "F16"):
            exponent = np.uint16(0x7F80 if fmt == "BF16" else 0x7C00)
            bad += int(np.count_nonzero(part.view(np.uint16) & exponent == exponent))
        else:
            bad += part.size - int(np.count_nonzero(np.isfinite(to_float32(part, fmt))))
    return bad


def _same_values(a: np.ndarray, a_fmt: str, b: np.ndarray, b_fmt: str) -> bool:
    """Equal float32 values (as ``np.array_equal`` after widening both), compared chunk by chunk."""
    fa, fb = a.reshape(-1), b.reshape(-1)
    return fa.size == fb.size and all(
        np.array_equal(to_float32(fa[i : i + CHUNK], a_fmt), to_float32(fb[i : i + CHUNK], b_fmt))
        for i in range(0, fa.size, CHUNK)
    )
