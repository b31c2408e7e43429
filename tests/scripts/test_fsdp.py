"""
FSDP2 on two CPU processes (gloo): `fully_shard` at the model's `_no_split_modules`, one step against one process,
and the gathered full state dict saved as a folder that `from_pretrained` loads. (`accelerate launch --use_fsdp`
cannot be tried without GPUs: Accelerate enables FSDP only for multi-accelerator runs and otherwise runs DDP.)
"""

import json
import os
import socket
import subprocess
import sys

import pytest
import torch
from transformers import AutoModelForPreTraining

from .conftest import REPO


FSDP_ENTRY = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fsdp_entry.py")
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([REPO, os.environ.get("PYTHONPATH", "")]), "OMP_NUM_THREADS": "1"}
TIMEOUT = 600


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.slow
def test_fully_shard_step_equals_one_process_and_saves_a_loadable_folder(tmp_path):
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
               "--master_port", str(free_port()), FSDP_ENTRY, str(tmp_path)]
    done = subprocess.run(command, cwd=REPO, env=ENV, capture_output=True, text=True, timeout=TIMEOUT)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads((tmp_path / "fsdp.json").read_text())
    assert {"BertLayer", "TCMPDialogueContext", "TCMPForthcomingPredictor"} <= set(report["units"])
    assert report["sharded_parameters"] >= report["parameters"] - 2  # all but parameters too small to split
    assert report["gradient_difference"] < 1e-5
    sharded = AutoModelForPreTraining.from_pretrained(tmp_path / "fsdp").state_dict()
    reference = AutoModelForPreTraining.from_pretrained(tmp_path / "reference").state_dict()
    assert sharded.keys() == reference.keys()
    for name, tensor in reference.items():
        torch.testing.assert_close(sharded[name], tensor, rtol=0, atol=1e-6, msg=name)
