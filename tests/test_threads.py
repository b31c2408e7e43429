"""Thread choice: `import tcmp` changes nothing; `configure_threads()` follows affinity, the cgroup quota and the load."""

import os
import subprocess
import sys

import pytest

from tcmp import threads


def write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


@pytest.mark.parametrize(
    "files, expected",
    [
        ({"cpu.max": "150000 100000\n"}, 1.5),
        ({"cpu.max": "max 100000\n"}, None),
        ({"cpu/cpu.cfs_quota_us": "50000\n", "cpu/cpu.cfs_period_us": "100000\n"}, 0.5),
        ({"cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n"}, None),
        ({}, None),
    ],
)
def test_cgroup_quota_is_read_from_v1_and_v2_files(tmp_path, files, expected):
    for name, text in files.items():
        write(tmp_path / name, text)
    assert threads.cgroup_cpu_limit(str(tmp_path)) == expected


def test_usable_cpus_is_the_affinity_capped_by_the_quota(tmp_path, monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3})
    assert threads.usable_cpus(str(tmp_path)) == 4
    write(tmp_path / "cpu.max", "150000 100000\n")
    assert threads.usable_cpus(str(tmp_path)) == 2
    write(tmp_path / "cpu.max", "10000 100000\n")
    assert threads.usable_cpus(str(tmp_path)) == 1


def run_python(code: str, **env) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "OMP_NUM_THREADS")}
    environment.update(env)
    done = subprocess.run([sys.executable, "-c", code], env=environment, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return done


BUSY = "import os; os.getloadavg = lambda: (64.0, 64.0, 64.0); "
"""A load that leaves one thread to this process."""


def test_import_tcmp_changes_no_process_wide_setting():
    torch_alone = run_python("import torch; print(torch.get_num_threads())").stdout.strip()
    code = BUSY + "import torch, tcmp; print(os.environ.get('OMP_WAIT_POLICY'), torch.get_num_threads())"
    assert run_python(code).stdout.strip() == f"None {torch_alone}"


def test_configure_threads_chooses_once_and_says_so_once():
    done = run_python(BUSY + "import tcmp; print(tcmp.configure_threads(), tcmp.configure_threads())")
    assert done.stdout.split() == ["1", "1"]
    assert done.stderr.count("PyTorch thread(s)") == 1, done.stderr
    assert "tcmp: 1 PyTorch thread(s) (" in done.stderr and "set OMP_NUM_THREADS to choose" in done.stderr
    chosen = run_python(BUSY + "import tcmp; print(tcmp.configure_threads())", OMP_NUM_THREADS="2")
    assert chosen.stdout.strip() == "2" and "tcmp: 2 PyTorch thread(s) (OMP_NUM_THREADS=2)" in chosen.stderr


def test_thread_count_is_lowered_to_the_quota(tmp_path, monkeypatch):
    import torch

    before = torch.get_num_threads()
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(threads, "usable_cpus", lambda root="/sys/fs/cgroup": 1)
    torch.set_num_threads(2)
    try:
        assert threads.limit_torch_threads() == 1
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize("load,expected", [(0.0, 4), (0.4, 4), (1.0, 3), (2.6, 1), (7.5, 1)])
def test_cpus_other_processes_keep_busy_are_left_to_them(monkeypatch, load, expected):
    monkeypatch.setattr(os, "getloadavg", lambda: (load, load, load))
    monkeypatch.setattr(os, "cpu_count", lambda: 4)
    assert threads.unclaimed_cpus(4) == expected
    assert threads.unclaimed_cpus(2) == min(expected, 2)  # never more than the process may use


def test_a_busy_machine_lowers_the_thread_count(monkeypatch):
    import torch

    before = torch.get_num_threads()
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(threads, "usable_cpus", lambda root="/sys/fs/cgroup": 2)
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    monkeypatch.setattr(os, "getloadavg", lambda: (1.0, 1.0, 1.0))  # another process holds one of the two cores
    torch.set_num_threads(2)
    try:
        assert threads.limit_torch_threads() == 1
    finally:
        torch.set_num_threads(before)
