"""llama-cpp-python's OpenAI-compatible server on 127.0.0.1 for a model, to check it with ``--impl openai:``
(tests/test_check_openai.py, benchmarks/engine_matrix.py). That server takes text prompts only, so the model is
written with the id-spelled vocabulary (ggufio/vocab.py) and checked with ``vocab=spelled``.

    with serve(model, folder) as url:
        report = check(model, open_impl(f"openai:{url} vocab=spelled", model))
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from lmstep.spec import Model
from lmstep.spec.errors import InputError


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def serve(model: Model, folder: Path, *, n_ctx: int = 2048, ready_seconds: float = 90.0) -> Iterator[str]:
    """Export ``model`` into ``folder``, start the server on a free port (F32 KV cache, one thread, no flash
    attention), yield its URL once /v1/models answers, and stop it afterwards."""
    from lmstep.runtime.ggufio import write_gguf

    try:
        import llama_cpp.server  # noqa: F401 - only to fail early with the install hint
    except ImportError:
        raise InputError("llama-cpp-python's server is not installed: pip install -e '.[llamacpp]'") from None
    gguf = folder / f"{model.arch}-ids.gguf"
    write_gguf(model, gguf, vocab="ids", force=True)
    port = free_port()
    args = ["--model", str(gguf), "--host", "127.0.0.1", "--port", str(port), "--n_ctx", str(n_ctx)]
    args += ["--n_threads", "1", "--n_threads_batch", "1", "--type_k", "0", "--type_v", "0"]
    args += ["--flash_attn", "false", "--verbose", "false"]
    log_path = folder / f"{model.arch}-server.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen([sys.executable, "-m", "llama_cpp.server", *args], stdout=log, stderr=log)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait(url, proc, ready_seconds, log_path)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _wait(url: str, proc: subprocess.Popen, seconds: float, log_path: Path) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = log_path.read_text(errors="replace").strip().splitlines()[-3:]
            raise InputError(f"llama-cpp-python's server exited ({proc.returncode}): {' | '.join(tail)}")
        try:
            with urllib.request.urlopen(url + "/v1/models", timeout=2) as reply:
                if reply.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise InputError(f"llama-cpp-python's server did not answer within {seconds:g} s")
