"""scikit-learn's bundled 8x8 handwritten digits: tiny, offline, the default dataset.

The split is made by scikit-learn once per installed scikit-learn version and split rule, and
kept as an ``.npz`` in the data cache (``_common.cache_dir()``), so later processes (every Ray
worker of every sweep) load it without importing scikit-learn and SciPy, about a second of CPU
each.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import zipfile
from pathlib import Path

import numpy as np
import torch

from trainer.data import get
from trainer.data._common import cache_dir
from trainer.data._common import save_arrays_atomic
from trainer.data.base import InMemoryData
from trainer.hparams import DataHparams

KEYS = ("x_train", "x_test", "y_train", "y_test")
# The split rule (``train_test_split``'s arguments and the pixel scale). Its digest is part of
# the cache file's name, so a changed rule never reads a split made by the old one.
SPLIT = {"test_size": 0.2, "stratify": True, "random_state": 0, "scale": 16.0}


def load(hp: DataHparams) -> InMemoryData:
    """Load the UCI optical digits bundled with scikit-learn (1,797 images, 10 classes).

    Pixels are counts in 0..16, scaled to [0, 1] by dividing by 16; there is no mean/std
    normalization and no augmentation. The train/test split is fixed:
    ``train_test_split(test_size=0.2, stratify=y, random_state=0)``, giving 1,437 training and
    360 test images with the class proportions of the full set. ``hp.root`` and
    ``hp.download`` are ignored (the data ship inside scikit-learn). The split is read from
    ``split_cache()`` when it is there (an unreadable file is made again).

    Args:
        hp: Data hyperparameters; only ``name`` matters here.

    Returns:
        CPU tensors: train_x (1437, 1, 8, 8) float32 in [0, 1], train_y (1437,) int64,
        test_x (360, 1, 8, 8), test_y (360,), 10 classes.

    Source: scikit-learn ``sklearn.datasets.load_digits`` (UCI ML hand-written digits).
    """
    path = split_cache()
    arrays = _read(path)
    if arrays is None:
        arrays = split()
        try:
            save_arrays_atomic(path, arrays)
        except OSError:  # a read-only cache: the split is simply made again next time
            pass
    return InMemoryData(
        train_x=torch.from_numpy(arrays["x_train"]),
        train_y=torch.from_numpy(arrays["y_train"]),
        test_x=torch.from_numpy(arrays["x_test"]),
        test_y=torch.from_numpy(arrays["y_test"]),
        num_classes=10,
    )


def split() -> dict[str, np.ndarray]:
    """Make the split with scikit-learn: ``KEYS`` to contiguous arrays, x (N, 1, 8, 8) float32
    in [0, 1] and y (N,) int64 (imports scikit-learn)."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    x = (bunch.images / SPLIT["scale"]).astype(np.float32)[:, None]  # (1797, 1, 8, 8)
    y = bunch.target.astype(np.int64)
    parts = train_test_split(x, y, test_size=SPLIT["test_size"],
                             stratify=y if SPLIT["stratify"] else None,
                             random_state=SPLIT["random_state"])
    return {key: np.ascontiguousarray(a) for key, a in zip(KEYS, parts, strict=True)}


def split_cache() -> Path:
    """Where the split is kept: named by the installed scikit-learn version (the data and
    ``train_test_split`` ship with it) and a digest of ``SPLIT`` (our rule).

    Raises:
        importlib.metadata.PackageNotFoundError: scikit-learn is not installed.
    """
    version = importlib.metadata.version("scikit-learn")
    rule = hashlib.sha256(json.dumps(SPLIT, sort_keys=True).encode()).hexdigest()[:12]
    return cache_dir() / "digits" / f"split-scikit-learn-{version}-{rule}.npz"


def _read(path: Path) -> dict[str, np.ndarray] | None:
    """The cached split, or None when it is missing, unreadable or not of the registry's
    sizes and example shape (``trainer.data.get("digits")``)."""
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {key: npz[key] for key in KEYS}
    except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile):
        return None
    entry = get("digits")
    (train, test), shape = entry.sizes, entry.input_shape
    expected = {"x_train": (train, *shape), "x_test": (test, *shape), "y_train": (train,),
                "y_test": (test,)}
    return arrays if {key: a.shape for key, a in arrays.items()} == expected else None
