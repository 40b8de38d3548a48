"""cpu_threads=auto: as many torch threads as there are CPUs this process may use that other
processes leave idle, chosen once when a run starts.

Two threads that spin-wait for each other while a core is taken by another process run far
below their share (2-core AMD EPYC, quickstart networks: 25% of alone beside one busy loop, 14%
each for two trainers side by side; with the counts auto chooses 59% and 61%:
docs/performance.md). The count is fixed for the run, and kept on resume, because torch's
results depend on it bit for bit. Loads no torch.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

PROBE_SECONDS = 0.3  # how long the other processes' CPU use is watched before choosing
CGROUP_CPU_MAX = Path("/sys/fs/cgroup/cpu.max")  # cgroup v2: "QUOTA PERIOD" or "max PERIOD"
PROC_STAT = Path("/proc/stat")


@dataclass(frozen=True)
class ThreadChoice:
    threads: int
    usable: int  # CPUs this process may use
    reason: str  # why this count, for the log

    def describe(self) -> str:
        return f"cpu_threads=auto: {self.threads} of {self.usable} usable CPUs ({self.reason})"


def affinity() -> set[int] | None:
    """The CPUs this process may run on; None where the system does not say (not Linux)."""
    try:
        return set(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return None


def usable_cpus(cgroup_cpu_max: Path = CGROUP_CPU_MAX) -> int:
    """The CPUs this process may run on (its affinity mask), capped by a cgroup CPU quota."""
    mask = affinity()
    cpus = len(mask) if mask is not None else (os.cpu_count() or 1)
    quota = cgroup_quota(cgroup_cpu_max)
    if quota is not None:
        cpus = min(cpus, max(1, math.floor(quota)))
    return max(1, cpus)


def cgroup_quota(cpu_max: Path = CGROUP_CPU_MAX) -> float | None:
    """CPUs' worth of time the cgroup may use (e.g. 1.5), or None when it is not limited."""
    try:
        quota, period = cpu_max.read_text().split()[:2]
    except (OSError, ValueError):
        return None
    if quota == "max":
        return None
    return int(quota) / int(period)


def cpu_times(cpus: set[int] | None = None, stat: Path = PROC_STAT) -> tuple[float, float] | None:
    """(busy, total) jiffies summed over `cpus` (all when None) from /proc/stat. Niced time
    counts as busy: even a nice-19 process gets slices of its core, and each one stalls a
    thread the other threads spin-wait for (measured: the quickstart beside two nice-19
    trainings, 138-200 img/s with two threads, 707 with one)."""
    try:
        lines = stat.read_text().splitlines()
    except OSError:
        return None
    busy = total = 0.0
    for line in lines:
        name, *fields = line.split()
        if not name.startswith("cpu") or name == "cpu":
            continue
        if cpus is not None and int(name[3:]) not in cpus:
            continue
        user, nice, system, idle, iowait, irq, softirq, steal = (float(f) for f in fields[:8])
        busy += user + nice + system + irq + softirq + steal
        total += user + nice + system + idle + iowait + irq + softirq + steal
    return (busy, total) if total > 0 else None


@dataclass(frozen=True)
class Snapshot:
    busy: float  # jiffies, over the usable CPUs
    total: float
    own_seconds: float  # this process's CPU time
    wall: float
    cpus: int


def snapshot() -> Snapshot | None:
    cpus = affinity()
    times = cpu_times(cpus)
    if times is None:
        return None
    own = os.times()
    return Snapshot(times[0], times[1], own.user + own.system, time.monotonic(),
                    len(cpus) if cpus is not None else (os.cpu_count() or 1))


_started: Snapshot | None = None


def note_start() -> None:
    """Start watching the other processes now (dcgan-train calls it first thing): the watch
    then spans this process's start-up, when a trainer launched beside it at the same moment
    is busy starting up too, rather than a pause in which both would sit idle."""
    global _started
    _started = snapshot()


def busy_cpus_of_others(seconds: float = PROBE_SECONDS,
                        since: Snapshot | None = None) -> float | None:
    """How many CPUs (of those this process may use) other processes kept busy since `since`,
    or, when that is missing or under `seconds` ago, over the next `seconds`; None where
    /proc/stat cannot be read."""
    if since is None or time.monotonic() - since.wall < seconds:
        since = snapshot()
        time.sleep(seconds)
    now = snapshot()
    if since is None or now is None or now.total <= since.total:
        return None
    busy_share = (now.busy - since.busy) / (now.total - since.total)
    own_cpus = (now.own_seconds - since.own_seconds) / (now.wall - since.wall)
    return max(0.0, busy_share * now.cpus - own_cpus)


def choose_cpu_threads(probe_seconds: float = PROBE_SECONDS) -> ThreadChoice:
    """The thread count for cpu_threads=auto: OMP_NUM_THREADS when it is set (the user's own
    choice), else the usable CPUs less those other processes kept busy since `note_start` (or
    over the next `probe_seconds`), at least one."""
    usable = usable_cpus()
    from_env = os.environ.get("OMP_NUM_THREADS", "").strip()
    if from_env.isdigit() and int(from_env) >= 1:
        return ThreadChoice(int(from_env), usable, "OMP_NUM_THREADS is set")
    if usable == 1:
        return ThreadChoice(1, 1, "one usable CPU")
    busy = busy_cpus_of_others(probe_seconds, since=_started)
    if busy is None:
        return ThreadChoice(usable, usable, "the other processes' load is not readable")
    threads = max(1, usable - round(busy))
    return ThreadChoice(threads, usable, f"{busy:.1f} kept busy by other processes")
