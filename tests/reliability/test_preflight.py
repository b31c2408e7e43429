"""An unwritable output folder or a full disk stops a training script at start, before any data or model work."""

import os
import shutil
import subprocess
import sys

import pytest

import run_finetune
import run_pretrain
from tcmp.preflight import PreflightError, check_writable, preflight
from tcmp.training import FinetuningArguments

from ..scripts.conftest import REPO, TINY_DEMO, tiny_flags


def flags_with_cache(output_dir, cache_dir, *extra):
    """`tiny_flags` with the demo corpus cached under `cache_dir`, so a test can see whether data was built."""
    return tiny_flags(output_dir, *extra, dataset_options={**TINY_DEMO, "cache_dir": str(cache_dir)})


@pytest.fixture
def no_data_work(monkeypatch):
    """Fail the test if a script reaches its data loader (the preflight must stop it before)."""

    def refuse(*args, **kwargs):
        raise AssertionError("the dataset was loaded although the preflight should have stopped the run")

    monkeypatch.setattr(run_pretrain, "load_pretraining_dataset", refuse)
    monkeypatch.setattr(run_finetune, "load_prerecognition_dataset", refuse)


@pytest.mark.parametrize("script", [run_pretrain, run_finetune])
def test_output_folder_under_a_file_stops_at_start(script, tmp_path, no_data_work):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    output_dir = blocker / "out"
    with pytest.raises(PreflightError, match=f"output folder.*{output_dir}.*cannot be created"):
        script.main(flags_with_cache(output_dir, tmp_path / "cache"))
    assert not (tmp_path / "cache").exists()


@pytest.mark.parametrize("script", [run_pretrain, run_finetune])
def test_full_disk_stops_at_start_with_free_and_needed_space(script, tmp_path, monkeypatch, no_data_work):
    real = shutil.disk_usage
    monkeypatch.setattr(shutil, "disk_usage", lambda path: real(path)._replace(free=200 * 1024**2))
    output_dir = tmp_path / "out"
    with pytest.raises(PreflightError) as raised:
        script.main(flags_with_cache(output_dir, tmp_path / "cache", "--min_free_disk_gb", "2"))
    message = str(raised.value)
    assert str(output_dir) in message and "0.20 GB free" in message and "at least 2 GB" in message
    assert "--min_free_disk_gb" in message
    assert os.listdir(output_dir) == [] and not (tmp_path / "cache").exists()


def test_min_free_disk_gb_lowers_the_need(tmp_path, monkeypatch):
    real = shutil.disk_usage
    monkeypatch.setattr(shutil, "disk_usage", lambda path: real(path)._replace(free=200 * 1024**2))
    args = FinetuningArguments(output_dir=str(tmp_path / "out"), report_to="none", min_free_disk_gb=0.1)
    preflight(args)
    with pytest.raises(PreflightError, match="0.20 GB free"):
        preflight(FinetuningArguments(output_dir=str(tmp_path / "out"), report_to="none"))


def test_unwritable_folder_is_named(tmp_path, monkeypatch):
    """A folder where the probe file cannot be written (read-only mount, no permission), simulated by `open` failing."""
    real_open = open

    def read_only(path, mode="r", *args, **kwargs):
        if "w" in mode and str(path).startswith(str(tmp_path)):
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, mode, *args, **kwargs)

    monkeypatch.setattr("builtins.open", read_only)
    with pytest.raises(PreflightError, match=f"{tmp_path / 'out'} is not writable: Permission denied"):
        check_writable(str(tmp_path / "out"), "output folder")


def test_logging_folder_is_checked(tmp_path, monkeypatch):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    monkeypatch.setenv("TENSORBOARD_LOGGING_DIR", str(blocker / "runs"))
    args = FinetuningArguments(output_dir=str(tmp_path / "out"), report_to="tensorboard")
    with pytest.raises(PreflightError, match="TensorBoard logging folder.*cannot be created"):
        preflight(args)
    preflight(FinetuningArguments(output_dir=str(tmp_path / "out"), report_to="none"))


def test_script_prints_one_clear_line_and_exits_non_zero(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    done = subprocess.run(
        [sys.executable, "run_finetune.py", *flags_with_cache(blocker / "out", tmp_path / "cache")],
        cwd=REPO, capture_output=True, text=True, timeout=120,
        env={**os.environ, "PYTHONPATH": REPO},
    )
    assert done.returncode != 0
    assert "Traceback" not in done.stderr
    assert f"run_finetune.py: error: the output folder (--output_dir) {blocker / 'out'} cannot be created" in done.stderr
    assert not (tmp_path / "cache").exists()
