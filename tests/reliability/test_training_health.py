"""
A run that goes wrong says so: NaN/infinite weights or loss stop it naming the step and what to try, a diverging
loss and predictions collapsed to one class are warned about (both scripts carry `TrainingHealthCallback`).
"""

import logging

import pytest
import torch
from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

import run_finetune
import run_pretrain
from tcmp.errors import SCRIPT_ERRORS, TrainingDiverged
from tcmp.training.health import TrainingHealthCallback

from ..scripts.conftest import tiny_flags

SHORT = ["--text_only", "--max_steps", "4", "--logging_steps", "2", "--save_strategy", "no", "--eval_strategy", "no",
         "--lr_scheduler_type", "linear", "--load_best_model_at_end", "false", "--do_eval", "false",
         "--do_predict", "false"]


class PoisonAt(TrainerCallback):
    """Fill the first trainable weight with NaN after `step` (as an overflow in the update would)."""

    def __init__(self, step):
        self.step = step

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if state.global_step == self.step:
            with torch.no_grad():
                next(p for p in model.parameters() if p.requires_grad).fill_(float("nan"))


class CollapseToOneClass(TrainerCallback):
    """Make the classifier answer its second class whatever the input, before the evaluation."""

    def on_step_end(self, args, state, control, model=None, **kwargs):
        last = model.classifier[-1]
        with torch.no_grad():
            last.weight.zero_()
            last.bias.copy_(torch.tensor([0.0, 9.0, 0.0]))


@pytest.mark.parametrize("script", [run_pretrain, run_finetune])
def test_nan_weights_stop_the_run_naming_the_step_and_what_to_try(script, tmp_path):
    with pytest.raises(TrainingDiverged) as stopped:
        script.main(tiny_flags(tmp_path / "out", *SHORT), callbacks=[PoisonAt(2)])
    message = str(stopped.value)
    assert message.startswith("training stopped at step 2 (epoch ") and "hold NaN or infinite values" in message
    assert "try a lower --learning_rate" in message and "--max_grad_norm" in message
    assert TrainingDiverged in SCRIPT_ERRORS  # the scripts print it as one line, exit status 1


def test_a_diverging_loss_is_warned_about(tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="tcmp.training.health"):
        run_finetune.main(tiny_flags(tmp_path / "out", *SHORT, "--learning_rate", "1e3", "--logging_steps", "1"))
    warnings = [r.getMessage() for r in caplog.records if "diverges" in r.getMessage()]
    assert len(warnings) == 1
    assert "at step 2 " in warnings[0] and "(first logged: 1.09" in warnings[0]
    assert "--learning_rate (now 1000" in warnings[0]


def test_predictions_collapsed_to_one_class_are_warned_about(tmp_path, caplog):
    flags = ["--text_only", "--max_steps", "4", "--save_strategy", "no", "--eval_strategy", "steps", "--eval_steps", "2",
             "--load_best_model_at_end", "false", "--do_predict", "false"]
    with caplog.at_level(logging.WARNING, logger="tcmp.training.health"):
        results = run_finetune.main(tiny_flags(tmp_path / "out", *flags), callbacks=[CollapseToOneClass()])
    assert results["eval_predicted_classes"] == 1
    warnings = [r.getMessage() for r in caplog.records if "same class" in r.getMessage()]
    assert len(warnings) == 1
    assert warnings[0].startswith("the model predicts the same class for every validation sample at step 2")


def test_a_healthy_run_is_not_warned_about(caplog):
    health, control = TrainingHealthCallback(), TrainerControl()
    args = TrainingArguments(output_dir="unused", report_to="none")
    state = TrainerState()
    with caplog.at_level(logging.WARNING, logger="tcmp.training.health"):
        for step, loss in enumerate([1.1, 1.3, 5.0, 0.4], start=1):
            state.global_step = step
            health.on_log(args, state, control, logs={"loss": loss}, model=torch.nn.Linear(2, 2))
        health.on_evaluate(args, state, control, metrics={"eval_predicted_classes": 2})
    assert not caplog.records
    with caplog.at_level(logging.WARNING, logger="tcmp.training.health"):
        TrainingHealthCallback().on_log(args, state, control, logs={"loss": 2e4})  # exploded before the first log
    assert "the training loss diverges: 2e+04 at step 4" in caplog.records[0].getMessage()
    with pytest.raises(TrainingDiverged, match="the training loss is nan"):
        health.on_log(args, state, control, logs={"loss": float("nan")})
