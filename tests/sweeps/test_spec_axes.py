"""Tests for the spec's axes beyond the plain grid (sweeps/spec.py): ``recipes:``,
``transfer:``, ``pruning.rewind``, dataset entries with class selections, the method variants
they expand to, and which of them ``sweeps.run.check_compatible`` lets change on a sweep.

Every error is checked by the field path the ``SpecError`` lists (``err.problems``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from sweeps.run import check_compatible
from sweeps.spec import SpecError
from sweeps.spec import SweepSpec
from sweeps.spec import parse
from sweeps.store import Store
from trainer.hparams import DataHparams
from trainer.hparams import RecipeHparams
from trainer.methods.lth_rewind import RewindHparams
from trainer.methods.rst import RSTHparams
from trainer.methods.transfer import TransferHparams

TRANSFER = {"methods": ["lth", "transfer"], "sparsities": [0.36],
            "dataset": ["digits[0-4]"], "transfer": {"targets": ["digits[5-9]"]}}


def _spec(**overrides: Any) -> SweepSpec:
    return parse({"name": "t", **overrides})


def _problems(**overrides: Any) -> list[tuple[str, str]]:
    with pytest.raises(SpecError) as info:
        _spec(**overrides)
    return info.value.problems


def _only_problem(**overrides: Any) -> tuple[str, str]:
    problems = _problems(**overrides)
    assert len(problems) == 1, problems
    return problems[0]


# --- recipes ----------------------------------------------------------------------------------

def test_default_recipes_are_only_the_plain_base() -> None:
    spec = _spec()
    assert list(spec.recipes) == ["base"]
    assert spec.recipe_hparams() == {"base": RecipeHparams()}


def test_recipe_hparams_maps_every_field_of_each_recipe() -> None:
    spec = _spec(recipes={
        "base": {},
        "ls": {"label_smoothing": 0.1},
        "ps": {"activation": "pswish", "beta": 3},
        "kd": {"distill": {}},
        "kd2": {"distill": {"temperature": 2, "alpha": 0.5}},
        "warm": {"warmup_epochs": 2, "skip_connections": True},
    })
    assert spec.recipe_hparams() == {
        "base": RecipeHparams(),
        "ls": RecipeHparams(label_smoothing=0.1),
        "ps": RecipeHparams(activation="pswish", beta=3.0),
        "kd": RecipeHparams(distill_alpha=0.9, distill_temperature=5.0),
        "kd2": RecipeHparams(distill_alpha=0.5, distill_temperature=2.0),
        "warm": RecipeHparams(warmup_epochs=2.0, skip_connections=True),
    }
    assert list(spec.recipe_hparams()) == ["base", "ls", "ps", "kd", "kd2", "warm"]


def test_base_recipe_with_settings_is_refused() -> None:
    field, reason = _only_problem(recipes={"base": {"label_smoothing": 0.1}})
    assert field == "recipes.base"
    assert "must be {}" in reason and "another name" in reason


@pytest.mark.parametrize("settings", [{}, {"activation": "relu"}, {"label_smoothing": 0.0},
                                      {"warmup_epochs": 0}, {"beta": 2.0}])
def test_a_non_base_recipe_that_changes_nothing_is_refused(settings: dict) -> None:
    field, reason = _only_problem(recipes={"base": {}, "plain": settings})
    assert field == "recipes.plain"
    assert reason.startswith("changes nothing")


def test_two_recipes_with_the_same_settings_are_refused_naming_the_second() -> None:
    field, reason = _only_problem(recipes={"base": {}, "a": {"label_smoothing": 0.1},
                                           "b": {"label_smoothing": 0.1}})
    assert (field, reason) == ("recipes.b", "same settings as recipes.a")


def test_recipes_equal_after_defaults_are_the_same_settings() -> None:
    field, reason = _only_problem(recipes={"base": {}, "kd": {"distill": {}},
                                           "kd5": {"distill": {"temperature": 5.0,
                                                               "alpha": 0.9}}})
    assert (field, reason) == ("recipes.kd5", "same settings as recipes.kd")


@pytest.mark.parametrize("activation", ["relu", "swish", "mish"])
def test_beta_without_pswish_is_refused_at_the_beta_field(activation: str) -> None:
    field, reason = _only_problem(recipes={"base": {}, "r": {"activation": activation,
                                                             "beta": 3.0}})
    assert field == "recipes.r.beta"
    assert "pswish" in reason


def test_empty_recipes_are_refused() -> None:
    field, reason = _only_problem(recipes={})
    assert field == "recipes"
    assert "base: {}" in reason


@pytest.mark.parametrize(
    ("recipe", "path"),
    [
        ({"label_smoothing": 1.0}, "recipes.r.label_smoothing"),
        ({"label_smoothing": -0.1}, "recipes.r.label_smoothing"),
        ({"activation": "gelu"}, "recipes.r.activation"),
        ({"activation": "pswish", "beta": 0}, "recipes.r.beta"),
        ({"distill": {"alpha": 1.5}}, "recipes.r.distill.alpha"),
        ({"distill": {"temperature": 0}}, "recipes.r.distill.temperature"),
        ({"distill": {"tau": 2}}, "recipes.r.distill.tau"),
        ({"warmup_epochs": -1}, "recipes.r.warmup_epochs"),
        ({"skip_connections": "yes"}, "recipes.r.skip_connections"),
        ({"dropout": 0.5}, "recipes.r.dropout"),
    ],
)
def test_bad_recipe_fields_are_named_by_path(recipe: dict, path: str) -> None:
    field, _ = _only_problem(recipes={"base": {}, "r": recipe})
    assert field == path


def test_recipe_names_must_be_path_safe() -> None:
    (field, reason), = _problems(recipes={"base": {}, "a/b": {"label_smoothing": 0.1}})
    assert field.startswith("recipes.a/b")
    assert "pattern" in reason


# --- transfer ---------------------------------------------------------------------------------

def test_transfer_spec_keeps_targets_inits_and_regimes() -> None:
    spec = _spec(**{**TRANSFER, "transfer": {"targets": ["digits[5-9]"], "inits": ["init"],
                                             "regimes": ["freeze"]}})
    assert spec.transfer.targets == ["digits[5-9]"]
    assert (spec.transfer.inits, spec.transfer.regimes) == (["init"], ["freeze"])


def test_transfer_method_without_targets_is_refused() -> None:
    field, reason = _only_problem(methods=["lth", "transfer"])
    assert field == "transfer.targets"
    assert "needs at least one target" in reason


def test_transfer_targets_without_the_method_are_refused() -> None:
    field, reason = _only_problem(methods=["lth"], transfer={"targets": ["digits[5-9]"]})
    assert field == "transfer.targets"
    assert "`transfer` is not in methods" in reason


@pytest.mark.parametrize(
    ("targets", "path", "needle"),
    [
        (["digits[5-9]", "digits[8-12]"], "transfer.targets[1]",
         "digits has classes 0-9, not [10, 11, 12]"),
        (["imagenet"], "transfer.targets[0]", "unknown dataset 'imagenet'"),
        (["digits[a]"], "transfer.targets[0]", "expected NAME or NAME[CLASSES]"),
        (["digits[9-5]"], "transfer.targets[0]", "is descending"),
        (["digits[1,1]"], "transfer.targets[0]", "selected twice"),
        (["digits[5-9]", "digits[5-9]"], "transfer.targets", "duplicate values"),
    ],
)
def test_transfer_targets_are_validated_like_datasets(targets: list[str], path: str,
                                                      needle: str) -> None:
    field, reason = _only_problem(**{**TRANSFER, "transfer": {"targets": targets}})
    assert field == path
    assert needle in reason


@pytest.mark.parametrize(
    ("group", "path"),
    [
        ({"inits": ["warm"]}, "transfer.inits[0]"),
        ({"regimes": ["finetune", "thaw"]}, "transfer.regimes[1]"),
        ({"inits": ["init", "init"]}, "transfer.inits"),
        ({"inits": []}, "transfer"),
        ({"regimes": []}, "transfer"),
        ({"lr": 0.1}, "transfer.lr"),
    ],
)
def test_bad_transfer_arms_are_named_by_path(group: dict, path: str) -> None:
    field, _ = _only_problem(**{**TRANSFER, "transfer": {"targets": ["digits[5-9]"], **group}})
    assert field == path


def test_a_distill_recipe_together_with_transfer_is_refused() -> None:
    field, reason = _only_problem(**TRANSFER, recipes={"base": {}, "ls": {"label_smoothing": 0.1},
                                                       "kd": {"distill": {}}})
    assert field == "recipes.kd.distill"
    assert "transfer" in reason


def test_other_recipes_together_with_transfer_are_fine() -> None:
    spec = _spec(**TRANSFER, recipes={"base": {}, "ls": {"label_smoothing": 0.1}})
    assert set(spec.recipe_hparams()) == {"base", "ls"}


# --- pruning.rewind ---------------------------------------------------------------------------

def test_rewind_defaults_to_one_epoch() -> None:
    spec = _spec(methods=["lth_rewind"])
    assert spec.method_variants("lth_rewind") == [RewindHparams(epochs=1)]


@pytest.mark.parametrize(
    ("rewind", "expected"),
    [({"epochs": 2}, RewindHparams(epochs=2)),
     ({"iterations": 5}, RewindHparams(epochs=None, iterations=5)),
     ({"iterations": 0}, RewindHparams(epochs=None, iterations=0))],
)
def test_rewind_takes_epochs_or_iterations(rewind: dict, expected: RewindHparams) -> None:
    spec = _spec(methods=["lth_rewind"], training={"epochs": 3}, pruning={"rewind": rewind})
    assert spec.method_variants("lth_rewind") == [expected]
    assert spec.method_hparams("lth_rewind") == expected


@pytest.mark.parametrize("rewind", [{}, {"epochs": 1, "iterations": 5}])
def test_rewind_needs_exactly_one_of_epochs_or_iterations(rewind: dict) -> None:
    field, reason = _only_problem(pruning={"rewind": rewind})
    assert field == "pruning.rewind.epochs"
    assert "exactly one of epochs or iterations" in reason


@pytest.mark.parametrize(
    ("rewind", "path"),
    [({"epochs": -1}, "pruning.rewind.epochs"),
     ({"iterations": -5}, "pruning.rewind.iterations"),
     ({"steps": 5}, "pruning.rewind.steps")],
)
def test_bad_rewind_fields_are_named_by_path(rewind: dict, path: str) -> None:
    assert _problems(pruning={"rewind": rewind})[0][0] == path


@pytest.mark.parametrize("epochs", [3, 4])
def test_rewind_epochs_must_be_below_the_training_epochs_with_lth_rewind(epochs: int) -> None:
    field, reason = _only_problem(methods=["lth_rewind"], training={"epochs": 3},
                                  pruning={"rewind": {"epochs": epochs}})
    assert field == "pruning.rewind.epochs"
    assert "must be below training.epochs (3)" in reason


def test_rewind_epochs_are_not_checked_without_lth_rewind() -> None:
    spec = _spec(methods=["lth"], training={"epochs": 3}, pruning={"rewind": {"epochs": 3}})
    assert spec.pruning.rewind.epochs == 3


def test_rewind_just_below_the_training_epochs_is_fine() -> None:
    spec = _spec(methods=["lth_rewind"], training={"epochs": 3},
                 pruning={"rewind": {"epochs": 2}})
    assert spec.method_hparams("lth_rewind") == RewindHparams(epochs=2)


# --- datasets with class selections -----------------------------------------------------------

def test_dataset_entries_may_select_classes() -> None:
    spec = _spec(dataset=["fashion-mnist[0-4]", "fashion-mnist[5-9]", "digits"])
    assert spec.datasets == ["fashion-mnist[0-4]", "fashion-mnist[5-9]", "digits"]
    hp = spec.data_hparams("fashion-mnist[0-4]")
    assert (hp.name, hp.classes, hp.label) == ("fashion-mnist", (0, 1, 2, 3, 4),
                                               "fashion-mnist[0-4]")


def test_data_hparams_of_a_selection_carries_the_data_group() -> None:
    spec = _spec(dataset="digits[0,2,5-7]", data={"root": "/d", "train_subset": 100,
                                                  "validation": 10})
    assert spec.data_hparams("digits[0,2,5-7]") == DataHparams(
        name="digits", root="/d", train_subset=100, validation=10, classes=(0, 2, 5, 6, 7))


@pytest.mark.parametrize(
    ("dataset", "path", "needle"),
    [
        ("fashion-mnist[5-10]", "dataset", "fashion-mnist has classes 0-9, not [10]"),
        (["digits", "digits[9-11]"], "dataset[1]", "digits has classes 0-9, not [10, 11]"),
        (["digits[5]"], "dataset[0]", "a class selection needs at least 2 classes"),
        ("cifar10[10]", "dataset", "cifar10 has classes 0-9, not [10]"),
        ("digits[4-2]", "dataset", "is descending"),
        ("digits[1,1]", "dataset", "selected twice"),
        ("digits[x]", "dataset", "expected NAME or NAME[CLASSES]"),
        (["digits", "imagenet[0-1]"], "dataset[1]", "unknown dataset 'imagenet'"),
        (["digits[0-4]", "digits[0-4]"], "dataset", "duplicate values"),
    ],
)
def test_bad_dataset_selections_are_named_by_path(dataset: Any, path: str,
                                                  needle: str) -> None:
    field, reason = _only_problem(dataset=dataset)
    assert field == path
    assert needle in reason


def test_cifar100_selection_may_use_classes_above_9() -> None:
    spec = _spec(dataset="cifar100[50-99]", model="conv2")
    assert spec.data_hparams("cifar100[50-99]").classes == tuple(range(50, 100))


# --- method_variants --------------------------------------------------------------------------

def test_transfer_variants_are_targets_x_inits_x_regimes_in_spec_order() -> None:
    spec = _spec(**{**TRANSFER, "transfer": {"targets": ["digits[5-9]", "digits[0,9]"],
                                             "inits": ["reinit", "late_reset"],
                                             "regimes": ["freeze", "finetune"]}})
    assert spec.method_variants("transfer") == [
        TransferHparams(target=t, init=i, regime=r)
        for t in ("digits[5-9]", "digits[0,9]")
        for i in ("reinit", "late_reset")
        for r in ("freeze", "finetune")
    ]


def test_default_transfer_arms_are_every_init_and_regime() -> None:
    variants = _spec(**TRANSFER).method_variants("transfer")
    assert [(v.init, v.regime) for v in variants] == [
        ("late_reset", "finetune"), ("late_reset", "freeze"), ("init", "finetune"),
        ("init", "freeze"), ("reinit", "finetune"), ("reinit", "freeze")]
    assert {v.target for v in variants} == {"digits[5-9]"}


def test_rst_gives_one_one_cycle_variant_from_the_rst_group() -> None:
    spec = _spec(methods=["rst"], rst={"lr": 0.01, "cycles": 3})
    (variant,) = spec.method_variants("rst")
    assert isinstance(variant, RSTHparams)
    assert (variant.lr, variant.cycles) == (0.01, 1)
    assert spec.method_hparams("rst") == variant


@pytest.mark.parametrize("method", ["dense", "lth", "pf", "random_reinit", "random_pruning",
                                    "omp_lth", "sdt"])
def test_methods_without_hparams_have_the_one_variant_none(method: str) -> None:
    spec = _spec()
    assert spec.method_variants(method) == [None]
    assert spec.method_hparams(method) is None


# --- check_compatible -------------------------------------------------------------------------

BASE = {"name": "st", "methods": ["dense", "lth", "lth_rewind"], "sparsities": [0.36],
        "training": {"epochs": 3}, "pruning": {"rate": 0.2, "rewind": {"epochs": 1}}}


@pytest.fixture
def stored(tmp_path: Path) -> Store:
    store = Store(str(tmp_path)).child("st")
    store.put_json("spec.json", parse(BASE).to_json())
    return store


@pytest.mark.parametrize("rewind", [{"epochs": 2}, {"iterations": 7}])
def test_changing_the_rewind_point_of_a_sweep_is_allowed(stored: Store, rewind: dict) -> None:
    check_compatible(stored, parse({**BASE, "pruning": {"rate": 0.2, "rewind": rewind}}))


def test_changing_the_pruning_rate_of_a_sweep_is_refused(stored: Store) -> None:
    with pytest.raises(SpecError) as info:
        check_compatible(stored, parse({**BASE, "pruning": {"rate": 0.3,
                                                            "rewind": {"iterations": 7}}}))
    assert [field for field, _ in info.value.problems] == ["pruning.rate"]
    assert "(0.2 -> 0.3)" in info.value.problems[0][1]


def test_changing_recipes_or_datasets_is_an_allowed_grid_change(stored: Store) -> None:
    check_compatible(stored, parse({**BASE, "recipes": {"base": {},
                                                        "ls": {"label_smoothing": 0.1}}}))
    check_compatible(stored, parse({**BASE, "dataset": ["digits", "digits[0-4]"]}))
