"""Checkpoints hold only tensors and plain containers; loading never runs code."""

from __future__ import annotations

import io
import os
import pickle

import pytest
import torch

from sweeps.store import Store
from trainer import checkpoint


class _Payload:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.mknod, (self.marker,))


def test_round_trip_of_tensors_and_containers(tmp_path):
    blobs = Store(str(tmp_path))
    state = {"state": {"w": torch.arange(6.0).reshape(2, 3)}, "records": [{"epoch": 1}]}
    checkpoint.save(blobs, "x.pt", state)
    loaded = checkpoint.load(blobs, "x.pt")
    assert torch.equal(loaded["state"]["w"], state["state"]["w"])
    assert loaded["records"] == [{"epoch": 1}]
    assert checkpoint.load(blobs, "missing.pt") is None


def test_loading_a_checkpoint_with_code_in_it_refuses_and_runs_nothing(tmp_path):
    marker = tmp_path / "pwned"
    buffer = io.BytesIO()
    torch.save({"state": _Payload(str(marker))}, buffer)
    Store(str(tmp_path)).put("evil.pt", buffer.getvalue())
    with pytest.raises(checkpoint.CorruptBlobError, match="evil.pt") as info:
        checkpoint.load(Store(str(tmp_path)), "evil.pt")
    assert isinstance(info.value.__cause__, pickle.UnpicklingError)
    assert not marker.exists()


@pytest.mark.parametrize("cut", [0, 10, 100, -10])
def test_a_truncated_blob_is_a_corrupt_blob_error_naming_it(tmp_path, cut):
    blobs = Store(str(tmp_path))
    checkpoint.save(blobs, "x.pt", {"state": {"w": torch.ones(1000)}})
    data = blobs.get("x.pt")
    blobs.put("x.pt", data[:cut])
    with pytest.raises(checkpoint.CorruptBlobError, match="x.pt: cannot be loaded"):
        checkpoint.load(blobs, "x.pt")


def test_load_or_none_warns_and_treats_a_corrupt_blob_as_absent(tmp_path, caplog):
    blobs = Store(str(tmp_path))
    blobs.put("x.pt", b"not a checkpoint")
    assert checkpoint.load_or_none(blobs, "x.pt") is None
    assert "x.pt" in caplog.text and "recomputed" in caplog.text


def test_a_blob_without_the_keys_its_reader_needs_is_corrupt(tmp_path):
    blobs = Store(str(tmp_path))
    checkpoint.save(blobs, "x.pt", {"other": 1})
    with pytest.raises(checkpoint.CorruptBlobError, match=r"missing \['state'\]"):
        checkpoint.load(blobs, "x.pt", ("state",))
    assert checkpoint.load(blobs, "x.pt")["other"] == 1
