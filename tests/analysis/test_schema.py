"""Tests for analysis/schema.py: the Parquet contract."""

from __future__ import annotations

import math

import pyarrow as pa
import pytest

from analysis import schema

RUNS_COLUMNS = [
    "sweep", "trial_id", "config_hash", "method", "model", "dataset", "lr", "target_sparsity",
    "sparsity", "level", "seed", "epochs", "total_epochs", "test_acc", "best_test_acc",
    "best_epoch", "test_loss", "train_loss", "rp_dense_p10", "rp_dense_p20", "rp_dense_p30",
    "rp_dense_p40", "rp_dense_p50", "rp_run_p20", "optimizer", "batch_size", "momentum",
    "weight_decay", "prune_rate", "prune_scope", "device", "wall_time_s", "code_version",
    "val_acc", "val_loss", "best_val_epoch", "best_val_iteration", "test_acc_at_best_val",
    "rp_init_vs_pf_p20", "rp_reinit_vs_pf_p20", "rp_pf_vs_init_p20", "rp_pf_vs_dense_p20",
    "recipe", "source_dataset", "target_dataset", "transfer_init", "transfer_regime",
    "rewind_step", "search", "search_trial", "search_params",
]  # fmt: skip
CURVES_COLUMNS = [
    "sweep", "trial_id", "method", "model", "dataset", "lr", "seed", "target_sparsity", "level",
    "sparsity", "epoch", "lr_epoch", "train_loss", "test_loss", "test_acc", "val_loss", "val_acc",
    "recipe",
]  # fmt: skip
LAYERS_COLUMNS = [
    "sweep", "trial_id", "config_hash", "method", "model", "dataset", "lr", "seed",
    "target_sparsity", "layer", "n_weights", "n_kept", "sparsity", "rp_run_p20", "rp_dense_p20",
    "recipe", "mask_bits",
]  # fmt: skip


def _row(table: str) -> dict[str, object]:
    """A valid row for `table`: "x" for strings, 1 for ints, 0.5 for floats."""
    values = {pa.string(): "x", pa.int64(): 1, pa.float64(): 0.5, pa.binary(): b"\x80"}
    return {field.name: values[field.type] for field in schema.SCHEMAS[table]}


@pytest.mark.parametrize(
    ("table", "columns"),
    [("runs", RUNS_COLUMNS), ("curves", CURVES_COLUMNS), ("layers", LAYERS_COLUMNS)],
)
def test_schema_columns_are_in_contract_order(table: str, columns: list[str]) -> None:
    assert schema.SCHEMAS[table].names == columns
    assert list(schema.COLUMN_DOCS[table]) == columns


def test_named_schemas_are_the_registry_entries() -> None:
    expected = {"runs": schema.RUNS, "curves": schema.CURVES, "layers": schema.LAYERS}
    assert schema.SCHEMAS == expected


def test_column_types_follow_the_contract() -> None:
    runs = schema.RUNS
    assert runs.field("lr").type == pa.float64()
    assert runs.field("seed").type == pa.int64()
    assert runs.field("total_epochs").type == pa.int64()
    assert runs.field("method").type == pa.string()
    assert schema.CURVES.field("epoch").type == pa.int64()
    assert schema.LAYERS.field("n_kept").type == pa.int64()


@pytest.mark.parametrize("table", ["runs", "curves", "layers"])
def test_every_column_has_a_one_line_doc(table: str) -> None:
    docs = schema.COLUMN_DOCS[table]
    for name, doc in docs.items():
        assert doc.strip(), name
        assert "\n" not in doc, name


def test_to_table_builds_the_contract_schema() -> None:
    rows = [_row("runs"), {**_row("runs"), "seed": 2, "lr": 1}]
    table = schema.to_table(rows, "runs")
    assert table.schema.equals(schema.RUNS)
    assert table.num_rows == 2
    assert table.column("seed").to_pylist() == [1, 2]
    assert table.column("lr").to_pylist() == [0.5, 1.0]


def test_to_table_accepts_none_and_nan() -> None:
    row = {**_row("layers"), "rp_run_p20": float("nan"), "rp_dense_p20": None}
    table = schema.to_table([row], "layers")
    assert math.isnan(table.column("rp_run_p20")[0].as_py())
    assert table.column("rp_dense_p20").null_count == 1


def test_to_table_of_no_rows_is_empty_with_schema() -> None:
    table = schema.to_table([], "curves")
    assert table.num_rows == 0
    assert table.schema.equals(schema.CURVES)


def test_to_table_names_missing_columns() -> None:
    row = _row("runs")
    del row["seed"], row["rp_run_p20"]
    with pytest.raises(ValueError, match=r"row 0: missing columns \['seed', 'rp_run_p20'\]"):
        schema.to_table([row], "runs")


def test_to_table_names_unexpected_columns() -> None:
    rows = [_row("curves"), {**_row("curves"), "accuracy": 0.9}]
    with pytest.raises(ValueError, match=r"curves row 1: unexpected columns \['accuracy'\]"):
        schema.to_table(rows, "curves")


def test_to_table_names_missing_and_unexpected_columns_together() -> None:
    row = {**_row("layers"), "extra": 1}
    del row["layer"]
    expected = r"layers row 0: missing columns \['layer'\]; unexpected columns \['extra'\]"
    with pytest.raises(ValueError, match=expected):
        schema.to_table([row], "layers")


def test_to_table_names_the_column_of_a_bad_value() -> None:
    with pytest.raises(ValueError, match="column 'seed'"):
        schema.to_table([{**_row("runs"), "seed": "zero"}], "runs")


def test_to_table_rejects_unknown_table() -> None:
    with pytest.raises(ValueError, match=r"unknown table 'trials'; known: \['curves'"):
        schema.to_table([], "trials")


def test_markdown_schema_mentions_every_column_with_type_and_doc() -> None:
    text = schema.markdown_schema()
    for table, docs in schema.COLUMN_DOCS.items():
        assert f"### `{table}`" in text
        for name in docs:
            assert f"| `{name}` |" in text, (table, name)
    assert "| `lr` | float64 | " in text
    assert "| `seed` | int64 | " in text
    assert "| `method` | string | " in text
    assert schema.COLUMN_DOCS["runs"]["total_epochs"] in text


def test_markdown_schema_rows_have_three_cells() -> None:
    rows = [line for line in schema.markdown_schema().splitlines() if line.startswith("| `")]
    assert len(rows) == len(RUNS_COLUMNS) + len(CURVES_COLUMNS) + len(LAYERS_COLUMNS)
    assert all(line.count("|") == 4 for line in rows)


def test_columns_added_later_are_columns_of_their_table_and_appended_last() -> None:
    for table, added in schema.ADDED.items():
        names = schema.SCHEMAS[table].names
        assert added <= set(names)
        # appended after every 0.1 column, so old parts are a prefix of the contract
        assert all(names.index(a) >= len(names) - len(added) for a in added)
