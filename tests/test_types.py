"""mypy over spec/ ([tool.mypy] in pyproject.toml: strict, so every function is annotated and the model code is
checked against the op vocabulary's Protocol, spec/vocabulary.py), with a negative control.

mypy runs in a subprocess with its cache in a temporary folder (~3-5 s cold for spec/'s 22 files; the control
then reuses the cache)."""

import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent


@pytest.fixture(scope="module")
def mypy(tmp_path_factory):
    if shutil.which("mypy") is None and not _importable("mypy"):
        pytest.skip("mypy is not installed (pip install -e '.[test]' installs the pinned version)")
    cache = tmp_path_factory.mktemp("mypy-cache")

    def run(*files: str) -> subprocess.CompletedProcess:
        args = [sys.executable, "-m", "mypy", "--config-file", str(ROOT / "pyproject.toml"), "--cache-dir", str(cache)]
        return subprocess.run([*args, *files], cwd=ROOT, capture_output=True, text=True)

    return run


def _importable(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None


def test_spec_type_checks(mypy):
    out = mypy()  # the files listed in [tool.mypy]: spec/
    assert out.returncode == 0, out.stdout + out.stderr


# Each line marked `# E: code` is a misuse the check must flag with that error code; nothing else may be flagged.
MISTYPED = """
    import numpy as np

    from spec.layers import linear, rms_norm
    from spec.ops import NP, NumpyOps
    from spec.vocabulary import Ops, T


    x = np.zeros((2, 3), np.float32)
    rms_norm(NP, x, x, eps="1e-5")  # E: arg-type
    NP.reshape(x, 6)  # E: arg-type
    linear(NP, x, x, b="bias")  # E: misc


    class WrongExp(NumpyOps):
        def exp(self, x: str) -> np.ndarray:  # E: override
            return np.exp(float(x))


    class Partial:  # an interpretation with one op
        def add(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
            return a + b


    def wrong_value(o: Ops[T], x: T) -> str:
        return o.exp(x)  # E: return-value


    def untyped(o, x):  # E: no-untyped-def
        return o.exp(x)


    fine: Ops[np.ndarray] = NumpyOps()
    partial: Ops[np.ndarray] = Partial()  # E: assignment
"""


def test_negative_control_mypy_flags_misuse_of_the_vocabulary(mypy, tmp_path):
    """A snippet misusing the spec's typed API: every marked line, and only those, is flagged."""
    src = textwrap.dedent(MISTYPED)
    (tmp_path / "mistyped.py").write_text(src)
    out = mypy(str(tmp_path / "mistyped.py"))  # linear's T cannot be both ndarray and str: "misc"
    expected = {(i, line.split("# E: ")[1].strip()) for i, line in enumerate(src.splitlines(), 1) if "# E: " in line}
    flagged = set()
    for line in out.stdout.splitlines():
        if ": error: " in line and line.startswith(str(tmp_path)):
            number = int(line.split(":")[1])
            flagged.add((number, line.rsplit("[", 1)[1].rstrip("]")))
    assert out.returncode == 1, out.stdout
    assert flagged == expected, out.stdout
