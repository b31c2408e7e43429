"""
CPU threads that hold up on a shared machine: `configure_threads()`, which the training scripts call (an application
calls it itself: `import tcmp` changes no process-wide setting).

PyTorch's OpenMP threads spin while they wait for each other. When another process holds a core, the small
sequential operations of TCMP (GRU steps, the predictor, the classifier) then run tens of times slower with two
threads than with one (`benchmarks/bench_busy_machine.py`). So the thread count follows what the process may really
use — its CPU affinity and its cgroup CPU quota (containers, CI runners, `docker --cpus`), not the machine's core
count — less the CPUs other processes already keep busy (the machine's CPUs minus its 1-minute load average): with
one of two cores busy, one thread runs the main job 3.3× faster than two.

Set `OMP_NUM_THREADS` yourself (to anything) and tcmp leaves the thread count alone. Passive OpenMP waits
(`OMP_WAIT_POLICY=PASSIVE`) must be in the environment before Python starts: OpenMP reads it when PyTorch loads,
and every tcmp module loads PyTorch.
"""

import functools
import logging
import math
import os
import sys


logger = logging.getLogger(__name__)


def cgroup_cpu_limit(root: str = "/sys/fs/cgroup") -> float | None:
    """The CPUs the cgroup quota allows (cgroup v2 `cpu.max` or v1 `cpu.cfs_quota_us`), `None` without a quota."""
    candidates = (
        (os.path.join(root, "cpu.max"), None),
        (os.path.join(root, "cpu", "cpu.cfs_quota_us"), os.path.join(root, "cpu", "cpu.cfs_period_us")),
        (os.path.join(root, "cpu,cpuacct", "cpu.cfs_quota_us"), os.path.join(root, "cpu,cpuacct", "cpu.cfs_period_us")),
    )
    for quota_file, period_file in candidates:
        try:
            with open(quota_file) as handle:
                fields = handle.read().split()
            if period_file is not None:
                with open(period_file) as handle:
                    fields.append(handle.read().strip())
        except (OSError, ValueError):
            continue
        if len(fields) < 2 or fields[0] in ("max", "-1"):
            return None
        quota, period = float(fields[0]), float(fields[1])
        if quota > 0 and period > 0:
            return quota / period
    return None


def usable_cpus(root: str = "/sys/fs/cgroup") -> int:
    """CPUs this process may run on: its affinity, capped by the cgroup quota (rounded up), at least 1."""
    try:
        count = len(os.sched_getaffinity(0))
    except AttributeError:
        count = os.cpu_count() or 1
    limit = cgroup_cpu_limit(root)
    if limit is not None:
        count = min(count, math.ceil(limit))
    return max(count, 1)


def unclaimed_cpus(usable: int) -> int:
    """
    Of `usable` CPUs, those other processes do not already keep busy: the machine's CPUs minus its 1-minute load
    average, rounded, capped at `usable`, at least 1 (`usable` where the load average is unknown).
    """
    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):
        return usable
    machine = os.cpu_count() or usable
    return max(1, min(usable, math.floor(machine - load + 0.5)))


def limit_torch_threads() -> int:
    """
    Lower PyTorch's intra-op threads to the usable CPUs that are not busy (`unclaimed_cpus(usable_cpus())`) unless
    `OMP_NUM_THREADS` is set; returns the count.
    """
    import torch

    if "OMP_NUM_THREADS" not in os.environ:
        wanted = unclaimed_cpus(usable_cpus())
        if torch.get_num_threads() > wanted:
            torch.set_num_threads(wanted)
    return torch.get_num_threads()


@functools.cache
def configure_threads() -> int:
    """
    Choose this process's PyTorch thread count for a shared machine (`limit_torch_threads`), once: later calls
    return the first choice. Says what it chose in one line, through logging where INFO records are emitted (the
    training scripts), else on stderr. Returns the thread count.
    """
    count = limit_torch_threads()
    if "OMP_NUM_THREADS" in os.environ:
        why = f"OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']}"
    else:
        why = f"{usable_cpus()} usable CPU(s) less those other processes keep busy; set OMP_NUM_THREADS to choose"
    text = f"tcmp: {count} PyTorch thread(s) ({why})"
    if logger.isEnabledFor(logging.INFO) and logger.hasHandlers():
        logger.info(text)
    else:
        print(text, file=sys.stderr)
    return count
