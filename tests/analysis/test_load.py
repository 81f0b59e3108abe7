"""Tests for analysis/load.py: reading Parquet parts back as sorted, filtered DataFrames."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest

from analysis import schema
from analysis.load import load_curves
from analysis.load import load_layers
from analysis.load import load_runs

_DEFAULTS = {pa.string(): "x", pa.int64(): 0, pa.float64(): 0.0, pa.binary(): None}


def _row(table: str, **values: Any) -> dict[str, Any]:
    row = {field.name: _DEFAULTS[field.type] for field in schema.SCHEMAS[table]}
    return {**row, **values}


def _write(directory: Path, name: str, table: str, rows: list[dict[str, Any]]) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    pq.write_table(schema.to_table(rows, table), directory / name)


@pytest.fixture
def sweep(tmp_path: Path) -> Path:
    """A sweep dir: 2 runs parts (lr 0.01 and a float-noisy 0.1 + 0.2), written out of order."""
    root = tmp_path / "storage" / "demo"
    runs = root / "runs"
    noisy_lr = 0.1 + 0.2  # 0.30000000000000004
    _write(runs, "part-b.parquet", "runs", [
        _row("runs", method="lth", lr=noisy_lr, target_sparsity=0.5, seed=1, test_acc=0.8),
        _row("runs", method="dense", lr=noisy_lr, seed=1, test_acc=0.9),
        _row("runs", method="lth", lr=noisy_lr, target_sparsity=0.5, seed=0, test_acc=0.7),
    ])  # fmt: skip
    _write(runs, "part-a.parquet", "runs", [
        _row("runs", method="lth", lr=0.01, target_sparsity=0.5, seed=0, test_acc=0.6),
        _row("runs", method="dense", lr=0.01, seed=0, test_acc=0.5),
    ])  # fmt: skip
    return root


def test_load_runs_from_sweep_dir_has_schema_columns_and_sorted_rows(sweep: Path) -> None:
    runs = load_runs(sweep)
    assert list(runs.columns) == schema.RUNS.names
    assert list(runs.index) == [0, 1, 2, 3, 4]
    # (model, dataset, method, lr, target_sparsity, seed), not file or row order.
    assert list(zip(runs["method"], runs["lr"].round(2), runs["seed"], strict=True)) == [
        ("dense", 0.01, 0), ("dense", 0.3, 1), ("lth", 0.01, 0), ("lth", 0.3, 0), ("lth", 0.3, 1)
    ]  # fmt: skip
    assert list(runs["test_acc"]) == [0.5, 0.9, 0.6, 0.7, 0.8]


def test_load_runs_accepts_table_dir_str_and_file_uri(sweep: Path) -> None:
    expected = load_runs(sweep)
    pd.testing.assert_frame_equal(load_runs(sweep / "runs"), expected)
    pd.testing.assert_frame_equal(load_runs(str(sweep)), expected)
    pd.testing.assert_frame_equal(load_runs(sweep.as_uri()), expected)
    pd.testing.assert_frame_equal(load_runs((sweep / "runs").as_uri()), expected)


def test_scalar_and_collection_filters(sweep: Path) -> None:
    assert list(load_runs(sweep, method="dense")["test_acc"]) == [0.5, 0.9]
    assert list(load_runs(sweep, method="lth", seed=0)["test_acc"]) == [0.6, 0.7]
    assert len(load_runs(sweep, seed=[0, 1])) == 5
    assert len(load_runs(sweep, seed=(1,))) == 2
    assert list(load_runs(sweep, method={"lth"}, lr=0.01)["test_acc"]) == [0.6]
    assert load_runs(sweep, method=[]).empty


def test_float_filters_tolerate_float_noise(sweep: Path) -> None:
    assert list(load_runs(sweep, lr=0.3)["test_acc"]) == [0.9, 0.7, 0.8]
    assert len(load_runs(sweep, lr=[0.01, 0.3])) == 5
    assert len(load_runs(sweep, target_sparsity=0.5, lr=0.3)) == 2
    assert load_runs(sweep, lr=0.3001).empty
    assert load_runs(sweep, lr=0.1).empty
    assert len(load_runs(sweep, lr=np.float32(0.3))) == 3  # float32's rounding, 4e-9 off


def test_a_non_integral_value_for_an_integer_column_is_refused(sweep: Path) -> None:
    with pytest.raises(ValueError, match=r"filter seed=0.5 does not fit the column: \[0.5\]"):
        load_runs(sweep, seed=0.5)
    assert load_runs(sweep, seed=0.0).equals(load_runs(sweep, seed=0))


def test_a_range_with_bad_bounds_is_refused_when_made(sweep: Path) -> None:
    from analysis import between

    with pytest.raises(ValueError, match="low > high matches nothing"):
        between(0.5, 0.1)
    with pytest.raises(ValueError, match="bounds are numbers or None"):
        between("a", None)


def test_unknown_filter_column_names_it_and_the_known_columns(sweep: Path) -> None:
    with pytest.raises(ValueError, match=r"\['accuracy'\]; known: .*'test_acc'"):
        load_runs(sweep, accuracy=0.9)


def test_filter_value_of_wrong_type_is_a_value_error(sweep: Path) -> None:
    with pytest.raises(ValueError, match="filter method=3"):
        load_runs(sweep, method=3)


def test_temp_files_are_ignored(sweep: Path) -> None:
    extra = [_row("runs", method="lth", lr=0.01, seed=7)]
    _write(sweep / "runs", ".part-c.parquet.tmp", "runs", extra)
    _write(sweep / "runs", "_part-d.parquet", "runs", extra)
    _write(sweep / "runs", ".part-e.parquet", "runs", extra)
    runs = load_runs(sweep)
    assert 7 not in set(runs["seed"])
    assert len(runs) == 5
    # pandas' own reader skips the same names, so both views of a sweep agree.
    assert len(pd.read_parquet(sweep / "runs")) == 5


def test_missing_table_dir_or_no_parts_gives_empty_frame_with_columns(sweep: Path) -> None:
    layers = load_layers(sweep)  # no layers/ dir
    assert layers.empty
    assert list(layers.columns) == schema.LAYERS.names
    (sweep / "curves").mkdir()
    _write(sweep / "curves", ".part-x.parquet.tmp", "curves", [_row("curves")])
    curves = load_curves(sweep)
    assert curves.empty
    assert list(curves.columns) == schema.CURVES.names


def test_empty_frame_has_the_same_dtypes_as_a_loaded_one(sweep: Path, tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    empty = load_runs(tmp_path / "empty")
    assert empty.empty
    # same dtype per column (categoricals compare by kind: their categories are the values)
    kinds = [str(t) for t in empty.dtypes]
    assert kinds == [str(t) for t in load_runs(sweep).dtypes]
    assert kinds == [str(t) for t in load_runs(sweep, method="none").dtypes]
    assert {str(empty[c].dtype) for c in ("model", "method", "dataset")} == {"category"}


def test_several_sweeps_range_filters_and_categoricals(sweep: Path) -> None:
    from analysis import between

    one = load_runs(sweep)
    both = load_runs([sweep, sweep])
    assert len(both) == 2 * len(one)
    high = load_runs(sweep, target_sparsity=between(0.5, None))
    assert len(high) and (high.target_sparsity >= 0.5).all()
    assert len(high) == int((one.target_sparsity >= 0.5).sum())
    mid = load_runs(sweep, lr=between(None, 1.0), target_sparsity=between(0.1, 0.6))
    assert len(mid) == int(((one.lr <= 1.0) & one.target_sparsity.between(0.1, 0.6)).sum())
    assert isinstance(one["method"].dtype, pd.CategoricalDtype)


def test_nonexistent_path_raises_file_not_found_naming_it(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-sweep"
    with pytest.raises(FileNotFoundError, match="no-such-sweep"):
        load_runs(missing)


def test_part_missing_a_schema_column_is_rejected(sweep: Path) -> None:
    table = schema.to_table([_row("runs", seed=3)], "runs").drop_columns(["rp_run_p20"])
    pq.write_table(table, sweep / "runs" / "part-old.parquet")
    with pytest.raises(ValueError, match=r"part-old.parquet: missing columns \['rp_run_p20'\]"):
        load_runs(sweep)


def test_load_curves_sorts_by_trial_level_epoch(tmp_path: Path) -> None:
    rows = [
        _row("curves", trial_id="t2", level=0, epoch=1),
        _row("curves", trial_id="t1", level=1, epoch=2),
        _row("curves", trial_id="t1", level=1, epoch=1),
        _row("curves", trial_id="t1", level=0, epoch=2),
    ]
    _write(tmp_path / "sw" / "curves", "part-1.parquet", "curves", rows[:2])
    _write(tmp_path / "sw" / "curves", "part-2.parquet", "curves", rows[2:])
    curves = load_curves(tmp_path / "sw")
    assert list(zip(curves["trial_id"], curves["level"], curves["epoch"], strict=True)) == [
        ("t1", 0, 2), ("t1", 1, 1), ("t1", 1, 2), ("t2", 0, 1)
    ]  # fmt: skip
    assert list(load_curves(tmp_path / "sw", level=1)["epoch"]) == [1, 2]


def test_load_layers_filters_and_sorts_by_layer(tmp_path: Path) -> None:
    rows = [
        _row("layers", method="lth", layer="fc.weight", n_weights=100, n_kept=20),
        _row("layers", method="lth", layer="conv.weight", n_weights=10, n_kept=5),
        _row("layers", method="random_reinit", layer="conv.weight"),
    ]
    _write(tmp_path / "sw" / "layers", "part-1.parquet", "layers", rows)
    layers = load_layers(tmp_path / "sw" / "layers", method="lth")
    assert list(layers["layer"]) == ["conv.weight", "fc.weight"]
    assert list(layers["n_kept"]) == [5, 20]


def test_sweep_named_like_a_table_still_reads_its_table_dir(tmp_path: Path) -> None:
    root = tmp_path / "runs"  # a sweep whose name is "runs"
    _write(root / "runs", "part-1.parquet", "runs", [_row("runs", seed=4)])
    assert list(load_runs(root)["seed"]) == [4]


def test_path_that_is_a_file_is_rejected(sweep: Path) -> None:
    with pytest.raises(NotADirectoryError, match="part-a.parquet"):
        load_runs(sweep / "runs" / "part-a.parquet")


def test_s3_uri_reads_parts_and_hides_credentials(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    moto_server = pytest.importorskip("moto.server")
    boto3 = pytest.importorskip("boto3")
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(name, "testing")
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        client = boto3.client("s3", endpoint_url=f"http://{host}:{port}", region_name="us-east-1")
        client.create_bucket(Bucket="lottery")
        local = tmp_path / "part-1.parquet"
        pq.write_table(schema.to_table([_row("runs", seed=5)], "runs"), local)
        s3 = pafs.S3FileSystem(
            endpoint_override=f"{host}:{port}", scheme="http", region="us-east-1",
            access_key="testing", secret_key="testing",
        )  # fmt: skip
        pafs.copy_files(str(local), "lottery/sw/runs/part-1.parquet", destination_filesystem=s3)
        query = f"?endpoint_override={host}:{port}&scheme=http&region=us-east-1"
        uri = f"s3://testing:testing@lottery/sw{query}"
        assert list(load_runs(uri)["seed"]) == [5]
        assert load_curves(uri).empty
        with pytest.raises(FileNotFoundError, match=r"s3://\*\*\*@lottery/nope") as error:
            load_runs(f"s3://testing:testing@lottery/nope{query}")
        assert "testing" not in str(error.value)
    finally:
        server.stop()


def test_a_part_written_before_a_column_was_added_reads_it_as_null(sweep: Path) -> None:
    table = schema.to_table([_row("runs", seed=5, config_hash="old")], "runs")
    old = table.drop_columns(sorted(schema.ADDED["runs"]))
    pq.write_table(old, sweep / "runs" / "part-old.parquet")
    runs = load_runs(sweep)
    row = runs[runs.seed == 5].iloc[0]
    assert pd.isna(row.val_acc) and pd.isna(row.best_val_epoch)
    assert list(runs.columns) == schema.RUNS.names
