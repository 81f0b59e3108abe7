"""lottery-sweeps orchestration: spec -> plan -> Ray Tune trials -> Parquet tables."""

__version__ = "0.1.0"
