"""Output paths: checked before any work (a run must not train for an hour and then fail to
write), and written whole.

Each check creates nothing; it says in one line why the path cannot be used, naming the flag.
`atomic_path` / `atomic_write` are the one way gas-nas writes a file others may read meanwhile.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from gas_nas.common.errors import GasNasError


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


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A temporary path beside `path` to write to; renamed over `path` when the block ends, so
    a kill or a parallel reader sees the old file or the new one, never half of one. The name
    is unique per process and thread (workers may write the same file); on an error it is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    part = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.part{path.suffix}")  # the suffix: writers that pick a format by it
    try:
        yield part
        os.replace(part, path)
    finally:
        part.unlink(missing_ok=True)


@contextmanager
def atomic_write(path: str | Path, mode: str = "w") -> Iterator[IO]:
    """`open(path, mode)` for writing, made atomic by `atomic_path`."""
    with atomic_path(path) as part, open(part, mode) as f:
        yield f
