"""Read and summarize sweep results: Parquet schemas, loaders, statistics and the text report.

Imports only the standard library, numpy, pandas and pyarrow (never torch, ray, `trainer` or
`sweeps`), so results can be analysed on a machine without the training stack.
"""

from __future__ import annotations

from analysis.load import between
from analysis.load import load_curves
from analysis.load import load_layers
from analysis.load import load_runs
from analysis.report import format_report
from analysis.schema import COLUMN_DOCS
from analysis.schema import CURVES
from analysis.schema import LAYERS
from analysis.schema import RUNS
from analysis.schema import markdown_schema
from analysis.schema import to_table
from analysis.stats import dense_correlation
from analysis.stats import summarize
from analysis.stats import winning_ticket

__all__ = [
    "COLUMN_DOCS",
    "CURVES",
    "LAYERS",
    "RUNS",
    "between",
    "dense_correlation",
    "format_report",
    "load_curves",
    "load_layers",
    "load_runs",
    "markdown_schema",
    "summarize",
    "to_table",
    "winning_ticket",
]
