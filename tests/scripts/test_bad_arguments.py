"""Bad flags, folders and argument files stop both scripts with one line naming the flag or file, not a traceback."""

import os
import subprocess
import sys

import pytest
import torch

import run_finetune
import run_pretrain
from tcmp.data import DataError
from tcmp.errors import ArgumentsError
from tcmp.checkpoints import could_be_hub_id

from .conftest import REPO, TINY_DEMO, tiny_flags


BAD_FLAGS = [
    (["--num_negatives", "0"], r"tiny random model: TCMPConfig.num_negatives must be None or at least 1, got 0"),
    (["--modality", "audio", "--text_only"], r"TCMPConfig.modality='audio' needs the audio stream"),
    (["--model_name_or_path", "/no/such/checkpoint"], r"--model_name_or_path /no/such/checkpoint: no such folder"),
    (["--text_encoder", "./no_such_encoder"], r"--text_encoder ./no_such_encoder: no such folder"),
    (["--audio_encoder", "~/no_such_hubert"], r"--audio_encoder ~/no_such_hubert: no such folder"),
    (["--eval_strategy", "no"], r"--load_best_model_at_end requires the save and eval strategy to match"),
    (["--learning_rate", "1e-3", "--use_feature_cache"], r"--use_feature_cache needs --freeze_encoders"),
    (["--per_device_train_batch_size", "0"], r"--per_device_train_batch_size must be at least 1, got 0"),
    (["--num_train_epochs", "-1"], r"--num_train_epochs must be above 0 \(or give --max_steps\), got -1.0"),
]


@pytest.mark.parametrize("script", [run_pretrain, run_finetune], ids=["pretrain", "finetune"])
@pytest.mark.parametrize("extra,message", BAD_FLAGS, ids=[flags[0] for flags, _ in BAD_FLAGS])
def test_bad_flags_are_an_arguments_error_naming_them(script, extra, message, tmp_path):
    with pytest.raises(ArgumentsError, match=message):
        script.main(tiny_flags(tmp_path / "out", *extra))


def test_bad_dataset_options_are_a_data_error_naming_them(tmp_path):
    rule = tiny_flags(tmp_path / "out", dataset_options={**TINY_DEMO, "rule": {"min_context": 0}})
    with pytest.raises(DataError, match="ReconstructionRule.min_context must be >= 1, got 0"):
        run_finetune.main(rule)
    with pytest.raises(DataError, match="window and stride must be >= 1, got window=0"):
        run_pretrain.main(tiny_flags(tmp_path / "out", "--window", "0"))


def test_a_folder_that_is_not_a_checkpoint_is_named(tmp_path):
    with pytest.raises(ArgumentsError, match=f"--model_name_or_path {tmp_path}: Unrecognized processing class"):
        run_finetune.main(tiny_flags(tmp_path / "out", "--model_name_or_path", str(tmp_path)))


def test_argument_files_missing_malformed_or_with_unknown_keys_are_named(tmp_path):
    with pytest.raises(ArgumentsError, match="no such arguments file: .*missing.yaml"):
        run_pretrain.main([str(tmp_path / "missing.yaml")])
    malformed = tmp_path / "malformed.yaml"
    malformed.write_text("learning_rate: [1\n")
    with pytest.raises(ArgumentsError, match=f"{malformed}: while parsing a flow sequence"):
        run_pretrain.main([str(malformed)])
    unknown = tmp_path / "unknown.json"
    unknown.write_text(f'{{"dataset": "demo", "output_dir": "{tmp_path}", "no_such_flag": 1}}')
    with pytest.raises(ArgumentsError, match=r"unknown.json: unknown flag 'no_such_flag'"):
        run_finetune.main([str(unknown)])


def test_hub_ids_are_told_from_paths(tmp_path):
    assert could_be_hub_id("bert-base-uncased") and could_be_hub_id("org/model")
    assert not any(map(could_be_hub_id, ["/abs/model", "./model", "~/model", "a/b/c", str(tmp_path)]))


def test_the_command_line_prints_one_line_and_exits_1(tmp_path):
    done = subprocess.run(
        [sys.executable, "run_pretrain.py", *tiny_flags(tmp_path / "out", "--num_negatives", "0")],
        cwd=REPO, capture_output=True, text=True, timeout=120,
        env={**os.environ, "PYTHONPATH": REPO},
    )
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines()[-1] == (
        "run_pretrain.py: error: a tiny random model: TCMPConfig.num_negatives must be None or at least 1, got 0"
    )


def test_scheduler_and_patience_flags_parse_from_the_command_line(tmp_path):
    from tcmp.training import FinetuningArguments, FinetuningDataArguments, ModelArguments
    from transformers import get_scheduler

    from tcmp.training.arguments import parse_arguments

    classes = (ModelArguments, FinetuningDataArguments, FinetuningArguments)
    out = ["--output_dir", str(tmp_path), "--report_to", "none"]
    linear = parse_arguments(classes, [*out, "--lr_scheduler_type", "linear", "--early_stopping_patience", "none"])[2]
    assert not linear.lr_scheduler_kwargs and linear.early_stopping_patience is None
    optimizer = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))])
    get_scheduler("linear", optimizer, 1, 10, scheduler_specific_kwargs=linear.lr_scheduler_kwargs)  # no stray kwargs
    plateau = parse_arguments(classes, [*out, "--lr_scheduler_kwargs", '{"factor": 0.5}'])[2]
    assert plateau.lr_scheduler_kwargs == {"mode": "max", "factor": 0.5, "patience": 0, "threshold": 0.0}
    assert parse_arguments(classes, out)[2].early_stopping_patience == 10
    with pytest.raises(ArgumentsError, match=r"--early_stopping_patience must be a whole number .* got 'two'"):
        parse_arguments(classes, [*out, "--early_stopping_patience", "two"])
