"""The vocabulary written into a GGUF, so that llama.cpp loads the model and can turn text into our token ids.

Three kinds (``lmstep export --format gguf --vocab model|ids``):

bytes   the built-in models' byte vocabulary (token i = byte i). Written as llama.cpp's byte-trie tokenizer (its
        "rwkv" type: each token's text is its bytes, escaped as \\xNN), which maps text to bytes exactly, never
        adds a BOS token and has no end-of-generation token, so generation never stops on a byte.
bpe     a checkpoint's tokenizer.json when it is a byte-level BPE (GPT-2, Llama 3, Qwen 2 style): tokens, merges,
        token types, BOS/EOS as the tokenizer adds them, and llama.cpp's name for its pre-tokenizer.
ids     token i spelled as one private-use Unicode character (U+F0000 + i, then U+100000 + i - 65534): any token
        sequence round-trips exactly through an API that takes and returns text, such as llama-cpp-python's
        completions server, which accepts no token-id prompts and keys its top log-probabilities by token text.
        Also the vocabulary of a checkpoint without tokenizer.json (it has no text form of its own).
"""

from __future__ import annotations

import json
import os
from typing import Any

import attrs

from lmstep.spec.errors import InputError

# llama.cpp's token types (gguf-py TokenType)
NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = 1, 2, 3, 4, 5, 6

# Private-use planes 15 and 16: 2 x 65534 characters, all printable-safe in JSON, none a prefix of another in UTF-8.
_PLANES = ((0xF0000, 65534), (0x100000, 65534))
IDS_LIMIT = sum(n for _, n in _PLANES)


def id_char(i: int) -> str:
    """The character that spells token ``i`` in the ``ids`` vocabulary."""
    for base, n in _PLANES:
        if i < n:
            return chr(base + i)
        i -= n
    raise InputError(f"token id beyond {IDS_LIMIT}: the ids vocabulary spells at most {IDS_LIMIT} tokens")


def char_id(c: str) -> int | None:
    """Inverse of :func:`id_char`; None for any other string."""
    if len(c) != 1:
        return None
    offset = 0
    for base, n in _PLANES:
        if base <= ord(c) < base + n:
            return offset + ord(c) - base
        offset += n
    return None


@attrs.frozen
class Vocab:
    kind: str  # bytes | bpe | ids
    model: str  # tokenizer.ggml.model
    tokens: list[str] = attrs.field(repr=False)
    types: list[int] = attrs.field(repr=False)
    merges: list[str] | None = attrs.field(default=None, repr=False)
    pre: str | None = None
    bos: int | None = None
    eos: int | None = None
    add_bos: bool = False
    note: str = ""  # said to the user (e.g. an unknown pre-tokenizer written as llama.cpp's default)
    scores: list[float] | None = attrs.field(default=None, repr=False)
    unk: int | None = None
    space_prefix: bool | None = None  # said to the user (e.g. an unknown pre-tokenizer written as llama.cpp's default)

    def metadata(self) -> dict[str, Any]:
        """tokenizer.ggml.* keys (without the prefix)."""
        out: dict[str, Any] = {"model": self.model, "tokens": self.tokens, "token_type": self.types}
        if self.merges is not None:
            out["merges"] = self.merges
        if self.pre is not None:
            out["pre"] = self.pre
        if self.bos is not None:
            out["bos_token_id"] = self.bos
        if self.eos is not None:
            out["eos_token_id"] = self.eos
        if self.scores is not None:
            out["scores"] = self.scores
        if self.unk is not None:
            out["unknown_token_id"] = self.unk
        if self.space_prefix is not None:
            out["add_space_prefix"] = self.space_prefix
        out["add_bos_token"] = self.add_bos
        out["add_eos_token"] = False
        return out


def byte_vocab(n: int) -> Vocab:
    if n != 256:
        raise InputError(f"a byte vocabulary has 256 tokens, this model {n}; use --vocab ids")
    return Vocab("bytes", "rwkv", [f"\\x{b:02x}" for b in range(256)], [NORMAL] * 256)


def ids_vocab(n: int) -> Vocab:
    if n > IDS_LIMIT:
        raise InputError(f"the ids vocabulary spells at most {IDS_LIMIT} tokens; this model has {n}")
    return Vocab("ids", "rwkv", [id_char(i) for i in range(n)], [NORMAL] * n)


def model_vocab(model: Any, folder: str | None) -> Vocab:
    """The model's own vocabulary: bytes for the built-ins, tokenizer.json for a checkpoint that has one, else ids
    (a checkpoint without a tokenizer has no text form to keep)."""
    if folder is None:
        return byte_vocab(model.vocab_size)
    path = os.path.join(folder, "tokenizer.json")
    if not os.path.isfile(path):
        v = ids_vocab(model.vocab_size)
        return attrs.evolve(v, note="no tokenizer.json: token i is spelled U+F0000+i (the ids vocabulary)")
    v = bpe_vocab(path, model.vocab_size)
    eos = _config_id(folder, "eos_token_id")
    return attrs.evolve(v, eos=eos) if eos is not None and eos < model.vocab_size else v


def _config_id(folder: str, key: str) -> int | None:
    """A token id from config.json (the end-of-text token llama.cpp stops generation at), if it names one."""
    try:
        with open(os.path.join(folder, "config.json"), encoding="utf-8") as f:
            value = json.load(f).get(key)
    except (OSError, ValueError, AttributeError):
        return None
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


# llama.cpp's names for the pre-tokenizer regexes it implements (llama-vocab.cpp), by the Split regex of a
# tokenizer.json; a plain ByteLevel pre-tokenizer with its own regex is GPT-2's.
_LLAMA3 = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+"
    r"|\s+(?!\S)|\s+"
)
_QWEN2 = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
PRE_BY_REGEX = {_LLAMA3: "llama-bpe", _QWEN2: "qwen2"}


def _pre_name(pre: Any) -> str | None:
    if not isinstance(pre, dict):
        return None
    if pre.get("type") == "ByteLevel" and pre.get("use_regex", True):
        return "gpt-2"
    if pre.get("type") == "Sequence":
        for p in pre.get("pretokenizers", []):
            pattern = (p.get("pattern") or {}).get("Regex") if isinstance(p, dict) else None
            if p.get("type") == "Split" and pattern in PRE_BY_REGEX:
                return PRE_BY_REGEX[pattern]
    return None


def bpe_vocab(path: str, vocab_size: int) -> Vocab:
    """A tokenizer.json BPE as llama.cpp's "gpt2" (byte-level BPE: tokens and merges) or "llama" (SentencePiece
    style, words marked with U+2581: tokens scored so that llama.cpp's highest-score-first merging applies the
    merges in their BPE rank order; byte-fallback tokens <0xNN> typed as bytes)."""
    try:
        with open(path, encoding="utf-8") as f:
            spec = json.load(f)
        from tokenizers import Tokenizer

        tok = Tokenizer.from_file(path)
    except Exception as err:  # OSError, ValueError, and tokenizers' bare Exception for malformed files
        raise InputError(f"{path}: cannot be read as a tokenizers file ({err})") from None
    model = spec.get("model") or {}
    byte_level, metaspace = _uses(spec, "ByteLevel"), _metaspace(spec)
    if model.get("type") != "BPE" or not (byte_level or metaspace):
        raise InputError(
            f"{path}: lmstep writes byte-level or SentencePiece-style BPE tokenizers to GGUF; this one is "
            f"{model.get('type')} without either; use --vocab ids"
        )
    vocab = tok.get_vocab(with_added_tokens=True)
    if max(vocab.values(), default=-1) >= vocab_size:
        raise InputError(f"{path}: token id {max(vocab.values())} is outside the model's vocabulary of {vocab_size}")
    tokens, types = [f"[PAD{i}]" for i in range(vocab_size)], [UNUSED] * vocab_size
    for text, i in vocab.items():
        tokens[i] = text
        types[i] = BYTE if metaspace and _is_byte_token(text) else NORMAL
    for added in spec.get("added_tokens") or []:
        i = added.get("id")
        if isinstance(i, int) and 0 <= i < vocab_size:
            types[i] = CONTROL if added.get("special") else USER_DEFINED
    merges = [m if isinstance(m, str) else " ".join(m) for m in model.get("merges") or []]
    with_special, plain = tok.encode("a").ids, tok.encode("a", add_special_tokens=False).ids
    add_bos = len(with_special) > len(plain) and with_special[0] != plain[0]
    bos = with_special[0] if add_bos else None
    if byte_level:
        pre = _pre_name(spec.get("pre_tokenizer"))
        note = (
            "" if pre else "pre-tokenizer not one llama.cpp names: written as its 'default' (text may split otherwise)"
        )
        return Vocab("bpe", "gpt2", tokens, types, merges, pre or "default", bos, None, add_bos, note)
    scores = [0.0] * vocab_size
    for rank, merge in enumerate(merges):
        i = vocab.get(merge.replace(" ", "", 1))
        if i is not None and scores[i] == 0.0:  # the lowest rank that makes the token
            scores[i] = -float(rank + 1)
    unk = model.get("unk_token")
    return Vocab(
        "bpe",
        "llama",
        tokens,
        types,
        None,
        None,
        bos,
        None,
        add_bos,
        scores=scores,
        unk=vocab.get(unk) if isinstance(unk, str) else None,
        space_prefix=metaspace == "prefix",
    )


def _is_byte_token(text: str) -> bool:
    return len(text) == 6 and text.startswith("<0x") and text.endswith(">")


def _uses(spec: dict[str, Any], kind: str) -> bool:
    def has(node: Any) -> bool:
        if isinstance(node, dict):
            return node.get("type") == kind or any(has(v) for v in node.values())
        if isinstance(node, list):
            return any(has(v) for v in node)
        return False

    return has(spec.get("pre_tokenizer")) or has(spec.get("decoder"))


def _metaspace(spec: dict[str, Any]) -> str | None:
    """ "prefix" when words are marked with U+2581 and a space is prepended, "plain" when marked without, else None."""

    def find(node: Any, kind: str) -> list[dict[str, Any]]:
        if isinstance(node, dict):
            found = [node] if node.get("type") == kind else []
            return found + [x for v in node.values() for x in find(v, kind)]
        if isinstance(node, list):
            return [x for v in node for x in find(v, kind)]
        return []

    meta = find(spec.get("pre_tokenizer"), "Metaspace")
    if meta:
        return (
            "plain"
            if meta[0].get("prepend_scheme") == "never" or meta[0].get("add_prefix_space") is False
            else "prefix"
        )
    norm = spec.get("normalizer")
    if any(r.get("content") == "\u2581" for r in find(norm, "Replace")):
        return "prefix" if any(p.get("prepend") == "\u2581" for p in find(norm, "Prepend")) else "plain"
    return None
