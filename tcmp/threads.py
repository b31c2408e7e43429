"""
CPU threads that hold up on a shared machine.

PyTorch's OpenMP threads spin while they wait for each other. When another process holds a core, the small
sequential operations of TCMP (GRU steps, the predictor, the classifier) then run tens of times slower with two
threads than with one (`benchmarks/bench_busy_machine.py`). So, unless the user chose otherwise:

- `OMP_WAIT_POLICY=PASSIVE`: waiting threads sleep instead of spinning. It must be set before PyTorch loads its
  OpenMP runtime, so `import tcmp` sets it first (it has no effect if `torch` was imported before `tcmp`);
- the thread count follows what the process may really use — its CPU affinity and its cgroup CPU quota (containers,
  CI runners, `docker --cpus`), not the machine's core count — less the CPUs other processes already keep busy
  (the machine's CPUs minus its 1-minute load average): with one of two cores busy, one thread runs the main job
  3.3× faster than two, even with passive waits.

Set `OMP_WAIT_POLICY` or `OMP_NUM_THREADS` yourself (to anything) and tcmp leaves that setting alone.
"""

import math
import os


def prefer_passive_openmp() -> None:
    """Ask OpenMP to let waiting threads sleep, unless `OMP_WAIT_POLICY` is already set."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


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
