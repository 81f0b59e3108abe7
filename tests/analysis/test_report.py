"""Tests for analysis/report.py: the text report, end to end from Parquet parts."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from analysis import schema
from analysis.load import load_runs
from analysis.report import EMPTY_MESSAGE
from analysis.report import format_report

_DEFAULTS = {pa.string(): "x", pa.int64(): 0, pa.float64(): 0.0, pa.binary(): None}
# Dense R_p(θ0, θT), p = 0.1 ... 0.5, by (lr, seed).
RP_DENSE = {
    (0.01, 0): (0.2, 0.3, 0.4, 0.5, 0.6),
    (0.01, 1): (0.3, 0.4, 0.5, 0.6, 0.7),
    (0.1, 0): (0.1, 0.2, 0.3, 0.4, 0.5),
    (0.1, 1): (0.12, 0.22, 0.32, 0.42, 0.52),
}
# (method, lr, target_sparsity) -> final test_acc of seeds 0 and 1.
ACC = {
    ("dense", 0.01, 0.0): (0.90, 0.92),
    ("lth", 0.01, 0.5): (0.91, 0.91),
    ("lth", 0.01, 0.8): (0.88, 0.90),
    ("random_reinit", 0.01, 0.5): (0.89, 0.89),
    ("random_reinit", 0.01, 0.8): (0.86, 0.88),
    ("dense", 0.1, 0.0): (0.93, 0.93),
    ("lth", 0.1, 0.5): (0.9281, 0.9279),
    ("random_reinit", 0.1, 0.5): (0.925, 0.925),
    ("lth", 0.1, 0.8): (0.92, 0.9),
}


def _row(method: str, lr: float, target: float, seed: int, acc: float) -> dict[str, object]:
    row = {field.name: _DEFAULTS[field.type] for field in schema.RUNS}
    row.update(search=None, search_trial=None, search_params=None)  # a grid point
    rp = RP_DENSE[(lr, seed)]
    return {
        **row,
        "sweep": "demo",
        "model": "resnet20",
        "dataset": "cifar10",
        "method": method,
        "lr": lr,
        "target_sparsity": target,
        "seed": seed,
        "test_acc": acc,
        "recipe": "base",
        "source_dataset": "cifar10",
        "target_dataset": "cifar10",
        "transfer_init": None,
        "transfer_regime": None,
        "rewind_step": None,
        **{f"rp_dense_p{pct}": value for pct, value in zip((10, 20, 30, 40, 50), rp, strict=True)},
    }


@pytest.fixture
def runs(tmp_path: Path) -> pd.DataFrame:
    """The ACC grid written as one part per arm and loaded back with `load_runs`."""
    for i, ((method, lr, target), accs) in enumerate(ACC.items()):
        rows = [_row(method, lr, target, seed, acc) for seed, acc in enumerate(accs)]
        part = tmp_path / "demo" / "runs" / f"part-{i}.parquet"
        part.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(schema.to_table(rows, "runs"), part)
    return load_runs(tmp_path / "demo")


def test_header_names_sweep_model_dataset_and_counts(runs: pd.DataFrame) -> None:
    header = format_report(runs).splitlines()[0]
    assert header == (
        "sweep: demo | models: resnet20 | datasets: cifar10 | 18 rows: 9 conditions (grid "
        "points but the seed), 2 seeds each"
    )


def test_accuracy_cells_are_percent_mean_and_std(runs: pd.DataFrame) -> None:
    report = format_report(runs)
    assert "91.00% ± 1.41" in report  # dense lr 0.01: 0.90, 0.92
    assert "92.80% ± 0.01" in report  # lth lr 0.1 @ 0.5: 0.9281, 0.9279
    assert "91.00% ± 1.41" in _table_line(report, "0.01", "dense")
    lth = _table_line(report, "0.01", "lth", after="0.01")
    assert lth.split()[1:] == ["-", "91.00%", "±", "0.00", "89.00%", "±", "1.41"]


def test_dense_has_its_own_sparsity_column_0(runs: pd.DataFrame) -> None:
    report = format_report(runs)
    accuracy = report.split("Final test accuracy")[1].split("\n\n")[0]
    assert accuracy.splitlines()[1].split() == ["target", "sparsity", "0", "0.5", "0.8"]


def test_rows_are_ordered_by_lr_then_method(runs: pd.DataFrame) -> None:
    accuracy = format_report(runs).split("Final test accuracy")[1].split("\n\n")[0]
    lines = accuracy.splitlines()[3:]
    assert [line[:5].strip() for line in lines] == ["0.01", "", "", "0.1", "", ""]
    methods = [line[5:].split()[0] for line in lines]
    assert methods == ["dense", "lth", "random_reinit", "dense", "lth", "random_reinit"]


def test_dense_correlation_table_rows_lr_columns_p(runs: pd.DataFrame) -> None:
    section = format_report(runs).split("Dense R_p")[1].split("\n\n")[0]
    lines = section.splitlines()
    assert lines[1].split() == ["p=0.1", "p=0.2", "p=0.3", "p=0.4", "p=0.5", "seeds"]
    assert lines[3].split() == ["0.01", "0.250", "0.350", "0.450", "0.550", "0.650", "2"]
    assert lines[4].split() == ["0.1", "0.110", "0.210", "0.310", "0.410", "0.510", "2"]


def test_winning_ticket_verdicts_per_lr_and_sparsity(runs: pd.DataFrame) -> None:
    section = format_report(runs).split("Winning ticket")[1]
    rows = [line.split() for line in section.strip().splitlines()[3:]]
    assert rows == [
        ["0.01", "0.5", "91.00", "91.00", "89.00", "yes"],
        ["0.8", "89.00", "91.00", "87.00", "no"],
        ["0.1", "0.5", "92.80", "93.00", "92.50", "no"],
        ["0.8", "91.00", "93.00", "-", "no", "(missing", "arm)"],
    ]


def test_one_section_per_model_and_dataset(runs: pd.DataFrame) -> None:
    other = runs.assign(model="vgg11", sweep="demo2")
    report = format_report(pd.concat([runs, other], ignore_index=True))
    assert report.splitlines()[0].startswith("sweep: demo, demo2 | models: resnet20, vgg11 |")
    assert report.index("=== resnet20 / cifar10 ===") < report.index("=== vgg11 / cifar10 ===")
    assert report.count("Final test accuracy") == 2


def test_missing_dense_correlation_says_not_recorded(runs: pd.DataFrame) -> None:
    blank = {f"rp_dense_p{pct}": float("nan") for pct in (10, 20, 30, 40, 50)}
    report = format_report(runs.assign(**blank))
    assert "(not recorded)" in report


def test_empty_runs_give_one_line_message() -> None:
    empty = schema.RUNS.empty_table().to_pandas()
    assert format_report(empty) == EMPTY_MESSAGE
    assert "\n" not in EMPTY_MESSAGE


def test_missing_columns_are_named(runs: pd.DataFrame) -> None:
    with pytest.raises(ValueError, match=r"\['sweep'\]"):
        format_report(runs.drop(columns=["sweep"]))


def _table_line(report: str, lr: str, method: str, after: str | None = None) -> str:
    """The accuracy-table line of (lr, method); `after` skips to the block of that lr."""
    lines = report.split("Final test accuracy")[1].split("\n\n")[0].splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(after or lr))
    return next(line for line in lines[start:] if f" {method} " in f" {line} ")
