"""scikit-learn's bundled 8x8 handwritten digits: tiny, offline, the default dataset."""

from __future__ import annotations

import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from trainer.data.base import InMemoryData
from trainer.hparams import DataHparams


def load(hp: DataHparams) -> InMemoryData:
    """Load the UCI optical digits bundled with scikit-learn (1,797 images, 10 classes).

    Pixels are counts in 0..16, scaled to [0, 1] by dividing by 16; there is no mean/std
    normalization and no augmentation. The train/test split is fixed:
    ``train_test_split(test_size=0.2, stratify=y, random_state=0)``, giving 1,437 training and
    360 test images with the class proportions of the full set. ``hp.root`` and
    ``hp.download`` are ignored (the data ship inside scikit-learn).

    Args:
        hp: Data hyperparameters; only ``name`` matters here.

    Returns:
        CPU tensors: train_x (1437, 1, 8, 8) float32 in [0, 1], train_y (1437,) int64,
        test_x (360, 1, 8, 8), test_y (360,), 10 classes.

    Source: scikit-learn ``sklearn.datasets.load_digits`` (UCI ML hand-written digits).
    """
    bunch = load_digits()
    x = (bunch.images / 16.0).astype(np.float32)[:, None]  # (1797, 8, 8) -> (1797, 1, 8, 8)
    y = bunch.target.astype(np.int64)
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=0.2, stratify=y, random_state=0
    )
    return InMemoryData(
        train_x=torch.from_numpy(np.ascontiguousarray(x_train)),
        train_y=torch.from_numpy(y_train),
        test_x=torch.from_numpy(np.ascontiguousarray(x_test)),
        test_y=torch.from_numpy(y_test),
        num_classes=10,
    )
