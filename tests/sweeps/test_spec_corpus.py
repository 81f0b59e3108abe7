"""A generated corpus of malformed specs: each fails at ``lottery plan`` and ``lottery run``.

Every case must exit 2 before anything starts, name its field in ``<field>: <reason>`` form,
print no traceback and write nothing. The one exception is by design (issue #10, item 6):
dataset files missing on this machine are only a warning for ``lottery plan`` (exit 0, the
field still named), because a GPU cluster's spec may be planned on a laptop.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from sweeps.cli import app

# (case id, YAML body after a valid ``name:`` line or the whole document, field, reason)
Case = tuple[str, str, str, str]


def _field_cases() -> list[Case]:
    """Wrong types, out-of-range and non-finite values, field by field."""
    bad = {
        "name": ["5", "[x]", "true", "''", "'bad name'", "'../escape'", "'-x'", "'.hidden'",
                 "'" + "a" * 101 + "'"],
        "dataset": ["5", "{a: 1}", "[1]", "imagenet", "[]", "[digits, digits]"],
        "model": ["5", "[3]", "resnet999", "[]"],
        "methods": ["lth", "[1]", "{}", "[magic]", "[]", "[lth, lth]"],
        "lrs": ["'0.1'", "[true]", "[a]", "[-0.1]", "[0]", "[.inf]", "[.nan]", "[]",
                "[0.1, 0.1]"],
        "sparsities": ["0.5", "[a]", "[1.0]", "[-0.1]", "[.nan]", "[0.5, 0.5]"],
        "seeds": ["[0.5]", "[a]", "[-1]", "[]", "3"],
        "training.optimizer": ["rmsprop", "3"],
        "training.epochs": ["'10'", "0", "-1", "1.5", "true", ".inf"],
        "training.batch_size": ["0", "x", "[64]"],
        "training.momentum": ["1.0", "-0.1", ".nan", "x"],
        "training.weight_decay": ["-1", ".inf", ".nan", "-.inf"],
        "training.milestones": ["[0]", "'80'", "[1.5]"],
        "training.gamma": ["0", "1.5", ".nan"],
        "pruning.rate": ["0", "1", ".nan", "x", "-0.2"],
        "pruning.scope": ["bogus", "1"],
        "pruning.keep_dense": ["output", "[1]"],
        "resources.cpu": ["0", "-1", ".inf", "x"],
        "resources.gpu": ["-1", ".nan"],
        "data.root": ["5"],
        "data.download": ["'yes'", "1"],
        "data.train_subset": ["-1", "x", "99999"],
        "data.test_subset": ["-5", "[1]", "361"],
        "data.validation": ["-1", "x", "1437", ".nan"],
        "execution.max_retries": ["-1", "x"],
        "execution.max_concurrent_trials": ["-1", ".nan"],
        "storage": ["5", "[a]"],
        "rst.lr": ["0", "-1", ".inf"],
        "rst.reg_interval": ["0", "1.5"],
        "rst.schedule": ["x^4"],
        "rst.budget": ["lots"],
        "rst.cycles": ["0"],
        "rst.stabilize_iterations": ["-1"],
    }
    cases = []
    for field, values in bad.items():
        for i, value in enumerate(values):
            body = _nest(field, value)
            cases.append((f"{field}-{i}", body, _reported_field(field, value), ""))
    return cases


def _nest(field: str, value: str) -> str:
    if "." not in field:
        return f"{field}: {value}\n"
    group, key = field.split(".")
    return f"{group}:\n  {key}: {value}\n"


def _reported_field(field: str, value: str) -> str:
    """The path the error names: list elements get their index."""
    if value.startswith("[") and value not in ("[]",) and field in (
            "dataset", "model", "methods", "lrs", "sparsities", "seeds", "training.milestones",
            "pruning.keep_dense") and not _duplicate_list(value):
        return f"{field}[0]" if not value.startswith("[0.1,") else f"{field}[1]"
    return field


def _duplicate_list(value: str) -> bool:
    items = [v.strip() for v in value.strip("[]").split(",")]
    return len(items) > 1 and len(set(items)) < len(items)


UNKNOWN_KEYS: list[Case] = [
    (f"unknown-{where or 'top'}", (f"{where}:\n  bogus_key: 1\n" if where else "bogus_key: 1\n"),
     f"{where}.bogus_key" if where else "bogus_key", "unknown key")
    for where in ("", "training", "pruning", "resources", "data", "execution")
] + [("unknown-typo", "training: {epochz: 3}\n", "training.epochz", "unknown key"),
     ("unknown-group-type", "training: 5\n", "training", "")]

# Whole documents (no name line added).
DOCUMENTS: list[Case] = [
    ("doc-list", "- 1\n- 2\n", "(top level)", "must be a mapping"),
    ("doc-scalar", "just a string\n", "(top level)", "must be a mapping"),
    ("doc-number", "42\n", "(top level)", "must be a mapping"),
    ("doc-empty", "", "(top level)", "must be a mapping"),
    ("doc-null", "~\n", "(top level)", "must be a mapping"),
    ("doc-no-name", "lrs: [0.1]\n", "name", "required"),
    ("syntax-bracket", "name: x\nlrs: [0.1\n", "(yaml)", "line"),
    ("syntax-indent", "name: x\ntraining:\n  epochs: 1\n bad: 2\n", "(yaml)", "line"),
    ("syntax-tab", "name: x\ntraining:\n\tepochs: 1\n", "(yaml)", "line"),
    ("dup-top", "name: a\nname: b\n", "name", "duplicate key"),
    ("dup-nested", "name: x\ntraining:\n  epochs: 1\n  epochs: 2\n", "training.epochs",
     "duplicate key"),
    ("dup-flow", "name: x\ndata: {root: a, root: b}\n", "data.root", "duplicate key"),
    ("dup-group", "name: x\ntraining: {epochs: 1}\ntraining: {epochs: 2}\n", "training",
     "duplicate key"),
    ("tag-object", "name: x\nstorage: !!python/object:os.system x\n", "storage",
     "could not determine a constructor"),
    ("tag-name", "name: x\nseeds: [0, !!python/name:os.system ]\n", "seeds[1]",
     "could not determine a constructor"),
    ("tag-apply", "name: x\ndata:\n  root: !!python/object/apply:os.system [echo hi]\n",
     "data.root", "could not determine a constructor"),
    ("tag-unknown", "name: x\nmodel: !custom lenet\n", "model",
     "could not determine a constructor"),
]

LAYERS: list[Case] = [
    ("layer-unknown", "pruning: {keep_dense: [no_such_layer]}\n", "pruning.keep_dense[0]",
     "not a prunable weight"),
    ("layer-unknown-second", "pruning: {keep_dense: [output, conv9.weight]}\n",
     "pruning.keep_dense[1]", "not a prunable weight"),
    ("layer-all-dense", "pruning: {keep_dense: [output, fc1.weight, fc2]}\n",
     "pruning.keep_dense", "nothing to prune"),
    ("layer-unknown-conv", "model: conv2\npruning: {keep_dense: [fc9]}\n",
     "pruning.keep_dense[0]", "(model conv2)"),
]

# Dataset files absent on this machine (the cache root is an empty tmp directory).
MISSING_DATA: list[Case] = [
    ("data-cifar10", "dataset: cifar10\n", "dataset", "cifar10 files missing"),
    ("data-cifar100", "dataset: cifar100\nmodel: conv2\n", "dataset", "cifar100 files missing"),
    ("data-mnist", "dataset: mnist\n", "dataset", "mnist files missing"),
    ("data-mnist-root", "dataset: mnist\ndata: {root: /nonexistent/data}\n", "dataset",
     "/nonexistent/data/MNIST/raw"),
    ("data-second", "dataset: [digits, cifar10]\n", "dataset[1]", "cifar10 files missing"),
]

CASES = _field_cases() + UNKNOWN_KEYS + LAYERS + MISSING_DATA
DOCUMENT_IDS = {c[0] for c in DOCUMENTS}
ALL = CASES + DOCUMENTS


def test_the_corpus_has_at_least_100_distinct_specs() -> None:
    bodies = {body for _, body, _, _ in ALL}
    assert len(ALL) >= 100 and len(bodies) == len(ALL)


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LOTTERY_DATA_CACHE", str(tmp_path / "empty-cache"))
    return tmp_path


def _spec_file(workdir: Path, case: Case) -> Path:
    case_id, body, _, _ = case
    path = workdir / "spec.yaml"
    path.write_text(body if case_id in DOCUMENT_IDS else "name: corpus\n" + body)
    return path


def _written(workdir: Path) -> list[str]:
    return sorted(str(p.relative_to(workdir)) for p in workdir.rglob("*")
                  if p.name != "spec.yaml")


def _check(result, case: Case, workdir: Path, code: int) -> None:
    _, _, field, reason = case
    assert result.exit_code == code, (result.stdout, result.stderr)
    assert result.exception is None or isinstance(result.exception, SystemExit), \
        result.exception
    assert "Traceback" not in result.output
    assert f"{field}: " in result.stderr, result.stderr
    assert reason in result.stderr, result.stderr
    assert _written(workdir) == []


@pytest.mark.parametrize("case", ALL, ids=[c[0] for c in ALL])
def test_plan_check_exits_2_naming_the_field_and_writes_nothing(case: Case,
                                                                workdir: Path) -> None:
    result = CliRunner().invoke(app, ["plan", "--check", str(_spec_file(workdir, case))])
    _check(result, case, workdir, 0 if case in MISSING_DATA else 2)
    if case in MISSING_DATA:
        assert "warning: " in result.stderr and "will refuse" in result.stderr


NEED_MODELS = LAYERS + MISSING_DATA  # what only `plan --check` (and `run`) can find
PLAIN = [c for c in ALL if c not in NEED_MODELS]


@pytest.mark.parametrize("case", PLAIN, ids=[c[0] for c in PLAIN])
def test_plain_plan_finds_every_field_problem_without_the_models(case: Case,
                                                                 workdir: Path) -> None:
    result = CliRunner().invoke(app, ["plan", str(_spec_file(workdir, case))])
    _check(result, case, workdir, 2)


@pytest.mark.parametrize("case", NEED_MODELS, ids=[c[0] for c in NEED_MODELS])
def test_plain_plan_leaves_models_and_files_to_the_check(case: Case, workdir: Path) -> None:
    result = CliRunner().invoke(app, ["plan", str(_spec_file(workdir, case))])
    assert result.exit_code == 0, result.output
    assert "not checked: `lottery plan --check`" in result.stderr


@pytest.mark.parametrize("case", ALL, ids=[c[0] for c in ALL])
def test_run_exits_2_naming_the_field_before_anything_starts(case: Case, workdir: Path) -> None:
    storage = workdir / "store"
    result = CliRunner().invoke(app, ["run", str(_spec_file(workdir, case)),
                                      "--storage", str(storage)])
    _check(result, case, workdir, 2)
