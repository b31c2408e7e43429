"""
A disk that fills up during a run stops it at the next save with a `DiskSpaceError` naming the folder; the checkpoints
saved before stay complete, and once space is free `--resume_from_checkpoint last` ends at the uninterrupted metrics.
"""

import errno
import shutil
from types import SimpleNamespace

import pytest
from transformers import Trainer, TrainerCallback

import run_finetune
from tcmp.preflight import DiskSpaceError, checkpoint_problem, resume_checkpoint, room_to_save

from ..scripts.conftest import tiny_flags
from .test_kill_resume import assert_same_metrics, final_metrics


FLAGS = [
    "--max_steps", "12", "--learning_rate", "1e-3", "--min_free_disk_gb", "0.5",
    "--save_strategy", "steps", "--save_steps", "4", "--eval_strategy", "steps", "--eval_steps", "4",
]


class FillingDisk:
    """`shutil.disk_usage` as it is, until `full`: then 0.1 GB free."""

    def __init__(self):
        self.full = False
        self.real = shutil.disk_usage

    def __call__(self, path):
        usage = self.real(path)
        return usage._replace(free=100 * 1024**2) if self.full else usage


class FillAtStep(TrainerCallback):
    def __init__(self, disk: FillingDisk, step: int):
        self.disk, self.step = disk, step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            self.disk.full = True


@pytest.fixture
def disk(monkeypatch):
    filling = FillingDisk()
    monkeypatch.setattr(shutil, "disk_usage", filling)
    return filling


def test_a_full_disk_stops_the_run_before_the_next_save_and_resume_finishes_it(tmp_path, disk):
    expected = final_metrics(run_finetune.main(tiny_flags(tmp_path / "uninterrupted", *FLAGS)))
    output_dir = tmp_path / "out"
    with pytest.raises(DiskSpaceError) as raised:
        run_finetune.main(tiny_flags(output_dir, *FLAGS), callbacks=[FillAtStep(disk, 6)])
    message = str(raised.value)
    assert str(output_dir) in message and "0.10 GB free" in message and "at least 0.5 GB" in message
    assert "stopped at step 8 before saving" in message and "checkpoint-8" in message
    assert "--resume_from_checkpoint last" in message
    assert checkpoint_problem(str(output_dir / "checkpoint-4")) is None
    assert not (output_dir / "checkpoint-8").exists()

    disk.full = False
    resumed = run_finetune.main(tiny_flags(output_dir, *FLAGS, "--resume_from_checkpoint", "last"))
    assert_same_metrics(final_metrics(resumed), expected)


def test_a_save_that_fills_the_disk_is_named_and_left_out_of_resume(tmp_path, disk, monkeypatch):
    real_save = Trainer._save_optimizer_and_scheduler

    def fill_the_disk(trainer, output_dir):
        if trainer.state.global_step == 8:
            disk.full = True
            raise OSError(errno.ENOSPC, "No space left on device", output_dir)
        return real_save(trainer, output_dir)

    monkeypatch.setattr(Trainer, "_save_optimizer_and_scheduler", fill_the_disk)
    output_dir = tmp_path / "out"
    with pytest.raises(DiskSpaceError) as raised:
        run_finetune.main(tiny_flags(output_dir, *FLAGS))
    message = str(raised.value)
    assert f"saving {output_dir / 'checkpoint-8'} at step 8 failed" in message and "No space left on device" in message
    assert "incomplete" in message and "0.10 GB free" in message
    assert checkpoint_problem(str(output_dir / "checkpoint-8")) is not None
    assert resume_checkpoint(str(output_dir), "last") == str(output_dir / "checkpoint-4")


def test_other_save_errors_pass_through_unchanged(tmp_path):
    args = SimpleNamespace(output_dir=str(tmp_path), min_free_disk_gb=0.001)
    with pytest.raises(PermissionError, match="read-only"):
        with room_to_save(args, str(tmp_path / "checkpoint-3"), 3):
            raise PermissionError(errno.EACCES, "read-only", str(tmp_path))
