"""
The health of a training run, watched as it goes (`TrainingHealthCallback`, in both training scripts): a loss or
weights that turn NaN/infinite stop the run; a loss that diverges and predictions that collapse to one class on
the validation split are warned about. Each message says what was seen and what to try.
"""

import logging
import math

import torch
from transformers import TrainerCallback

from ..errors import TrainingDiverged


logger = logging.getLogger(__name__)

DIVERGENCE_FACTOR = 10.0
"""A logged training loss this many times the first logged one is a diverging run."""
LOSS_CEILING = 1e3
"""A logged training loss above this is a diverging run whatever the first one was: TCMP's losses are
cross-entropies over classes or candidate utterances, which start near log(count) (below 10) and fall."""


def what_to_try(args) -> str:
    return (
        f"try a lower --learning_rate (now {args.learning_rate:g}; e.g. a tenth), a warmup (--warmup_ratio 0.1) or "
        f"gradient clipping (--max_grad_norm 1.0, now {args.max_grad_norm:g})"
    )


def first_non_finite(model: torch.nn.Module) -> str | None:
    """The name of the first trainable weight holding NaN or infinity, or None."""
    for name, parameter in model.named_parameters():
        if parameter.requires_grad and not torch.isfinite(parameter.detach()).all():
            return name
    return None


class TrainingHealthCallback(TrainerCallback):
    """
    At every log: a non-finite training loss, or trainable weights holding NaN/infinity (the Trainer's
    `logging_nan_inf_filter` hides NaN losses from the log), stop the run with `TrainingDiverged`; a loss above
    `DIVERGENCE_FACTOR` times the first logged one, or above `LOSS_CEILING`, is warned about once. At every
    evaluation with per-class
    predictions (`predicted_classes` of `PreRecognitionMetrics`): a model that predicts a single class for the whole
    split is warned about once.
    """

    def __init__(self):
        self.first_loss: tuple[int, float] | None = None
        self.warned: set[str] = set()

    def on_log(self, args, state, control, logs=None, model=None, **kwargs):
        loss = (logs or {}).get("loss")
        where = f"at step {state.global_step} (epoch {state.epoch or 0:.2f})"
        broken = None if model is None else first_non_finite(model)
        if (loss is not None and not math.isfinite(loss)) or broken:
            seen = f"the weights of {broken} hold NaN or infinite values" if broken else f"the training loss is {loss}"
            raise TrainingDiverged(f"training stopped {where}: {seen}; {what_to_try(args)}")
        if loss is None:
            return
        if self.first_loss is None:
            self.first_loss = (state.global_step, loss)
        step, first = self.first_loss
        if "diverging" not in self.warned and (loss > LOSS_CEILING or 0 < first * DIVERGENCE_FACTOR < loss):
            self.warned.add("diverging")
            logger.warning(
                "the training loss diverges: %.4g %s (first logged: %.4g at step %d); %s", loss, where, first, step,
                what_to_try(args),
            )

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        classes = (metrics or {}).get("eval_predicted_classes")
        if classes == 1 and "one class" not in self.warned:
            self.warned.add("one class")
            logger.warning(
                "the model predicts the same class for every validation sample at step %d (epoch %.2f): it has "
                "collapsed to one label; %s; or train longer (--num_train_epochs), and check that the training "
                "labels vary (the loss is already weighted by class)",
                state.global_step, state.epoch or 0, what_to_try(args),
            )


__all__ = ["DIVERGENCE_FACTOR", "LOSS_CEILING", "TrainingHealthCallback", "first_non_finite", "what_to_try"]
