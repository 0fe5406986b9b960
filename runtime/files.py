"""Writing result files: atomically (temp file + rename), and never over an existing file without --force."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from lmstep.spec.errors import InputError


def check_writable(path: str | os.PathLike, force: bool = False) -> Path:
    """Fail early (before long work) if ``path`` cannot be written: it exists without ``force``, or no folder."""
    target = Path(path)
    if target.exists() and not force:
        raise InputError(f"{target} exists; pass --force to overwrite it")
    if not target.parent.is_dir():
        raise InputError(f"cannot write {target}: folder {target.parent} does not exist")
    return target


def write_atomic(path: str | os.PathLike, text: str, force: bool = False) -> Path:
    """Write ``text`` to ``path`` so a reader sees the old file or the whole new one, never a part.

    Without ``force`` an existing file is an error; the no-clobber check is the link itself (os.link fails if
    the name exists), so a file created meanwhile by someone else is not overwritten either.
    """
    target = check_writable(path, force)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        if force:
            os.replace(tmp, target)
        else:
            try:
                os.link(tmp, target)
            except FileExistsError:
                raise InputError(f"{target} exists; pass --force to overwrite it") from None
            except OSError:  # a filesystem without hard links: the exists() check above is all we have
                os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return target
