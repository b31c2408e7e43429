"""With a seed, two runs of each training script on CPU give identical metrics and identical saved weights."""

import pytest
import torch
from safetensors.torch import load_file

import run_finetune
import run_pretrain

from ..scripts.conftest import tiny_flags


FLAGS = ["--max_steps", "6", "--learning_rate", "1e-3", "--eval_strategy", "steps", "--eval_steps", "3",
         "--save_strategy", "steps", "--save_steps", "3"]


def run(script, output_dir, *extra):
    """Final metrics (without timings) and saved weights of one run."""
    results = script.main(tiny_flags(output_dir, *FLAGS, *extra))
    metrics = {k: v for k, v in results.items() if not k.endswith(("_runtime", "_per_second"))}
    return metrics, load_file(output_dir / "model.safetensors")


def assert_same_weights(first: dict, second: dict):
    assert first.keys() == second.keys()
    for name, tensor in first.items():
        assert torch.equal(tensor, second[name]), name


@pytest.mark.parametrize("script", [run_pretrain, run_finetune], ids=["pretrain", "finetune"])
def test_two_seeded_runs_are_identical(script, tmp_path):
    first_metrics, first_weights = run(script, tmp_path / "first")
    second_metrics, second_weights = run(script, tmp_path / "second")
    assert first_metrics == second_metrics and any(k.startswith("test_") for k in first_metrics)
    assert_same_weights(first_weights, second_weights)
    _, other_weights = run(script, tmp_path / "other_seed", "--seed", "1")
    assert any(not torch.equal(tensor, other_weights[name]) for name, tensor in first_weights.items())
