"""Errors with one-line messages that name the problem and the fix. The CLI prints ``str(err)`` and exits 2."""


class LmstepError(ValueError):
    """Base class: anything the user can fix by changing their input."""


class ConfigError(LmstepError):
    """A model configuration that is invalid or not supported."""


class InputError(LmstepError):
    """A token, position, rand, seed or sampler setting outside what the model accepts."""


class CheckpointError(LmstepError):
    """A checkpoint or file that cannot be loaded safely."""
