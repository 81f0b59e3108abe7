"""Read a sweep's Parquet tables (runs, curves, layers) into pandas DataFrames.

A sweep directory `<storage>/<name>/` holds one subdirectory per table, each a set of
`part-*.parquet` files written atomically (temp name, then rename). Only the parts of complete
grid points are read (`analysis.commits`: a point's parts count once its commit record is
written, so its rows appear in all tables together); temp files start with "." or "_" and are
skipped, the same rule as pyarrow.dataset's default `ignore_prefixes`. A sweep without
`commits/` (tables written by hand) is read as it is. Every part must be valid Parquet holding
all schema columns (else a ValueError names the file); values are cast to the schema's types.
"""

from __future__ import annotations

import math
import numbers
import os
import re
from collections.abc import Iterable
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.fs as pafs

from analysis import commits
from analysis.schema import get_schema

# Stable sort keys; trailing columns only break ties so the order never depends on file order.
SORT_KEYS: dict[str, tuple[str, ...]] = {
    "runs": ("model", "dataset", "method", "lr", "target_sparsity", "seed", "sweep", "trial_id"),
    "curves": ("trial_id", "level", "epoch", "method", "target_sparsity", "sweep"),
    "layers": ("model", "dataset", "method", "lr", "target_sparsity", "seed", "layer", "sweep"),
}

# String keys come back as pandas categoricals (group with observed=True).
CATEGORICAL = ("sweep", "model", "dataset", "method", "recipe", "search", "optimizer",
               "prune_scope", "device", "source_dataset", "target_dataset", "transfer_init",
               "transfer_regime", "layer")


@dataclass(frozen=True)
class Between:
    """A range filter: ``low <= value <= high`` (either bound None: open), e.g.
    ``load_runs(path, target_sparsity=between(0.8, None))``."""

    low: float | None = None
    high: float | None = None

    def __post_init__(self) -> None:
        for bound in (self.low, self.high):
            if bound is not None and (isinstance(bound, bool) or not isinstance(
                    bound, numbers.Real) or math.isnan(bound)):
                raise ValueError(f"between({self.low!r}, {self.high!r}): bounds are numbers "
                                 "or None")
        if self.low is not None and self.high is not None and self.low > self.high:
            raise ValueError(f"between({self.low!r}, {self.high!r}): low > high matches "
                             "nothing")


def between(low: float | None = None, high: float | None = None) -> Between:
    """A closed range filter ``low <= value <= high`` for ``load_runs`` / ``load_curves`` /
    ``load_layers`` (a bound None: open; no tolerance at the bounds).

    Raises:
        ValueError: a bound that is not a number, or low > high.
    """
    return Between(low, high)


# Float filters match within this tolerance, so lr=0.3 finds a stored 0.1 + 0.2 and a
# float32 value (relative error up to 6e-8) its float64 original.
_REL_TOL = 1e-6
_ABS_TOL = 1e-12


def load_runs(path: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
              **filters: Any) -> pd.DataFrame:
    """Load the runs table (one row per grid point); see `analysis.schema.RUNS`.

    Args:
        path: Sweep directory `<storage>/<name>` or its `runs/` directory; a local path or a
            URI understood by `pyarrow.fs.FileSystem.from_uri` (file://, s3://, ...); or a
            list of them (several sweeps, concatenated).
        **filters: Column name -> allowed value (scalar), values (list, tuple or set) or range
            (`between(low, high)`), pushed down to pyarrow. Float columns match values within
            a relative tolerance of 1e-6; integer columns (seed, level, ...) take integral
            values only.
    Returns:
        DataFrame with the schema's columns in contract order, sorted by (model, dataset,
        method, lr, target_sparsity, seed), index 0..n-1; the string keys (`CATEGORICAL`) as
        pandas categoricals (group with `observed=True`). Empty (same columns) when the table
        directory is missing or holds no parts.
    Raises:
        FileNotFoundError: `path` does not exist (NotADirectoryError: it is a file).
        ValueError: a filter names an unknown column or gives a value that does not fit it
            (a non-integral seed), or a part is not valid Parquet or lacks schema columns
            (the message names the file; `lottery resume` repairs it).
    """
    return load_table(path, "runs", **filters)


def load_curves(path: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
              **filters: Any) -> pd.DataFrame:
    """Load the curves table (one row per trial, level and epoch); see `analysis.schema.CURVES`.

    Args:
        path: Sweep directory or its `curves/` directory (local path or URI).
        **filters: Column name -> allowed value or values, as in `load_runs`.
    Returns:
        DataFrame sorted by (trial_id, level, epoch), index 0..n-1; empty when no parts.
    Raises:
        FileNotFoundError: `path` does not exist (NotADirectoryError: it is a file).
        ValueError: as in `load_runs`.
    """
    return load_table(path, "curves", **filters)


def load_layers(path: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
              **filters: Any) -> pd.DataFrame:
    """Load the layers table (one row per grid point and layer); see `analysis.schema.LAYERS`.

    Args:
        path: Sweep directory or its `layers/` directory (local path or URI).
        **filters: Column name -> allowed value or values, as in `load_runs`.
    Returns:
        DataFrame sorted by (model, dataset, method, lr, target_sparsity, seed, layer), index
        0..n-1; empty when no parts.
    Raises:
        FileNotFoundError: `path` does not exist (NotADirectoryError: it is a file).
        ValueError: as in `load_runs`.
    """
    return load_table(path, "layers", **filters)


def load_table(path: str | os.PathLike[str] | Sequence[str | os.PathLike[str]], table: str,
               **filters: Any) -> pd.DataFrame:
    """Load one table of a sweep; the shared body of `load_runs`/`load_curves`/`load_layers`.

    Args:
        path: Sweep directory or the table directory itself (local path or URI).
        table: One of "runs", "curves", "layers".
        **filters: Column name -> allowed value or values, as in `load_runs`.
    Returns:
        The filtered, sorted DataFrame (empty with the schema's columns when there are no parts).
    Raises:
        FileNotFoundError: `path` does not exist (NotADirectoryError: it is a file).
        ValueError: unknown table or filter column, or a part is not valid Parquet or lacks
            schema columns.
    """
    schema = get_schema(table)
    expression = _filter_expression(schema, filters)
    paths = [path] if isinstance(path, (str, os.PathLike)) else list(path)
    frames = []
    for one in paths:
        fs, parts, compacted = _find_parts(one, table)
        _check_parts(fs, [*parts, *compacted], table)
        if parts:
            dataset = ds.dataset(parts, schema=schema, format="parquet", filesystem=fs)
            frames.append(dataset.to_table(filter=expression))
        for path, keys in compacted.items():  # only the rows of visible, unshadowed parts
            tagged = schema.append(pa.field(commits.PART_COLUMN, pa.string()))
            mine = pc.field(commits.PART_COLUMN).isin(pa.array(keys, pa.string()))
            rows = ds.dataset([path], schema=tagged, format="parquet", filesystem=fs)
            frames.append(rows.to_table(filter=mine if expression is None else
                                        mine & expression, columns=schema.names))
    frame = pa.concat_tables(frames).to_pandas() if frames else \
        schema.empty_table().to_pandas()
    frame = frame.sort_values(list(SORT_KEYS[table]), kind="stable", ignore_index=True)
    for column in CATEGORICAL:
        if column in frame:
            frame[column] = frame[column].astype("category")
    return frame


def _find_parts(path: str | os.PathLike[str], table: str
                ) -> tuple[pafs.FileSystem, list[str], dict[str, tuple[str, ...]]]:
    """Locate the visible parts of `table` under a sweep directory or a table directory:
    (filesystem, loose part files, compacted file -> the part keys to read from it).

    `<path>/<table>/` is preferred; `path` itself counts when it directly holds parts (the
    order flips when `path` is named like the table, so a sweep called "runs" still works).
    Which parts are visible is `analysis.commits`' rule, applied to the sweep directory.
    """
    fs, root = _filesystem(path)
    info = fs.get_file_info(root)
    if info.type == pafs.FileType.NotFound:
        raise FileNotFoundError(f"no such sweep or table directory: {_redact(path)!r}")
    if info.type != pafs.FileType.Directory:
        raise NotADirectoryError(f"expected a sweep or table directory: {_redact(path)!r}")
    root = root.rstrip("/")
    named_like_table = root.rsplit("/", 1)[-1] == table
    # (table directory, its sweep directory); a bare directory of parts has no sweep around it
    candidates = [(f"{root}/{table}", root),
                  (root, root.rsplit("/", 1)[0] if named_like_table else None)]
    if named_like_table:
        candidates.reverse()
    for table_dir, sweep_dir in candidates:
        parts = commits.list_parts(fs, table_dir)
        if parts and sweep_dir is None:
            return fs, sorted(parts.values()), {}
        if sweep_dir is not None:
            files = commits.scan(fs, sweep_dir)
            if parts or files.compacted.get(table):
                return fs, files.visible(table), files.visible_compacted(table)
    return fs, [], {}


def _filesystem(path: str | os.PathLike[str]) -> tuple[pafs.FileSystem, str]:
    """Split a local path or URI into (filesystem, path inside it)."""
    text = os.fspath(path)
    if "://" in text:
        return pafs.FileSystem.from_uri(text)
    return pafs.LocalFileSystem(), os.path.abspath(text).replace(os.sep, "/")


def _redact(path: str | os.PathLike[str]) -> str:
    """The path for error messages, without credentials embedded in a URI (s3://key:secret@)."""
    return re.sub(r"://[^/@]*@", "://***@", os.fspath(path))


def _check_parts(fs: pafs.FileSystem, parts: list[str], table: str) -> None:
    """Raise naming the first part that is not valid (pyarrow would fail or fill nulls)."""
    for path in parts:
        reason = commits.check_part(fs, path, table)
        if reason is not None:
            raise ValueError(f"{path}: {reason} (`lottery resume` moves a corrupt part aside "
                             "and recomputes its grid point)")


def _filter_expression(schema: pa.Schema, filters: dict[str, Any]) -> ds.Expression | None:
    """AND of one membership test per filter; None when there are no filters."""
    unknown = sorted(set(filters) - set(schema.names))
    if unknown:
        raise ValueError(f"unknown filter column(s) {unknown}; known: {schema.names}")
    expression = None
    for name, value in filters.items():
        values = list(value) if isinstance(value, (list, tuple, set, frozenset)) else [value]
        try:
            term = _column_range(name, value) if isinstance(value, Between) else \
                _column_in(name, schema.field(name).type, values)
        except (TypeError, ValueError, pa.ArrowException) as exc:
            raise ValueError(f"filter {name}={value!r} does not fit the column: {exc}") from exc
        expression = term if expression is None else expression & term
    return expression


def _column_range(name: str, value: Between) -> ds.Expression:
    """Expression: column `name` within [low, high] (an open bound when None)."""
    term = pc.scalar(True)
    if value.low is not None:
        term = term & (pc.field(name) >= value.low)
    if value.high is not None:
        term = term & (pc.field(name) <= value.high)
    return term


def _column_in(name: str, dtype: pa.DataType, values: Iterable[Any]) -> ds.Expression:
    """Expression: column `name` equals one of `values` (floats within tolerance)."""
    values = list(values)
    if pa.types.is_integer(dtype):
        odd = [v for v in values if isinstance(v, bool) or (isinstance(v, numbers.Real)
                                                           and not float(v).is_integer())]
        if odd:  # pyarrow would truncate 0.5 to 0
            raise ValueError(f"{odd} not integers")
    if not pa.types.is_floating(dtype):
        return pc.field(name).isin(pa.array(values, type=dtype))
    term = pc.scalar(False)
    for value in values:
        tol = max(_ABS_TOL, _REL_TOL * abs(float(value)))
        if math.isnan(float(value)):
            near = pc.is_nan(pc.field(name))
        else:
            near = (pc.field(name) >= float(value) - tol) & (pc.field(name) <= float(value) + tol)
        term = term | near
    return term
