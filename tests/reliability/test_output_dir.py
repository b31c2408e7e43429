"""
A training script writes only into a new or empty folder, one of our own runs, or with --overwrite_output_dir: the
files a user keeps in a folder given by mistake are never overwritten silently (the same rule in all three scripts).
"""

import json
import os
import subprocess
import sys

import pytest

import run_finetune
import run_main_job
import run_pretrain
from tcmp.errors import PreflightError
from tcmp.output_dir import RUN_MARKER
from tcmp.preflight import remove_created_folders

from ..scripts.conftest import REPO, tiny_flags

ONE_STEP = ["--text_only", "--max_steps", "1", "--save_strategy", "no", "--eval_strategy", "no",
            "--lr_scheduler_type", "linear", "--load_best_model_at_end", "false", "--do_predict", "false"]


@pytest.fixture
def users_folder(tmp_path):
    """A folder of the user's own files, named like some of a run's outputs."""
    folder = tmp_path / "mine"
    folder.mkdir()
    for name in ("README.md", "config.json", "notes.txt"):
        (folder / name).write_text(f"my {name}\n")
    return folder


def untouched(folder) -> bool:
    return sorted(os.listdir(folder)) == ["README.md", "config.json", "notes.txt"] and all(
        (folder / name).read_text() == f"my {name}\n" for name in os.listdir(folder)
    )


MESSAGE = (
    "the output folder (--output_dir) {folder} holds files that are not from a tcmp run (README.md, config.json, "
    "notes.txt; no tcmp_run.json): choose a new or empty folder, or pass --overwrite_output_dir to write over them"
)


@pytest.mark.parametrize("script", [run_pretrain, run_finetune])
def test_training_scripts_refuse_a_folder_of_the_users_files(script, users_folder):
    with pytest.raises(PreflightError) as refused:
        script.main(tiny_flags(users_folder, *ONE_STEP))
    assert str(refused.value) == MESSAGE.format(folder=users_folder)
    assert untouched(users_folder)


def test_main_job_refuses_a_folder_of_the_users_files(users_folder):
    with pytest.raises(PreflightError) as refused:
        run_main_job.main(["--output_dir", str(users_folder), "--tiny"])
    assert str(refused.value) == MESSAGE.format(folder=users_folder)
    assert untouched(users_folder)


def test_the_refusal_is_one_line_from_the_shell(users_folder):
    done = subprocess.run(
        [sys.executable, "run_finetune.py", *tiny_flags(users_folder, *ONE_STEP)],
        cwd=REPO, capture_output=True, text=True, timeout=120, env={**os.environ, "PYTHONPATH": REPO},
    )
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert done.stderr.splitlines()[-1] == "run_finetune.py: error: " + MESSAGE.format(folder=users_folder)
    assert untouched(users_folder)


def test_our_own_run_is_reused_and_overwrite_writes_over_the_users_files(users_folder, tmp_path):
    own = tmp_path / "own"
    run_finetune.main(tiny_flags(own, *ONE_STEP))
    assert json.loads((own / RUN_MARKER).read_text())["script"]
    run_finetune.main(tiny_flags(own, *ONE_STEP))  # a folder of ours: a second run may write there
    run_finetune.main(tiny_flags(users_folder, *ONE_STEP, "--overwrite_output_dir"))
    assert (users_folder / RUN_MARKER).is_file() and (users_folder / "README.md").read_text() != "my README.md\n"


def test_a_failed_run_leaves_no_folder_holding_only_the_marker(tmp_path):
    with pytest.raises(Exception):
        run_finetune.main(tiny_flags(tmp_path / "new" / "out", *ONE_STEP, dataset=tmp_path / "missing"))
    assert (tmp_path / "new" / "out" / RUN_MARKER).is_file()
    remove_created_folders()  # what run_as_script does when a run fails
    assert not (tmp_path / "new").exists()
