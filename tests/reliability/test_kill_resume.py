"""
A fine-tuning run killed with SIGKILL at a random checkpoint resumes with `--resume_from_checkpoint last` and ends at
the uninterrupted run's metrics; a checkpoint left incomplete (by a kill during its save) is skipped, never resumed.
"""

import json
import logging
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from types import SimpleNamespace

import pytest

import run_finetune
from tcmp.preflight import PreflightError, checkpoint_problem, resume_checkpoint, trainer_files

from ..scripts.conftest import REPO, tiny_flags


MAX_STEPS, EVERY = 40, 4
FLAGS = [
    "--max_steps", str(MAX_STEPS), "--learning_rate", "1e-3", "--save_total_limit", "20",
    "--save_strategy", "steps", "--save_steps", str(EVERY), "--eval_strategy", "steps", "--eval_steps", str(EVERY),
]
KILL_SEED = 2024
"""Seed of the random draw of the checkpoint after which the run is killed."""


def final_metrics(results: dict) -> dict:
    return {k: v for k, v in results.items() if k.startswith(("eval_", "test_")) and not k.endswith(("_runtime", "_second"))}


def assert_same_metrics(got: dict, expected: dict):
    assert got.keys() == expected.keys()
    for name, value in expected.items():
        assert got[name] == pytest.approx(value, abs=1e-6), name


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """An uninterrupted run: its folder (every checkpoint kept) and final metrics."""
    output_dir = tmp_path_factory.mktemp("uninterrupted")
    return output_dir, final_metrics(run_finetune.main(tiny_flags(output_dir, *FLAGS)))


def kill_after_checkpoint(output_dir, step: int) -> None:
    """Run run_finetune.py as a subprocess and SIGKILL it as soon as checkpoint-`step` is complete on disk."""
    command = [sys.executable, os.path.join(REPO, "run_finetune.py"), *tiny_flags(output_dir, *FLAGS)]
    env = {**os.environ, "PYTHONPATH": REPO}
    with subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) as process:
        checkpoint, deadline = output_dir / f"checkpoint-{step}", time.monotonic() + 300
        while not (checkpoint.is_dir() and checkpoint_problem(str(checkpoint)) is None):
            if process.poll() is not None:
                pytest.fail(f"the run ended before checkpoint-{step}: {process.stderr.read().decode()[-2000:]}")
            assert time.monotonic() < deadline, f"no complete checkpoint-{step} after 300 s"
            time.sleep(0.005)
        process.send_signal(signal.SIGKILL)
        process.wait()
    assert process.returncode == -signal.SIGKILL


@pytest.mark.slow
def test_sigkill_at_a_random_step_then_resume_last_ends_like_an_uninterrupted_run(uninterrupted, tmp_path):
    step = random.Random(KILL_SEED).randrange(EVERY, MAX_STEPS, EVERY)
    output_dir = tmp_path / "killed"
    kill_after_checkpoint(output_dir, step)
    assert not (output_dir / "all_results.json").exists()
    resumed = run_finetune.main(tiny_flags(output_dir, *FLAGS, "--resume_from_checkpoint", "last"))
    assert_same_metrics(final_metrics(resumed), uninterrupted[1])
    with open(output_dir / "trainer_state.json") as handle:
        assert json.load(handle)["global_step"] == MAX_STEPS


def copy_checkpoints(source, target, steps):
    for step in steps:
        shutil.copytree(source / f"checkpoint-{step}", target / f"checkpoint-{step}")


def truncate(path):
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


DAMAGE = {
    "trainer_state.json": (lambda path: path.unlink(), "trainer_state.json is missing"),
    "model.safetensors": (truncate, "model.safetensors is corrupted or truncated"),
    "optimizer.pt": (truncate, "optimizer.pt is truncated or corrupted"),
    "rng_state.pth": (lambda path: path.unlink(), "rng_state.pth is missing"),
    "tcmp_checksums.json": (lambda path: path.unlink(), "tcmp_checksums.json is missing"),
}


@pytest.mark.parametrize("name", list(DAMAGE))
def test_last_skips_an_incomplete_newest_checkpoint(name, uninterrupted, tmp_path, caplog):
    copy_checkpoints(uninterrupted[0], tmp_path, (8, 12))
    damage, reason = DAMAGE[name]
    damage(tmp_path / "checkpoint-12" / name)
    with caplog.at_level(logging.WARNING, logger="tcmp.preflight"):
        assert resume_checkpoint(str(tmp_path), "last") == str(tmp_path / "checkpoint-8")
    assert f"skipping the incomplete {tmp_path / 'checkpoint-12'}" in caplog.text and reason in caplog.text
    with pytest.raises(PreflightError, match=f"checkpoint-12 cannot be resumed: .*{reason}"):
        resume_checkpoint(str(tmp_path / "checkpoint-12"), str(tmp_path / "checkpoint-12"))


def test_two_process_checkpoint_needs_every_process_rng_state(uninterrupted, tmp_path):
    """Each process writes its own RNG state, rank 0 its trainer_state.json: a kill can leave rank 1's missing."""
    copy_checkpoints(uninterrupted[0], tmp_path, (12,))
    checkpoint = tmp_path / "checkpoint-12"
    (checkpoint / "rng_state.pth").rename(checkpoint / "rng_state_0.pth")
    two = trainer_files(SimpleNamespace(save_only_model=False, world_size=2, deepspeed=None, fsdp=[]))
    assert checkpoint_problem(str(checkpoint), two) == f"{checkpoint / 'rng_state_1.pth'} is missing"
    shutil.copy(checkpoint / "rng_state_0.pth", checkpoint / "rng_state_1.pth")
    assert checkpoint_problem(str(checkpoint), two) is None


def test_last_without_any_complete_checkpoint_is_refused(uninterrupted, tmp_path):
    copy_checkpoints(uninterrupted[0], tmp_path, (8,))
    (tmp_path / "checkpoint-8" / "trainer_state.json").unlink()
    with pytest.raises(PreflightError, match=f"no complete checkpoint-\\* folder in {tmp_path}"):
        resume_checkpoint(str(tmp_path), "last")


@pytest.mark.slow
def test_resume_last_over_a_half_written_checkpoint_ends_like_an_uninterrupted_run(uninterrupted, tmp_path):
    copy_checkpoints(uninterrupted[0], tmp_path, (8, 12))
    truncate(tmp_path / "checkpoint-12" / "model.safetensors")
    (tmp_path / "checkpoint-12" / "trainer_state.json").unlink()
    resumed = run_finetune.main(tiny_flags(tmp_path, *FLAGS, "--resume_from_checkpoint", "last"))
    assert_same_metrics(final_metrics(resumed), uninterrupted[1])
