"""
Slow end-to-end cases: two CPU processes through `accelerate launch`, and resuming a killed run.

`accelerate launch --cpu --num_processes 2` starts ONE process (accelerate's simple launcher; several CPU processes
need mpirun); `accelerate launch --multi_gpu --num_processes 2` starts two through torchrun, and on a machine without
GPUs the scripts then train with DDP over gloo on CPUs.
"""

import json
import os
import subprocess
import sys

import pytest
import torch
from transformers import AutoModelForPreTraining, AutoModelForSequenceClassification, TrainerCallback

import run_pretrain

from .conftest import REPO, tiny_flags


ENTRY = os.path.join(os.path.dirname(os.path.abspath(__file__)), "ddp_entry.py")


def launch_two_processes(script, output_dir, *extra):
    command = [
        sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
        "--mixed_precision", "no", "--dynamo_backend", "no", ENTRY, script, *tiny_flags(output_dir, *extra),
    ]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([REPO, os.environ.get("PYTHONPATH", "")]), "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    ranks = [json.loads((output_dir / f"rank{rank}.json").read_text()) for rank in (0, 1)]
    assert [r["world_size"] for r in ranks] == ["2", "2"]
    assert ranks[0]["metrics"] == ranks[1]["metrics"] and ranks[0]["metrics"]
    assert ranks[0]["weights"] == ranks[1]["weights"] is not None
    return ranks[0]["metrics"]


@pytest.mark.slow
def test_two_processes_pretrain_then_finetune(tmp_path):
    pretrain_dir, finetune_dir = tmp_path / "pretrain", tmp_path / "finetune"
    metrics = launch_two_processes("run_pretrain", pretrain_dir, "--num_train_epochs", "1", "--learning_rate", "1e-3")
    assert "test_text_r1@11" in metrics
    AutoModelForPreTraining.from_pretrained(pretrain_dir)
    metrics = launch_two_processes(
        "run_finetune", finetune_dir, "--model_name_or_path", str(pretrain_dir), "--num_train_epochs", "1"
    )
    assert "test_wa" in metrics
    assert AutoModelForSequenceClassification.from_pretrained(finetune_dir).config.num_labels > 1


class Killed(Exception):
    pass


class KillAfterFirstCheckpoint(TrainerCallback):
    def on_save(self, args, state, control, **kwargs):
        raise Killed(f"killed after saving step {state.global_step}")


def final_metrics(results: dict) -> dict:
    return {k: v for k, v in results.items() if k.startswith(("eval_", "test_")) and not k.endswith(("_runtime", "_second"))}


@pytest.mark.slow
def test_resume_ends_where_an_uninterrupted_run_ends(tmp_path):
    flags = ["--num_train_epochs", "2", "--learning_rate", "1e-3", "--save_total_limit", "5"]
    uninterrupted = run_pretrain.main(tiny_flags(tmp_path / "whole", *flags))
    with pytest.raises(Killed):
        run_pretrain.main(tiny_flags(tmp_path / "killed", *flags), callbacks=[KillAfterFirstCheckpoint()])
    (checkpoint,) = (tmp_path / "killed").glob("checkpoint-*")
    resumed = run_pretrain.main(tiny_flags(tmp_path / "killed", *flags, "--resume_from_checkpoint", str(checkpoint)))
    assert final_metrics(resumed) == final_metrics(uninterrupted)
    whole = AutoModelForPreTraining.from_pretrained(tmp_path / "whole").state_dict()
    again = AutoModelForPreTraining.from_pretrained(tmp_path / "killed").state_dict()
    for name, tensor in whole.items():
        torch.testing.assert_close(again[name], tensor, rtol=0, atol=0)
