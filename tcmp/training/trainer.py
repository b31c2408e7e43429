"""The Trainer of TCMP (two learning rates, disk checks around saves), its callbacks and the steps the scripts share."""

import os

import torch
from transformers import EarlyStoppingCallback, Trainer, TrainerCallback
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR, SaveStrategy

from ..errors import DiskSpaceError
from ..preflight import check_room_to_save, failed_save, room_to_save
from .arguments import TCMPTrainingArguments
from .reports import model_card


def parameter_groups(model: torch.nn.Module, decay_names: set[str], args: TCMPTrainingArguments) -> list[dict]:
    """AdamW groups: utterance encoders at `encoder_learning_rate`, new layers at `learning_rate`; no decay on biases/norms."""
    base = model.base_model
    encoder_ids = {
        id(p) for encoder in (base.text_model, base.audio_model) if encoder is not None for p in encoder.parameters()
    }
    groups = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        lr = args.encoder_learning_rate if id(param) in encoder_ids else args.learning_rate
        decay = args.weight_decay if name in decay_names else 0.0
        groups.setdefault((lr, decay), []).append(param)
    return [{"params": params, "lr": lr, "weight_decay": decay} for (lr, decay), params in groups.items()]


class TCMPTrainer(Trainer):
    """
    A `Trainer` with the two learning rates of TCMP, a disk check around every checkpoint save (`DiskSpaceCallback`)
    and the script's model card.
    """

    ignore_keys_at_inference = ["forthcoming_embeds"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.model_card: str | None = None
        self.disk_space = DiskSpaceCallback()
        self.add_callback(self.disk_space)

    @classmethod
    def for_splits(cls, model, args, processor, collator, splits: dict, compute_metrics, callbacks=(), train_split="train"):
        """The Trainer of a script: train on `splits[train_split]` (with `--do_train`), select on
        `splits["validation"]`, with early stopping unless `--early_stopping_patience` is None."""
        return cls(
            model=model,
            args=args,
            data_collator=collator,
            train_dataset=splits[train_split] if args.do_train else None,
            eval_dataset=splits.get("validation"),
            processing_class=processor,
            compute_metrics=compute_metrics,
            callbacks=[*selection_callbacks(args), *callbacks],
        )

    def train(self, *args, **kwargs):
        """`Trainer.train`; a checkpoint save that fails because the disk filled up is a `DiskSpaceError` naming it."""
        try:
            return super().train(*args, **kwargs)
        except Exception as error:
            disk_error = self.disk_space.failed_save(self.args, error)
            if disk_error is None:
                raise
            raise disk_error from error

    def create_optimizer(self, model=None):
        if self.optimizer is None:
            opt_model = self.model if model is None else model
            decay_names = set(self.get_decay_parameter_names(opt_model))
            optimizer_cls, optimizer_kwargs = self.get_optimizer_cls_and_kwargs(self.args, opt_model)
            self.optimizer = optimizer_cls(parameter_groups(opt_model, decay_names, self.args), **optimizer_kwargs)
        return self.optimizer

    def create_model_card(self, **kwargs):
        """Write the script's card (dataset, rule, settings, results) when it has one; the generic draft otherwise."""
        if self.model_card is None:
            return super().create_model_card(**kwargs)
        if self.is_world_process_zero():
            with open(os.path.join(self.args.output_dir, "README.md"), "w", encoding="utf-8") as handle:
                handle.write(self.model_card)

    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):
        ignore_keys = self.ignore_keys_at_inference if ignore_keys is None else ignore_keys
        return super().prediction_step(model, inputs, prediction_loss_only, ignore_keys=ignore_keys)


class TCMPPreTrainer(TCMPTrainer):
    """
    Evaluation keeps, per window and utterance slot, the prediction e_t and the true S_t of every stream, with the
    window's dialogue id as the "label" (-100 where nothing is predicted). These have a fixed width per window, so they
    gather across processes; the batch-dependent `prediction_scores` are never gathered.
    """

    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):
        inputs = self._prepare_inputs(inputs)
        with torch.no_grad(), self.compute_loss_context_manager():
            outputs = model(**inputs)
        loss = None if outputs.loss is None else outputs.loss.detach()
        if prediction_loss_only:
            return loss, None, None
        slots = outputs.prediction_mask
        grid_shape = (*slots.shape, *outputs.predicted_embeds.shape[1:])
        predicted = outputs.predicted_embeds.new_zeros(grid_shape)
        predicted[slots] = outputs.predicted_embeds
        target = outputs.target_embeds.new_zeros(grid_shape)
        target[slots] = outputs.target_embeds
        groups = torch.full(slots.shape, -100, dtype=torch.long, device=slots.device)
        groups[slots] = outputs.prediction_dialogue_ids
        return loss, (predicted, target), groups


class DiskSpaceCallback(TrainerCallback):
    """
    Before each checkpoint the Trainer is about to save (`control.should_save`; under `save_strategy="best"` after
    every evaluation), refuses to go on with less than `--min_free_disk_gb` free (`tcmp.preflight.check_room_to_save`);
    remembers the checkpoint folder until the save ends, so that a save that fails can be named.
    """

    def __init__(self):
        self.saving: tuple[str, int] | None = None

    def _before_save(self, args, state, control, **kwargs):
        if control.should_save or (kwargs.get("metrics") is not None and args.save_strategy == SaveStrategy.BEST):
            folder = os.path.join(args.output_dir, f"{PREFIX_CHECKPOINT_DIR}-{state.global_step}")
            check_room_to_save(args, folder, state.global_step)
            self.saving = (folder, state.global_step)

    on_step_end = on_epoch_end = on_evaluate = _before_save

    def on_save(self, args, state, control, **kwargs):
        self.saving = None

    def failed_save(self, args, error: Exception) -> DiskSpaceError | None:
        """The `DiskSpaceError` for `error` when it ended a checkpoint save on a full disk; else None."""
        return None if self.saving is None else failed_save(args, *self.saving, error)


class SetEpochCallback(TrainerCallback):
    """Calls `dataset.set_epoch(epoch)` at the start of each epoch (pre-training windows shift their offset)."""

    def __init__(self, dataset):
        self.dataset = dataset

    def on_epoch_begin(self, args, state, control, **kwargs):
        self.dataset.set_epoch(int(state.epoch or 0))


def selection_callbacks(args: TCMPTrainingArguments) -> list[TrainerCallback]:
    if args.early_stopping_patience is None:
        return []
    return [EarlyStoppingCallback(early_stopping_patience=args.early_stopping_patience)]


def train_and_save(trainer: Trainer) -> dict:
    """
    Train (resuming from `args.resume_from_checkpoint`, a folder that `tcmp.preflight.preflight` checked), then save
    the selected model, its processor, the metrics and the state.
    """
    result = trainer.train(resume_from_checkpoint=trainer.args.resume_from_checkpoint)
    with room_to_save(trainer.args, trainer.args.output_dir, trainer.state.global_step):
        trainer.save_model()
    trainer.log_metrics("train", result.metrics)
    trainer.save_metrics("train", result.metrics)
    trainer.save_state()
    return result.metrics


def evaluate_split(trainer: Trainer, dataset, prefix: str, extra_metrics=None):
    """
    Score one split with the current (selected) model; `extra_metrics(output)` may add figures (e.g. a baseline).
    The metrics are logged and saved as `{prefix}_results.json` (and into `all_results.json`).
    """
    output = trainer.predict(dataset, metric_key_prefix=prefix)
    if extra_metrics is not None:
        output.metrics.update(extra_metrics(output))
    trainer.log_metrics(prefix, output.metrics)
    trainer.save_metrics(prefix, output.metrics)
    return output


def final_evaluations(args: TCMPTrainingArguments) -> list[tuple[str, str]]:
    """(split, metric prefix) of the final scoring a run asks for: validation with `--do_eval`, test with `--do_predict`."""
    wanted = (("validation", "eval", args.do_eval), ("test", "test", args.do_predict))
    return [(split, prefix) for split, prefix, asked in wanted if asked]


def finish_run(
    trainer: TCMPTrainer, results: dict, dataset_name: str, title: str, dataset: str, rule: str, extra: str = ""
) -> dict:
    """
    The scripts' last step: the model card (`reports.model_card` of the title, dataset, rule, the run's settings and
    eval/test `results`) as the output folder's README.md, the push to the Hub with `--push_to_hub`; returns `results`.
    """
    trainer.model_card = model_card(title, dataset, rule, trainer.model, trainer.args, results, extra=extra)
    trainer.create_model_card()
    if trainer.args.push_to_hub:
        trainer.push_to_hub(dataset=dataset_name)
    return results
