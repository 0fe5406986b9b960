"""lmstep.spec: the reference specification. An LLM as a pure ``step(state, input, rand) -> (state', output)``.

    from lmstep.spec import load, rand_for
    model = load("tiny-llama", temperature=0.8, top_k=40, top_p=0.95)
    state = model.init_state()
    state, out = model.step(state, token, rand_for(seed, state.pos + 1))
    state, logits = model.prefill(state, tokens)
    logits = model.unrolled(tokens)

Depends on numpy and attrs only. See SPEC.md for the equations.
"""

from .errors import CheckpointError, ConfigError, InputError, LmstepError
from .interface import LanguageModel, generate
from .loading import BUILTIN_MODELS, load
from .model import ARCHITECTURES, Model, State, StepOutput
from .ops import NP, NumpyOps
from .rand import rand_for, splitmix64
from .sampler import Sampler, sample
from .vocabulary import Ops

__all__ = [
    "ARCHITECTURES",
    "BUILTIN_MODELS",
    "CheckpointError",
    "ConfigError",
    "InputError",
    "LanguageModel",
    "LmstepError",
    "Model",
    "NP",
    "NumpyOps",
    "Ops",
    "Sampler",
    "State",
    "StepOutput",
    "generate",
    "load",
    "rand_for",
    "sample",
    "splitmix64",
]
