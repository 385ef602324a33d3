"""MNIST from the four standard IDX files, found without surprises and parsed without torchvision.

Reading the IDX files ourselves means any copy works (gzipped or not, flat or torchvision's
`MNIST/raw/` layout, whatever the archive's checksum), and a bad file fails as one line that
names it instead of a traceback from deep inside a dataset class.
"""

from __future__ import annotations

import functools
import gzip
import os
import zlib
from pathlib import Path

import torch
from torch import Tensor

from gas_nas.common.errors import DataError

ENV_DATA = "GAS_NAS_DATA"
IMAGE_MAGIC = 0x00000803  # unsigned byte, 3 dimensions
LABEL_MAGIC = 0x00000801  # unsigned byte, 1 dimension
SPLIT_FILES = {
    True: ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    False: ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
REQUIRED_FILES = SPLIT_FILES[True] + SPLIT_FILES[False]


def cache_root() -> Path:
    """`$XDG_CACHE_HOME/gas-nas`, else `~/.cache/gas-nas`: where downloads and checkpoints live."""
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg) if xdg else Path.home() / ".cache"
    return base / "gas-nas"


def find_file(data_dir: Path, name: str) -> Path | None:
    """The file `name` (plain or `.gz`) in `data_dir` itself or in torchvision's `MNIST/raw/`."""
    for folder in (data_dir, data_dir / "MNIST" / "raw"):
        for candidate in (folder / name, folder / f"{name}.gz"):
            if candidate.is_file():
                return candidate
    return None


def _first_missing(data_dir: Path) -> str | None:
    return next((name for name in REQUIRED_FILES if find_file(data_dir, name) is None), None)


def resolve_data_dir(data_dir: str | Path | None) -> Path:
    """The MNIST folder to read: `--data-dir`, then `$GAS_NAS_DATA`, then the download cache.

    A folder the user named must already hold the data (we never download into it behind
    their back); only the default cache is filled by torchvision's downloader.
    """
    if data_dir is not None and str(data_dir) != "":
        return _check_given(Path(data_dir), "--data-dir")
    env = os.environ.get(ENV_DATA)
    if env:
        return _check_given(Path(env), ENV_DATA)
    return _default_dir()


def _check_given(path: Path, source: str) -> Path:
    path = path.expanduser().resolve()
    if not path.is_dir():
        raise DataError(f"MNIST dir {path} (from {source}) {'is not a directory' if path.exists() else 'does not exist'}")
    missing = _first_missing(path)
    if missing is not None:
        raise DataError(
            f"MNIST dir {path} (from {source}) lacks {missing} (or {missing}.gz), looked in it and in its MNIST/raw/"
        )
    return path


def _default_dir() -> Path:
    path = (cache_root() / "mnist").expanduser().resolve()
    if _first_missing(path) is None:
        return path
    reason = ""
    try:
        import torchvision.datasets

        torchvision.datasets.MNIST(str(path), train=True, download=True)
    except Exception as exc:  # noqa: BLE001 - any failure here means "offline or blocked"
        reason = f"{type(exc).__name__}: {_short(str(exc))}"
    missing = _first_missing(path)
    if missing is None:
        return path
    raise DataError(
        f"MNIST is not in {path} and could not be downloaded ({reason or f'{missing} still missing'}); "
        f"pass --data-dir DIR or set {ENV_DATA}=DIR to a folder with the four MNIST IDX files"
    )


def _short(text: str, limit: int = 160) -> str:
    """One line of at most `limit` characters, so the error stays a single readable line."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _read_bytes(path: Path) -> bytes:
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as f:
                return f.read()
        return path.read_bytes()
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(f"MNIST file {path} cannot be read ({type(exc).__name__}: {_short(str(exc))})") from exc


def parse_idx(path: Path, magic: int) -> Tensor:
    """A uint8 IDX file as a CPU tensor of its declared shape, checking magic number and size."""
    data = _read_bytes(path)
    ndim = magic & 0xFF
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataError(f"MNIST file {path} is truncated: {len(data)} bytes, shorter than its {header}-byte header")
    found = int.from_bytes(data[:4], "big")
    if found != magic:
        raise DataError(f"MNIST file {path} has magic number {found:#010x}, expected {magic:#010x}: not an MNIST IDX file")
    shape = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    if 0 in shape:
        raise DataError(f"MNIST file {path} is empty: its header declares shape {shape}")
    expected = header + _prod(shape)
    if len(data) != expected:
        raise DataError(
            f"MNIST file {path} is truncated or corrupt: {len(data)} bytes, its header {shape} needs {expected}"
        )
    return torch.frombuffer(bytearray(data), dtype=torch.uint8, offset=header).reshape(shape)


def _prod(values: list[int]) -> int:
    out = 1
    for v in values:
        out *= v
    return out


@functools.lru_cache(maxsize=4)
def _load_split(images_path: str, labels_path: str, stamp: tuple) -> tuple[Tensor, Tensor]:
    """Parsed uint8 images and labels, cached so every trial in a process gunzips only once.

    `stamp` (mtimes and sizes) is part of the key so a replaced file is read again.
    """
    images = parse_idx(Path(images_path), IMAGE_MAGIC)
    labels = parse_idx(Path(labels_path), LABEL_MAGIC)
    if tuple(images.shape[1:]) != (28, 28):
        raise DataError(f"MNIST file {images_path} holds {tuple(images.shape[1:])} images, expected 28x28")
    if images.shape[0] != labels.shape[0]:
        raise DataError(f"MNIST files disagree: {images_path} has {images.shape[0]} images, {labels_path} {labels.shape[0]} labels")
    if labels.numel() and int(labels.max()) > 9:
        raise DataError(f"MNIST file {labels_path} has label {int(labels.max())}, expected digits 0-9")
    return images, labels


def load_mnist(data_dir: str | Path | None, train: bool = True, device: torch.device | str = "cpu") -> tuple[Tensor, Tensor]:
    """Images float32 (N, 1, 28, 28) in [-1, 1] (a tanh generator's range) and int64 labels, on `device`."""
    folder = resolve_data_dir(data_dir)
    paths = [find_file(folder, name) for name in SPLIT_FILES[bool(train)]]
    for name, path in zip(SPLIT_FILES[bool(train)], paths):
        if path is None:  # removed since resolve_data_dir looked
            raise DataError(f"MNIST dir {folder} lacks {name} (or {name}.gz)")
    stamp = tuple((p.stat().st_mtime_ns, p.stat().st_size) for p in paths)
    images, labels = _load_split(str(paths[0].resolve()), str(paths[1].resolve()), stamp)
    # New tensors on every call (dtype changes), so callers may modify them without touching the cache.
    x = images.to(device).unsqueeze(1).to(torch.float32).div_(127.5).sub_(1.0)
    y = labels.to(device=device, dtype=torch.int64)
    return x, y
