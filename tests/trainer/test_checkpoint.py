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
    with pytest.raises(pickle.UnpicklingError):
        checkpoint.load(Store(str(tmp_path)), "evil.pt")
    assert not marker.exists()
