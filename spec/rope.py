"""RoPE frequencies (Su et al. 2021, eq. 15) and their context-extension scalings, to the bit (SPEC.md §4).

    default  inv_freq_i = 1 / theta^(2i / d)            i < d/2; d = the rotary width (all of head_dim, or part)
    linear   inv_freq_i / factor                         position interpolation (Chen et al. 2023)
    llama3   per frequency, by its wavelength 2 pi / inv_freq (Llama 3.1; Meta's reference ``apply_scaling``):
             short (< original / high_freq_factor): kept; long (> original / low_freq_factor): divided by factor;
             in between: interpolated, weight s = (original / wavelength - low) / (high - low)

These are the constants the model multiplies positions by; they are computed here once, in numpy, and enter the
model code (and the exported graph) as a constant. Every operation after the power is float32 as transformers
computes it (modeling_rope_utils.py, ``_compute_linear_scaling_rope_parameters`` and
``_compute_llama3_parameters``), with torch's rules for a Python number meeting a float32 tensor: the number is
rounded to float32 first, comparisons included; ``number / tensor`` is ``reciprocal(tensor) * number`` (torch's
``Tensor.__rtruediv__``); ``tensor / number`` is a float32 division. The power itself is evaluated in float64 by
C's ``pow`` and rounded once to float32 (the correctly rounded float32 power, up to double rounding): torch's
vectorised float32 ``pow`` is accurate to about 1 ulp but not correctly rounded, and numpy's float32 power
depends on the CPU's SIMD features, so neither can be written down for a second implementation (measured:
docs/checkpoints.md, "RoPE frequencies").
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from .llama import Config

F32 = np.float32
ROPE_TYPES = ("default", "linear", "llama3")
LLAMA3_KEYS = ("factor", "low_freq_factor", "high_freq_factor", "original_max_position_embeddings")


def rotary_dim(head_dim: int, partial_rotary_factor: float) -> int:
    """The number of leading dims of each head that RoPE rotates: int(head_dim * factor), truncated (Phi-3)."""
    return int(head_dim * partial_rotary_factor)


def base_inv_freq(dim: int, theta: float) -> np.ndarray:
    """[dim/2] float32: 1 / theta^e_i, e_i = float32(2i) / float32(dim) (a float32 division), the power in float64
    from float32(theta) and e_i, rounded once to float32; then a float32 reciprocal."""
    exponents = np.arange(0, dim, 2, dtype=np.int64).astype(F32) / F32(dim)
    base = float(F32(theta))
    powers = np.array([math.pow(base, float(e)) for e in exponents], np.float64).astype(F32)
    return (F32(1.0) / powers).astype(F32)


def linear_inv_freq(inv_freq: np.ndarray, factor: float) -> np.ndarray:
    """Position interpolation: every frequency divided by ``factor`` (float32 division)."""
    return (inv_freq / F32(factor)).astype(F32)


def llama3_inv_freq(inv_freq: np.ndarray, factor: float, low: float, high: float, original: int) -> np.ndarray:
    """Llama 3.1's frequency-dependent scaling, transformers' ``_compute_llama3_parameters`` op for op."""
    low_wavelen = F32(original / low)  # float64 quotients of the config's numbers, rounded where they meet float32
    high_wavelen = F32(original / high)
    wavelen = (F32(1.0) / inv_freq) * F32(2 * math.pi)  # 2 * math.pi / inv_freq
    scaled = np.where(wavelen > low_wavelen, inv_freq / F32(factor), inv_freq)  # long wavelengths: / factor
    smooth = ((F32(1.0) / wavelen) * F32(original) - F32(low)) / F32(high - low)  # (original / wavelen - low) / ..
    smoothed = ((F32(1.0) - smooth) * scaled) / F32(factor) + smooth * scaled
    medium = ~(wavelen < high_wavelen) & ~(wavelen > low_wavelen)
    return np.where(medium, smoothed, scaled).astype(F32)


def inv_freq(cfg: Config) -> np.ndarray:
    """The frequencies [rotary_dim / 2] float32 of a model's RoPE: its base, then its ``rope_type``'s scaling."""
    freqs = base_inv_freq(rotary_dim(cfg.head_dim, cfg.partial_rotary_factor), cfg.rope_theta)
    if cfg.rope_type == "linear" and cfg.factor is not None:
        return linear_inv_freq(freqs, cfg.factor)
    if cfg.rope_type == "llama3":
        low, high, original = cfg.low_freq_factor, cfg.high_freq_factor, cfg.original_max_position_embeddings
        if cfg.factor is not None and low is not None and high is not None and original is not None:
            return llama3_inv_freq(freqs, cfg.factor, low, high, original)
    if cfg.rope_type != "default":  # Config's validator makes this unreachable
        raise ValueError(f"rope_type {cfg.rope_type!r} lacks its parameters")
    return freqs
