"""One driver per sweep: a lease on ``<storage>/<name>/lease.json``, renewed by a heartbeat.

``lottery run`` / ``resume`` take the lease before starting Ray and give it back at the end. A
second driver of the same sweep exits at once with who holds it. A lease whose holder is gone
is taken over:

- at once when the holder ran on this host and its process no longer exists (the pid and the
  process start time are recorded, so a reused pid does not count as the holder);
- otherwise once its heartbeat is older than ``TIMEOUT_S`` (the holder renews it every
  ``HEARTBEAT_S``).

What it guarantees depends on the filesystem:

- local disks and shared mounts: an exclusive ``flock`` on ``.lease.lock`` (via the ``filelock``
  package) makes taking the lease atomic among processes that see the same file (on NFS this
  needs working locks); the kernel drops it when the holder dies, however it dies;
- object stores (S3, GCS), which have no atomic create: the driver writes the lease, waits
  ``SETTLE_S`` and reads it back, and only the driver whose write is the one read back goes on.
  Two drivers that start within a few milliseconds of each other's write are both refused
  (one retries); two that take more than ``SETTLE_S`` between read and write could, in
  principle, both proceed. Start one driver per sweep, e.g. as one ``ray job``.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from dataclasses import asdict
from dataclasses import dataclass

import filelock
import psutil

from sweeps.store import Store

LEASE = "lease.json"
LOCK = ".lease.lock"
HEARTBEAT_S = 10.0
TIMEOUT_S = 60.0
SETTLE_S = 1.0
_START_TOLERANCE_S = 1.0  # psutil's create_time is rounded differently between calls

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Holder:
    """Who holds a sweep's lease (the content of ``lease.json``).

    Attributes:
        host: Host name of the driver.
        pid: Its process id.
        pid_started: Its process start time (epoch seconds), to tell a reused pid apart.
        started: When it took the lease (epoch seconds).
        heartbeat: Its last renewal (epoch seconds).
        token: Random id of this lease.
    """

    host: str
    pid: int
    pid_started: float
    started: float
    heartbeat: float
    token: str

    def alive(self, now: float | None = None) -> bool:
        """Whether the holder may still be running (see the module docstring)."""
        if self.host == socket.gethostname():
            return _process_alive(self.pid, self.pid_started)
        return (now or time.time()) - self.heartbeat < TIMEOUT_S

    def describe(self, now: float | None = None) -> str:
        """``HOST:PID since <time>, last heartbeat N s ago``."""
        since = time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(self.started))
        age = (now or time.time()) - self.heartbeat
        return f"{self.host}:{self.pid} since {since}, last heartbeat {age:.0f} s ago"


class SweepInUse(RuntimeError):
    """Another live driver holds the sweep's lease."""

    def __init__(self, name: str, holder: Holder | None) -> None:
        self.holder = holder
        who = holder.describe() if holder else "another process on this host (lock held)"
        super().__init__(f"sweep {name} is in use by {who}; wait for it to finish, or stop "
                         "it first (a dead driver's lease is taken over automatically)")


def read_holder(store: Store) -> Holder | None:
    """The lease holder recorded in ``store``, or None (no lease, or an unreadable one)."""
    raw = store.get_json(LEASE)
    try:
        return Holder(**raw) if isinstance(raw, dict) else None
    except TypeError:
        return None


def _process_alive(pid: int, started: float) -> bool:
    try:
        return abs(psutil.Process(pid).create_time() - started) < _START_TOLERANCE_S
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return False


class Lease:
    """The lease on one sweep directory; use as a context manager around a driver's run.

    Args:
        store: The sweep directory.
        name: The sweep name (for messages).
    Raises:
        SweepInUse: on entering, when another live driver holds the lease.
    """

    def __init__(self, store: Store, name: str) -> None:
        self.store, self.name = store, name
        me = psutil.Process()
        now = time.time()
        self.holder = Holder(host=socket.gethostname(), pid=os.getpid(),
                             pid_started=me.create_time(), started=now, heartbeat=now,
                             token=uuid.uuid4().hex)
        self._lock: filelock.BaseFileLock | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> Lease:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def acquire(self) -> None:
        """Take the lease (see the module docstring) and start the heartbeat.

        Raises:
            SweepInUse: another process holds the local lock file, another live driver
                holds the lease, or a driver took it while this one settled.
        """
        lock_path = self.store.local_path(LOCK)
        if lock_path is not None:
            os.makedirs(os.path.dirname(lock_path), exist_ok=True)
            self._lock = filelock.FileLock(lock_path, timeout=0)
            try:
                self._lock.acquire()
            except filelock.Timeout:
                self._lock = None
                raise SweepInUse(self.name, read_holder(self.store)) from None
        current = read_holder(self.store)
        if current is not None and current.token != self.holder.token and current.alive():
            self._unlock()
            raise SweepInUse(self.name, current)
        if current is not None:
            log.warning("taking over the lease of sweep %s from %s (gone)", self.name,
                        current.describe())
        self.store.put_json(LEASE, asdict(self.holder))
        if lock_path is None:
            time.sleep(SETTLE_S)
            winner = read_holder(self.store)
            if winner is None or winner.token != self.holder.token:
                raise SweepInUse(self.name, winner)
        self._thread = threading.Thread(target=self._beat, name="lease-heartbeat", daemon=True)
        self._thread.start()

    def release(self) -> None:
        """Stop the heartbeat and remove the lease if it is still ours."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        current = read_holder(self.store)
        if current is not None and current.token == self.holder.token:
            self.store.delete(LEASE)
        self._unlock()

    def _unlock(self) -> None:
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    def _beat(self) -> None:
        while not self._stop.wait(HEARTBEAT_S):
            current = read_holder(self.store)
            if current is not None and current.token != self.holder.token:
                log.error("sweep %s: the lease was taken over by %s", self.name,
                          current.describe())
                return
            beat = Holder(**{**asdict(self.holder), "heartbeat": time.time()})
            try:
                self.store.put_json(LEASE, asdict(beat))
            except OSError as err:  # a flaky store: try again at the next beat
                log.warning("sweep %s: could not renew the lease: %s", self.name, err)
