"""Tests for sweeps/spec.py: YAML -> validated SweepSpec, every problem named by field path."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pydantic
import pytest
import yaml

import sweeps
from sweeps.spec import DEFAULT_METHODS
from sweeps.spec import SpecError
from sweeps.spec import load
from sweeps.spec import parse
from sweeps.store import content_key
from trainer.hparams import DataHparams
from trainer.hparams import PruneHparams
from trainer.hparams import TrainHparams
from trainer.methods.rst import RSTHparams

QUICKSTART = Path(sweeps.__file__).parent / "configs" / "quickstart.yaml"

# A full spec exercising every section, in the shape the feature request sketched.
ISSUE_EXAMPLE = """\
name: lenet-fmnist-lr-sweep
dataset: fashion-mnist
model: lenet_300_100
methods: [dense, lth, random_reinit, random_pruning, pf]
lrs: [0.001, 0.01, 0.1]
sparsities: [0.5, 0.8, 0.9, 0.95]
seeds: [0, 1, 2]
training:
  optimizer: sgd
  epochs: 20
  batch_size: 60
  momentum: 0.9
  weight_decay: 0.0001
  milestones: [10, 15]
  gamma: 0.1
pruning: {rate: 0.2, scope: global, keep_dense: [output]}
resources: {cpu: 2, gpu: 0.25}
data: {root: /data, download: false, train_subset: 0, test_subset: 0}
execution: {max_retries: 3, max_concurrent_trials: 8}
storage: s3://bucket/sweeps
"""


def _problems(raw: Any) -> list[tuple[str, str]]:
    with pytest.raises(SpecError) as info:
        parse(raw)
    return info.value.problems


def _only_problem(raw: Any) -> tuple[str, str]:
    problems = _problems(raw)
    assert len(problems) == 1, problems
    return problems[0]


def test_quickstart_config_loads_with_its_grid() -> None:
    spec = load(QUICKSTART)
    assert spec.name == "quickstart"
    assert spec.models == ["lenet_300_100"]
    assert spec.datasets == ["digits"]
    assert spec.methods == ["dense", "lth", "random_reinit", "random_pruning", "pf"]
    assert spec.lrs == [0.01, 0.1]
    assert spec.sparsities == [0.5, 0.8, 0.9]
    assert spec.seeds == [0, 1]
    assert spec.training.epochs == 10
    assert spec.pruning.rate == 0.2


def test_full_example_spec_loads_every_section(tmp_path: Path) -> None:
    path = tmp_path / "example.yaml"
    path.write_text(ISSUE_EXAMPLE)
    spec = load(path)
    assert spec.datasets == ["fashion-mnist"]
    assert spec.lrs == [0.001, 0.01, 0.1]
    assert spec.sparsities == [0.5, 0.8, 0.9, 0.95]
    assert spec.training.milestones == [10, 15]
    assert spec.training.weight_decay == 0.0001
    assert spec.pruning.scope == "global"
    assert spec.resources.gpu == 0.25
    assert spec.data.root == "/data"
    assert spec.execution.max_concurrent_trials == 8
    assert spec.storage == "s3://bucket/sweeps"
    assert spec.train_hparams(0.01) == TrainHparams(lr=0.01, epochs=20, batch_size=60,
                                                    weight_decay=0.0001, milestones=(10, 15))
    assert spec.prune_hparams() == PruneHparams(scope="global")


def test_minimal_spec_gets_the_documented_defaults() -> None:
    spec = parse({"name": "x"})
    assert spec.datasets == ["digits"]
    assert spec.models == ["lenet_300_100"]
    assert spec.methods == DEFAULT_METHODS == ["dense", "lth", "random_reinit",
                                               "random_pruning", "pf"]
    assert spec.lrs == [0.1]
    assert spec.sparsities == [0.5, 0.8]
    assert spec.seeds == [0]
    assert spec.storage == "results"
    assert (spec.training.optimizer, spec.training.epochs, spec.training.batch_size) == \
        ("sgd", 10, 64)
    assert (spec.resources.cpu, spec.resources.gpu) == (1.0, 0.0)
    assert (spec.execution.max_retries, spec.execution.max_concurrent_trials) == (2, 0)


def test_spec_defaults_equal_hparams_defaults_so_content_keys_omit_them() -> None:
    # content_key drops fields equal to the dataclass default; a drifting spec default would
    # silently put that field into every key.
    spec = parse({"name": "x"})
    assert spec.train_hparams(0.1) == TrainHparams()
    assert spec.prune_hparams() == PruneHparams()
    assert spec.data_hparams("digits") == DataHparams()
    assert spec.method_hparams("rst_iter") == RSTHparams()
    assert spec.method_hparams("rst") == RSTHparams(cycles=1)
    assert spec.method_hparams("lth") is None


@pytest.mark.parametrize("value", ["lenet_300_100", ["lenet_300_100", "conv2"]])
def test_model_accepts_a_string_or_a_list(value: str | list[str]) -> None:
    spec = parse({"name": "x", "model": value})
    assert spec.models == ([value] if isinstance(value, str) else value)


@pytest.mark.parametrize("value", ["digits", ["digits", "mnist"]])
def test_dataset_accepts_a_string_or_a_list(value: str | list[str]) -> None:
    spec = parse({"name": "x", "dataset": value})
    assert spec.datasets == ([value] if isinstance(value, str) else value)


def test_train_hparams_normalizes_integer_lr_to_the_same_config() -> None:
    spec = parse({"name": "x"})
    assert spec.train_hparams(1) == spec.train_hparams(1.0)
    assert isinstance(spec.train_hparams(1).lr, float)
    assert content_key("t", spec.train_hparams(1)) == content_key("t", spec.train_hparams(1.0))


def test_integer_lrs_in_yaml_parse_as_floats() -> None:
    spec = parse({"name": "x", "lrs": [1, 0.5]})
    assert spec.lrs == [1.0, 0.5]
    assert all(isinstance(lr, float) for lr in spec.lrs)


def test_to_json_includes_defaults_and_round_trips_through_parse() -> None:
    spec = load(QUICKSTART)
    data = spec.to_json()
    assert data["training"]["gamma"] == 0.1  # a default, written out in spec.json
    assert data["execution"] == {"max_retries": 2, "max_concurrent_trials": 0, "compact": True,
                                 "checkpoint_every_s": 30.0}
    assert parse(data) == spec
    assert parse(yaml.safe_load(yaml.safe_dump(data))) == spec


def test_spec_is_frozen() -> None:
    spec = parse({"name": "x"})
    with pytest.raises(pydantic.ValidationError):
        spec.name = "y"  # type: ignore[misc]
    assert spec.name == "x"


@pytest.mark.parametrize(("raw", "path", "reason"), [
    ({"methods": ["dense", "magic"]}, "methods[1]", "unknown method 'magic'"),
    ({"model": "resnet9000"}, "model", "unknown model 'resnet9000'"),
    ({"model": ["lenet_300_100", "resnet9000"]}, "model[1]", "unknown model 'resnet9000'"),
    ({"dataset": "imagenet42"}, "dataset", "unknown dataset 'imagenet42'"),
    ({"dataset": ["digits", "imagenet42"]}, "dataset[1]", "unknown dataset 'imagenet42'"),
    ({"sparsities": [0.5, 1.0]}, "sparsities[1]", "must be in [0, 1) (got 1.0)"),
    ({"sparsities": [-0.1]}, "sparsities[0]", "must be in [0, 1) (got -0.1)"),
    ({"sparsities": [float("nan")]}, "sparsities[0]", "finite number"),
    ({"lrs": [0]}, "lrs[0]", "must be > 0 (got 0"),
    ({"lrs": [0.1, -0.1]}, "lrs[1]", "must be > 0 (got -0.1)"),
    ({"lrs": [float("inf")]}, "lrs[0]", "finite number"),
    ({"lrs": []}, "lrs", "must not be empty"),
    ({"seeds": []}, "seeds", "must not be empty"),
    ({"methods": []}, "methods", "must not be empty"),
    ({"model": []}, "model", "must not be empty"),
    ({"sparsities": []}, "sparsities", "must not be empty"),
    ({"lrs": [0.1, 0.1]}, "lrs", "duplicate"),
    ({"lrs": [1, 1.0]}, "lrs", "duplicate"),
    ({"seeds": [0, 1, 0]}, "seeds", "duplicate"),
    ({"sparsities": [0.5, 0.5]}, "sparsities", "duplicate"),
    ({"methods": ["lth", "lth"]}, "methods", "duplicate"),
    ({"bogus": 1}, "bogus", "unknown key"),
    ({"training": {"epochz": 3}}, "training.epochz", "unknown key; did you mean 'epochs'?"),
    ({"sparsity": [0.5]}, "sparsity", "unknown key; did you mean 'sparsities'?"),
    ({"sparsities": [80]}, "sparsities[0]", "(got 80.0; a fraction removed: 0.8 for 80 %)"),
    ({"recipes": {"s": {"label_smothing": 0.1}}}, "recipes.s.label_smothing",
     "did you mean 'label_smoothing'?"),
    ({"lrs": "abc"}, "lrs", "valid list (got 'abc')"),
    ({"lrs": ["abc"]}, "lrs[0]", "valid number (got 'abc')"),
    ({"training": {"epochs": "10"}}, "training.epochs", "valid integer (got '10')"),
    ({"training": {"epochs": 2.5}}, "training.epochs", "valid integer (got 2.5)"),
    ({"training": {"epochs": 0}}, "training.epochs", "greater than 0"),
    ({"data": {"download": "yes"}}, "data.download", "valid boolean (got 'yes')"),
    ({"seeds": [True]}, "seeds[0]", "valid integer"),
    ({"seeds": [-1]}, "seeds[0]", "greater than or equal to 0"),
    ({"pruning": {"scope": "per-layer"}}, "pruning.scope", "'layerwise' or 'global'"),
    ({"pruning": {"rate": 1.0}}, "pruning.rate", "less than 1"),
    ({"resources": {"gpu": -1}}, "resources.gpu", "greater than or equal to 0 (got -1)"),
    ({"name": "bad name!"}, "name", "should match pattern"),
    ({"name": "../escape"}, "name", "should match pattern"),
])
def test_bad_spec_raises_spec_error_naming_field_and_reason(raw: dict[str, Any], path: str,
                                                            reason: str) -> None:
    field, message = _only_problem({"name": "x", **raw})
    assert field == path
    assert reason in message


def test_spec_error_message_lists_path_and_reason() -> None:
    with pytest.raises(SpecError) as info:
        parse({"name": "x", "lrs": [-1]}, source="my.yaml")
    assert isinstance(info.value, ValueError)
    assert "invalid sweep spec my.yaml" in str(info.value)
    assert "lrs[0]: must be > 0 (got -1.0)" in str(info.value)


def test_unknown_name_error_lists_the_known_names() -> None:
    _, reason = _only_problem({"name": "x", "methods": ["magic"]})
    assert "known: ['dense', 'lth', 'lth_rewind', 'omp_lth', 'omp_pf', 'omp_random_reinit', " \
        "'pf', 'random_pruning', 'random_reinit', 'rst', 'rst_iter', 'sdt', 'transfer']" \
        in reason


def test_empty_sparsities_are_fine_when_only_dense_runs() -> None:
    spec = parse({"name": "x", "methods": ["dense"], "sparsities": []})
    assert spec.sparsities == []


def test_missing_name_is_reported() -> None:
    assert _only_problem({}) == ("name", "Field required")


def test_wrong_type_for_model_names_the_model_field() -> None:
    problems = _problems({"name": "x", "model": 5})
    assert problems
    assert all(field.startswith("model") and "(got 5)" in reason for field, reason in problems)


def test_several_semantic_problems_are_all_reported() -> None:
    problems = _problems({"name": "x", "methods": ["nope"], "lrs": [-1], "sparsities": [1.0],
                          "seeds": []})
    assert {field for field, _ in problems} == {"methods[0]", "lrs[0]", "sparsities[0]",
                                                "seeds"}


def test_every_bad_element_of_one_list_is_reported() -> None:
    problems = _problems({"name": "x", "dataset": ["digits[12]", "digits", "nope"],
                          "methods": ["lth", "magic", "x"], "lrs": [-1, 0.1, 0],
                          "sparsities": [80, 0.5, 1.0]})
    assert {field for field, _ in problems} == {
        "dataset[0]", "dataset[2]", "methods[1]", "methods[2]", "lrs[0]", "lrs[2]",
        "sparsities[0]", "sparsities[2]"}


def test_several_type_problems_are_all_reported() -> None:
    problems = _problems({"name": "bad name!", "bogus": 1, "training": {"epochs": "10"},
                          "data": {"download": "yes"}})
    assert {field for field, _ in problems} == {"name", "bogus", "training.epochs",
                                                "data.download"}


def test_type_problems_and_range_problems_are_reported_together() -> None:
    problems = _problems({"name": "x", "lrs": [-1], "training": {"epochz": 1}})
    assert {field for field, _ in problems} == {"lrs[0]", "training.epochz"}


def test_top_level_list_is_rejected() -> None:
    field, reason = _only_problem(["name", "x"])
    assert field == "(top level)"
    assert "must be a mapping" in reason and "list" in reason


def test_empty_file_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "empty.yaml"
    path.write_text("")
    with pytest.raises(SpecError) as info:
        load(path)
    assert info.value.problems[0][0] == "(top level)"
    assert "NoneType" in info.value.problems[0][1]


def test_yaml_syntax_error_is_a_spec_error(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("name: x\nlrs: [0.1, 0.2\nseeds: [0]\n")
    with pytest.raises(SpecError) as info:
        load(path)
    assert info.value.source == str(path)
    assert [field for field, _ in info.value.problems] == ["(yaml)"]
    assert "\n" not in info.value.problems[0][1]


def test_missing_file_is_a_spec_error(tmp_path: Path) -> None:
    path = tmp_path / "nope.yaml"
    with pytest.raises(SpecError) as info:
        load(path)
    assert info.value.problems == [("(file)", "cannot read: No such file or directory")]
    assert str(path) in str(info.value)



def test_every_cross_field_problem_is_reported_at_once() -> None:
    """The checks across fields name every problem, not only the first one found: within a
    group (``training``, ``pruning``, ``search``) and, once the groups are valid, across them."""
    groups = {"name": "x", "methods": ["lth"], "lrs": [0.1], "sparsities": [0.5],
              "training": {"epochs": 5, "iterations": 100, "schedule": "cosine",
                           "milestones": [2]},
              "pruning": {"scope": "global", "rates": {"output": 0.1}},
              "search": {"kind": "optuna", "trials": 2, "lr": {"low": 0.01, "high": 0.1},
                         "momentum": {"low": 0.5, "high": 1.5},
                         "batch_size": {"low": 0.5, "high": 64}}}
    assert {f for f, _ in _problems(groups)} == {
        "training.iterations", "training.milestones", "pruning.rates", "pruning.rates.output",
        "search.momentum", "search.batch_size"}
    across = {"name": "x", "methods": ["lth", "transfer"], "lrs": [0.1], "sparsities": [0.5],
              "recipes": {"base": {"warmup_epochs": 1.0}, "a": {}, "b": {"warmup_epochs": 2.0},
                          "c": {"warmup_epochs": 2.0}}}
    assert {f for f, _ in _problems(across)} == {"transfer.targets", "recipes.base",
                                                  "recipes.a", "recipes.c"}


def test_one_field_keeps_each_of_its_problems() -> None:
    raw = {"name": "x", "methods": ["lth"], "lrs": [0.1], "sparsities": [0.5],
           "data": {"validation": 0}, "recipes": {"base": {}, "warm": {"warmup_epochs": 1.0}},
           "search": {"kind": "optuna", "trials": 2, "lr": {"low": 0.01, "high": 0.1}}}
    problems = _problems(raw)
    assert [f for f, _ in problems] == ["search", "search", "search.metric"], problems
    assert "not both" in problems[0][1] and "recipes axis" in problems[1][1]


def test_a_relative_data_root_is_made_absolute_against_the_current_directory(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Trials run in Tune's trial directories, so a relative root would point elsewhere there."""
    monkeypatch.chdir(tmp_path)
    parsed = parse({"name": "x", "lrs": [0.1], "data": {"root": "data/fmnist"}})
    assert parsed.data.root == str(tmp_path / "data" / "fmnist")
    assert parse({"name": "x", "lrs": [0.1]}).data.root == ""  # the loader's default
    assert parse({"name": "x", "lrs": [0.1], "data": {"root": "/abs"}}).data.root == "/abs"
