"""Tests for analysis/commits.py: the commit rule, part checks, and what the loaders show."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest

from analysis import commits
from analysis import schema
from analysis.load import load_curves
from analysis.load import load_layers
from analysis.load import load_runs

_DEFAULTS = {pa.string(): "x", pa.int64(): 0, pa.float64(): 0.0, pa.binary(): None}
FS = pafs.LocalFileSystem()


def _row(table: str, **values: Any) -> dict[str, Any]:
    return {**{f.name: _DEFAULTS[f.type] for f in schema.SCHEMAS[table]}, **values}


def _part(sweep: Path, table: str, key: str, **values: Any) -> Path:
    path = sweep / table / commits.part_file(key)
    path.parent.mkdir(parents=True, exist_ok=True)
    keys = {"trial_id": key} if table == "curves" else {"config_hash": key, "trial_id": key}
    pq.write_table(schema.to_table([_row(table, **keys, **values)], table), path)
    return path


def _record(sweep: Path, key: str, curves: tuple[str, ...] = ()) -> None:
    rec = commits.Record(key=key, parts={"runs": (key,), "layers": (key,), "curves": curves})
    (sweep / commits.COMMITS).mkdir(parents=True, exist_ok=True)
    (sweep / commits.COMMITS / f"{key}.json").write_bytes(rec.encode())


def _point(sweep: Path, key: str, commit: bool = True, **values: Any) -> None:
    """A grid point's runs, layers and curves parts, and (optionally) its record last."""
    _part(sweep, "runs", key, **values)
    _part(sweep, "layers", key)
    _part(sweep, "curves", f"t-{key}")
    if commit:
        _record(sweep, key, (f"t-{key}",))


def test_record_round_trips_and_rejects_what_is_not_a_record() -> None:
    rec = commits.Record(key="abc", parts={"runs": ("abc",), "curves": ("t-L0", "t-L1")})
    assert commits.Record.decode(rec.encode()) == rec
    for bad, reason in [(b"{trunc", "not JSON"), (b"[]", "not a commit record"),
                        (b'{"key": "a", "parts": {"nope": []}}', "unknown tables"),
                        (b'{"key": "a", "parts": {"runs": "a"}}', "lists of part keys")]:
        with pytest.raises(ValueError, match=reason):
            commits.Record.decode(bad)


def test_part_names_round_trip_and_temp_names_are_not_parts() -> None:
    assert commits.part_key(commits.part_file("chain-x-L3")) == "chain-x-L3"
    for name in (".part-a.parquet", "_part-a.parquet", "part-a.parquet.tmp", "a.parquet"):
        assert commits.part_key(name) is None


def test_loaders_show_only_points_whose_record_is_written(tmp_path: Path) -> None:
    sweep = tmp_path / "s"
    _point(sweep, "aaa", test_acc=0.5)
    _point(sweep, "bbb", commit=False, test_acc=0.6)  # cut off before its record
    assert list(load_runs(sweep).config_hash) == ["aaa"]
    assert list(load_layers(sweep).config_hash) == ["aaa"]
    assert list(load_curves(sweep).trial_id) == ["t-aaa"]
    _record(sweep, "bbb", ("t-bbb",))
    assert sorted(load_runs(sweep).config_hash) == ["aaa", "bbb"]


def test_a_point_with_a_missing_part_disappears_from_every_table(tmp_path: Path) -> None:
    sweep = tmp_path / "s"
    _point(sweep, "aaa")
    _point(sweep, "bbb")
    (sweep / "layers" / commits.part_file("bbb")).unlink()
    assert list(load_runs(sweep).config_hash) == ["aaa"]
    assert list(load_curves(sweep).trial_id) == ["t-aaa"]
    files = commits.scan(FS, str(sweep))
    assert set(files.complete()) == {"aaa"} and set(files.records) == {"aaa", "bbb"}


def test_a_sweep_without_commits_is_read_as_it_is(tmp_path: Path) -> None:
    sweep = tmp_path / "s"
    _point(sweep, "aaa", commit=False)
    _point(sweep, "bbb", commit=False)
    assert sorted(load_runs(sweep).config_hash) == ["aaa", "bbb"]
    assert not commits.scan(FS, str(sweep)).has_commits


def test_a_corrupt_committed_part_is_an_error_naming_the_file(tmp_path: Path) -> None:
    sweep = tmp_path / "s"
    _point(sweep, "aaa")
    path = sweep / "runs" / commits.part_file("aaa")
    path.write_bytes(path.read_bytes()[:50])
    with pytest.raises(ValueError, match=r"part-aaa.parquet: not a valid Parquet file.*resume"):
        load_runs(sweep)


def test_check_part_names_truncation_foreign_bytes_and_missing_columns(tmp_path: Path) -> None:
    good = _part(tmp_path, "runs", "good")
    assert commits.check_part(FS, str(good), "runs") is None
    assert "missing columns ['epoch', 'lr_epoch']" in commits.check_part(FS, str(good), "curves")
    cut = tmp_path / "cut.parquet"
    cut.write_bytes(good.read_bytes()[:-20])
    assert "not a valid Parquet" in commits.check_part(FS, str(cut), "runs")
    (tmp_path / "foreign.parquet").write_text("hello")
    assert "not a valid Parquet" in commits.check_part(FS, str(tmp_path / "foreign.parquet"),
                                                       "runs")
    narrow = tmp_path / "narrow.parquet"
    pq.write_table(schema.to_table([_row("runs")], "runs").drop_columns(["test_acc"]), narrow)
    assert "missing columns ['test_acc']" in commits.check_part(FS, str(narrow), "runs")
    assert commits.check_part(FS, str(tmp_path / "gone.parquet"), "runs") == "missing"


def test_scan_reports_records_that_do_not_decode_or_do_not_match_their_name(
        tmp_path: Path) -> None:
    sweep = tmp_path / "s"
    _point(sweep, "aaa")
    (sweep / commits.COMMITS / "bbb.json").write_text("{")
    (sweep / commits.COMMITS / "ccc.json").write_text(json.dumps(
        {"key": "zzz", "parts": {"runs": ["zzz"]}}))
    files = commits.scan(FS, str(sweep))
    assert set(files.records) == {"aaa"}
    reasons = {Path(p).name: r for p, r in files.bad_records.items()}
    assert "not JSON" in reasons["bbb.json"]
    assert "does not match its name" in reasons["ccc.json"]


def test_check_parts_finds_every_invalid_part_across_tables(tmp_path: Path) -> None:
    sweep = tmp_path / "s"
    for i in range(10):  # enough to go through the thread pool
        _point(sweep, f"p{i}")
    broken = [sweep / "runs" / commits.part_file("p3"), sweep / "curves" / "part-t-p7.parquet"]
    for path in broken:
        path.write_bytes(b"PAR1")
    bad = commits.check_parts(FS, commits.scan(FS, str(sweep)))
    assert set(bad) == {str(p) for p in broken}
