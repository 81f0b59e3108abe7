"""small NORB (5 toy categories, 96x96 grayscale stereo pairs) as 28x28 normalized tensors.

The NYU release (https://cs.nyu.edu/~yann/research/norb/) ships one binary matrix per file:
a little-endian int32 magic (``0x1E3D4C55`` = uint8 matrix, ``0x1E3D4C54`` = int32 matrix), an
int32 ``ndim``, then ``max(3, ndim)`` int32 dimensions (only the first ``ndim`` count), then the
data, little-endian. ``-dat.mat`` is (24300, 2, 96, 96) uint8, the two cameras of a stereo pair;
``-cat.mat`` is (24300,) int32 categories 0-4 (animal, human, airplane, truck, car). The
training split photographs toy instances 4, 6, 7, 8, 9 of each category and the test split
instances 0, 1, 2, 3, 5 (hence the ``5x46789`` / ``5x01235`` in the file names); the
``-info.mat`` files (instance, elevation, azimuth, lighting) are not read. No new dependency:
numpy parses the header, ``gzip`` reads the ``.mat.gz`` files as downloaded.

Each example is the first camera's image, area-averaged from 96x96 to 28x28 (Mehta 2019 used
28x28x1, METHODS.md 2.6; it is also Fashion-MNIST's shape, so LeNet-style models transfer
between the two) and rounded back to uint8, as a resize of the image file would be.
"""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from trainer.data import SMALLNORB_SIZE
from trainer.data._common import normalize_uint8
from trainer.data._common import resolve_root
from trainer.data.base import InMemoryData
from trainer.data.cifar import RandomFlipCrop
from trainer.hparams import DataHparams

FOLDER = "smallnorb"
URL = "https://cs.nyu.edu/~yann/research/norb/"
SIZE = SMALLNORB_SIZE  # examples are (1, SIZE, SIZE)
CATEGORIES = ("animal", "human", "airplane", "truck", "car")
FILES = {  # split -> (images, categories)
    "train": ("smallnorb-5x46789x9x18x6x2x96x96-training-dat.mat",
              "smallnorb-5x46789x9x18x6x2x96x96-training-cat.mat"),
    "test": ("smallnorb-5x01235x9x18x6x2x96x96-testing-dat.mat",
             "smallnorb-5x01235x9x18x6x2x96x96-testing-cat.mat"),
}
BYTE_MATRIX = 0x1E3D4C55
INT_MATRIX = 0x1E3D4C54
_DTYPES = {BYTE_MATRIX: np.dtype(np.uint8), INT_MATRIX: np.dtype("<i4")}


def load_smallnorb(hp: DataHparams) -> InMemoryData:
    """Load small NORB's official split (24,300 train / 24,300 test, 5 classes) at 28x28.

    Normalization uses the statistics of the loaded training images themselves: the mean and
    (population) standard deviation over every pixel of the 24,300 downsampled training images,
    scaled to [0, 1]. No published values exist for this 28x28 first-camera variant; the
    numbers are a deterministic function of the files, so every load gives the same tensors.
    A class selection or subset does not change them (they are taken before either).

    Args:
        hp: ``root`` holds ``smallnorb/<the four files>``, each as ``.mat`` or ``.mat.gz``
            ("" = ``cache_dir()/torchvision``). ``download`` is ignored: torchvision cannot
            fetch small NORB.

    Returns:
        CPU tensors: train_x (24300, 1, 28, 28) float32 with mean 0 and std 1, train_y
        (24300,) int64 categories (``CATEGORIES``), test_x (24300, 1, 28, 28) standardized with
        the training statistics, test_y (24300,), 5 classes, and ``augment =
        RandomFlipCrop(padding=4)`` (random flip plus pad-4 crop).

    Raises:
        FileNotFoundError: a file is missing (the message says where to get them).
        ValueError: a file is not a NORB matrix of the expected type and shape.

    Source: LeCun, Huang & Bottou 2004 (the file format, from the NORB page); Mehta 2019 §3
        (28x28x1 and flip + 4-pixel pad-and-crop, METHODS.md 2.6). Mehta re-split the data
        40k/10k; that split is not published, so the official 24,300/24,300 one is served.
    """
    folder = resolve_root(hp.root) / FOLDER
    _require_files(folder)
    train_x, train_y = _read_split(folder, "train")
    test_x, test_y = _read_split(folder, "test")
    pixels = train_x.to(torch.float64).div_(255.0)
    mean, std = (pixels.mean().item(),), (pixels.std(correction=0).item(),)
    del pixels
    return InMemoryData(
        train_x=normalize_uint8(train_x, mean, std),
        train_y=train_y,
        test_x=normalize_uint8(test_x, mean, std),
        test_y=test_y,
        num_classes=len(CATEGORIES),
        augment=RandomFlipCrop(fill=(-mean[0] / std[0],), padding=4),
    )


def read_matrix(path: Path) -> np.ndarray:
    """Read one NORB binary matrix file (``.mat``, or gzip'd ``.mat.gz``).

    Args:
        path: The file.

    Returns:
        The array with the header's shape: uint8 for a byte matrix, int32 for an int matrix.

    Raises:
        ValueError: unknown magic number, negative dimension, or fewer data bytes than the
            header promises.
    """
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        magic, ndim = struct.unpack("<ii", f.read(8))
        if magic not in _DTYPES:
            raise ValueError(f"{path}: magic {magic:#x} is not a NORB byte ({BYTE_MATRIX:#x}) "
                             f"or int ({INT_MATRIX:#x}) matrix")
        dims = struct.unpack(f"<{max(3, ndim)}i", f.read(4 * max(3, ndim)))[:ndim]
        if any(d < 0 for d in dims):
            raise ValueError(f"{path}: negative dimension in header {dims}")
        dtype = _DTYPES[magic]
        size = int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
        buffer = f.read(size)
    if len(buffer) != size:
        raise ValueError(f"{path}: {len(buffer)} data bytes, the header {dims} needs {size}")
    return np.frombuffer(buffer, dtype=dtype).reshape(dims)


def missing_smallnorb(hp: DataHparams) -> list[Path]:
    """The small NORB files ``load_smallnorb`` needs that are not there (as ``.mat`` paths;
    a ``.mat.gz`` counts as present). ``download`` does not help: torchvision has no loader."""
    return _missing(resolve_root(hp.root) / FOLDER)


def _missing(folder: Path) -> list[Path]:
    names = [name for pair in FILES.values() for name in pair]
    return [folder / name for name in names if _find(folder / name) is None]


def _read_split(folder: Path, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, 1, SIZE, SIZE) uint8 first-camera images and (N,) int64 categories of ``split``."""
    dat_name, cat_name = FILES[split]
    dat, cat = read_matrix(_find(folder / dat_name)), read_matrix(_find(folder / cat_name))
    if dat.dtype != np.uint8 or dat.ndim != 4 or dat.shape[1:] != (2, 96, 96):
        raise ValueError(f"{folder / dat_name}: expected (N, 2, 96, 96) uint8 stereo pairs, "
                         f"got {dat.shape} {dat.dtype}")
    if cat.dtype != np.int32 or cat.shape != dat.shape[:1]:
        raise ValueError(f"{folder / cat_name}: expected ({len(dat)},) int32 categories, "
                         f"got {cat.shape} {cat.dtype}")
    if cat.size and not 0 <= cat.min() <= cat.max() < len(CATEGORIES):
        raise ValueError(f"{folder / cat_name}: categories must be in 0-4, got "
                         f"{cat.min()}-{cat.max()}")
    return _downsample(dat[:, 0]), torch.from_numpy(cat.astype(np.int64))


def _downsample(images: np.ndarray, chunk: int = 4096) -> torch.Tensor:
    """(N, 96, 96) uint8 -> (N, 1, SIZE, SIZE) uint8 by area averaging, rounded to nearest."""
    out = torch.empty((len(images), 1, SIZE, SIZE), dtype=torch.uint8)
    for start in range(0, len(images), chunk):  # chunks bound the float32 temporaries
        block = torch.from_numpy(np.array(images[start : start + chunk], dtype=np.float32))
        small = F.interpolate(block.unsqueeze(1), size=(SIZE, SIZE), mode="area")
        out[start : start + chunk] = small.round_().clamp_(0, 255).to(torch.uint8)
    return out


def _find(path: Path) -> Path | None:
    """``path`` if it is a file, else ``path.gz`` if that is, else None."""
    for candidate in (path, path.with_name(path.name + ".gz")):
        if candidate.is_file():
            return candidate
    return None


def _require_files(folder: Path) -> None:
    """Raise a FileNotFoundError listing the missing files and where to get them."""
    missing = _missing(folder)
    if not missing:
        return
    raise FileNotFoundError(
        f"small NORB not found in {folder}: expected (each may also be gzip'd as .mat.gz)\n"
        + "\n".join(f"  {path}" for path in missing)
        + "\nThere is no automatic download (`data.download` does not apply). Get the "
        + f"'-dat' and '-cat' files of both splits from {URL} and put them in {folder}, "
        + f"or point `data.root` at a directory holding {FOLDER}/."
    )
