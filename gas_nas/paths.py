"""Output paths checked before any work: a run must not train for an hour and then fail to write.

Each check creates nothing; it says in one line why the path cannot be used, naming the flag.
"""

from __future__ import annotations

import os
from pathlib import Path

from gas_nas.errors import GasNasError


def check_output_dir(path: str | Path, flag: str) -> Path:
    """A directory that exists and is writable, or could be created (nearest existing parent writable)."""
    path = Path(path)
    if str(path).strip() == "":
        raise GasNasError(f"{flag}: expected a directory, got an empty path")
    if path.exists() or path.is_symlink():
        if not path.is_dir():
            raise GasNasError(f"{flag} {path}: exists and is not a directory")
        if not os.access(path, os.W_OK | os.X_OK):
            raise GasNasError(f"{flag} {path}: directory is not writable")
        return path
    _check_parents(path, flag)
    return path


def check_output_file(path: str | Path, flag: str, *, force: bool = False) -> Path:
    """A file that can be written: not a directory, not an existing file unless `force`."""
    path = Path(path)
    if str(path).strip() == "" or path.name in ("", ".", ".."):
        raise GasNasError(f"{flag}: expected a file name, got {str(path)!r}")
    if path.is_dir():
        raise GasNasError(f"{flag} {path}: is a directory; give a file name")
    if path.exists() or path.is_symlink():
        if not force:
            raise GasNasError(f"{flag} {path}: file exists; pass --force to overwrite it")
        if not path.is_file():
            raise GasNasError(f"{flag} {path}: exists and is not a regular file")
        if not os.access(path, os.W_OK):
            raise GasNasError(f"{flag} {path}: file is not writable")
        return path
    _check_parents(path, flag)
    return path


def _check_parents(path: Path, flag: str) -> None:
    """The nearest existing ancestor must be a writable directory (the rest is created later)."""
    for parent in path.absolute().parents:
        if parent.exists():
            if not parent.is_dir():
                raise GasNasError(f"{flag} {path}: {parent} is not a directory")
            if not os.access(parent, os.W_OK | os.X_OK):
                raise GasNasError(f"{flag} {path}: {parent} is not writable")
            return
