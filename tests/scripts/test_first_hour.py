"""What a newcomer meets first: missing splits, flags a checkpoint cannot take, Ctrl-C and re-runs, failed runs,
frozen weights kept out of intermediate checkpoints, mistyped flags."""

import json
import logging
import os

import pytest
import torch
from safetensors import safe_open
from transformers import AutoProcessor, TrainerCallback

import run_finetune
import run_pretrain
import run_main_job
from tcmp import TCMPForEmotionPreRecognition, TCMPForPreTraining
from tcmp.checkpoints import PARTIAL_CHECKPOINT_FILE
from tcmp.data import load_prerecognition_dataset
from tcmp.data.common import BuildReport, SplitReport
from tcmp.errors import ArgumentsError, DataError, PreflightError, TrainingInterrupted
from tcmp.feature_cache import encoder_fingerprint
from tcmp.preflight import preflight, run_as_script
from tcmp.presets import make_processor, tiny_config, word_tokenizer
from tcmp.training import (
    FinetuningArguments,
    ModelArguments,
    build_model_and_processor,
    parse_arguments,
    selection_callbacks,
    training_texts,
)

from ..data.conftest import MELD_ROWS, write_meld_csv
from .conftest import TINY_DEMO, tiny_flags


class InterruptAt(TrainerCallback):
    """Ctrl-C at the end of a given step (as `KeyboardInterrupt` arrives in a real run)."""

    def __init__(self, step: int):
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            raise KeyboardInterrupt


def test_a_missing_validation_split_is_named_before_any_model_work(tmp_path):
    meld = tmp_path / "meld"
    meld.mkdir()
    write_meld_csv(meld / "train_sent_emo.csv", MELD_ROWS)
    flags = tiny_flags(tmp_path / "out", dataset=meld, dataset_options=None)
    selection = r"which checkpoint selection \(--eval_strategy epoch\) needs: add dev_sent_emo.csv to "
    with pytest.raises(DataError, match=f"--dataset {meld} has no validation split, {selection}{meld}$"):
        run_finetune.main(flags)
    with pytest.raises(DataError, match=f"has no validation split, which --do_eval needs: add dev_sent_emo.csv to {meld}$"):
        run_finetune.main([*flags, "--do_train", "false"])


@pytest.fixture(scope="module")
def frozen_checkpoint(tmp_path_factory):
    """A saved TCMP model (width 16, with an audio encoder) whose encoders are frozen, and its processor."""
    folder = tmp_path_factory.mktemp("frozen")
    texts = training_texts(load_prerecognition_dataset("demo", **TINY_DEMO)["train"])
    processor = make_processor(word_tokenizer(texts), max_audio_length=4000)
    torch.manual_seed(0)
    TCMPForPreTraining(tiny_config(len(processor.tokenizer), hidden_size=16, freeze_encoders=True)).save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder, texts


@pytest.mark.parametrize(
    "flags,message",
    [
        (["--hidden_size", "64"], "--hidden_size 64 cannot apply to --model_name_or_path .*, whose width d is 16"),
        (["--max_text_length", "9"], "--max_text_length 9 cannot apply .* processor's text length is 60"),
        (["--text_only"], "--text_only cannot apply .* which has an audio encoder: use --modality text"),
    ],
)
def test_flags_a_loaded_checkpoint_cannot_take_are_refused(frozen_checkpoint, flags, message):
    folder, texts = frozen_checkpoint
    model_args = parse_arguments((ModelArguments,), ["--model_name_or_path", str(folder), *flags])[0]
    with pytest.raises(ArgumentsError, match=message):
        build_model_and_processor(model_args, TCMPForEmotionPreRecognition, texts, num_labels=3)


def test_a_frozen_checkpoint_keeps_its_frozen_encoders_and_uses_the_feature_cache(frozen_checkpoint, caplog):
    folder, texts = frozen_checkpoint
    model_args = parse_arguments((ModelArguments,), ["--model_name_or_path", str(folder), "--hidden_size", "16"])[0]
    with caplog.at_level(logging.INFO):
        model, _ = build_model_and_processor(model_args, TCMPForEmotionPreRecognition, texts, num_labels=3)
    assert model.config.freeze_encoders and model_args.use_feature_cache is True
    assert "a new classification head" in caplog.text and "LOAD REPORT" not in caplog.text
    unfrozen = parse_arguments((ModelArguments,), ["--model_name_or_path", str(folder), "--freeze_encoders", "false"])[0]
    model, _ = build_model_and_processor(unfrozen, TCMPForEmotionPreRecognition, texts, num_labels=3)
    assert not model.config.freeze_encoders and unfrozen.use_feature_cache is False
    cache_refused = ["--model_name_or_path", str(folder), "--freeze_encoders", "false", "--use_feature_cache"]
    with pytest.raises(ArgumentsError, match="--use_feature_cache needs --freeze_encoders"):
        parse_arguments((ModelArguments,), cache_refused)


def test_the_feature_cache_fingerprint_ignores_where_the_encoders_were_loaded_from(frozen_checkpoint):
    folder, _ = frozen_checkpoint
    model = TCMPForPreTraining.from_pretrained(folder)
    processor = AutoProcessor.from_pretrained(folder)
    fingerprint = encoder_fingerprint(model, processor)
    model.save_pretrained(folder.parent / "again")  # saving adds auto_map entries to the configs
    processor.save_pretrained(folder.parent / "again")
    loaded = TCMPForEmotionPreRecognition.from_pretrained(folder.parent / "again", num_labels=3)
    assert encoder_fingerprint(loaded, AutoProcessor.from_pretrained(folder.parent / "again")) == fingerprint
    with torch.no_grad():
        next(loaded.tcmp.text_model.parameters()).add_(1.0)
    assert encoder_fingerprint(loaded, processor) != fingerprint


def weights(folder) -> dict:
    with safe_open(os.path.join(folder, "model.safetensors"), "pt") as handle:
        return {name: handle.get_tensor(name) for name in handle.keys()}


@pytest.mark.slow
def test_ctrl_c_then_resume_with_frozen_weights_left_out_of_intermediate_checkpoints(tmp_path, frozen_checkpoint):
    folder, _ = frozen_checkpoint
    flags = ["--model_name_or_path", str(folder), "--num_train_epochs", "2", "--learning_rate", "1e-3"]
    whole = tmp_path / "whole"
    run_finetune.main(tiny_flags(whole, *flags))

    cut = tmp_path / "cut"
    after_first_epoch = json.loads((whole / "trainer_state.json").read_text())["global_step"] // 2 + 1
    with pytest.raises(TrainingInterrupted, match=f"continue from {cut}/checkpoint-\\d+ with the same command and --resume_from_checkpoint last"):
        run_finetune.main(tiny_flags(cut, *flags), callbacks=[InterruptAt(after_first_epoch)])
    checkpoint = next(cut.glob("checkpoint-*"))
    saved = weights(checkpoint)
    assert saved and not any(name.startswith(("tcmp.text_model.", "tcmp.audio_model.")) for name in saved)
    assert json.loads((checkpoint / PARTIAL_CHECKPOINT_FILE).read_text())["left_out"]
    with pytest.raises(ArgumentsError, match="is an intermediate checkpoint saved without its frozen weights"):
        run_finetune.main(tiny_flags(tmp_path / "other", "--model_name_or_path", str(checkpoint)))

    with pytest.raises(PreflightError, match="holds checkpoints of an earlier run .*--resume_from_checkpoint last.*--overwrite_output_dir"):
        run_finetune.main(tiny_flags(cut, *flags))
    resumed = run_finetune.main(tiny_flags(cut, *flags, "--resume_from_checkpoint", "last"))
    final, reference = weights(cut), weights(whole)
    assert final.keys() == reference.keys() and any(name.startswith("tcmp.text_model.") for name in final)
    for name, tensor in reference.items():
        torch.testing.assert_close(final[name], tensor, rtol=0, atol=0)
    assert resumed["test_wa"] == json.loads((whole / "all_results.json").read_text())["test_wa"]
    card = (cut / "README.md").read_text()
    assert f"| starting point | TCMP checkpoint `{folder.name}` |" in card and str(tmp_path) not in card


def test_ctrl_c_is_one_line_with_exit_status_130(monkeypatch, capsys):
    monkeypatch.setattr("sys.argv", ["run_finetune.py"])

    def interrupted():
        raise TrainingInterrupted("stopped at step 3 of 8; continue from out/checkpoint-2 with --resume_from_checkpoint last")

    with pytest.raises(SystemExit) as exit_status:
        run_as_script(interrupted)
    assert exit_status.value.code == 130
    assert capsys.readouterr().err.strip().splitlines() == [
        "run_finetune.py: interrupted: stopped at step 3 of 8; continue from out/checkpoint-2 with --resume_from_checkpoint last"
    ]


def test_a_failed_run_removes_the_empty_output_folder_it_created(tmp_path, monkeypatch):
    monkeypatch.setattr("sys.argv", ["run_finetune.py"])
    existing = tmp_path / "existing"
    existing.mkdir()
    for output_dir in (tmp_path / "new" / "out", existing):

        def fails():
            preflight(FinetuningArguments(output_dir=str(output_dir), report_to="none"))
            raise DataError("no validation split")

        with pytest.raises(SystemExit) as exit_status:
            run_as_script(fails)
        assert exit_status.value.code == "run_finetune.py: error: no validation split"
    assert not (tmp_path / "new").exists() and existing.is_dir()


def test_overwrite_output_dir_deletes_an_earlier_runs_checkpoints(tmp_path):
    (tmp_path / "checkpoint-3").mkdir()
    with pytest.raises(PreflightError, match=r"holds checkpoints of an earlier run \(checkpoint-3\)"):
        preflight(FinetuningArguments(output_dir=str(tmp_path), report_to="none"))
    preflight(FinetuningArguments(output_dir=str(tmp_path), report_to="none", overwrite_output_dir=True))
    assert not (tmp_path / "checkpoint-3").exists()


def test_the_main_job_continues_or_starts_over_but_never_mixes(tmp_path):
    (tmp_path / "pretrain").mkdir()
    with pytest.raises(PreflightError, match=f"{tmp_path} holds an earlier main job \\(pretrain\\): continue it with --resume"):
        run_main_job.main(["--tiny", "--output_dir", str(tmp_path)])


def test_ctrl_c_in_the_main_job_before_a_checkpoint_says_what_resume_does(tmp_path, monkeypatch):
    pretrain = run_pretrain.main
    monkeypatch.setattr(run_pretrain, "main", lambda argv: pretrain(argv, callbacks=[InterruptAt(1)]))
    advice = (r"^pretrain: stopped at step 1 of \d+; run the main job again with --resume: the stages done before are "
              r"read back and pretrain starts over \(it had no checkpoint yet\)$")
    with pytest.raises(TrainingInterrupted, match=advice):
        run_main_job.main(["--tiny", "--output_dir", str(tmp_path)])
    with pytest.raises(PreflightError, match="holds an earlier main job \\(pretrain\\): continue it with --resume"):
        run_main_job.main(["--tiny", "--output_dir", str(tmp_path)])
    with pytest.raises(TrainingInterrupted, match=advice):  # --resume runs pretrain again from its first step
        run_main_job.main(["--tiny", "--output_dir", str(tmp_path), "--resume"])


def test_a_mistyped_flag_gets_did_you_mean():
    with pytest.raises(ArgumentsError, match=r"^unknown flag --hiden_size: did you mean --hidden_size\?$"):
        parse_arguments((ModelArguments, FinetuningArguments), ["--hiden_size", "64"])
    with pytest.raises(ArgumentsError, match=r"unknown flag --learningrate: did you mean --learning_rate"):
        parse_arguments((ModelArguments, FinetuningArguments), ["--learningrate=1e-3"])


def test_an_abbreviated_flag_is_refused_naming_it(capsys):
    with pytest.raises(ArgumentsError, match=r"^unknown flag --num_train_epoch: did you mean --num_train_epochs[ ?]"):
        parse_arguments((ModelArguments, FinetuningArguments), ["--num_train_epoch", "1"])
    with pytest.raises(SystemExit):
        run_main_job.main(["--tin"])
    assert "unrecognized arguments: --tin" in capsys.readouterr().err
    from tcmp.data.__main__ import main as data_cli

    with pytest.raises(SystemExit):
        data_cli(["build", "demo", "--out", "x"])
    assert "the following arguments are required: --output" in capsys.readouterr().err  # --out x is not --output x


def test_pin_memory_only_with_an_accelerator(tmp_path):
    args = FinetuningArguments(output_dir=str(tmp_path), report_to="none")
    assert args.dataloader_pin_memory is torch.accelerator.is_available()


def test_a_build_summary_is_written_once(caplog, capsys):
    report = BuildReport("demo prerecognition", {"train": SplitReport(rows=3)})
    report.log()
    assert capsys.readouterr().err.count("build summary") == 1  # no logging configured: on stderr
    logging.getLogger("tcmp.data").addHandler(handler := logging.StreamHandler())
    try:
        with caplog.at_level(logging.INFO, logger="tcmp.data"):
            report.log()
    finally:
        logging.getLogger("tcmp.data").removeHandler(handler)
    assert caplog.text.count("build summary") == 1
    assert capsys.readouterr().err.count("build summary") == 1  # through the handler only, not printed as well


def test_no_early_stopping_when_nothing_is_evaluated(tmp_path):
    unevaluated = FinetuningArguments(
        output_dir=str(tmp_path), report_to="none", eval_strategy="no", save_strategy="no",
        load_best_model_at_end=False, lr_scheduler_type="linear", lr_scheduler_kwargs={},
    )
    assert selection_callbacks(unevaluated) == []
    assert len(selection_callbacks(FinetuningArguments(output_dir=str(tmp_path), report_to="none"))) == 1


def test_pretraining_on_a_meld_folder_without_a_test_split_runs_and_skips_its_scoring(tmp_path):
    meld = tmp_path / "meld"
    meld.mkdir()
    write_meld_csv(meld / "train_sent_emo.csv", MELD_ROWS)
    write_meld_csv(meld / "dev_sent_emo.csv", MELD_ROWS)
    steps = ["--max_steps", "2", "--eval_strategy", "no", "--save_strategy", "no", "--load_best_model_at_end", "false",
             "--do_eval", "false", "--lr_scheduler_type", "linear", "--text_only"]  # (too few dialogues here for retrieval over 11 candidates)
    results = run_pretrain.main(tiny_flags(tmp_path / "out", *steps, dataset=meld, dataset_options=None))
    assert results["train_loss"] > 0 and not any(name.startswith("test_") for name in results)
