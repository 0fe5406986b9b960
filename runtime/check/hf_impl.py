"""transformers as an implementation under check (``--impl hf`` or ``--impl hf:FOLDER``; needs the ``hf`` extra).

The checkpoint folder is loaded with ``AutoModelForCausalLM`` in float32 and driven through its own cache
(``cache=`` in transformers 5): a chunk after a cache is one forward call with that cache, exactly as a user of
transformers would continue a sequence. Handles are (position, cache) values: every call works on a deep copy
of the cache, so old handles stay valid ("immutable"). Tokens are drawn from transformers' logits by the spec's
sampler with the given rand and settings (transformers has no explicit-rand sampler). The state is exposed under
the spec's names; transformers' Mamba (and Mamba-2) conv state holds the last W inputs, the spec's the last W - 1,
so its oldest column is dropped. Its Mistral cache (``DynamicSlidingWindowLayer``) holds the spec's last W - 1
keys, except for a window of 1, where its slice ``[-W + 1:]`` keeps every key: the adapter presents the last
W - 1 rows (contract.kept_state).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import numpy as np

from lmstep.runtime.contract import kept_state
from lmstep.spec import Model, Sampler
from lmstep.spec.errors import InputError
from lmstep.spec.sampler import sample_one


class HfImpl:
    capabilities = frozenset({"fork", "state", "immutable"})

    def __init__(self, model: Model, folder: str):
        try:
            import torch
            from transformers import AutoModelForCausalLM
        except ImportError:
            raise InputError("--impl hf needs torch and transformers: pip install -e '.[hf]'") from None
        torch.set_num_threads(1)
        self.torch, self.spec_model = torch, model
        self.hf = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
        self.name, self.vocab_size = f"transformers {type(self.hf).__name__}", model.vocab_size
        if self.hf.config.vocab_size != model.vocab_size:
            raise InputError(f"hf:{folder}: vocabulary {self.hf.config.vocab_size} != the model's {model.vocab_size}")

    @classmethod
    def open(cls, model: Model, folder: str | None) -> HfImpl:
        import os

        folder = folder or model.name
        if not os.path.isdir(folder):
            raise InputError(f"hf: {folder!r} is not a checkpoint folder; use --impl hf:FOLDER or --model FOLDER")
        return cls(model, folder)

    def init(self) -> tuple[int, Any]:
        return (0, None)

    def _forward(self, handle: tuple[int, Any], tokens: Sequence[int]) -> tuple[tuple[int, Any], np.ndarray]:
        pos, cache = handle
        ids = self.torch.tensor([list(tokens)], dtype=self.torch.long)
        kwargs = {"use_cache": True}
        if cache is not None:
            kwargs["cache"] = copy.deepcopy(cache)
        with self.torch.no_grad():
            out = self.hf(ids, **kwargs)
        return (pos + len(tokens), out.cache), out.logits[0].float().numpy().astype(np.float32)

    def run(self, handle: tuple[int, Any], tokens: Sequence[int]) -> tuple[tuple[int, Any], np.ndarray]:
        return self._forward(handle, tokens)

    def decode(
        self, handle: tuple[int, Any], token: int, rand: float, sampler: Sampler | None = None
    ) -> tuple[tuple[int, Any], np.ndarray, int]:
        new, logits = self._forward(handle, [token])
        return new, logits[0], sample_one(logits[0], rand, sampler or self.spec_model.sampler)

    def fork(self, handle: tuple[int, Any]) -> tuple[int, Any]:
        return handle

    def state(self, handle: tuple[int, Any]) -> dict[str, np.ndarray]:
        pos, cache = handle
        if cache is None:
            return self.spec_model.init_state().arrays()
        out: dict[str, np.ndarray] = {}
        for i, layer in enumerate(cache.layers):
            if hasattr(layer, "keys") and not callable(layer.keys):
                out[f"past_key_values.{i}.key"] = layer.keys.numpy().astype(np.float32)
                out[f"past_key_values.{i}.value"] = layer.values.numpy().astype(np.float32)
            else:
                conv, rec = next(iter(layer.conv_states.values())), next(iter(layer.recurrent_states.values()))
                out[f"past_key_values.{i}.conv_state"] = conv.numpy()[..., 1:].astype(np.float32)
                out[f"past_key_values.{i}.recurrent_state"] = rec.numpy().astype(np.float32)
        return kept_state(self.spec_model.config, out)

    def close(self) -> None:
        pass
