"""Tests for class selections of datasets: ``DataHparams.classes`` (``label``, ``slug``),
``parse_dataset``, and ``trainer.data``'s ``check_classes``, ``num_classes``, ``sizes`` and
``load`` (keep the selected classes, relabel them 0..k-1, then subsets and validation).

Digits ship with scikit-learn; the Fashion-MNIST test reads the Debian package's files and is
skipped where the package is not installed.
"""

from __future__ import annotations

import pytest
import torch

from sweeps.store import content_key
from trainer import data
from trainer.data import mnist_family
from trainer.hparams import DataHparams
from trainer.hparams import PruneHparams
from trainer.hparams import TrainHparams
from trainer.hparams import parse_dataset

PINNED_QUICKSTART_TRUNK = "53e918749c7e3ac9"  # tests/sweeps/test_plan.py::test_keys_are_pinned


# parse_dataset
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("digits", ("digits", ())),
        ("fashion-mnist", ("fashion-mnist", ())),
        ("fashion-mnist[0-4]", ("fashion-mnist", (0, 1, 2, 3, 4))),
        ("cifar10[0,2,5-7]", ("cifar10", (0, 2, 5, 6, 7))),
        ("digits[7]", ("digits", (7,))),
        ("digits[5, 0-2]", ("digits", (0, 1, 2, 5))),
        (" digits[3-3] ", ("digits", (3,))),
    ],
)
def test_parse_dataset_splits_name_and_sorted_classes(text, expected):
    assert parse_dataset(text) == expected


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("digits[4-2]", "range '4-2' is descending"),
        ("digits[1,1]", "a class is selected twice"),
        ("digits[0-3,2]", "a class is selected twice"),
        ("digits[a]", "expected NAME or NAME"),
        ("digits[0-4", "expected NAME or NAME"),
        ("digits]", "expected NAME or NAME"),
        ("digits[1-]", "'1-' is not a class index"),
        ("digits[0--2]", "is descending"),
        ("digits[-1]", "'-1' is not a class index"),
        ("digits[]", "'' is not a class index"),
        ("digits[0,,1]", "'' is not a class index"),
    ],
)
def test_parse_dataset_rejects_malformed_selections_quoting_the_entry(text, reason):
    with pytest.raises(ValueError, match=r"dataset '.*'") as info:
        parse_dataset(text)
    assert reason in str(info.value)


# DataHparams
def test_classes_are_normalized_to_sorted_distinct_ints():
    hp = DataHparams(name="digits", classes=[5, 0, 2, 2, 1])
    assert hp.classes == (0, 1, 2, 5)
    assert hp == DataHparams(name="digits", classes=(0, 1, 2, 5))


def test_negative_class_is_rejected():
    with pytest.raises(ValueError, match="classes must be >= 0"):
        DataHparams(name="digits", classes=(-1, 2))


@pytest.mark.parametrize(
    ("classes", "label", "slug"),
    [
        ((), "digits", "digits"),
        ((0, 1, 2, 5), "digits[0-2,5]", "digits_c0-2.5"),
        ((5, 6, 7, 8, 9), "digits[5-9]", "digits_c5-9"),
        ((0, 2), "digits[0,2]", "digits_c0.2"),
        ((3,), "digits[3]", "digits_c3"),
        ((0, 1, 3, 4, 7), "digits[0-1,3-4,7]", "digits_c0-1.3-4.7"),
    ],
)
def test_label_and_slug_write_classes_as_ranges(classes, label, slug):
    hp = DataHparams(name="digits", classes=classes)
    assert hp.label == label
    assert hp.slug == slug


@pytest.mark.parametrize("classes", [(), (0, 1, 2, 5), (0, 2), (1, 3, 4, 5, 9)])
def test_label_parses_back_to_the_same_selection(classes):
    hp = DataHparams(name="fashion-mnist", classes=classes)
    assert parse_dataset(hp.label) == ("fashion-mnist", hp.classes)


def test_content_key_of_data_without_classes_is_unchanged():
    # The quick-start trunk of tests/sweeps/test_plan.py: adding ``classes`` must keep its key.
    trunk = {
        "model": "lenet_300_100",
        "data": DataHparams(name="digits"),
        "train": TrainHparams(optimizer="sgd", lr=0.01, epochs=10, batch_size=64, momentum=0.9,
                              weight_decay=0.0),
        "prune": PruneHparams(rate=0.2, scope="layerwise", keep_dense=("output",)),
    }
    assert content_key("imp_chain", trunk) == PINNED_QUICKSTART_TRUNK
    explicit = {**trunk, "data": DataHparams(name="digits", classes=())}
    assert content_key("imp_chain", explicit) == PINNED_QUICKSTART_TRUNK
    selected = {**trunk, "data": DataHparams(name="digits", classes=(0, 1, 2, 3, 4))}
    assert content_key("imp_chain", selected) != PINNED_QUICKSTART_TRUNK


# check_classes / num_classes / sizes
def test_unknown_class_is_a_value_error_naming_the_dataset():
    hp = DataHparams(name="digits", classes=(8, 9, 10, 11))
    for check in (data.check_classes, data.num_classes, data.sizes, data.load):
        with pytest.raises(ValueError, match=r"dataset 'digits\[8-11\]': digits has classes "
                                             r"0-9, not \[10, 11\]"):
            check(hp)


def test_cifar100_accepts_classes_up_to_99():
    data.check_classes(DataHparams(name="cifar100", classes=(0, 99)))
    with pytest.raises(ValueError, match="cifar100 has classes 0-99, not \\[100\\]"):
        data.check_classes(DataHparams(name="cifar100", classes=(99, 100)))


@pytest.mark.parametrize(
    ("name", "classes", "expected"),
    [
        ("digits", (), 10),
        ("digits", (0, 1, 2, 5), 4),
        ("fashion-mnist", (5, 6, 7, 8, 9), 5),
        ("cifar100", tuple(range(20)), 20),
        ("cifar100", (), 100),
    ],
)
def test_num_classes_is_the_selection_size_or_the_datasets(name, classes, expected):
    assert data.num_classes(DataHparams(name=name, classes=classes)) == expected


def test_sizes_of_selections_sum_the_per_class_counts_without_reading_files():
    assert data.sizes(DataHparams(name="fashion-mnist", classes=(5, 6, 7, 8, 9))) == \
        (30000, 5000)
    assert data.sizes(DataHparams(name="fashion-mnist")) == (60000, 10000)
    assert data.sizes(DataHparams(name="mnist", classes=(0, 1))) == (5923 + 6742, 980 + 1135)
    assert data.sizes(DataHparams(name="cifar100", classes=(3, 4))) == (1000, 200)


def test_per_class_sizes_add_up_to_each_registered_split():
    for name, entry in data.DATASETS.items():
        train, test = entry.class_sizes
        assert len(train) == len(test) == entry.num_classes, name
        assert (sum(train), sum(test)) == entry.sizes, name


# load on digits
@pytest.fixture(scope="module")
def full() -> data.InMemoryData:
    return data.load(DataHparams(name="digits"))


def test_digits_class_sizes_match_the_loaded_split(full):
    train, test = data.get("digits").class_sizes
    assert torch.bincount(full.train_y, minlength=10).tolist() == list(train)
    assert torch.bincount(full.test_y, minlength=10).tolist() == list(test)


@pytest.mark.parametrize("classes", [(0, 1, 2, 3, 4), (5, 6, 7, 8, 9), (0, 1, 2, 5), (8,),
                                     (1, 3, 4, 9)])
def test_sizes_equal_the_loaded_counts_of_a_digits_selection(classes):
    hp = DataHparams(name="digits", classes=classes)
    d = data.load(hp)
    assert data.sizes(hp) == (len(d.train_y), len(d.test_y))
    assert len(d.train_x) == len(d.train_y) and len(d.test_x) == len(d.test_y)


@pytest.mark.parametrize("classes", [(0, 1, 2, 5), (5, 6, 7, 8, 9), (3, 7)])
def test_selection_relabels_class_j_as_the_jth_selected_class(full, classes):
    d = data.load(DataHparams(name="digits", classes=classes))
    assert d.num_classes == len(classes) and d.input_shape == full.input_shape
    assert d.train_y.dtype == torch.int64
    assert sorted(set(d.train_y.tolist())) == list(range(len(classes)))
    assert sorted(set(d.test_y.tolist())) == list(range(len(classes)))
    for j, original in enumerate(classes):
        assert torch.equal(d.train_x[d.train_y == j], full.train_x[full.train_y == original])
        assert torch.equal(d.test_x[d.test_y == j], full.test_x[full.test_y == original])


def test_selection_keeps_the_examples_in_file_order(full):
    classes = (1, 3, 4)
    d = data.load(DataHparams(name="digits", classes=classes))
    keep = torch.isin(full.train_y, torch.tensor(classes))
    assert torch.equal(d.train_x, full.train_x[keep])
    relabel = {c: j for j, c in enumerate(classes)}
    assert d.train_y.tolist() == [relabel[c] for c in full.train_y[keep].tolist()]


def test_subsets_keep_the_first_examples_of_the_selection():
    whole = data.load(DataHparams(name="digits", classes=(5, 6, 7, 8, 9)))
    sub = data.load(DataHparams(name="digits", classes=(5, 6, 7, 8, 9), train_subset=50,
                                test_subset=9))
    assert torch.equal(sub.train_x, whole.train_x[:50])
    assert torch.equal(sub.train_y, whole.train_y[:50])
    assert torch.equal(sub.test_y, whole.test_y[:9])
    assert int(sub.train_y.max()) <= 4  # relabelled before the subset is cut


def test_a_subset_larger_than_the_selection_is_rejected():
    n_train = data.sizes(DataHparams(name="digits", classes=(0, 1)))[0]
    assert n_train == 142 + 146
    data.load(DataHparams(name="digits", classes=(0, 1), train_subset=n_train))
    with pytest.raises(ValueError, match=rf"data.train_subset must be in \[0, {n_train}\]"):
        data.load(DataHparams(name="digits", classes=(0, 1), train_subset=n_train + 1))


def test_validation_split_is_drawn_from_the_selection():
    classes = (0, 1, 2, 3, 4)
    whole = data.load(DataHparams(name="digits", classes=classes))
    split = data.load(DataHparams(name="digits", classes=classes, validation=100))
    train_idx, val_idx = data.validation_split(len(whole.train_y), 100)
    assert len(split.val_y) == 100 and len(split.train_y) == len(whole.train_y) - 100
    assert torch.equal(split.val_x, whole.train_x[val_idx])
    assert torch.equal(split.val_y, whole.train_y[val_idx])
    assert torch.equal(split.train_y, whole.train_y[train_idx])
    assert torch.equal(split.test_x, whole.test_x)
    assert set(split.val_y.tolist()) <= set(range(len(classes)))


def test_validation_applies_after_subset_and_selection():
    hp = DataHparams(name="digits", classes=(5, 6, 7, 8, 9), train_subset=200, validation=40)
    whole = data.load(DataHparams(name="digits", classes=(5, 6, 7, 8, 9)))
    split = data.load(hp)
    train_idx, val_idx = data.validation_split(200, 40)
    assert torch.equal(split.val_x, whole.train_x[:200][val_idx])
    assert torch.equal(split.train_x, whole.train_x[:200][train_idx])


def test_selecting_every_class_gives_the_full_dataset(full):
    d = data.load(DataHparams(name="digits", classes=tuple(range(10))))
    assert torch.equal(d.train_x, full.train_x) and torch.equal(d.train_y, full.train_y)
    assert torch.equal(d.test_y, full.test_y) and d.num_classes == 10


def test_loading_a_selection_leaves_the_cached_full_dataset_intact(full):
    before = full.train_y.clone()
    data.load(DataHparams(name="digits", classes=(7, 8)))
    again = data.load(DataHparams(name="digits"))
    assert torch.equal(again.train_y, before) and again.num_classes == 10


# load on Fashion-MNIST (Debian package)
def test_fashion_mnist_classes_5_to_9_load_as_many_examples_as_sizes_says(tmp_path, monkeypatch):
    if not mnist_family.debian_fashion_mnist_available():
        pytest.skip("Debian package dataset-fashion-mnist not installed "
                    f"({mnist_family.DEBIAN_FASHION_MNIST_DIR})")
    monkeypatch.setenv("LOTTERY_DATA_CACHE", str(tmp_path))
    hp = DataHparams(name="fashion-mnist", classes=(5, 6, 7, 8, 9))
    d = data.load(hp)
    assert data.sizes(hp) == (len(d.train_y), len(d.test_y)) == (30000, 5000)
    assert d.train_x.shape == (30000, 1, 28, 28) and d.num_classes == 5
    assert torch.bincount(d.train_y).tolist() == [6000] * 5
    assert torch.bincount(d.test_y).tolist() == [1000] * 5
