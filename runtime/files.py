"""Writing result files: atomically (temp file + rename), never over an existing file without --force, never into
a folder that does not exist (lmstep creates no folder trees), with the mode a new file gets from the umask."""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path

from lmstep.spec.errors import InputError


def check_writable(path: str | os.PathLike, force: bool = False) -> Path:
    """Fail early (before long work) if ``path`` cannot be written: no name, a folder, not a regular file, an
    existing file without ``force``, a missing folder, or a folder this process cannot create files in (probed
    by creating and removing a temporary file there, so /proc, read-only mounts and permissions all count)."""
    if not str(path).strip():
        raise InputError("the output file name is empty; give one, e.g. --out trace.jsonl")
    target = Path(path)
    if target.is_dir():
        raise InputError(f"{target} is a folder; give a file name, e.g. {target / 'out.json'}")
    if target.exists() and not target.is_file():
        raise InputError(f"{target} exists and is not a regular file; give another file name")
    if target.exists() and not force:
        raise InputError(f"{target} exists; pass --force to overwrite it")
    if not target.parent.is_dir():
        raise InputError(
            f"cannot write {target}: folder {target.parent} does not exist; create it first (mkdir -p {target.parent})"
        )
    try:
        fd, probe = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".probe")
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        raise InputError(f"cannot write {target}: {err.strerror or err} in folder {target.parent}") from None
    return target


def write_atomic(path: str | os.PathLike, text: str, force: bool = False) -> Path:
    """Write ``text`` to ``path`` so a reader sees the old file or the whole new one, never a part.

    Without ``force`` an existing file is an error; the no-clobber check is the link itself (os.link fails if
    the name exists), so a file created meanwhile by someone else is not overwritten either. The new file gets
    0666 less the umask (0644 under umask 022), or the mode of the file it replaces.
    """
    target = check_writable(path, force)
    try:
        mode = stat.S_IMODE(target.stat().st_mode) if target.exists() else 0o666 & ~_umask()
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    except OSError as err:
        raise InputError(f"cannot write {target}: {err.strerror or err}") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)  # mkstemp creates 0600
        if force:
            os.replace(tmp, target)
        else:
            try:
                os.link(tmp, target)
            except FileExistsError:
                raise InputError(f"{target} exists; pass --force to overwrite it") from None
            except OSError:  # a filesystem without hard links: the exists() check above is all we have
                os.replace(tmp, target)
    except OSError as err:  # a full disk, a quota, a folder removed meanwhile
        raise InputError(f"cannot write {target}: {err.strerror or err}") from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return target


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
