"""Where a run's CPU goes: every process's CPU time sampled on a thread (psutil), by kind.

``bench_efficiency --cpu`` uses it to split the CPU seconds of a ``lottery run`` into the
driver, the trial workers, Ray's helper processes and everything else, before the first trial
and over the trials' span, with the idle core-seconds of each window.
"""

from __future__ import annotations

import os
import threading
import time
from collections import Counter
from dataclasses import dataclass
from dataclasses import field

import psutil

CORES = psutil.cpu_count() or 1
# Ray's helper processes, by a piece of their command line -> the name printed.
HELPERS = {"gcs_server": "GCS", "/raylet": "raylet", "dashboard/dashboard.py": "dashboard",
           "ray::DashboardAgent": "dashboard agent", "ray::RuntimeEnvAgent": "runtime-env agent",
           "log_monitor.py": "log monitor", "autoscaler/_private/monitor.py": "autoscaler monitor"}


def kind(cmdline: str, pid: int, driver: int) -> tuple[str, str]:
    """(kind, name) of one process: ``driver``, ``trial workers`` (Ray's ``ray::`` worker
    processes), ``Ray helpers`` (``HELPERS``) or ``other``."""
    if pid == driver:
        return "driver", "driver"
    for piece, name in HELPERS.items():
        if piece in cmdline:
            return "Ray helpers", name
    if cmdline.startswith("ray::") or "default_worker.py" in cmdline:
        return "trial workers", "worker"
    return "other", "other"


@dataclass
class Sample:
    """Seconds since the sampler started, the machine's idle CPU seconds, and every process's
    (kind, name, CPU seconds) by pid."""

    t: float
    idle: float
    procs: dict[int, tuple[str, str, float]] = field(default_factory=dict)


class Sampler(threading.Thread):
    """Samples every process but this one each ``every`` seconds until ``stop()``."""

    def __init__(self, driver: int, every: float = 0.25) -> None:
        super().__init__(daemon=True, name="cpu-sampler")
        self.driver, self.every, self.t0 = driver, every, time.time()
        self.samples: list[Sample] = []
        self._done = threading.Event()

    def run(self) -> None:
        while True:
            self.samples.append(self._sample())
            if self._done.wait(self.every):
                self.samples.append(self._sample())
                return

    def stop(self) -> None:
        self._done.set()
        self.join()

    def _sample(self) -> Sample:
        out = Sample(time.time() - self.t0, psutil.cpu_times().idle)
        for proc in psutil.process_iter(["pid", "cmdline", "cpu_times"]):
            try:
                if proc.info["pid"] == os.getpid() or proc.info["cpu_times"] is None:
                    continue
                cmd = " ".join(proc.info["cmdline"] or [])
                cpu = proc.info["cpu_times"].user + proc.info["cpu_times"].system
            except psutil.Error:
                continue
            out.procs[proc.info["pid"]] = (*kind(cmd, proc.info["pid"], self.driver), cpu)
        return out

    def window(self, start: float, end: float) -> tuple[float, float, Counter, Counter]:
        """(seconds, idle core-seconds, CPU seconds by kind, by name) between the samples
        nearest ``start`` and ``end`` (seconds since the sampler started). A process that
        ended in between counts up to its last sample."""
        a = min(self.samples, key=lambda s: abs(s.t - start))
        b = min(self.samples, key=lambda s: abs(s.t - end))
        by_kind, by_name = Counter(), Counter()
        last = {pid: p for s in self.samples if a.t <= s.t <= b.t for pid, p in s.procs.items()}
        for pid, (k, name, cpu) in last.items():
            used = cpu - a.procs[pid][2] if pid in a.procs else cpu
            if used > 0:
                by_kind[k] += used
                by_name[name] += used
        return b.t - a.t, b.idle - a.idle, by_kind, by_name

    def busy_cores(self, step: float = 1.0) -> list[float]:
        """Cores busy (machine-wide, from its idle time) in each ``step`` seconds."""
        out, mark = [], self.samples[0]
        for s in self.samples[1:]:
            if s.t - mark.t >= step - 1e-9:
                out.append(CORES - (s.idle - mark.idle) / (s.t - mark.t))
                mark = s
        return out


def describe(sampler: Sampler, label: str, start: float, end: float) -> str:
    """One paragraph: a window's CPU seconds by kind (Ray's helpers by name) and its idle."""
    seconds, idle, by_kind, by_name = sampler.window(start, end)
    helpers = ", ".join(f"{n} {v:.1f}" for n, v in by_name.most_common()
                        if n not in ("driver", "worker", "other"))
    kinds = ", ".join(f"{k} {v:.1f}" for k, v in by_kind.most_common())
    return (f"  CPU seconds {label} ({seconds:.1f} s x {CORES} cores = {seconds * CORES:.1f} "
            f"core-s, {idle:.1f} idle): {kinds}\n    Ray helpers: {helpers or '-'}")
