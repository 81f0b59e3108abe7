"""MNIST and Fashion-MNIST (28x28 grayscale, 10 classes) through torchvision's idx readers.

torchvision 0.29's ``MNIST``/``FashionMNIST`` look for the *decompressed* idx files in
``<root>/<ClassName>/raw/`` (``_check_exists`` tests only that they exist, no md5) and parse them
with ``read_image_file``/``read_label_file``, which open the path as plain bytes (no gzip).

Fashion-MNIST with an empty ``data.root`` prefers the Debian package ``dataset-fashion-mnist``
(``/usr/share/datasets/fashion-mnist/*.gz``). Its gzip files are decompressed once into
``cache_dir()/debian-fashion-mnist/FashionMNIST/raw/`` (see ``_common.cache_dir``; override with
``$LOTTERY_DATA_CACHE``) so torchvision's own loader reads them; nothing is written under
``/usr/share``. The Debian ``.gz`` files are recompressed, so their md5s differ from torchvision's
download table; the decompressed content is what torchvision parses and shape-checks.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torchvision.datasets import MNIST
from torchvision.datasets import FashionMNIST

from trainer.data._common import cache_dir
from trainer.data._common import gunzip_atomic
from trainer.data._common import normalize_uint8
from trainer.data._common import resolve_root
from trainer.data.base import InMemoryData
from trainer.hparams import DataHparams

# Source: open_lth datasets/mnist.py (Normalize(mean=[0.1307], std=[0.3081])).
MNIST_MEAN = (0.1307,)
MNIST_STD = (0.3081,)
# Fashion-MNIST training-set pixel statistics (the commonly used values).
FASHION_MNIST_MEAN = (0.2860,)
FASHION_MNIST_STD = (0.3530,)

DEBIAN_FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
IDX_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)


def load_mnist(hp: DataHparams) -> InMemoryData:
    """Load MNIST (60,000 train / 10,000 test), normalized with open_lth's constants.

    Args:
        hp: ``root`` holds ``MNIST/raw/<idx files>`` ("" = ``cache_dir()/torchvision``);
            ``download`` lets torchvision fetch missing files there.

    Returns:
        CPU tensors: train_x (60000, 1, 28, 28) float32 ``(x/255 - 0.1307) / 0.3081``,
        train_y (60000,) int64, test_x (10000, 1, 28, 28), test_y (10000,), 10 classes.
        No augmentation (open_lth uses none for MNIST).

    Raises:
        FileNotFoundError: the idx files are missing and ``download`` is False.

    Source: open_lth ``datasets/mnist.py`` (normalization); METHODS.md 2.1 "Data".
    """
    root = resolve_root(hp.root)
    hint = f"or point `data.root` at a directory holding MNIST/raw/{IDX_FILES[0]} etc."
    return _load(MNIST, root, hp.download, (MNIST_MEAN, MNIST_STD), hint)


def load_fashion_mnist(hp: DataHparams) -> InMemoryData:
    """Load Fashion-MNIST (60,000 train / 10,000 test), standardized per dataset statistics.

    With ``hp.root == ""`` the Debian package's files are used when installed (see the module
    docstring); otherwise torchvision's layout under ``hp.root`` or ``cache_dir()/torchvision``.

    Args:
        hp: ``root`` holds ``FashionMNIST/raw/<idx files>`` ("" = Debian package, else
            ``cache_dir()/torchvision``); ``download`` lets torchvision fetch missing files.

    Returns:
        CPU tensors: train_x (60000, 1, 28, 28) float32 ``(x/255 - 0.2860) / 0.3530``,
        train_y (60000,) int64, test_x (10000, 1, 28, 28), test_y (10000,), 10 classes.
        No augmentation.

    Raises:
        FileNotFoundError: the idx files are missing and ``download`` is False.

    Source: Xiao et al. 2017 (arXiv 1708.07747); mean/std are the training-set pixel statistics.
    """
    if not hp.root and debian_fashion_mnist_available():
        root = debian_fashion_mnist_root()
    else:
        root = resolve_root(hp.root)
    hint = (
        "or `apt-get install dataset-fashion-mnist` (used when `data.root` is empty), "
        f"or point `data.root` at a directory holding FashionMNIST/raw/{IDX_FILES[0]} etc."
    )
    return _load(FashionMNIST, root, hp.download, (FASHION_MNIST_MEAN, FASHION_MNIST_STD), hint)


def debian_fashion_mnist_available() -> bool:
    """Return True if all four ``.gz`` files of ``dataset-fashion-mnist`` are installed."""
    return all((DEBIAN_FASHION_MNIST_DIR / f"{name}.gz").is_file() for name in IDX_FILES)


def debian_fashion_mnist_root() -> Path:
    """Expose the Debian Fashion-MNIST files in torchvision's layout and return that root.

    Decompresses ``DEBIAN_FASHION_MNIST_DIR/<name>.gz`` into
    ``cache_dir()/debian-fashion-mnist/FashionMNIST/raw/<name>`` (once; ~55 MB), so that
    ``torchvision.datasets.FashionMNIST(root=<returned path>)`` finds them.

    Returns:
        The torchvision ``root`` directory (parent of ``FashionMNIST/``).

    Raises:
        FileNotFoundError: the Debian package is not installed.
    """
    if not debian_fashion_mnist_available():
        raise FileNotFoundError(
            f"Debian Fashion-MNIST files not found in {DEBIAN_FASHION_MNIST_DIR}; "
            "install them with `apt-get install dataset-fashion-mnist`"
        )
    root = cache_dir() / "debian-fashion-mnist"
    raw = root / FashionMNIST.__name__ / "raw"
    for name in IDX_FILES:
        gunzip_atomic(DEBIAN_FASHION_MNIST_DIR / f"{name}.gz", raw / name)
    return root


def _load(
    cls: type[MNIST],
    root: Path,
    download: bool,
    stats: tuple[tuple[float, ...], tuple[float, ...]],
    hint: str,
) -> InMemoryData:
    """Read train and test splits with torchvision's ``cls`` and normalize them."""
    if not download:
        _require_idx_files(cls, root, hint)
    train = cls(str(root), train=True, download=download)
    test = cls(str(root), train=False, download=download)
    mean, std = stats
    # (N, 28, 28) uint8 -> (N, 1, 28, 28) float32
    return InMemoryData(
        train_x=normalize_uint8(train.data.unsqueeze(1), mean, std),
        train_y=train.targets.to(torch.int64),
        test_x=normalize_uint8(test.data.unsqueeze(1), mean, std),
        test_y=test.targets.to(torch.int64),
        num_classes=10,
    )


def missing_mnist(hp: DataHparams) -> list[Path]:
    """The MNIST idx files ``load_mnist`` would read that are not there ([] if downloading)."""
    return [] if hp.download else _missing_idx(MNIST, resolve_root(hp.root))


def missing_fashion_mnist(hp: DataHparams) -> list[Path]:
    """The files ``load_fashion_mnist`` needs that are not there ([] if downloading)."""
    if hp.download or (not hp.root and debian_fashion_mnist_available()):
        return []
    return _missing_idx(FashionMNIST, resolve_root(hp.root))


def _missing_idx(cls: type[MNIST], root: Path) -> list[Path]:
    raw = root / cls.__name__ / "raw"
    return [raw / name for name in IDX_FILES if not (raw / name).is_file()]


def _require_idx_files(cls: type[MNIST], root: Path, hint: str) -> None:
    """Raise a FileNotFoundError listing every idx file torchvision would look for."""
    missing = _missing_idx(cls, root)
    if not missing:
        return
    lines = []
    for path in missing:
        gz = path.with_name(path.name + ".gz")
        note = f" (found {gz.name}: decompress it with gunzip)" if gz.is_file() else ""
        lines.append(f"  {path}{note}")
    raise FileNotFoundError(
        f"{cls.__name__} not found: torchvision expects the decompressed idx files\n"
        + "\n".join(lines)
        + f"\nSet `data: {{download: true}}` in the sweep spec to download them into {root}, "
        + hint
    )
