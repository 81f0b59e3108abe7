"""Tests for sweeps/preflight.py, preflight_models.py and preflight_child.py (the malformed-spec
corpus is in test_spec_corpus.py)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from sweeps import preflight
from sweeps import preflight_child
from sweeps import preflight_models
from sweeps import spec as spec_module
from sweeps.errors import SpecError
from trainer import data as datasets
from trainer import models
from trainer.hparams import DataHparams


def _spec(**fields):
    return spec_module.parse({"name": "pf", **fields})


def test_every_registered_model_builds_for_every_registered_dataset() -> None:
    spec = _spec(model=sorted(models.MODELS), dataset=sorted(datasets.DATASETS))
    assert preflight_models.model_problems(spec) == []


def test_the_registry_shape_class_count_and_sizes_match_the_loaded_data() -> None:
    info = datasets.get("digits")
    data = info.load(DataHparams(name="digits"))
    assert data.input_shape == info.input_shape and data.num_classes == info.num_classes
    assert (len(data.train_y), len(data.test_y)) == info.sizes


def test_missing_files_are_warnings_for_plan_and_errors_for_run(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOTTERY_DATA_CACHE", str(tmp_path))
    spec = _spec(dataset=["digits", "cifar10"], model="conv2")
    warnings = preflight.check(spec, files=False)
    assert [f for f, _ in warnings] == ["dataset[1]"]
    assert "cifar-10-batches-py/data_batch_1" in warnings[0][1] and "and 4 more" in warnings[0][1]
    with pytest.raises(SpecError) as info:
        preflight.check(spec)
    assert info.value.problems == warnings


def test_download_true_means_nothing_is_missing(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOTTERY_DATA_CACHE", str(tmp_path))
    assert preflight.check(_spec(dataset="mnist", data={"download": True})) == []


def test_errors_and_missing_files_are_reported_together(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOTTERY_DATA_CACHE", str(tmp_path))
    spec = _spec(dataset="mnist", pruning={"keep_dense": ["nope"]}, data={"test_subset": 20000})
    with pytest.raises(SpecError) as info:
        preflight.check(spec)
    assert [f for f, _ in info.value.problems] == ["pruning.keep_dense[0]", "data.test_subset",
                                                    "dataset"]


def test_a_worker_that_does_not_see_the_probe_file_names_the_storage(tmp_path: Path) -> None:
    probe = tmp_path / ".probe-x"
    hps = {"dataset": DataHparams(name="digits")}
    assert preflight._worker_problems(hps, None) == []
    [(field, reason)] = preflight._worker_problems(hps, str(probe))
    assert field == "storage" and str(tmp_path) in reason and "s3://" in reason
    probe.write_text("x")
    assert preflight._worker_problems(hps, str(probe)) == []


def test_a_validation_split_must_leave_training_examples() -> None:
    with pytest.raises(SpecError) as info:
        preflight.check(_spec(data={"validation": 1437}))
    assert info.value.problems[0][0] == "data.validation"
    with pytest.raises(SpecError, match="has 100 to split"):
        preflight.check(_spec(data={"train_subset": 100, "validation": 100}))
    assert preflight.check(_spec(data={"validation": 1436})) == []


def test_transfer_targets_are_checked_like_the_grids_datasets(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOTTERY_DATA_CACHE", str(tmp_path))
    small = _spec(dataset="digits[0-4]", methods=["lth", "transfer"],
                  transfer={"targets": ["digits[8-9]"]}, data={"train_subset": 500})
    with pytest.raises(SpecError) as info:
        preflight.check(small)
    assert ("data.train_subset", "digits[8-9] has 283 examples in that split, got 500") in \
        info.value.problems
    missing = _spec(dataset="digits[0-4]", methods=["transfer"],
                    transfer={"targets": ["mnist[0-4]"]})
    problems = preflight_models.model_problems(missing) + preflight.missing_files(missing)
    fields = [f for f, _ in problems]
    assert fields.count("transfer.targets[0]") == 2  # another example shape; files missing
    assert any("examples are (1, 28, 28)" in r for _, r in problems)
    assert any("mnist files missing" in r and "data.download: true" in r for _, r in problems)


def test_a_rewind_at_or_past_the_end_of_training_is_refused_in_steps() -> None:
    # digits: 1437 training examples, 23 steps of 64 per epoch; 3 epochs = 69 steps
    late = _spec(methods=["lth_rewind"], sparsities=[0.36], training={"epochs": 3},
                 pruning={"rewind": {"iterations": 69}})
    [(field, reason)] = preflight.subset_problems(late)
    assert field == "pruning.rewind.iterations" and "69 steps" in reason
    inside = _spec(methods=["lth_rewind"], sparsities=[0.36], training={"epochs": 3},
                   pruning={"rewind": {"iterations": 68}})
    assert preflight.subset_problems(inside) == []


def test_a_dataset_that_cannot_be_downloaded_says_so(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOTTERY_DATA_CACHE", str(tmp_path))
    [(field, reason)] = preflight.missing_files(_spec(dataset="smallnorb",
                                                      data={"root": str(tmp_path)}))
    assert field == "dataset" and "cannot be downloaded" in reason


PROBLEMS = {"model": ["lenet_300_100", "conv2"], "dataset": "digits",
            "pruning": {"keep_dense": ["nope"]}, "recipes": {"jump": {"skip_connections": True}}}


def test_the_child_finds_the_same_problems_as_this_process() -> None:
    bad, good = _spec(**PROBLEMS), _spec(model="conv2", dataset="digits")
    expected = preflight_models.model_problems(bad)
    assert expected and preflight_models.model_problems(good) == []
    with preflight_child.ModelCheck(child=True) as check:
        assert check.problems(bad) == expected
    with preflight_child.ModelCheck(child=True) as check:
        assert check.problems(good) == []


@pytest.mark.parametrize("code", ["print('not json')", "print('[1]')", "raise SystemExit(3)",
                                  "import os; os._exit(0)"],
                         ids=["nonsense", "not-pairs", "exit-3", "silent"])
def test_a_failing_child_is_not_trusted_the_checks_run_here(
        code: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(preflight_child, "CHILD_ARGS", ("-c", code))
    spec = _spec(**PROBLEMS)
    with preflight_child.ModelCheck(child=True) as check:
        assert check.problems(spec) == preflight_models.model_problems(spec)


def test_a_child_that_cannot_start_leaves_the_checks_to_this_process(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(sys, "executable", str(tmp_path / "no-such-python"))
    spec = _spec(**PROBLEMS)
    with preflight_child.ModelCheck(child=True) as check:
        assert check.problems(spec) == preflight_models.model_problems(spec)


def test_an_unread_child_is_stopped_and_check_closes_what_it_reads(
        monkeypatch: pytest.MonkeyPatch) -> None:
    started: list[subprocess.Popen] = []
    popen = subprocess.Popen

    def recording(*args, **kwargs):
        started.append(popen(*args, **kwargs))
        return started[-1]

    monkeypatch.setattr(preflight_child.subprocess, "Popen", recording)
    with preflight_child.ModelCheck(child=True):
        pass
    assert started[0].returncode is not None  # killed and reaped, not left waiting on stdin
    with pytest.raises(SpecError) as info:  # a shape problem: the models are never asked
        preflight.check(_spec(dataset="cifar10", model="conv2", data={"shape": [1, 32, 32]}),
                        files=None, models=preflight_child.ModelCheck(child=True))
    assert [field for field, _ in info.value.problems] == ["data.shape"]
    assert started[1].returncode is not None
    assert preflight_child.ModelCheck(child=None) and len(started) == 2  # torch is loaded here
