"""
Nothing runs foreign code by accident: a malicious release pickle is refused unless `--allow_pickle` is given, and
the only pickles in a Trainer checkpoint are the Trainer's own, loaded with `weights_only=True` or never.
"""

import os
import pickle
import shutil
import subprocess
import sys

import joblib
import pytest
import torch
from transformers.trainer_pt_utils import safe_globals

import run_finetune
import run_pretrain
from tcmp.data import PickleRefusedError, import_release

from ..scripts.conftest import REPO, tiny_flags


PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".joblib", ".ckpt")
STEPS = ["--save_strategy", "steps", "--save_steps", "2", "--eval_strategy", "steps", "--eval_steps", "2"]
TRAINER_PICKLES = {"optimizer.pt", "scheduler.pt", "rng_state.pth", "training_args.bin"}


class CreatesMarker:
    """Unpickling this object calls `open(marker, "w")`: a stand-in for any code a hostile pickle could run."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return open, (self.marker, "w")


@pytest.fixture
def hostile_release(tmp_path):
    """A joblib file named like a release split whose loading would create `marker` (checked live with joblib)."""
    marker = tmp_path / "code_ran"
    path = tmp_path / "pmeld_train.joblib"
    joblib.dump([CreatesMarker(marker)], path)
    joblib.load(path)
    assert marker.exists(), "the hostile pickle must really run code when loaded"
    marker.unlink()
    return path, marker


def test_import_release_never_unpickles_without_allow_pickle(hostile_release):
    path, marker = hostile_release
    with pytest.raises(PickleRefusedError, match="arbitrary code.*allow_pickle=True"):
        import_release(str(path))
    for script in (run_finetune, run_pretrain):
        with pytest.raises(PickleRefusedError, match="--allow_pickle"):
            script.main(tiny_flags(path.parent / "out", dataset=path, dataset_options=None))
    assert not marker.exists()


def test_script_refuses_the_pickle_in_one_line(hostile_release):
    path, marker = hostile_release
    done = subprocess.run(
        [sys.executable, "run_finetune.py", *tiny_flags(path.parent / "out", dataset=path, dataset_options=None)],
        cwd=REPO, capture_output=True, text=True, timeout=120, env={**os.environ, "PYTHONPATH": REPO},
    )
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert f"run_finetune.py: error: {str(path)!r} is a joblib/pickle file" in done.stderr
    assert "--allow_pickle" in done.stderr and not marker.exists()


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A short fine-tuning run's folder, with its one Trainer checkpoint."""
    output_dir = tmp_path_factory.mktemp("trained")
    run_finetune.main(tiny_flags(output_dir, *STEPS, "--max_steps", "2"))
    return output_dir


def pickles_in(folder) -> set:
    return {name for name in os.listdir(folder) if name.endswith(PICKLE_SUFFIXES)}


def test_saved_model_and_checkpoint_hold_only_the_trainers_own_pickles(trained):
    assert pickles_in(trained) == {"training_args.bin"}
    checkpoint = trained / "checkpoint-2"
    assert pickles_in(checkpoint) == TRAINER_PICKLES
    assert "model.safetensors" in os.listdir(trained) and "model.safetensors" in os.listdir(checkpoint)
    with safe_globals():  # the Trainer's allow-list: numpy arrays and dtypes (the RNG state), nothing callable
        for name in TRAINER_PICKLES - {"training_args.bin"}:
            torch.load(checkpoint / name, weights_only=True)
    with pytest.raises(pickle.UnpicklingError):
        torch.load(checkpoint / "training_args.bin", weights_only=True)


def resume_with_hostile(trained, tmp_path, name):
    """Copy the checkpoint, replace `name` by a torch.save archive whose loading would create a marker, resume."""
    output_dir = tmp_path / "resume"
    shutil.copytree(trained / "checkpoint-2", output_dir / "checkpoint-2")
    marker = tmp_path / "code_ran"
    torch.save(CreatesMarker(marker), output_dir / "checkpoint-2" / name)
    torch.load(output_dir / "checkpoint-2" / name, weights_only=False)
    assert marker.exists(), "the hostile file must really run code when unpickled"
    marker.unlink()
    flags = tiny_flags(output_dir, *STEPS, "--max_steps", "4", "--resume_from_checkpoint", "last")
    return flags, marker


def test_resume_never_unpickles_training_args(trained, tmp_path):
    flags, marker = resume_with_hostile(trained, tmp_path, "training_args.bin")
    run_finetune.main(flags)
    assert not marker.exists()


@pytest.mark.parametrize("name", ["optimizer.pt", "rng_state.pth"])
def test_resume_loads_trainer_state_with_weights_only(name, trained, tmp_path):
    flags, marker = resume_with_hostile(trained, tmp_path, name)
    with pytest.raises(pickle.UnpicklingError, match="Weights only load failed"):
        run_finetune.main(flags)
    assert not marker.exists()
