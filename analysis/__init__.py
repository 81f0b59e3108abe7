"""Read and summarize sweep results: Parquet schemas, loaders, statistics and the text report.

Imports only the standard library, numpy, pandas and pyarrow (and scipy for intervals of 2-9
seeds, matplotlib for figures); never torch, ray, `trainer` or `sweeps`, so results can be
analysed on a machine without the training stack. Submodules (``analysis.tables``,
``analysis.verdicts``, ...) are imported on first attribute access too.
"""

from __future__ import annotations

from typing import Any

# Public name -> the module defining it; each is imported on first use, so importing one
# module of the package (e.g. ``analysis.commits``, pyarrow only) does not load pandas.
_EXPORTS = {
    "between": "load", "load_curves": "load", "load_layers": "load", "load_runs": "load",
    "format_report": "report",
    "COLUMN_DOCS": "schema", "CURVES": "schema", "LAYERS": "schema", "RUNS": "schema",
    "markdown_schema": "schema", "to_table": "schema",
    "dense_correlation": "stats", "summarize": "stats", "winning_ticket": "stats",
}

_SUBMODULES = ("commits", "figures", "intervals", "load", "masks", "report", "report_files",
               "schema", "search", "stats", "tables", "verdicts")

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    """``analysis.load_runs`` etc.: imported from their module on first use."""
    import importlib

    if name in _EXPORTS:
        return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    if name in _SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
