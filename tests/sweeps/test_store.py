"""Tests for sweeps/store.py: the content key (pinned), Store blobs and atomic Parquet parts."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest

from analysis import schema
from sweeps.store import Store
from sweeps.store import content_key
from sweeps.store import join_uri
from trainer.hparams import DataHparams
from trainer.hparams import PruneHparams
from trainer.hparams import TrainHparams

# Pinned keys (open_lth's hash regression test, STYLE.md 2.4). Every stored result lives under
# these keys: a changed value is a BUG (results silently relabelled), never a test to update.
PINNED_KEYS: list[tuple[str, str, Any, str]] = [
    ("train_defaults", "train", TrainHparams(), "1c8392ad8a7667bf"),
    ("train_lr_0.01", "train", TrainHparams(lr=0.01), "460ba262c170df96"),
    ("train_lr_1", "train", TrainHparams(lr=1), "2a9da4b189af3a6f"),
    ("train_adam_milestones", "train",
     TrainHparams(optimizer="adam", lr=0.001, milestones=(80, 120)), "abcb3a5d41e0486c"),
    ("prune_global", "prune", PruneHparams(scope="global"), "170783add225fa12"),
    ("prune_rate_keep_dense", "prune", PruneHparams(rate=0.5, keep_dense=("first", "output")),
     "7c1692825d8a270a"),
    ("data_fashion_mnist", "data", DataHparams(name="fashion-mnist"), "ad4a72acc42cabea"),
    ("data_subsets", "data", DataHparams(train_subset=100, test_subset=50), "f476a3660db7c00b"),
    ("empty_dict", "imp_chain", {}, "bed39b3caaf5a1de"),
    ("trunk_all_defaults", "imp_chain", {"model": "lenet_300_100", "data": DataHparams(),
                                         "train": TrainHparams(), "prune": PruneHparams()},
     "f65d95c0b8aace4c"),
    ("grid_point", "lth", {"trunk": "0123456789abcdef", "seed": 0, "target_sparsity": 0.5},
     "9149b7add629c21f"),
    ("nested_dict", "x", {"a": {"b": [1, 2.5, "c", True, None]}}, "100868c19f5dbf17"),
]


@pytest.mark.parametrize(("kind", "obj", "key"), [case[1:] for case in PINNED_KEYS],
                         ids=[case[0] for case in PINNED_KEYS])
def test_content_key_is_pinned(kind: str, obj: Any, key: str) -> None:
    assert content_key(kind, obj) == key


def _documented_key(payload: dict[str, Any]) -> str:
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def test_content_key_follows_the_documented_recipe() -> None:
    assert content_key("train", TrainHparams(lr=0.01, epochs=3)) == \
        _documented_key({"kind": "train", "lr": 0.01, "epochs": 3})
    assert content_key("lth", {"seed": 1, "x": {"y": 2}}) == \
        _documented_key({"kind": "lth", "seed": 1, "x": {"y": 2}})


def test_content_key_is_16_lowercase_hex() -> None:
    key = content_key("train", TrainHparams(lr=0.5))
    assert len(key) == 16
    assert int(key, 16) >= 0 and key == key.lower()


# Lists given where tuples are declared are normalized to the (tuple) defaults.
@pytest.mark.parametrize("group", [TrainHparams(), PruneHparams(), DataHparams(),
                                   TrainHparams(lr=0.1, milestones=[]),  # type: ignore[arg-type]
                                   PruneHparams(keep_dense=["output"])])  # type: ignore[arg-type]
def test_group_equal_to_defaults_hashes_like_an_empty_payload(group: Any) -> None:
    assert content_key("k", group) == content_key("k", {})


def test_default_fields_are_omitted_inside_nested_groups() -> None:
    explicit = {"train": TrainHparams(lr=0.01, epochs=10, batch_size=64)}
    assert content_key("k", explicit) == content_key("k", {"train": {"lr": 0.01}})


def test_integer_and_float_lr_give_the_same_key() -> None:
    assert content_key("train", TrainHparams(lr=1)) == content_key("train", TrainHparams(lr=1.0))
    nested_int = {"train": TrainHparams(lr=1), "seed": 0}
    nested_float = {"train": TrainHparams(lr=1.0), "seed": 0}
    assert content_key("imp_chain", nested_int) == content_key("imp_chain", nested_float)


def test_dict_key_order_does_not_matter() -> None:
    a = {"model": "m", "seed": 1, "nested": {"x": 1, "y": 2}}
    b = {"nested": {"y": 2, "x": 1}, "seed": 1, "model": "m"}
    assert content_key("k", a) == content_key("k", b)


def test_different_kind_gives_different_key() -> None:
    payload = {"trunk": "abc", "seed": 0, "target_sparsity": 0.5}
    assert content_key("lth", payload) != content_key("pf", payload)


def test_different_values_give_different_keys() -> None:
    keys = {content_key("train", TrainHparams(lr=lr)) for lr in (0.001, 0.01, 0.1, 0.2)}
    assert len(keys) == 4


def test_tuple_and_list_hash_alike() -> None:
    assert content_key("k", {"m": (80, 120)}) == content_key("k", {"m": [80, 120]})


def test_nan_cannot_be_hashed() -> None:
    with pytest.raises(ValueError, match="JSON"):
        content_key("k", {"lr": float("nan")})


def test_non_json_value_raises_type_error() -> None:
    with pytest.raises(TypeError):
        content_key("k", {"x": object()})


def test_put_get_round_trip(tmp_path: Path) -> None:
    store = Store(str(tmp_path))
    store.put("a/b/blob.bin", b"\x00\x01payload")
    assert store.get("a/b/blob.bin") == b"\x00\x01payload"
    assert (tmp_path / "a" / "b" / "blob.bin").read_bytes() == b"\x00\x01payload"
    assert store.exists("a/b/blob.bin")


def test_put_overwrites(tmp_path: Path) -> None:
    store = Store(str(tmp_path))
    store.put("x", b"old")
    store.put("x", b"new")
    assert store.get("x") == b"new"


def test_json_round_trip(tmp_path: Path) -> None:
    store = Store(str(tmp_path))
    store.put_json("spec.json", {"name": "x", "lrs": [0.1, 1.0]})
    assert store.get_json("spec.json") == {"name": "x", "lrs": [0.1, 1.0]}


def test_get_of_missing_name_is_none(tmp_path: Path) -> None:
    store = Store(str(tmp_path / "never-created"))
    assert store.get("nothing.bin") is None
    assert store.get_json("spec.json") is None
    assert not store.exists("nothing.bin")
    assert not (tmp_path / "never-created").exists()  # reading creates nothing


def test_put_leaves_no_temp_files(tmp_path: Path) -> None:
    store = Store(str(tmp_path))
    for i in range(3):
        store.put("dir/blob.bin", bytes([i]) * 10)
    assert os.listdir(tmp_path / "dir") == ["blob.bin"]


def test_list_skips_hidden_and_underscore_names(tmp_path: Path) -> None:
    store = Store(str(tmp_path))
    store.put("runs/part-a.parquet", b"a")
    store.put("runs/part-b.parquet", b"b")
    (tmp_path / "runs" / ".part-c.parquet.1234.tmp").write_bytes(b"half")
    (tmp_path / "runs" / "_SUCCESS").write_bytes(b"")
    (tmp_path / "runs" / "subdir").mkdir()
    assert store.list("runs") == ["part-a.parquet", "part-b.parquet"]


def test_list_of_missing_directory_is_empty(tmp_path: Path) -> None:
    assert Store(str(tmp_path)).list("runs") == []


def test_child_paths_and_uri(tmp_path: Path) -> None:
    store = Store(str(tmp_path))
    child = store.child("sweep", "runs")
    assert child.path == f"{tmp_path}/sweep/runs"
    assert child.uri == f"{tmp_path}/sweep/runs"
    child.put("f.bin", b"1")
    assert store.get("sweep/runs/f.bin") == b"1"
    assert child.fs is store.fs


def test_file_uri_keeps_its_scheme_in_child_uris(tmp_path: Path) -> None:
    store = Store(f"file://{tmp_path}")
    assert store.is_local
    assert store.path == str(tmp_path)
    child = store.child("sweep")
    assert child.uri == f"file://{tmp_path}/sweep"
    child.put("f.bin", b"2")
    assert (tmp_path / "sweep" / "f.bin").read_bytes() == b"2"


def test_explicit_filesystem_uses_uri_as_path(tmp_path: Path) -> None:
    store = Store(str(tmp_path), filesystem=pafs.LocalFileSystem())
    store.put("x", b"3")
    assert (tmp_path / "x").read_bytes() == b"3"


def test_relative_storage_path_becomes_absolute(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    store = Store("results")
    assert store.path == f"{tmp_path}/results"
    assert store.uri == f"{tmp_path}/results"
    assert os.path.isabs(store.child("s").path)


@pytest.mark.parametrize(("uri", "parts", "expected"), [
    ("s3://bucket/base?endpoint_override=localhost:9000", ("sweep", "runs"),
     "s3://bucket/base/sweep/runs?endpoint_override=localhost:9000"),
    ("s3://bucket/base/?region=x", ("a",), "s3://bucket/base/a?region=x"),
    ("gs://bucket/p", ("a", "b"), "gs://bucket/p/a/b"),
    ("/local/dir/", ("x",), "/local/dir/x"),
])
def test_join_uri_appends_parts_before_the_query(uri: str, parts: tuple[str, ...],
                                                 expected: str) -> None:
    assert join_uri(uri, *parts) == expected


def _runs_row(**values: Any) -> dict[str, Any]:
    filler = {pa.string(): "x", pa.int64(): 0, pa.float64(): 0.0}
    return {**{f.name: filler[f.type] for f in schema.RUNS}, **values}


def test_write_part_is_readable_by_pandas_with_the_contract_schema(tmp_path: Path) -> None:
    store = Store(str(tmp_path))
    rows = [_runs_row(method="dense", seed=0, test_acc=0.9),
            _runs_row(method="lth", seed=1, target_sparsity=0.5, test_acc=0.8)]
    store.write_part("runs", "abc123", rows)
    assert os.listdir(tmp_path / "runs") == ["part-abc123.parquet"]
    assert pq.read_schema(tmp_path / "runs" / "part-abc123.parquet").remove_metadata() == \
        schema.RUNS
    frame = pd.read_parquet(tmp_path / "runs")
    assert list(frame.columns) == schema.RUNS.names
    assert sorted(frame["method"]) == ["dense", "lth"]
    assert sorted(frame["test_acc"]) == [0.8, 0.9]


def test_rewriting_a_part_replaces_its_rows(tmp_path: Path) -> None:
    store = Store(str(tmp_path))
    store.write_part("runs", "p1", [_runs_row(method="dense", test_acc=0.1)])
    store.write_part("runs", "p2", [_runs_row(method="lth", test_acc=0.2)])
    store.write_part("runs", "p1", [_runs_row(method="dense", test_acc=0.5)])
    frame = pd.read_parquet(tmp_path / "runs")
    assert len(frame) == 2
    assert dict(zip(frame["method"], frame["test_acc"], strict=True)) == {"dense": 0.5, "lth": 0.2}
    assert store.list("runs") == ["part-p1.parquet", "part-p2.parquet"]


def test_write_part_rejects_rows_missing_schema_columns(tmp_path: Path) -> None:
    store = Store(str(tmp_path))
    with pytest.raises(ValueError, match="missing columns"):
        store.write_part("runs", "bad", [{"method": "dense"}])
    assert store.list("runs") == []


# --- durable, atomic writes on every filesystem ------------------------------------------------

def test_put_fsyncs_the_file_and_its_directory_before_and_after_the_rename(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    synced, real_fsync = [], os.fsync

    def spy(fd: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", spy)
    Store(str(tmp_path)).put("a/b.bin", b"x")
    assert len(synced) == 2
    assert Path(synced[0]).name.startswith(".b.bin.") and synced[1] == str(tmp_path / "a")
    assert (tmp_path / "a" / "b.bin").read_bytes() == b"x"


def test_a_subtree_over_local_disk_is_local_and_written_durably(tmp_path: Path) -> None:
    fs = pafs.SubTreeFileSystem(str(tmp_path), pafs.LocalFileSystem())
    store = Store("sweeps", filesystem=fs)
    assert store.is_local and store.local_path("x.json") == str(tmp_path / "sweeps" / "x.json")
    store.put_json("x.json", {"a": 1})
    assert json.loads((tmp_path / "sweeps" / "x.json").read_text()) == {"a": 1}
    assert os.listdir(tmp_path / "sweeps") == ["x.json"]


def test_a_filesystem_that_is_neither_local_nor_an_object_store_gets_temp_then_move() -> None:
    import fsspec
    from pyarrow.fs import FSSpecHandler
    from pyarrow.fs import PyFileSystem

    memory = fsspec.filesystem("memory")
    fs = PyFileSystem(FSSpecHandler(memory))
    store = Store("/bucket/s", filesystem=fs)
    assert not store.is_local
    store.put("runs/p.bin", b"abc")
    assert store.get("runs/p.bin") == b"abc"
    assert [Path(p).name for p in memory.ls("/bucket/s/runs", detail=False)] == ["p.bin"]


def test_commit_writes_a_record_listing_the_point_parts(tmp_path: Path) -> None:
    from analysis import commits

    store = Store(str(tmp_path))
    store.write_part("runs", "k1", [_runs_row(method="dense")])
    store.commit("k1", {"runs": ["k1"], "layers": ["k1"], "curves": ["t-L0"]})
    record = commits.Record.decode((tmp_path / "commits" / "k1.json").read_bytes())
    assert record.parts == {"runs": ("k1",), "layers": ("k1",), "curves": ("t-L0",)}
    assert store.scan().records == {"k1": record}


def test_quarantine_moves_a_file_aside_under_its_relative_path(tmp_path: Path) -> None:
    store = Store(str(tmp_path)).child("sweep")
    store.put("runs/part-x.parquet", b"broken")
    moved = store.quarantine(store.join("runs/part-x.parquet"))
    assert not store.exists("runs/part-x.parquet")
    assert moved.startswith(store.join("quarantine/runs/part-x.parquet."))
    assert Path(moved).read_bytes() == b"broken"


def test_get_json_of_a_corrupt_file_is_none(tmp_path: Path) -> None:
    store = Store(str(tmp_path))
    store.put("t.json", b"{not json")
    assert store.get_json("t.json") is None
