"""Every input up to the bound, through the spec's batched unrolled form: the proof that a constructed model
computes its algorithm (docs/algorithms.md), with the float32 margin of every greedy decision.

For each length n <= max_len and each of the k^n prompts x, one forward pass of ``arch.forward`` (SPEC.md §1's
unrolled form, batched over all prompts of that length) runs on ``BOS x SEP y_1 .. y_n`` where y is the
*expected* answer (teacher forcing). The logits at positions n+1 .. 2n+1 are the greedy decisions for y_1 ..
y_n, EOS. If each of them picks the expected token, greedy decoding produces exactly the expected continuation,
by induction on the output position: the prefix it conditions on at step j is the expected one, because all
earlier decisions were (and the logits at a position depend only on the tokens up to it, causality).

Three things are checked per decision:
1. the spec's float32 logits pick the expected token (margin = its logit minus the best other > 0);
2. the rounding enclosure (proofs/rounding.py, the same forward on RoundingOps) contains those float32 logits
   (a check of the enclosure itself);
3. the enclosure's lower end for the expected token lies above the upper end of every other token: then
   *every* float32 evaluation with IEEE rounding in any summation order (the recurrent form, onnxruntime,
   transformers) makes the same decision. The smallest such gap is reported as the robust margin.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from lmstep.spec.ops import NP

from .rounding import Enclosure, RoundingOps, fresh_cache

CHUNK = 256  # prompts per forward pass: small arrays stay in cache (measured: 4096 took 2x longer)


@dataclass
class Failure:
    prompt: list[int]  # the symbols x
    step: int  # which decision: 0 = y_1, n = EOS
    expected: int
    chosen: int  # the spec's float32 greedy token
    margin: float  # expected token's logit minus the best other's (float32)
    why: str  # "wrong token" | "not robust" | "enclosure misses float32"


@dataclass
class Report:
    algorithm: str
    symbols: int
    max_len: int
    prompts: int = 0
    decisions: int = 0
    min_margin: float = float("inf")  # float32 logit gap of the closest decision (spec's own evaluation)
    min_margin_prompt: list[int] = field(default_factory=list)
    min_robust: float = float("inf")  # lower end of the expected logit minus upper end of the best other
    max_error: float = 0.0  # the largest enclosure radius of a decision's logits (the float32 error bound)
    max_logit: float = 0.0  # the largest |logit|, for relative numbers
    seconds: float = 0.0
    robust_checked: bool = False  # the enclosure pass ran (items 2 and 3 of the module docstring)
    failures: list[Failure] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures and self.prompts > 0

    def summary(self) -> str:
        head = (
            f"{self.algorithm}: {self.prompts} prompts (lengths 0..{self.max_len}, {self.symbols} symbols), "
            f"{self.decisions} greedy decisions in {self.seconds:.1f} s"
        )
        if self.failures:
            f = self.failures[0]
            return (
                f"{head}; {len(self.failures)} failed, first: prompt {f.prompt} step {f.step}: expected "
                f"{f.expected}, {f.why} (chose {f.chosen}, margin {f.margin:.3g})"
            )
        text = f"{head}; all correct. Min float32 margin {self.min_margin:.4g} (prompt {self.min_margin_prompt})"
        if self.robust_checked:
            text += f", float32 error bound <= {self.max_error:.3g}, robust margin >= {self.min_robust:.4g}"
        return text + f"; max |logit| {self.max_logit:.3g}"


def prompts_of_length(k: int, n: int) -> np.ndarray:
    """All k^n prompts of n symbols, [k^n, n] int64, in lexicographic order."""
    if n == 0:
        return np.zeros((1, 0), np.int64)
    return np.array(list(itertools.product(range(k), repeat=n)), np.int64)


def check(algo: Any, max_len: int | None = None, *, robust: bool = True, stop_after: int | None = None) -> Report:
    """Run every prompt of 0..max_len symbols (default: the algorithm's own bound) through ``algo.model``.

    ``robust=False`` skips the enclosure pass (items 2 and 3 of the module docstring). ``stop_after``: return
    once that many failures are found (a mutant needs one counterexample, not all of them)."""
    start = time.perf_counter()
    bound = algo.max_len if max_len is None else max_len
    report = Report(algo.name, algo.symbols, bound, robust_checked=robust)
    for n in range(bound + 1):
        xs = prompts_of_length(algo.symbols, n)
        for lo in range(0, len(xs), CHUNK):
            _check_batch(algo, xs[lo : lo + CHUNK], report, robust)
            if stop_after is not None and len(report.failures) >= stop_after:
                report.seconds = time.perf_counter() - start
                return report
    report.seconds = time.perf_counter() - start
    return report


def teacher_forced(algo: Any, xs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Token rows ``BOS x SEP y`` [B, 2n+2] and the expected decisions ``y EOS`` [B, n+1]."""
    ys = np.array([algo.expected(list(row)) for row in xs.tolist()], np.int64).reshape(len(xs), -1)
    b = len(xs)
    col = lambda t: np.full((b, 1), t, np.int64)  # noqa: E731
    tokens = np.concatenate([col(algo.bos), xs, col(algo.sep), ys], axis=1)
    return tokens, np.concatenate([ys, col(algo.eos)], axis=1)


def _check_batch(algo: Any, xs: np.ndarray, report: Report, robust: bool) -> None:
    model = algo.model
    module, cfg, w = model.module, model.config, model.weights
    b, n = xs.shape
    tokens, want = teacher_forced(algo, xs)
    positions = np.broadcast_to(np.arange(tokens.shape[1], dtype=np.int64), tokens.shape)
    logits, _ = module.forward(NP, cfg, w, tokens, positions, module.empty_cache(cfg, b))
    z = logits[:, n + 1 :, :]  # [B, n+1, V]: the decisions at SEP and after each output token
    report.prompts += b
    report.decisions += b * (n + 1)
    report.max_logit = max(report.max_logit, float(np.max(np.abs(z))))
    target = np.take_along_axis(z, want[..., None], axis=-1)[..., 0]
    others = np.where(np.arange(z.shape[-1]) == want[..., None], -np.inf, z)
    margin = target - others.max(axis=-1)  # float32 - float32: exact in float64 below 2^24 scale differences
    chosen = z.argmax(axis=-1)
    where = np.unravel_index(int(np.argmin(margin)), margin.shape)
    if float(margin[where]) < report.min_margin:
        report.min_margin = float(margin[where])
        report.min_margin_prompt = xs[where[0]].tolist()
    bad = {(int(i), int(j)): "wrong token" for i, j in zip(*np.nonzero(margin <= 0))}
    if robust:
        enc: Enclosure = module.forward(RoundingOps(), cfg, w, tokens, positions, fresh_cache(cfg.n_layer))[0]
        lo, hi = enc.lo[:, n + 1 :, :], enc.hi[:, n + 1 :, :]
        report.max_error = max(report.max_error, float(np.max(enc.rad[:, n + 1 :, :])))
        lo_t = np.take_along_axis(lo, want[..., None], axis=-1)[..., 0]
        hi_o = np.where(np.arange(z.shape[-1]) == want[..., None], -np.inf, hi).max(axis=-1)
        gap = lo_t - hi_o
        report.min_robust = min(report.min_robust, float(gap.min()))
        for i, j in zip(*np.nonzero(gap <= 0)):
            bad.setdefault((int(i), int(j)), "not robust")
        inside = ((lo <= z) & (z <= hi)).all(axis=-1)
        for i, j in zip(*np.nonzero(~inside)):
            bad.setdefault((int(i), int(j)), "enclosure misses float32")
    for (i, j), why in sorted(bad.items()):
        report.failures.append(Failure(xs[i].tolist(), j, int(want[i, j]), int(chosen[i, j]), float(margin[i, j]), why))
