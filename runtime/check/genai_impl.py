"""onnxruntime-genai as an implementation under check (``--impl genai:DIR``, or ``genai:`` to export ``--model``
first): any folder with a genai_config.json whose decoder follows lmstep's IO contract (runtime/genai.py writes one
for Llama and GPT-2 exports; genai has no model type for a plain Mamba).

A handle is one ``og.Generator`` (its own KV cache), driven through genai's generator API:

    init        a new Generator (max_length = the model's context)
    run         append_tokens(chunk); the logits of every token of the chunk are the decoder's ``logits`` output
                of that call (get_output), as genai computed them for its own sampling
    decode      append_tokens([token]), then lmstep's sampler (SPEC.md §3) on those logits with the rand: genai
                samples only inside generate_next_token, with its own RNG and settings fixed per generator
    state       the decoder's present key/value outputs (genai_config.json names them), under the spec's names

Not offered, so the laws that need them are not exercised: fork (genai copies no generator state; rewind_to only
truncates one), batch (a generator's batch is fixed and padded at creation) and immutable handles.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from lmstep.spec import Model
from lmstep.spec.errors import InputError
from lmstep.spec.sampler import Sampler, sample_one

from .impl_options import parse_options
from .protocol import ImplementationError

OPTIONS: dict[str, Any] = {}


class GenaiImpl:
    capabilities = frozenset({"state"})

    def __init__(self, model: Model, folder: str, spec_text: str):
        try:
            import onnxruntime_genai as og
        except ImportError:
            raise InputError("--impl genai needs onnxruntime-genai: pip install -e '.[genai]'") from None
        path = os.path.join(folder, "genai_config.json")
        try:
            with open(path, encoding="utf-8") as f:
                cfg = json.load(f)["model"]
            decoder = cfg["decoder"]
            self.present = (
                decoder["outputs"]["present_key_names"],
                decoder["outputs"]["present_value_names"],
            )
            self.layers = int(decoder["num_hidden_layers"])
            vocab = int(cfg["vocab_size"])
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise InputError(
                f"genai:{folder}: no usable genai_config.json ({err}); export one with lmstep export"
            ) from None
        if vocab != model.vocab_size:
            raise InputError(f"genai:{folder}: vocabulary {vocab} != the model's {model.vocab_size}")
        self.og, self.model, self.folder = og, model, folder
        try:
            self.gm = og.Model(folder)
        except Exception as err:  # genai raises RuntimeError (or its own) with the reason
            raise InputError(
                f"genai:{folder}: onnxruntime-genai cannot load it: {' '.join(str(err).split())[:300]}"
            ) from None
        self.name, self.vocab_size = f"onnxruntime-genai {spec_text}", vocab
        self.max_length = int(cfg.get("context_length") or model.context_limit or 4096)

    @classmethod
    def open(cls, spec: str, model: Model) -> GenaiImpl:
        target, _ = parse_options("genai", spec, OPTIONS)
        if not target:
            if model.arch == "mamba":
                raise InputError("genai: onnxruntime-genai has no model type for Mamba; check llama or gpt2 models")
            from lmstep.runtime.cache import cached_export

            target = str(cached_export(model))
        elif not os.path.isdir(target):
            raise InputError(f"genai:{target}: not a folder; give an exported folder (lmstep export --out DIR)")
        return cls(model, target, f"genai:{spec}")

    def init(self) -> Any:
        params = self.og.GeneratorParams(self.gm)
        params.set_search_options(max_length=self.max_length)
        return self.og.Generator(self.gm, params)

    def run(self, handle: Any, tokens: Sequence[int]) -> tuple[Any, np.ndarray]:
        try:
            handle.append_tokens(np.asarray(tokens, np.int32))
            logits = np.asarray(handle.get_output("logits"), np.float32)
        except Exception as err:  # genai's RuntimeError: past max_length, a broken graph
            raise ImplementationError(f"onnxruntime-genai: {' '.join(str(err).split())[:300]}") from None
        if logits.ndim != 3 or logits.shape[0] != 1 or logits.shape[1] != len(tokens):
            raise ImplementationError(
                f"onnxruntime-genai: logits of shape {list(logits.shape)} for {len(tokens)} tokens"
            )
        return handle, logits[0]

    def decode(
        self, handle: Any, token: int, rand: float, sampler: Sampler | None = None
    ) -> tuple[Any, np.ndarray, int]:
        handle, logits = self.run(handle, [token])
        return handle, logits[0], sample_one(logits[0], rand, sampler or self.model.sampler)

    def state(self, handle: Any) -> dict[str, np.ndarray]:
        if handle.token_count() == 0:  # nothing appended: genai has no present outputs yet
            return self.model.init_state().arrays()
        out = {}
        for i in range(self.layers):
            for kind, pattern in zip(("key", "value"), self.present):
                out[f"past_key_values.{i}.{kind}"] = np.asarray(handle.get_output(pattern % i), np.float32)
        return out

    def close(self) -> None:
        pass
