"""The Trainer of TCMP (two learning rates, disk checks around saves), its callbacks and the steps the scripts share."""

import contextlib
import hashlib
import json
import logging
import os

import torch
from transformers import EarlyStoppingCallback, Trainer, TrainerCallback
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR, SaveStrategy

from ..checkpoints import PARTIAL_CHECKPOINT_FILE, update_with_tensors
from ..errors import DiskSpaceError, PreflightError, TrainingInterrupted
from ..preflight import check_room_to_save, failed_save, resume_checkpoint, room_to_save, trainer_files
from .arguments import TCMPTrainingArguments
from .reports import model_card


logger = logging.getLogger(__name__)


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
        self.frozen_weights = FrozenWeightsCallback(self.model, self.args)
        self.add_callback(self.frozen_weights)
        if self.args.average_weights:
            self.add_callback(WeightAveragingCallback(self.model))

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

    def train(self, resume_from_checkpoint=None, *args, **kwargs):
        """
        `Trainer.train`, with the weights that do not train left out of intermediate checkpoints
        (`FrozenWeightsCallback`); a checkpoint save that fails because the disk filled up is a `DiskSpaceError`
        naming it; Ctrl-C is a `TrainingInterrupted` that says how to continue.
        """
        try:
            with self.frozen_weights.left_out_of_checkpoints(resume_from_checkpoint):
                return super().train(resume_from_checkpoint, *args, **kwargs)
        except KeyboardInterrupt:
            raise TrainingInterrupted(self.how_to_continue(), stopped=self.where_stopped()) from None
        except Exception as error:
            disk_error = self.disk_space.failed_save(self.args, error)
            if disk_error is None:
                raise
            raise disk_error from error

    def where_stopped(self) -> str:
        """The step training stopped at, in words."""
        return f"stopped at step {self.state.global_step} of {self.state.max_steps}"

    def how_to_continue(self) -> str:
        """Where an interrupted run stopped and how to continue it (its newest complete checkpoint)."""
        stopped = self.where_stopped()
        try:
            last = resume_checkpoint(self.args.output_dir, "last", trainer_files(self.args))
        except PreflightError:
            return f"{stopped}, before the first checkpoint; running the command again starts over"
        return f"{stopped}; continue from {last} with the same command and --resume_from_checkpoint last"

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


class FrozenWeightsCallback(TrainerCallback):
    """
    Intermediate checkpoints leave out the weights that do not train (frozen encoders, a frozen speech front end):
    during `train`, their names are in the model's `_keys_to_ignore_on_save`, so the Trainer neither saves them nor
    misses them when it resumes or loads the best checkpoint, and they keep the values the run started from, which
    are exactly those it trained with. Each such checkpoint holds `PARTIAL_CHECKPOINT_FILE` (the names left out and
    a SHA-256 of their values), and resuming from it checks that the model given starts from the same values. The
    final model is saved whole. Off under DeepSpeed and FSDP, which save in their own layout.
    """

    def __init__(self, model, args):
        self.model = model
        self.enabled = not (args.deepspeed or args.fsdp)
        self.names: set[str] = set()
        self.digest: str | None = None

    def _frozen(self) -> dict:
        return {name: p for name, p in self.model.named_parameters(remove_duplicate=False) if not p.requires_grad}

    @contextlib.contextmanager
    def left_out_of_checkpoints(self, resume_from_checkpoint: str | None):
        frozen = self._frozen() if self.enabled else {}
        if not frozen:
            yield
            return
        self.names, self.digest = set(frozen), update_with_tensors(hashlib.sha256(), frozen).hexdigest()
        if isinstance(resume_from_checkpoint, str):
            self.check_resumable(resume_from_checkpoint)
        kept = self.model._keys_to_ignore_on_save
        self.model._keys_to_ignore_on_save = set(kept or ()) | self.names
        try:
            yield
        finally:
            self.model._keys_to_ignore_on_save = kept

    def check_resumable(self, checkpoint: str) -> None:
        """The checkpoint left out exactly these frozen weights, with these values (the same starting model)."""
        path = os.path.join(checkpoint, PARTIAL_CHECKPOINT_FILE)
        if not os.path.isfile(path):
            return
        with open(path, encoding="utf-8") as handle:
            recorded = json.load(handle)
        if set(recorded["left_out"]) != self.names or recorded["sha256"] != self.digest:
            raise PreflightError(
                f"{checkpoint} was saved without its frozen weights, and the model of this run does not start from "
                "the same ones: resume with the flags of the interrupted run (--model_name_or_path / --text_encoder / "
                "--audio_encoder, --freeze_encoders, --freeze_feature_encoder)"
            )

    def on_save(self, args, state, control, **kwargs):
        if self.names and args.should_save:
            folder = os.path.join(args.output_dir, f"{PREFIX_CHECKPOINT_DIR}-{state.global_step}")
            with open(os.path.join(folder, PARTIAL_CHECKPOINT_FILE), "w", encoding="utf-8") as handle:
                json.dump({"left_out": sorted(self.names), "sha256": self.digest}, handle, indent=1)


class WeightAveragingCallback(TrainerCallback):
    """
    `--average_weights`: every evaluation, and the checkpoint saved with it, uses the mean of the trainable weights
    over all evaluations so far (the current one included) instead of the current weights; training continues from
    the current ones. Dev scores of one run swing from epoch to epoch on small dev sets (P-MELD's 552 samples); the
    running mean moves smoothly, so checkpoint selection picks less of the noise. A resumed run's mean starts again
    from the checkpoint it resumes (which holds a mean, and training continues from it).
    """

    def __init__(self, model):
        self.model = model
        self.count = 0
        self.mean: dict[str, torch.Tensor] = {}
        self.current: dict[str, torch.Tensor] | None = None

    def _trainable(self) -> dict[str, torch.nn.Parameter]:
        return {name: p for name, p in self.model.named_parameters() if p.requires_grad}

    @torch.no_grad()
    def _use_mean(self):
        if self.current is not None:
            return
        trainable = self._trainable()
        self.count += 1
        self.current = {name: p.detach().clone() for name, p in trainable.items()}
        for name, p in trainable.items():
            if name not in self.mean:
                self.mean[name] = p.detach().clone()
            else:
                self.mean[name].add_(p.detach() - self.mean[name], alpha=1.0 / self.count)
            p.copy_(self.mean[name])

    def on_train_begin(self, args, state, control, **kwargs):
        if state.global_step > 0:
            logger.warning("--average_weights: the weight mean starts again from the resumed checkpoint")

    @torch.no_grad()
    def on_step_begin(self, args, state, control, **kwargs):
        if self.current is not None:
            for name, p in self._trainable().items():
                p.copy_(self.current[name])
            self.current = None

    def on_step_end(self, args, state, control, **kwargs):
        if control.should_evaluate:
            self._use_mean()

    on_epoch_end = on_step_end  # an evaluation follows either (`eval_strategy` steps or epoch)


class SetEpochCallback(TrainerCallback):
    """Calls `dataset.set_epoch(epoch)` at the start of each epoch (pre-training windows shift their offset)."""

    def __init__(self, dataset):
        self.dataset = dataset

    def on_epoch_begin(self, args, state, control, **kwargs):
        self.dataset.set_epoch(int(state.epoch or 0))


def selection_callbacks(args: TCMPTrainingArguments) -> list[TrainerCallback]:
    """Early stopping, unless `--early_stopping_patience` is None or nothing is evaluated (`--eval_strategy no`)."""
    if args.early_stopping_patience is None or args.eval_strategy == "no":
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


def final_evaluations(args: TCMPTrainingArguments, splits: dict) -> list[tuple[str, str]]:
    """(split, metric prefix) of the final scoring a run asks for: validation with `--do_eval`, test with
    `--do_predict`; a split `splits` lacks (or holds empty) is left out with a warning."""
    wanted = (("validation", "eval", args.do_eval), ("test", "test", args.do_predict))
    present = []
    for split, prefix, asked in wanted:
        if asked and (split not in splits or len(splits[split]) == 0):
            logger.warning("the dataset has no %s split: it is not scored", split)
        elif asked:
            present.append((split, prefix))
    return present


def finish_run(
    trainer: TCMPTrainer, results: dict, dataset_name: str, title: str, about: str, sections: dict[str, str],
    start: str, extra: str = "",
) -> dict:
    """
    The scripts' last step: the model card (`reports.model_card` of the title, what the model is, its data sections,
    starting point, the run's settings and eval/test `results`) as the output folder's README.md, the push to the
    Hub with `--push_to_hub`; returns `results`.
    """
    trainer.model_card = model_card(title, about, sections, start, trainer.model, trainer.args, results, extra=extra)
    trainer.create_model_card()
    if trainer.args.push_to_hub:
        trainer.push_to_hub(dataset=dataset_name)
    return results
