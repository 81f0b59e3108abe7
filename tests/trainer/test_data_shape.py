"""``data.shape``: examples expanded to (C, H, W), as Mehta 2019 serves Fashion-MNIST and
SmallNORB to a CIFAR-10 ResNet-18 (3 x 32 x 32)."""

from __future__ import annotations

import pytest
import torch

from sweeps import preflight
from sweeps import preflight_models
from sweeps import spec as sweep_spec
from sweeps.errors import SpecError
from sweeps.keys import trunk_key
from sweeps.plan import make_plan
from trainer import data as datasets
from trainer.hparams import DataHparams


def test_expand_resizes_and_repeats_a_single_channel() -> None:
    x = torch.rand(4, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    y = datasets.expand(x, (3, 32, 32))
    assert y.shape == (4, 3, 32, 32)
    assert torch.equal(y[:, 0], y[:, 1]) and torch.equal(y[:, 1], y[:, 2])
    # a bilinear resize keeps the mean of a smooth image and never leaves its range
    assert float(y.min()) >= float(x.min()) - 1e-6 and float(y.max()) <= float(x.max()) + 1e-6
    assert torch.equal(datasets.expand(x, (1, 28, 28)), x)  # the own shape is a no-op


def test_loaded_digits_come_in_the_requested_shape() -> None:
    plain = datasets.load(DataHparams(name="digits", validation=100))
    big = datasets.load(DataHparams(name="digits", validation=100, shape=(3, 16, 16)))
    for a, b in ((plain.train_x, big.train_x), (plain.val_x, big.val_x),
                 (plain.test_x, big.test_x)):
        assert b.shape == (a.shape[0], 3, 16, 16)
        assert torch.allclose(b[:, 0], torch.nn.functional.interpolate(
            a, size=(16, 16), mode="bilinear", align_corners=False, antialias=True)[:, 0])
    assert torch.equal(plain.train_y, big.train_y)
    assert datasets.input_shape(DataHparams(name="digits", shape=(3, 16, 16))) == (3, 16, 16)


def test_a_shape_that_is_not_three_ints_is_a_spec_error() -> None:
    with pytest.raises(SpecError, match=r"data\.shape"):
        sweep_spec.parse({"name": "s", "dataset": "digits", "data": {"shape": [3, 32]}})
    with pytest.raises(ValueError, match="positive"):
        DataHparams(name="digits", shape=(3, 0, 8))


def test_three_channels_never_collapse_to_one() -> None:
    spec = sweep_spec.parse({"name": "s", "dataset": "cifar10", "data": {"shape": [1, 32, 32]}})
    problems = preflight.shape_problems(spec)
    assert problems and problems[0][0] == "data.shape" and "channels" in problems[0][1]
    with pytest.raises(SpecError, match=r"data\.shape"):
        preflight.check(spec, files=False)


def test_the_shape_is_part_of_the_trunk_key() -> None:
    base = {"name": "s", "dataset": "digits", "sparsities": [0.5], "seeds": [0], "lrs": [0.1]}
    plain = make_plan(sweep_spec.parse(base)).chains[0].trunk
    shaped = make_plan(sweep_spec.parse({**base, "data": {"shape": [1, 16, 16]}})).chains[0].trunk
    assert trunk_key(plain) != trunk_key(shaped)
    assert shaped.data.shape == (1, 16, 16)


def test_a_transfer_between_shapes_passes_the_preflight_once_expanded() -> None:
    spec = {"name": "s", "dataset": "cifar10", "model": "resnet18", "sparsities": [0.5],
            "methods": ["transfer"], "transfer": {"targets": ["fashion-mnist"]}}
    bare = preflight_models.model_problems(sweep_spec.parse(spec))
    assert any(f == "transfer.targets[0]" for f, _ in bare), bare
    expanded = sweep_spec.parse({**spec, "data": {"shape": [3, 32, 32]}})
    problems = preflight_models.model_problems(expanded)
    assert not [p for p in problems if p[0].startswith("transfer")]
