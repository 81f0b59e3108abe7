"""Tests for the SVHN, small NORB and Tiny ImageNet loaders and their registry entries.

Each loader reads tiny files written here in the real on-disk format (never downloaded): SVHN
``.mat`` files through ``scipy.io.savemat`` with the release's variable names, shapes and dtypes;
small NORB binary matrices with the NYU headers (one of them gzip'd); a Tiny ImageNet folder
with a few 64x64 JPEGs. torchvision checks each SVHN file's md5 against the real release, so
the round-trip tests replace only that table (``SVHN.split_list``, restored by monkeypatch).
``data.load`` caches per (name, root, download): every test uses its own ``tmp_path``.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import struct
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import torch
import torch.nn.functional as F
from PIL import Image
from torchvision.datasets import SVHN

from trainer import data
from trainer.data import cifar
from trainer.data import smallnorb
from trainer.data import svhn
from trainer.data import tiny_imagenet
from trainer.hparams import DataHparams


# registry
@pytest.mark.parametrize(
    ("name", "shape", "k", "sizes"),
    [
        ("svhn", (3, 32, 32), 10, (73257, 26032)),
        ("smallnorb", (1, 28, 28), 5, (24300, 24300)),
        ("tiny-imagenet", (3, 64, 64), 200, (100000, 10000)),
        ("cifar100", (3, 32, 32), 100, (50000, 10000)),
    ],
)
def test_registry_lists_the_new_datasets(name, shape, k, sizes):
    entry = data.get(name)
    assert (entry.input_shape, entry.num_classes, entry.sizes) == (shape, k, sizes)
    assert all(len(split) == k for split in entry.class_sizes)


def test_unknown_dataset_lists_the_new_keys_among_the_known_ones():
    with pytest.raises(ValueError, match=r"unknown dataset 'imagenet'; known: \[.*'smallnorb', "
                       r"'svhn', 'tiny-imagenet'\]"):
        data.get("imagenet")


@pytest.mark.parametrize("name", sorted(data.DATASETS))
def test_class_sizes_add_up_to_the_split_sizes(name):
    entry = data.get(name)
    assert (sum(entry.class_sizes[0]), sum(entry.class_sizes[1])) == entry.sizes
    assert len(entry.class_sizes[0]) == len(entry.class_sizes[1]) == entry.num_classes


def test_svhn_class_counts_are_the_published_ones():
    train, test = data.get("svhn").class_sizes
    assert sum(train) == 73257 and sum(test) == 26032
    assert train[1] == 13861 and test[0] == 1744  # digit 1 is the most common, digit 0 label 10
    assert data.sizes(DataHparams(name="svhn", classes=(0, 1))) == (4948 + 13861, 1744 + 5099)
    assert data.sizes(DataHparams(name="smallnorb", classes=(0, 4))) == (9720, 9720)
    assert data.sizes(DataHparams(name="tiny-imagenet", classes=(7, 8, 9))) == (1500, 150)


# SVHN
def _write_svhn(root: Path, rng: np.random.Generator) -> dict:
    """Write train/test_32x32.mat (X (32, 32, 3, N) uint8, y (N, 1) uint8 with 10 = digit 0)."""
    root.mkdir(parents=True, exist_ok=True)
    written, table = {}, {}
    for split, n in (("train", 7), ("test", 5)):
        images = rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
        labels = np.array([10, 1, 2, 10, 9, 3, 4][:n], dtype=np.uint8)  # 10 is the digit 0
        path = root / f"{split}_32x32.mat"
        scipy.io.savemat(path, {"X": images.transpose(1, 2, 3, 0), "y": labels[:, None]})
        written[split] = (images, labels)
        url = SVHN.split_list[split][0]
        table[split] = [url, path.name, hashlib.md5(path.read_bytes()).hexdigest()]
    return {**written, "table": table}


def test_svhn_round_trips_real_mat_files_mapping_label_10_to_0(tmp_path, monkeypatch):
    written = _write_svhn(tmp_path, np.random.default_rng(0))
    monkeypatch.setattr(SVHN, "split_list", written["table"])
    d = data.load(DataHparams(name="svhn", root=str(tmp_path)))
    mean = torch.tensor(svhn.SVHN_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(svhn.SVHN_STD).view(1, 3, 1, 1)
    for split, x, y in (("train", d.train_x, d.train_y), ("test", d.test_x, d.test_y)):
        images, labels = written[split]
        assert x.shape == (len(images), 3, 32, 32) and x.dtype == torch.float32
        assert x.is_contiguous()
        pixels = ((x * std + mean) * 255).permute(0, 2, 3, 1)  # back to (N, 32, 32, 3)
        assert torch.allclose(pixels, torch.from_numpy(images).float(), atol=1e-3)
        assert y.dtype == torch.int64 and y.tolist() == np.where(labels == 10, 0, labels).tolist()
    assert d.train_y.tolist()[:4] == [0, 1, 2, 0]
    assert d.num_classes == 10 and d.input_shape == (3, 32, 32)
    assert isinstance(d.augment, cifar.RandomFlipCrop)
    assert d.augment.flip is False and d.augment.padding == 4
    assert d.augment.fill == pytest.approx((-mean / std).flatten().tolist())


def test_svhn_class_selection_keeps_and_relabels_digits(tmp_path, monkeypatch):
    written = _write_svhn(tmp_path, np.random.default_rng(0))
    monkeypatch.setattr(SVHN, "split_list", written["table"])
    d = data.load(DataHparams(name="svhn", root=str(tmp_path), classes=(0, 1)))
    assert d.num_classes == 2
    assert d.train_y.tolist() == [0, 1, 0]  # digits 0, 1, 0 of the training file, in file order
    full = data.load(DataHparams(name="svhn", root=str(tmp_path)))
    assert torch.equal(d.train_x, full.train_x[[0, 1, 3]])


def test_svhn_files_failing_the_md5_check_get_a_clear_error(tmp_path):
    _write_svhn(tmp_path, np.random.default_rng(0))  # md5 table left as torchvision's
    with pytest.raises(RuntimeError, match="md5 check.*download: true"):
        data.load(DataHparams(name="svhn", root=str(tmp_path)))


def test_missing_svhn_names_the_files_and_how_to_get_them(tmp_path):
    hp = DataHparams(name="svhn", root=str(tmp_path))
    assert data.get("svhn").missing_files(hp) == [tmp_path / "train_32x32.mat",
                                                  tmp_path / "test_32x32.mat"]
    assert data.get("svhn").missing_files(dataclasses.replace(hp, download=True)) == []
    with pytest.raises(FileNotFoundError) as info:
        data.load(hp)
    message = str(info.value)
    for needle in (str(tmp_path / "train_32x32.mat"), "`data: {download: true}`", "data.root",
                   "ufldl.stanford.edu/housenumbers"):
        assert needle in message


# augmentation: the crop-only switch
def test_crop_only_augmentation_never_flips():
    x = torch.randn(64, 3, 8, 8)
    g = torch.Generator().manual_seed(0)
    out = cifar.RandomFlipCrop(fill=(0.0, 0.0, 0.0), padding=0, flip=False)(x, g)
    assert torch.equal(out, x)


def test_crop_only_draws_the_same_crops_as_flip_and_crop():
    x = torch.randn(32, 3, 8, 8)
    both = cifar.RandomFlipCrop(fill=(-1.0, -2.0, -3.0), padding=2)
    crop = dataclasses.replace(both, flip=False)
    assert both.flip is True  # the default keeps the CIFAR behaviour
    a = both(x, torch.Generator().manual_seed(4))
    b = crop(x, torch.Generator().manual_seed(4))
    flipped = torch.rand(32, generator=torch.Generator().manual_seed(4)) < 0.5
    assert flipped.any() and (~flipped).any()
    for i in range(32):
        assert torch.equal(b[i], a[i].flip(-1) if flipped[i] else a[i])
    assert not torch.equal(b, x)  # crops still shift the content


# small NORB
def _norb_bytes(array: np.ndarray) -> bytes:
    """A NORB binary matrix: magic, ndim, max(3, ndim) dims (padded with 1), little-endian."""
    magic = smallnorb.BYTE_MATRIX if array.dtype == np.uint8 else smallnorb.INT_MATRIX
    dims = list(array.shape) + [1] * (3 - array.ndim)
    header = struct.pack("<ii", magic, array.ndim) + struct.pack(f"<{len(dims)}i", *dims)
    return header + array.astype(array.dtype.newbyteorder("<")).tobytes()


def _write_norb(root: Path, rng: np.random.Generator) -> dict:
    """Write both splits; the first camera has one grey level per image, the second is noise.

    The test images file is gzip'd (``.mat.gz``, as downloaded); the others are plain.
    """
    folder = root / smallnorb.FOLDER
    folder.mkdir(parents=True)
    written = {}
    for split, n in (("train", 6), ("test", 4)):
        levels = rng.integers(0, 256, n).astype(np.uint8)
        pairs = rng.integers(0, 256, (n, 2, 96, 96), dtype=np.uint8)
        pairs[:, 0] = levels[:, None, None]
        cats = rng.integers(0, 5, n).astype(np.int32)
        dat_name, cat_name = smallnorb.FILES[split]
        if split == "test":
            (folder / f"{dat_name}.gz").write_bytes(gzip.compress(_norb_bytes(pairs)))
        else:
            (folder / dat_name).write_bytes(_norb_bytes(pairs))
        (folder / cat_name).write_bytes(_norb_bytes(cats))
        written[split] = (pairs, levels, cats)
    return written


def test_norb_header_matches_the_documented_layout():
    raw = _norb_bytes(np.zeros((3,), dtype=np.int32))
    assert raw[:4] == bytes.fromhex("544c3d1e")  # 0x1E3D4C54 little-endian: int matrix
    assert struct.unpack("<5i", raw[:20]) == (0x1E3D4C54, 1, 3, 1, 1)  # 3 dims, ndim 1
    raw = _norb_bytes(np.zeros((2, 2, 96, 96), dtype=np.uint8))
    assert struct.unpack("<6i", raw[:24]) == (0x1E3D4C55, 4, 2, 2, 96, 96)
    assert len(raw) == 24 + 2 * 2 * 96 * 96


def test_smallnorb_round_trips_real_binary_files(tmp_path):
    written = _write_norb(tmp_path, np.random.default_rng(2))
    d = data.load(DataHparams(name="smallnorb", root=str(tmp_path)))
    assert d.train_x.shape == (6, 1, 28, 28) and d.test_x.shape == (4, 1, 28, 28)
    assert d.train_x.dtype == torch.float32 and d.test_y.dtype == torch.int64
    assert d.num_classes == 5 and d.input_shape == data.get("smallnorb").input_shape
    assert d.train_y.tolist() == written["train"][2].tolist()
    assert d.test_y.tolist() == written["test"][2].tolist()
    # standardized with the training split's own statistics: mean 0, population std 1
    assert abs(d.train_x.mean().item()) < 1e-5
    assert d.train_x.std(correction=0).item() == pytest.approx(1.0, abs=1e-5)
    levels = written["train"][1] / 255.0
    mean, std = levels.mean(), levels.std()  # each image is one grey level of the first camera
    for split, x in (("train", d.train_x), ("test", d.test_x)):
        expected = (written[split][1] / 255.0 - mean) / std
        assert torch.allclose(x.flatten(1), torch.tensor(expected, dtype=torch.float32)[:, None]
                              .expand(-1, 28 * 28), atol=1e-5)  # the noisy 2nd camera is unused
    assert isinstance(d.augment, cifar.RandomFlipCrop)
    assert d.augment.flip and d.augment.padding == 4
    assert d.augment.fill == pytest.approx((-mean / std,))


def test_smallnorb_expanded_to_three_channels_still_augments(tmp_path):
    """A one-channel set with `data.shape: [3, 32, 32]` (Mehta's smallNORB target of a CIFAR
    ticket) keeps its one-value fill: the border of every channel is the black pixel."""
    _write_norb(tmp_path, np.random.default_rng(2))
    d = data.load(DataHparams(name="smallnorb", root=str(tmp_path), shape=(3, 32, 32)))
    assert d.train_x.shape == (6, 3, 32, 32) and len(d.augment.fill) == 1
    gen = torch.Generator().manual_seed(0)
    out = d.augment(d.train_x, gen)
    assert out.shape == d.train_x.shape
    black = torch.tensor(d.augment.fill[0])
    shifted = torch.tensor([not torch.equal(a, b) for a, b in zip(out, d.train_x, strict=True)])
    assert shifted.any() and (out == black).any(dim=(1, 2, 3))[shifted].all()


def test_smallnorb_downsamples_the_first_camera_by_area_averaging(tmp_path):
    written = _write_norb(tmp_path, np.random.default_rng(3))
    ramp = np.add.outer(np.arange(96), 2 * np.arange(96)).astype(np.uint8)  # (96, 96) not flat
    pairs, _, cats = written["train"]
    pairs[:, 0] = ramp
    folder = tmp_path / smallnorb.FOLDER
    (folder / smallnorb.FILES["train"][0]).write_bytes(_norb_bytes(pairs))
    expected = F.adaptive_avg_pool2d(torch.from_numpy(ramp).float()[None, None], 28).round()
    images, labels = smallnorb._read_split(folder, "train")
    assert images.dtype == torch.uint8 and images.shape == (6, 1, 28, 28)
    assert torch.equal(images[0].float(), expected[0]) and torch.equal(images[5], images[0])
    assert labels.tolist() == cats.tolist()


def test_smallnorb_class_selection(tmp_path):
    written = _write_norb(tmp_path, np.random.default_rng(2))
    d = data.load(DataHparams(name="smallnorb", root=str(tmp_path), classes=(1, 3)))
    cats = written["train"][2]
    keep = np.isin(cats, (1, 3))
    assert d.num_classes == 2
    assert d.train_y.tolist() == np.where(cats[keep] == 1, 0, 1).tolist()


def test_smallnorb_rejects_a_file_with_a_wrong_header_or_too_few_bytes(tmp_path):
    path = tmp_path / "x.mat"
    path.write_bytes(struct.pack("<5i", 0x1E3D4C51, 1, 3, 1, 1) + b"\0" * 12)  # float matrix
    with pytest.raises(ValueError, match="magic 0x1e3d4c51 is not a NORB byte"):
        smallnorb.read_matrix(path)
    path.write_bytes(_norb_bytes(np.zeros((2, 2, 96, 96), dtype=np.uint8))[:-1])
    with pytest.raises(ValueError, match="needs 36864"):
        smallnorb.read_matrix(path)


def test_missing_smallnorb_names_the_folder_and_the_nyu_page(tmp_path):
    hp = DataHparams(name="smallnorb", root=str(tmp_path), download=True)
    folder = tmp_path / "smallnorb"
    expected = [folder / name for pair in smallnorb.FILES.values() for name in pair]
    assert data.get("smallnorb").missing_files(hp) == expected  # no download exists
    with pytest.raises(FileNotFoundError) as info:
        data.load(hp)
    message = str(info.value)
    for needle in (str(folder), str(expected[2]), "https://cs.nyu.edu/~yann/research/norb/",
                   "no automatic download", "data.root"):
        assert needle in message


# Tiny ImageNet
WNIDS = ("n09999999", "n01443537", "n05555555")  # wnids.txt order; labels follow sorted order


def _jpeg(path: Path, color: tuple[int, int, int] | int, mode: str = "RGB", size: int = 64):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, (size, size), color).save(path, quality=95)


def _write_tiny(root: Path) -> Path:
    """3 classes with 3, 2 and 1 training images, 4 val images; colors encode (class, k)."""
    folder = root / tiny_imagenet.FOLDER
    folder.mkdir(parents=True)
    (folder / "wnids.txt").write_text("\n".join(WNIDS) + "\n")
    for count, wnid in zip((3, 2, 1), sorted(WNIDS), strict=True):
        label = sorted(WNIDS).index(wnid)
        for k in range(count):
            _jpeg(folder / "train" / wnid / "images" / f"{wnid}_{k}.JPEG",
                  (40 * label, 60 * k, 200))
        (folder / "train" / wnid / f"{wnid}_boxes.txt").write_text("")
    val = [("val_0.JPEG", "n09999999"), ("val_1.JPEG", "n01443537"),
           ("val_2.JPEG", "n05555555"), ("val_3.JPEG", "n01443537")]
    for i, (name, _) in enumerate(val):
        _jpeg(folder / "val" / "images" / name, 50 * i, mode="L")  # grayscale, as some are
    (folder / "val" / "val_annotations.txt").write_text(
        "".join(f"{name}\t{wnid}\t0\t0\t63\t63\n" for name, wnid in val))
    return folder


def test_tiny_imagenet_round_trips_a_real_folder(tmp_path):
    _write_tiny(tmp_path)
    d = data.load(DataHparams(name="tiny-imagenet", root=str(tmp_path)))
    assert d.train_x.shape == (6, 3, 64, 64) and d.test_x.shape == (4, 3, 64, 64)
    assert d.train_x.dtype == torch.float32 and d.train_y.dtype == torch.int64
    assert d.num_classes == 3
    # labels in sorted wnid order; training images round robin: k = 0 of every class, then 1
    assert tiny_imagenet.class_wnids(tmp_path / "tiny-imagenet-200") == sorted(WNIDS)
    assert d.train_y.tolist() == [0, 1, 2, 0, 1, 0]
    assert d.test_y.tolist() == [2, 0, 1, 0]  # val_annotations order, wnids mapped by label
    mean = torch.tensor(tiny_imagenet.IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(tiny_imagenet.IMAGENET_STD).view(1, 3, 1, 1)
    pixels = (d.train_x * std + mean) * 255
    colors = torch.tensor([[0, 0, 200], [40, 0, 200], [80, 0, 200], [0, 60, 200],
                           [40, 60, 200], [0, 120, 200]], dtype=torch.float32)
    assert torch.allclose(pixels.mean((2, 3)), colors, atol=2)  # JPEG is lossy
    grey = (d.test_x * std + mean) * 255  # grayscale files become three equal channels
    assert torch.allclose(grey.mean((2, 3)), torch.tensor([0.0, 50, 100, 150])[:, None]
                          .expand(4, 3), atol=2)
    assert isinstance(d.augment, cifar.RandomFlipCrop)
    assert d.augment.flip and d.augment.padding == 4
    assert d.augment.fill == pytest.approx((-mean / std).flatten().tolist())


def test_tiny_imagenet_class_selection_uses_sorted_wnid_labels(tmp_path):
    _write_tiny(tmp_path)
    d = data.load(DataHparams(name="tiny-imagenet", root=str(tmp_path), classes=(1, 2)))
    assert d.train_y.tolist() == [0, 1, 0] and d.test_y.tolist() == [1, 0]


def test_tiny_imagenet_rejects_unknown_wnids_and_wrong_sizes(tmp_path):
    folder = _write_tiny(tmp_path / "a")
    with open(folder / "val" / "val_annotations.txt", "a") as f:
        f.write("val_9.JPEG\tn00000001\t0\t0\t1\t1\n")
    with pytest.raises(ValueError, match=r"val_annotations.txt:5: wnid 'n00000001'"):
        data.get("tiny-imagenet").load(DataHparams(name="tiny-imagenet", root=str(tmp_path / "a")))
    folder = _write_tiny(tmp_path / "b")
    _jpeg(folder / "train" / "n01443537" / "images" / "n01443537_0.JPEG", 0, size=32)
    with pytest.raises(ValueError, match="images are 64x64, got 32x32"):
        data.get("tiny-imagenet").load(DataHparams(name="tiny-imagenet", root=str(tmp_path / "b")))


def test_missing_tiny_imagenet_names_the_folder_and_the_archive(tmp_path):
    hp = DataHparams(name="tiny-imagenet", root=str(tmp_path), download=True)
    folder = tmp_path / "tiny-imagenet-200"
    assert folder / "wnids.txt" in data.get("tiny-imagenet").missing_files(hp)
    with pytest.raises(FileNotFoundError) as info:
        data.load(hp)
    message = str(info.value)
    for needle in (str(folder), "http://cs231n.stanford.edu/tiny-imagenet-200.zip",
                   "no automatic download", "data.root"):
        assert needle in message
    _write_tiny(tmp_path)
    assert data.get("tiny-imagenet").missing_files(hp) == []
    train = folder / "train" / "n05555555" / "images"
    for image in train.iterdir():
        image.unlink()
    train.rmdir()
    assert data.get("tiny-imagenet").missing_files(hp) == [train]
