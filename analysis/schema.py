"""The Parquet contract: Arrow schemas and column docs for the runs, curves and layers tables.

This module is the only place where result column names, order and Arrow types are defined.
Writers build tables with `to_table`; readers (`analysis.load`) read with these schemas. Each
column is declared once, as `(name, type, doc)`, so the schemas and `COLUMN_DOCS` cannot drift.
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa

_STR = pa.string()
_F64 = pa.float64()
_I64 = pa.int64()

# Columns shared by several tables, declared once so their docs stay identical.
_SWEEP = ("sweep", _STR, "Sweep name (the `<name>` in `<storage>/<name>/`).")
_TRIAL_ID = ("trial_id", _STR, "Deterministic key of the trial that produced the row.")
_CONFIG_HASH = ("config_hash", _STR, "Content key of the grid point (all its hparams).")
_METHOD = ("method", _STR, "Method key: dense, lth, random_reinit, random_pruning, pf, ...")
_MODEL = ("model", _STR, "Model registry key, e.g. resnet20.")
_DATASET = ("dataset", _STR, "Dataset registry key, e.g. cifar10.")
_LR = ("lr", _F64, "Initial learning rate of the run's training (before any schedule).")
_SEED = ("seed", _I64, "Replicate index; seeds θ0, data order and masks.")
_TARGET = ("target_sparsity", _F64, "Requested sparsity, fraction in [0, 1); 0 for dense.")
_SPARSITY = ("sparsity", _F64, "Measured fraction of the conv / linear weights removed (layers "
                               "kept dense count as kept), in [0, 1].")
_LEVEL = ("level", _I64, "IMP pruning rounds behind the mask (random_pruning: of the IMP mask "
                         "whose per-layer sparsity it draws, trained or not), 1 for one-shot "
                         "masks, RST's cycles; 0 for dense and sdt.")
_RECIPE = ("recipe", _STR, "Retraining recipe (a `recipes:` name; `base` = plain, also for "
                           "dense and IMP-level rows); null in parts older than recipes.")
_RP_DOC = "R_{p} in [0, 1] of θ0 vs trained dense θT (same lr, seed), Liu 2021 Eq. 1; null {p}."

_RUNS_COLUMNS: tuple[tuple[str, pa.DataType, str], ...] = (
    _SWEEP,
    _TRIAL_ID,
    _CONFIG_HASH,
    _METHOD,
    _MODEL,
    _DATASET,
    _LR,
    _TARGET,
    _SPARSITY,
    _LEVEL,
    _SEED,
    ("epochs", _I64, "Epochs of this row's own (final) training stage (a run cut short by "
                     "training.iterations, or started at θk, counts its partial epochs)."),
    ("total_epochs", _I64, "All epochs behind this row, incl. dense pretraining and IMP levels."),
    ("test_acc", _F64, "Test accuracy after the final epoch, fraction in [0, 1]."),
    ("best_test_acc", _F64, "Best per-epoch test accuracy of the final stage, fraction; "
                            "chosen on the test set (use test_acc_at_best_val)."),
    ("best_epoch", _I64, "1-based epoch of best_test_acc, counted from the schedule's start "
                         "(lth_rewind's first is the one after θk's)."),
    ("test_loss", _F64, "Test cross-entropy after the final epoch, nats per example."),
    ("train_loss", _F64, "Mean training loss over the final epoch, nats per example: "
                         "cross-entropy, or the recipe's smoothed / distillation loss."),
    *((f"rp_dense_p{pct}", _F64, _RP_DOC.format(p=pct / 100)) for pct in (10, 20, 30, 40, 50)),
    ("rp_run_p20", _F64, "R_0.2 of the run's initial vs final masked weights (survivors only)."),
    ("optimizer", _STR, "Optimizer name, e.g. sgd or adam."),
    ("batch_size", _I64, "Training mini-batch size, examples."),
    ("momentum", _F64, "Optimizer momentum (0 when unused)."),
    ("weight_decay", _F64, "L2 weight decay coefficient (0 when unused)."),
    ("prune_rate", _F64, "Fraction of remaining weights removed per IMP level."),
    ("prune_scope", _STR, "Where the pruning threshold is computed: global or layerwise."),
    ("device", _STR, "Device the trial ran on, e.g. cpu or cuda:0."),
    ("wall_time_s", _F64, "Wall-clock seconds of the row's own training loop, incl. its "
                          "per-epoch evaluation."),
    ("code_version", _STR, "Version (git revision or package version) of the code."),
    ("val_acc", _F64, "Validation accuracy after the final epoch, fraction; null without "
                      "data.validation."),
    ("val_loss", _F64, "Validation cross-entropy after the final epoch, nats; null without."),
    ("best_val_epoch", _I64, "1-based epoch of minimum validation loss (F&C's early stop), "
                             "numbered as best_epoch."),
    ("best_val_iteration", _I64, "best_val_epoch in iterations: the schedule's step at that "
                                 "epoch's end (for lth_rewind incl. the k rewound steps)."),
    ("test_acc_at_best_val", _F64, "Test accuracy at best_val_epoch, fraction (F&C App. C)."),
    ("rp_init_vs_pf_p20", _F64, "P&F rows: R_0.2(θ0⊙m, (θT⊙m)_T) over survivors, Liu 2021 "
                                "Fig. 5c; null for other methods."),
    ("rp_reinit_vs_pf_p20", _F64, "P&F rows: R_0.2(θ0'⊙m, (θT⊙m)_T), the random-reinit "
                                  "counterpart (Liu 2021 Fig. 5d)."),
    ("rp_pf_vs_init_p20", _F64, "P&F rows: R_0.2((θT⊙m)_T, θ0) over whole layers (Liu 2021 "
                                "App. F); null if a layer's density <= 0.2."),
    ("rp_pf_vs_dense_p20", _F64, "P&F rows: R_0.2((θT⊙m)_T, θT) over whole layers (Liu 2021 "
                                 "App. F Table 1)."),
    _RECIPE,
    ("source_dataset", _STR, "Dataset the mask was found on (the trunk's); equals `dataset` "
                             "except for transfer rows."),
    ("target_dataset", _STR, "Dataset the row trained and is evaluated on; equals `dataset`."),
    ("transfer_init", _STR, "Transfer rows: start weights late_reset (θS, source-trained), "
                            "init (θ0) or reinit (θ0'); null otherwise."),
    ("transfer_regime", _STR, "Transfer rows: finetune (all layers) or freeze (features "
                              "frozen, new head trained); null otherwise."),
    ("rewind_step", _I64, "lth_rewind rows: k, the dense-training step whose weights θk the "
                          "survivors reset to; null otherwise."),
    ("search", _STR, "Name of the Optuna search (spec `search.name`) that tried this "
                     "configuration; null for grid points."),
    ("search_trial", _I64, "Search rows: the trial's number in its cell's study, 0-based and "
                           "continued by later runs; null otherwise."),
    ("search_params", _STR, "Search rows: the values the search picked, as JSON, e.g. "
                            "{\"lr\": 0.0123}; null otherwise."),
)

_CURVES_COLUMNS: tuple[tuple[str, pa.DataType, str], ...] = (
    _SWEEP,
    _TRIAL_ID,
    _METHOD,
    _MODEL,
    _DATASET,
    _LR,
    _SEED,
    _TARGET,
    _LEVEL,
    _SPARSITY,
    ("epoch", _I64, "1-based epoch of this (trial, level) training, counted from the "
                    "schedule's start (lth_rewind's first is the one after θk's)."),
    ("lr_epoch", _F64, "Learning rate used during the epoch (after the schedule)."),
    ("train_loss", _F64, "Mean training loss over the epoch, nats per example (the recipe's "
                         "objective; cross-entropy for `base`)."),
    ("test_loss", _F64, "Test cross-entropy after the epoch, nats per example."),
    ("test_acc", _F64, "Test accuracy after the epoch, fraction in [0, 1]."),
    ("val_loss", _F64, "Validation cross-entropy after the epoch, nats; null without split."),
    ("val_acc", _F64, "Validation accuracy after the epoch, fraction; null without split."),
    _RECIPE,
)

_LAYERS_COLUMNS: tuple[tuple[str, pa.DataType, str], ...] = (
    _SWEEP,
    _TRIAL_ID,
    _CONFIG_HASH,
    _METHOD,
    _MODEL,
    _DATASET,
    _LR,
    _SEED,
    _TARGET,
    ("layer", _STR, "Parameter name of the prunable weight, e.g. layer1.0.conv1.weight."),
    ("n_weights", _I64, "Number of weights in the layer (dense count)."),
    ("n_kept", _I64, "Number of weights the mask keeps."),
    ("sparsity", _F64, "Fraction of the layer's weights removed, 1 - n_kept / n_weights."),
    ("rp_run_p20", _F64, "Per-layer R_0.2 of initial vs final masked weights; NaN if < 5 kept."),
    ("rp_dense_p20", _F64, "Per-layer R_0.2 of θ0 vs trained dense θT at this lr and seed."),
    _RECIPE,
    ("mask_bits", pa.binary(), "The layer's mask, flattened in C order and packed 8 per byte "
                               "(numpy.packbits, big-endian bits, 1 = kept); null without a "
                               "mask. analysis.masks unpacks and compares them."),
)

_COLUMNS = {"runs": _RUNS_COLUMNS, "curves": _CURVES_COLUMNS, "layers": _LAYERS_COLUMNS}

# Columns whose every value is a fraction in [0, 1] (accuracies, sparsities, R_p overlaps):
# ``analysis.intervals`` clips an interval over seeds of one to [0, 1] (a difference of two
# to [-1, 1]).
UNIT_INTERVAL: frozenset[str] = frozenset({
    "target_sparsity", "sparsity", "test_acc", "best_test_acc", "val_acc",
    "test_acc_at_best_val", "rp_run_p20", "rp_init_vs_pf_p20", "rp_reinit_vs_pf_p20",
    "rp_pf_vs_init_p20", "rp_pf_vs_dense_p20",
    *(f"rp_dense_p{pct}" for pct in (10, 20, 30, 40, 50))})

# Columns added after lottery-sweeps 0.1: a part written before them lacks them, and readers
# fill them with nulls. Every other column must be in every part. Add new columns here.
ADDED: dict[str, frozenset[str]] = {
    "runs": frozenset({"val_acc", "val_loss", "best_val_epoch", "best_val_iteration",
                       "test_acc_at_best_val", "rp_init_vs_pf_p20", "rp_reinit_vs_pf_p20",
                       "rp_pf_vs_init_p20", "rp_pf_vs_dense_p20", "recipe", "source_dataset",
                       "target_dataset", "transfer_init", "transfer_regime", "rewind_step",
                       "search", "search_trial", "search_params"}),
    "curves": frozenset({"val_loss", "val_acc", "recipe"}),
    "layers": frozenset({"recipe", "mask_bits"}),
}

TABLE_DOCS: dict[str, str] = {
    "runs": "One row per grid point (model, dataset, method, lr, target_sparsity, seed).",
    "curves": "One row per (trial, level, epoch) evaluation.",
    "layers": "One row per (grid point, prunable layer).",
}

RUNS: pa.Schema = pa.schema([pa.field(n, t) for n, t, _ in _RUNS_COLUMNS])
CURVES: pa.Schema = pa.schema([pa.field(n, t) for n, t, _ in _CURVES_COLUMNS])
LAYERS: pa.Schema = pa.schema([pa.field(n, t) for n, t, _ in _LAYERS_COLUMNS])

SCHEMAS: dict[str, pa.Schema] = {"runs": RUNS, "curves": CURVES, "layers": LAYERS}

COLUMN_DOCS: dict[str, dict[str, str]] = {
    table: {name: doc for name, _, doc in columns} for table, columns in _COLUMNS.items()
}


def get_schema(table: str) -> pa.Schema:
    """Look up a table's Arrow schema by name.

    Args:
        table: One of "runs", "curves", "layers".
    Returns:
        The table's schema (columns in contract order).
    Raises:
        ValueError: `table` is not a known table name.
    """
    if table not in SCHEMAS:
        raise ValueError(f"unknown table {table!r}; known: {sorted(SCHEMAS)}")
    return SCHEMAS[table]


def to_table(rows: list[dict[str, Any]], table: str) -> pa.Table:
    """Build an Arrow table with the contract schema from row dicts.

    Args:
        rows: One dict per row, keyed by exactly the table's column names. Values must convert
            to the column's Arrow type (ints to float64 are fine; None becomes null).
        table: One of "runs", "curves", "layers".
    Returns:
        A `pyarrow.Table` whose schema equals `SCHEMAS[table]`, rows in input order.
    Raises:
        ValueError: unknown table; a row misses columns or has unexpected ones (both named,
            with the row index); or a value cannot be converted (the column is named).
    """
    schema = get_schema(table)
    expected = set(schema.names)
    for i, row in enumerate(rows):
        missing = [name for name in schema.names if name not in row]
        unexpected = sorted(set(row) - expected)
        if missing or unexpected:
            problems = [f"missing columns {missing}"] if missing else []
            problems += [f"unexpected columns {unexpected}"] if unexpected else []
            raise ValueError(f"{table} row {i}: {'; '.join(problems)}")
    arrays = []
    for field in schema:
        try:
            arrays.append(pa.array([row[field.name] for row in rows], type=field.type))
        except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
            raise ValueError(f"{table} column {field.name!r} ({field.type}): {exc}") from exc
    return pa.Table.from_arrays(arrays, schema=schema)


def _type_name(dtype: pa.DataType) -> str:
    # Arrow spells float64 "double"; the docs use numpy/pandas names.
    return "float64" if dtype == pa.float64() else str(dtype)


def markdown_schema() -> str:
    """Render the three tables' columns, types and docs as Markdown (for the README).

    Returns:
        Markdown text: per table a `###` heading, the row grain, and a
        `| column | type | description |` table in contract column order.
    """
    lines: list[str] = []
    for table, columns in _COLUMNS.items():
        lines += [f"### `{table}`", "", TABLE_DOCS[table], ""]
        lines += ["| column | type | description |", "|---|---|---|"]
        for name, dtype, doc in columns:
            lines.append(f"| `{name}` | {_type_name(dtype)} | {doc.replace('|', '/')} |")
        lines.append("")
    return "\n".join(lines)
