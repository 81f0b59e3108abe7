"""Tests for sweeps/lease.py: one driver per sweep, and taking over the lease of a dead one."""

from __future__ import annotations

import dataclasses
import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from sweeps import lease
from sweeps.lease import Lease
from sweeps.lease import SweepInUse
from sweeps.lease import read_holder
from sweeps.store import Store


def _write_holder(store: Store, **fields) -> None:
    now = time.time()
    holder = {"host": socket.gethostname(), "pid": 1, "pid_started": 0.0, "started": now - 30,
              "heartbeat": now, "token": "someone-else", **fields}
    store.put_json(lease.LEASE, holder)


def _dead_pid() -> tuple[int, float]:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    started = psutil.Process(proc.pid).create_time()
    proc.wait()
    return proc.pid, started


def test_lease_is_written_while_held_and_removed_on_release(tmp_path: Path) -> None:
    store = Store(str(tmp_path)).child("s")
    with Lease(store, "s") as held:
        holder = read_holder(store)
        assert holder == held.holder
        assert holder.host == socket.gethostname() and holder.alive()
    assert not store.exists(lease.LEASE)


def test_a_second_driver_is_refused_naming_the_holder(tmp_path: Path) -> None:
    store = Store(str(tmp_path)).child("s")
    with Lease(store, "s") as first:
        with pytest.raises(SweepInUse) as info:
            Lease(store, "s").acquire()
        message = str(info.value)
        assert f"sweep s is in use by {first.holder.host}:{first.holder.pid} since" in message
        assert "last heartbeat 0 s ago" in message
        assert read_holder(store).token == first.holder.token  # the refused one wrote nothing
    with Lease(store, "s"):  # free again once released
        pass


def test_a_lease_of_a_dead_process_on_this_host_is_taken_over_at_once(tmp_path: Path) -> None:
    store = Store(str(tmp_path)).child("s")
    pid, started = _dead_pid()
    _write_holder(store, pid=pid, pid_started=started)
    assert not read_holder(store).alive()
    with Lease(store, "s") as mine:
        assert read_holder(store).token == mine.holder.token


def test_a_reused_pid_does_not_count_as_the_holder(tmp_path: Path) -> None:
    store = Store(str(tmp_path)).child("s")
    me = psutil.Process()
    _write_holder(store, pid=me.pid, pid_started=me.create_time() - 3600)
    assert not read_holder(store).alive()
    with Lease(store, "s"):
        pass


def test_another_hosts_lease_holds_until_its_heartbeat_is_older_than_the_timeout(
        tmp_path: Path) -> None:
    store = Store(str(tmp_path)).child("s")
    _write_holder(store, host="gpu-node-7", pid=4242, heartbeat=time.time() - 5)
    with pytest.raises(SweepInUse, match="in use by gpu-node-7:4242"):
        Lease(store, "s").acquire()
    assert read_holder(store).host == "gpu-node-7"
    _write_holder(store, host="gpu-node-7", pid=4242,
                  heartbeat=time.time() - lease.TIMEOUT_S - 1)
    with Lease(store, "s") as mine:
        assert read_holder(store).token == mine.holder.token


def _within(seconds: float, condition) -> bool:
    """Poll ``condition`` until it holds or ``seconds`` pass (a loaded machine is slow)."""
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def test_the_heartbeat_renews_the_lease_and_stops_when_it_is_taken_over(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(lease, "HEARTBEAT_S", 0.05)
    store = Store(str(tmp_path)).child("s")
    with Lease(store, "s") as held:
        first = read_holder(store).heartbeat
        assert _within(5.0, lambda: read_holder(store).heartbeat > first)  # renewed
        thief = dataclasses.replace(held.holder, host="elsewhere", token="thief")
        store.put_json(lease.LEASE, dataclasses.asdict(thief))
        assert _within(5.0, lambda: not held._thread.is_alive())  # it saw the take-over
        assert read_holder(store).token == "thief"
    assert read_holder(store).token == "thief"  # not ours any more: left in place


def test_on_an_object_store_the_write_is_read_back_before_going_on(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import fsspec
    from pyarrow.fs import FSSpecHandler
    from pyarrow.fs import PyFileSystem

    monkeypatch.setattr(lease, "SETTLE_S", 0.01)
    store = Store("/b/s", filesystem=PyFileSystem(FSSpecHandler(fsspec.filesystem("memory"))))
    assert store.local_path(lease.LOCK) is None
    with Lease(store, "s") as held:
        assert read_holder(store).token == held.holder.token
        with pytest.raises(SweepInUse):
            Lease(store, "s").acquire()
    assert read_holder(store) is None


def test_an_unreadable_lease_file_counts_as_no_lease(tmp_path: Path) -> None:
    store = Store(str(tmp_path)).child("s")
    store.put(lease.LEASE, b"{garbage")
    assert read_holder(store) is None
    store.put(lease.LEASE, json.dumps({"host": "x"}).encode())
    assert read_holder(store) is None
    with Lease(store, "s"):
        pass
