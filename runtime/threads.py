"""How many threads numpy's BLAS uses under lmstep: one, unless the user chose (docs/runtime.md, "BLAS threads").

OpenBLAS starts one thread per core by default. A decode step is a chain of small matrix-vector products, so
those threads synchronise many times per token, and when another process holds a core they wait for it: on a
loaded 2-core machine a 124M GPT-2 decoded at 357 ms/token with OpenBLAS' two threads and 27 ms/token with
one (benchmarks/bench_blas_threads.py measures this every run, against the same model on one thread). Users run
checks beside other work and under pytest-xdist, so the command line, the pytest plugin and lmstep's own tests
use one BLAS thread. A user who sets a thread count (``LMSTEP_BLAS_THREADS``, or the BLAS' own
``OPENBLAS_NUM_THREADS`` / ``OMP_NUM_THREADS`` / ``MKL_NUM_THREADS``) gets exactly that.

The spec itself (numpy and attrs only) sets nothing: a library user's process keeps its own policy, and calls
:func:`apply_policy` to get lmstep's.
"""

from __future__ import annotations

import os

from lmstep.spec.errors import InputError

USER_CHOICE = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
DEFAULT = 1

_limiter = None  # the active threadpoolctl limit (kept alive: the limit lasts as long as it does)


def policy() -> int | None:
    """The BLAS thread count lmstep sets: LMSTEP_BLAS_THREADS, else 1 unless the user set the BLAS' own variable
    (then None: the BLAS already read it at load)."""
    text = os.environ.get("LMSTEP_BLAS_THREADS", "").strip()
    if text:
        if not text.isdigit() or int(text) < 1:
            raise InputError(f"LMSTEP_BLAS_THREADS must be a whole number >= 1, got {text!r}")
        return int(text)
    if any(os.environ.get(name, "").strip() for name in USER_CHOICE):
        return None
    return DEFAULT


def apply_policy() -> int | None:
    """Limit numpy's BLAS to :func:`policy` threads for the rest of the process; returns that count."""
    global _limiter
    threads = policy()
    if threads is not None:
        import numpy  # noqa: F401  (loads the BLAS: threadpoolctl limits only libraries already loaded)
        from threadpoolctl import threadpool_limits

        _limiter = threadpool_limits(limits=threads, user_api="blas")
    return threads
