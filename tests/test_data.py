"""Finding and reading MNIST: every layout a user may have, and one-line errors when it is wrong."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from gas_nas.common.errors import DataError
from gas_nas.trial import data
from gas_nas.trial.data import load_mnist, resolve_data_dir

N_TRAIN, N_TEST = 6, 4


def _idx_bytes(array: np.ndarray) -> bytes:
    magic = 0x0800 | array.ndim
    header = struct.pack(">I", magic) + b"".join(struct.pack(">I", n) for n in array.shape)
    return header + array.astype(np.uint8).tobytes()


def _synthetic(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
    images[0, 0, 0], images[0, 0, 1] = 0, 255  # make sure both ends of the range occur
    labels = np.arange(n, dtype=np.uint8) % 10
    return images, labels


def write_mnist(folder: Path, gz: bool = True) -> dict[str, np.ndarray]:
    """The four MNIST files, tiny and synthetic; returns what was written."""
    folder.mkdir(parents=True, exist_ok=True)
    train_x, train_y = _synthetic(N_TRAIN, 1)
    test_x, test_y = _synthetic(N_TEST, 2)
    content = {
        "train-images-idx3-ubyte": train_x,
        "train-labels-idx1-ubyte": train_y,
        "t10k-images-idx3-ubyte": test_x,
        "t10k-labels-idx1-ubyte": test_y,
    }
    for name, array in content.items():
        raw = _idx_bytes(array)
        if gz:
            (folder / f"{name}.gz").write_bytes(gzip.compress(raw, mtime=0))
        else:
            (folder / name).write_bytes(raw)
    return content


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No test may see the user's GAS_NAS_DATA or cache, nor reuse another test's parse."""
    monkeypatch.delenv("GAS_NAS_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))
    data._load_split.cache_clear()


@pytest.mark.parametrize("gz", [True, False], ids=["gzipped", "plain"])
def test_loads_images_in_minus_one_to_one_and_int64_labels(tmp_path: Path, gz: bool) -> None:
    written = write_mnist(tmp_path / "mnist", gz=gz)
    x, y = load_mnist(tmp_path / "mnist", train=True)
    assert x.shape == (N_TRAIN, 1, 28, 28) and x.dtype == torch.float32 and x.device.type == "cpu"
    assert float(x.min()) == -1.0 and float(x.max()) == 1.0
    expected = torch.from_numpy(written["train-images-idx3-ubyte"].astype(np.float32) / 127.5 - 1.0)
    torch.testing.assert_close(x[:, 0], expected)
    assert y.dtype == torch.int64 and y.tolist() == written["train-labels-idx1-ubyte"].tolist()
    xt, yt = load_mnist(tmp_path / "mnist", train=False)
    assert xt.shape == (N_TEST, 1, 28, 28) and yt.tolist() == written["t10k-labels-idx1-ubyte"].tolist()


def test_torchvision_layout_is_accepted(tmp_path: Path) -> None:
    write_mnist(tmp_path / "root" / "MNIST" / "raw", gz=False)
    assert resolve_data_dir(tmp_path / "root") == (tmp_path / "root").resolve()
    x, _ = load_mnist(tmp_path / "root", train=False)
    assert x.shape == (N_TEST, 1, 28, 28)


def test_env_var_is_used_and_data_dir_wins_over_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_mnist(tmp_path / "from-env")
    write_mnist(tmp_path / "from-flag")
    monkeypatch.setenv("GAS_NAS_DATA", str(tmp_path / "from-env"))
    assert resolve_data_dir(None) == (tmp_path / "from-env").resolve()
    assert resolve_data_dir(tmp_path / "from-flag") == (tmp_path / "from-flag").resolve()
    x, _ = load_mnist(None)
    assert x.shape[0] == N_TRAIN


def test_missing_file_is_named_in_one_line(tmp_path: Path) -> None:
    write_mnist(tmp_path / "mnist")
    (tmp_path / "mnist" / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataError) as info:
        resolve_data_dir(tmp_path / "mnist")
    message = str(info.value)
    assert "t10k-labels-idx1-ubyte" in message and str((tmp_path / "mnist").resolve()) in message
    assert "\n" not in message


def test_missing_env_dir_says_where_it_came_from(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GAS_NAS_DATA", str(tmp_path / "nowhere"))
    with pytest.raises(DataError, match="GAS_NAS_DATA"):
        resolve_data_dir(None)


def test_offline_default_cache_tells_both_fixes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import torchvision.datasets

    def offline(*args, **kwargs):
        raise RuntimeError("Error downloading train-images-idx3-ubyte.gz:\nTried https://example, got:\n<urlopen error [Errno -3]>")

    monkeypatch.setattr(torchvision.datasets, "MNIST", offline)
    with pytest.raises(DataError) as info:
        load_mnist(None)
    message = str(info.value)
    assert "--data-dir" in message and "GAS_NAS_DATA" in message and "urlopen error" in message
    assert str(tmp_path / "xdg-cache" / "gas-nas" / "mnist") in message
    assert "\n" not in message


def test_default_cache_with_data_does_not_download(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import torchvision.datasets

    def no_download(*args, **kwargs):
        raise AssertionError("must not download when the cache already holds MNIST")

    monkeypatch.setattr(torchvision.datasets, "MNIST", no_download)
    write_mnist(tmp_path / "xdg-cache" / "gas-nas" / "mnist" / "MNIST" / "raw")
    assert resolve_data_dir(None) == (tmp_path / "xdg-cache" / "gas-nas" / "mnist").resolve()
    assert load_mnist(None)[0].shape[0] == N_TRAIN


def test_without_xdg_the_cache_is_under_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    write_mnist(tmp_path / "home" / ".cache" / "gas-nas" / "mnist")
    assert resolve_data_dir(None) == (tmp_path / "home" / ".cache" / "gas-nas" / "mnist").resolve()


@pytest.mark.parametrize("gz", [True, False], ids=["gzipped", "plain"])
def test_truncated_file_is_a_one_line_data_error(tmp_path: Path, gz: bool) -> None:
    write_mnist(tmp_path / "mnist", gz=gz)
    name = "train-images-idx3-ubyte" + (".gz" if gz else "")
    path = tmp_path / "mnist" / name
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(DataError) as info:
        load_mnist(tmp_path / "mnist", train=True)
    assert name in str(info.value) and "\n" not in str(info.value)


def test_wrong_magic_number_is_a_data_error(tmp_path: Path) -> None:
    write_mnist(tmp_path / "mnist", gz=False)
    path = tmp_path / "mnist" / "t10k-labels-idx1-ubyte"
    raw = bytearray(path.read_bytes())
    raw[3] = 0x03  # claims three dimensions
    path.write_bytes(bytes(raw))
    with pytest.raises(DataError, match="magic number"):
        load_mnist(tmp_path / "mnist", train=False)


def test_repeated_loads_are_independent_copies(tmp_path: Path) -> None:
    write_mnist(tmp_path / "mnist")
    x1, y1 = load_mnist(tmp_path / "mnist")
    x1.fill_(0.0)
    y1.fill_(7)
    x2, y2 = load_mnist(tmp_path / "mnist")
    assert float(x2.min()) == -1.0 and y2.tolist() != [7] * N_TRAIN
