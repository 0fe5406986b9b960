"""The onnxruntime-backed model: the spec's interface (lmstep.spec.interface.LanguageModel: init_state / step /
prefill / unrolled / sample / generate) over an exported folder. States are immutable values that hold OrtValues;
they stay on the device between calls.

    model = OnnxModel.open("out/tiny-llama", provider="cpu", temperature=0.8)
    state = model.init_state()
    state, out = model.step(state, token, rand)        # step.onnx: decode + sampler in one graph
    state, logits = model.prefill(state, tokens)       # model.onnx: the unrolled form
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs
import numpy as np
import onnxruntime as ort

from lmstep.spec.arrays import frozen_array
from lmstep.spec.errors import InputError
from lmstep.spec.interface import check_steps, check_tokens, generate
from lmstep.spec.model import State, StepOutput
from lmstep.spec.rand import rand_for
from lmstep.spec.sampler import Sampler, check_rand, sample_one

from . import contract as io
from . import mamba_scan
from .folder import STEP_FILE, UNROLLED_FILE, config_from_manifest, read_manifest
from .greedy import greedy_step
from .onnx_safety import verify_graph_file
from .session import GraphRunner, make_session, resolve_provider
from .weights import SharedWeights, bytes_needed, check_fits


@attrs.frozen(eq=False)
class OnnxState:
    """``pos`` tokens consumed and the state tensors as OrtValues, named as the graphs' past_key_values.* inputs.

    Never written after creation: every call binds fresh (or private) output buffers, so an old state can be
    stepped again, forked or compared, as the spec's State can."""

    arch: str
    pos: int
    values: dict[str, ort.OrtValue] = attrs.field(repr=False)

    def arrays(self) -> dict[str, np.ndarray]:
        """Host copies named like ``lmstep.spec.State.arrays()``."""
        return {name: v.numpy() for name, v in self.values.items()}

    # The spec's digest, which reads only arch, pos and arrays(): equal bits give equal digests.
    digest = State.digest

    def __eq__(self, other: object) -> bool:
        """Equal arch, pos and bits of every state tensor (as the spec's State)."""
        if not isinstance(other, OnnxState) or (self.arch, self.pos) != (other.arch, other.pos):
            return False
        a, b = self.arrays(), other.arrays()
        return a.keys() == b.keys() and all(a[k].shape == b[k].shape and a[k].tobytes() == b[k].tobytes() for k in a)

    def __repr__(self) -> str:
        return f"OnnxState(arch={self.arch!r}, pos={self.pos}, digest={self.digest()})"


class OnnxModel:
    """An exported model run by onnxruntime, with the interface of ``lmstep.spec.Model`` (LanguageModel)."""

    arch: str
    name: str
    sampler: Sampler

    def __init__(
        self, folder: str | os.PathLike, provider: str = "auto", sampler: Sampler = Sampler(), threads: int = 1
    ):
        self.folder = Path(folder)
        m = read_manifest(self.folder)
        self.arch = m["arch"]
        self.config = config_from_manifest(m)
        self.name = m.get("name") or self.folder.name
        self._weights_digest: str = m.get("weights_sha256", "")
        self.sampler = sampler
        self.threads = threads
        self.provider, self.provider_note = resolve_provider(provider)
        files = (STEP_FILE, UNROLLED_FILE)
        protos = [  # checked before onnxruntime reads a byte
            verify_graph_file(self.folder, file, self.arch, self.config, file == STEP_FILE) for file in files
        ]
        # One read-only map of the weights for both sessions (weights.py); kept alive as long as they are.
        self._weights = SharedWeights(self.folder, protos)
        check_fits(
            bytes_needed(protos, self._weights),
            f"running {self.name} on onnxruntime",
            "close other programs, or use the spec (without --runtime onnx), which keeps bf16 weights as stored",
        )
        self._step, self._unrolled = (self._runner(file, proto, threads) for file, proto in zip(files, protos))
        self._step_proto, self._threads = protos[0], threads
        self._greedy: dict[str, GraphRunner | None] = {}  # opened on first greedy use, shared by with_sampler copies
        self._set_sampler_arrays()

    def _runner(self, file: str, proto: Any, threads: int, changed: bool = False) -> GraphRunner:
        path = self.folder / file
        if self.provider != "cpu":  # device memory: onnxruntime copies the weights there anyway
            graph = proto.SerializeToString() if changed else None
            session = make_session(path, self.provider, threads, self._weights.for_graph(proto), graph)
            return GraphRunner(session, self.provider)
        graph, initializers, bound = self._weights.session_graph(proto, path, changed)
        session = make_session(path, self.provider, threads, initializers, graph if isinstance(graph, bytes) else None)
        return GraphRunner(session, self.provider, bound)

    def _step_runner(self) -> GraphRunner:
        """The step graph to run for these sampler settings: for temperature 0, the graph decided for greedy
        sampling (greedy.py: the same token, without sorting the vocabulary), opened on first use."""
        if self.sampler.temperature != 0:
            return self._step
        if "runner" not in self._greedy:
            proto = greedy_step(self._step_proto)
            self._greedy["runner"] = None if proto is None else self._runner(STEP_FILE, proto, self._threads, True)
        return self._greedy["runner"] or self._step

    @classmethod
    def open(cls, folder: str | os.PathLike, provider: str = "auto", threads: int = 1, **sampler: Any) -> OnnxModel:
        return cls(folder, provider, Sampler(**sampler), threads)

    def _set_sampler_arrays(self) -> None:
        self._sampler_feeds = io.sampler_feeds(self.sampler)

    # -- the spec's Model API -----------------------------------------------------------------------------
    def weights_digest(self) -> str:
        """The exported model's ``lmstep.spec.Model.weights_digest()``, recorded in the manifest at export."""
        return self._weights_digest

    @property
    def vocab_size(self) -> int:
        return self.config.vocab_size

    @property
    def context_limit(self) -> int | None:
        return self.config.context_limit

    def with_sampler(self, **settings: float) -> OnnxModel:
        """The same sessions with other sampler settings (settings are graph inputs, not part of the graph)."""
        new = object.__new__(OnnxModel)
        new.__dict__ |= self.__dict__
        new.sampler = attrs.evolve(self.sampler, **settings)
        new._set_sampler_arrays()
        return new

    def init_state(self) -> OnnxState:
        device = self._step.device
        values = {
            name: ort.OrtValue.ortvalue_from_numpy(a, device, 0)
            for name, a in io.empty_state(self.arch, self.config).items()
        }
        return OnnxState(self.arch, 0, values)

    def step(self, state: OnnxState, token: int, rand: float) -> tuple[OnnxState, StepOutput]:
        """Consume ``token`` at ``state.pos`` and sample the next one with ``rand``, in one call of step.onnx."""
        self._check_state(state)
        token = self._check_tokens([token], state.pos)[0]
        rand = check_rand(rand)
        out = self._step_runner().run(
            self._step_feeds(token, state.pos, rand), state.values, host_outputs=("logits", io.TOKEN_OUTPUT)
        )
        new = OnnxState(self.arch, state.pos + 1, {name: out[io.present_of(name)] for name in state.values})
        return new, StepOutput(out["logits"].numpy()[0, 0], int(out[io.TOKEN_OUTPUT].numpy()[0]))

    def prefill(self, state: OnnxState, tokens: Sequence[int]) -> tuple[OnnxState, np.ndarray]:
        """Consume ``tokens`` after ``state`` in one call of model.onnx -> (state', logits [len, V] float32)."""
        self._check_state(state)
        ids = np.array(self._check_tokens(tokens, state.pos), np.int64)[None, :]
        limit = mamba_scan.MAX_UNROLLED_LEN
        if self.arch == "mamba" and ids.shape[1] > limit:
            # The graph's scan is built for up to `limit` tokens: longer prompts run as chunks, the state carried
            # (the same result as one call, within FORMS: any prefill split is, by the spec's split law).
            parts = []
            for start in range(0, ids.shape[1], limit):
                state, part = self.prefill(state, ids[0, start : start + limit].tolist())
                parts.append(part)
            return state, frozen_array(np.concatenate(parts), np.float32)
        out = self._unrolled.run(self._contract_feeds(ids, state.pos), state.values, host_outputs=("logits",))
        values = {name: out[io.present_of(name)] for name in state.values}
        if io.kept_rows(self.config) is not None:  # model.onnx presents [past; new] whole (genai's contract)
            values = self._kept(values)
        new = OnnxState(self.arch, state.pos + ids.shape[1], values)
        logits = out["logits"].numpy()[0]  # a fresh host copy, ours alone: frozen in place, not copied again
        logits.flags.writeable = False
        return new, logits

    def _kept(self, values: dict[str, ort.OrtValue]) -> dict[str, ort.OrtValue]:
        """A sliding-window state: the last W - 1 rows of model.onnx's presents (contract.kept_state), copied once
        through the host: a prefill's present holds the whole chunk, the state keeps W - 1 rows of it."""
        kept = io.kept_state(self.config, {name: v.numpy() for name, v in values.items()})
        out = {}
        for name, a in kept.items():  # an OrtValue that owns its buffer (ortvalue_from_numpy would borrow `a`'s)
            out[name] = ort.OrtValue.ortvalue_from_shape_and_type(a.shape, np.float32, self._step.device, 0)
            out[name].update_inplace(np.ascontiguousarray(a))
        return out

    def unrolled(self, tokens: Sequence[int]) -> np.ndarray:
        return self.prefill(self.init_state(), tokens)[1]

    def sample(self, logits: np.ndarray, rand: float) -> int:
        """The sampler alone on given logits: the spec's numpy sampler (the graphs apply the same function)."""
        return sample_one(np.asarray(logits, np.float32), rand, self.sampler)

    def generate(self, prompt: Sequence[int], steps: int, seed: int = 0) -> list[int]:
        """``steps`` tokens after ``prompt``, the token at position p drawn with ``rand_for(seed, p)``: the spec's
        :func:`lmstep.spec.interface.generate` (one prefill, the first token sampled from its last logits, then
        :meth:`generate_from`)."""
        return generate(self, prompt, steps, seed)

    # -- the decode loop: state private to it, so fixed-shape states use two buffers in turn ----------------
    def generate_from(self, state: OnnxState, token: int, steps: int, seed: int) -> list[int]:
        """The ``steps`` tokens after consuming ``token`` at ``state.pos``: equal to repeated :meth:`step`
        (lmstep.spec.interface.step_loop; tests/test_runtime_ort.py checks), without the per-step host copies of
        logits and state."""
        self._check_state(state)
        check_steps(steps)
        if steps == 0:
            return []
        self._check_tokens([token] * steps, state.pos)  # token is valid and every step fits the context
        values, pos, out = state.values, state.pos, []
        # Fixed-shape states (Mamba, Mamba-2) are written into two private buffer sets in turn: step i reads what step
        # i-1 wrote (the caller's state at i = 0) and writes set i % 2, so no buffer is ever bound as both input
        # and output and the caller's state is never written. KV caches grow by one row per step, so
        # onnxruntime allocates each present instead (the old past is released, not copied on the host).
        sets = [self._private_buffers(values) for _ in range(2)] if self.arch in io.RECURRENT else None
        runner = self._step_runner()
        for i in range(steps):
            result = runner.run(
                self._step_feeds(token, pos, rand_for(seed, pos + 1)),
                values,
                into=sets[i % 2] if sets else None,
                host_outputs=(io.TOKEN_OUTPUT,),
            )
            values, pos = {name: result[io.present_of(name)] for name in values}, pos + 1
            token = int(result[io.TOKEN_OUTPUT].numpy()[0])
            out.append(token)
        return out

    def _private_buffers(self, values: dict[str, ort.OrtValue]) -> dict[str, ort.OrtValue]:
        """Output buffers shaped like ``values``, keyed by the present.* names they receive."""
        return {
            io.present_of(name): ort.OrtValue.ortvalue_from_shape_and_type(v.shape(), np.float32, self._step.device, 0)
            for name, v in values.items()
        }

    # -- feeds ----------------------------------------------------------------------------------------------
    def _contract_feeds(self, ids: np.ndarray, pos: int) -> dict[str, np.ndarray]:
        return io.contract_feeds(self.arch, ids, pos)

    def _step_feeds(self, token: int, pos: int, rand: float) -> dict[str, np.ndarray]:
        feeds = self._contract_feeds(np.array([[token]], np.int64), pos)
        feeds["rand"] = np.array([rand], np.float32)
        return feeds | self._sampler_feeds

    # -- input checks: the spec's, one clear line each ------------------------------------------------------
    def _check_state(self, state: Any) -> None:
        if not isinstance(state, OnnxState) or state.arch != self.arch:
            raise InputError(f"state must be an OnnxState of this {self.arch} model; get one from model.init_state()")
        if state.values.keys() != io.state_shapes(self.arch, self.config).keys():
            raise InputError("state has different tensors than this model's; use model.init_state()")

    def _check_tokens(self, tokens: Sequence[int], pos: int) -> list[int]:
        return check_tokens(tokens, pos, self.vocab_size, self.context_limit)

    def __repr__(self) -> str:
        return f"OnnxModel({self.name!r}, arch={self.arch!r}, provider={self.provider!r}, folder={str(self.folder)!r})"
