"""
Slow end-to-end cases: two CPU processes through `accelerate launch`, and resuming a killed run.

`accelerate launch --cpu --num_processes 2` starts ONE process (accelerate's simple launcher; several CPU processes
need mpirun); `accelerate launch --multi_gpu --num_processes 2` starts two through torchrun, and on a machine without
GPUs the scripts then train with DDP over gloo on CPUs.
"""

import json
import os
import socket
import subprocess
import sys

import pytest
import torch
from transformers import AutoModelForPreTraining, AutoModelForSequenceClassification, TrainerCallback

import run_pretrain

from .conftest import REPO, tiny_flags


ENTRY = os.path.join(os.path.dirname(os.path.abspath(__file__)), "ddp_entry.py")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def launch(script, output_dir, *extra, machines=1) -> dict:
    """
    `script` under `accelerate launch` with 2 processes in all: on one machine, or as two machines (two process
    groups of one process each) meeting over loopback. Both processes must end with the same metrics and weights;
    returns what rank 0 wrote (`ddp_entry.py`).
    """
    port = str(free_port())
    output_dir.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([REPO, os.environ.get("PYTHONPATH", "")]), "OMP_NUM_THREADS": "1"}
    runs = []
    for rank in range(machines):
        command = [
            sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
            "--num_machines", str(machines), "--mixed_precision", "no", "--dynamo_backend", "no",
        ]
        if machines > 1:
            command += ["--machine_rank", str(rank), "--main_process_ip", "127.0.0.1", "--main_process_port", port]
        command += [ENTRY, script, *tiny_flags(output_dir, *extra)]
        log = open(output_dir.parent / f"{output_dir.name}_machine{rank}.log", "w")  # not in the run's folder
        runs.append((subprocess.Popen(command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT), log))
    try:
        for run, _ in runs:
            run.wait(timeout=600)
    finally:
        for run, log in runs:
            run.kill()
            log.close()
    for rank, (run, _) in enumerate(runs):
        assert run.returncode == 0, (output_dir.parent / f"{output_dir.name}_machine{rank}.log").read_text()[-3000:]
    ranks = [json.loads((output_dir / f"rank{rank}.json").read_text()) for rank in (0, 1)]
    assert [r["world_size"] for r in ranks] == ["2", "2"]
    assert ranks[0]["metrics"] == ranks[1]["metrics"] and ranks[0]["metrics"]
    assert ranks[0]["weights"] == ranks[1]["weights"] is not None
    return ranks[0]


def launch_two_processes(script, output_dir, *extra):
    return launch(script, output_dir, *extra)["metrics"]


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
    # the same two runs as two machines of one process each: the same metrics and weights as one machine
    for script, output_dir, extra in (
        ("run_pretrain", pretrain_dir, ["--num_train_epochs", "1", "--learning_rate", "1e-3"]),
        ("run_finetune", finetune_dir, ["--model_name_or_path", str(pretrain_dir), "--num_train_epochs", "1"]),
    ):
        one = json.loads((output_dir / "rank0.json").read_text())
        two = launch(script, output_dir.with_name(output_dir.name + "_two_machines"), *extra, machines=2)
        assert two["metrics"] == one["metrics"]
        assert two["weights"] == one["weights"]


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
