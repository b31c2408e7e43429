"""Shared pieces of the TCMP training scripts: arguments, model set-up, the Trainer, metrics and the output files."""

import contextlib
import json
import os
import sys
from dataclasses import dataclass, field

import numpy as np
import torch
import yaml
from datasets import DatasetDict
from transformers import (
    AutoConfig,
    AutoProcessor,
    AutoTokenizer,
    EarlyStoppingCallback,
    HfArgumentParser,
    Trainer,
    TrainerCallback,
    TrainingArguments,
)
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR, SchedulerType

from .collator import TCMPDataCollator
from .configuration_tcmp import MODALITIES, STREAMS, TEXT_POOLINGS
from .metrics import (
    format_per_class_table,
    load_metric,
    plot_confusion_matrix,
    sample_retrieval_candidates,
)
from .modeling_tcmp import CheckpointError, require_folder_or_hub_id
from .preflight import ArgumentsError, room_to_save
from .presets import make_processor, tiny_config, word_tokenizer


# ---------------------------------------------------------------------------------------------------------- arguments


@dataclass
class ModelArguments:
    """Where the model starts from (a TCMP checkpoint, two encoder folders, or a tiny random config) and its options."""

    model_name_or_path: str | None = field(
        default=None, metadata={"help": "A TCMP checkpoint folder (pre-trained or fine-tuned) to start from."}
    )
    text_encoder: str | None = field(
        default=None, metadata={"help": "Local folder of a Transformers text encoder and its tokenizer (e.g. MiniLM)."}
    )
    audio_encoder: str | None = field(
        default=None, metadata={"help": "Local folder of a Transformers speech encoder (HuBERT, wav2vec 2.0, WavLM)."}
    )
    text_only: bool = field(
        default=False, metadata={"help": "Tiny random model without an audio encoder (used when no folder is given)."}
    )
    hidden_size: int | None = field(
        default=None, metadata={"help": "Size d of a new model (default: 32 for tiny, else the text encoder's width)."}
    )
    dropout: float | None = field(default=None, metadata={"help": "Dropout of a new model (config default: 0.1)."})
    modality: str = field(default="all", metadata={"help": "Streams used.", "choices": list(MODALITIES)})
    no_context: bool = field(default=False, metadata={"help": "Ablation: the predictor uses its query alone."})
    text_pooling: str | None = field(
        default=None,
        metadata={
            "help": "Text utterance pooling of a new model: max_mean (the paper's, the config default) or "
            "normalized_mean (what sentence encoders such as MiniLM are trained with).",
            "choices": list(TEXT_POOLINGS),
        },
    )
    freeze_encoders: bool = field(default=False, metadata={"help": "Keep both utterance encoders fixed."})
    freeze_feature_encoder: bool = field(
        default=False,
        metadata={"help": "Keep the speech encoder's convolutional front end fixed (faster; the paper trains it)."},
    )
    num_negatives: int | None = field(
        default=None, metadata={"help": "Pre-training negatives per prediction (default: every in-batch negative)."}
    )
    encoder_chunk_size: str | None = field(
        default=None,
        metadata={
            "help": "Utterances per encoder pass, sorted by length: a number, 0 for one pass, or 'auto' (the config "
            "default: audio in chunks of 2 on CPU, everything else in one pass)."
        },
    )
    max_text_length: int = field(default=60, metadata={"help": "Tokens kept per utterance (new processors)."})
    max_audio_length: int = field(default=80000, metadata={"help": "Samples kept per utterance (new processors)."})
    use_feature_cache: bool = field(
        default=False, metadata={"help": "Encode every utterance once with the frozen encoders and train on the cache."}
    )
    feature_cache_dir: str | None = field(default=None, metadata={"help": "Where the feature cache is kept."})

    def __post_init__(self):
        if self.encoder_chunk_size is not None and not (
            self.encoder_chunk_size == "auto" or self.encoder_chunk_size.isdigit()
        ):
            raise ArgumentsError(f"--encoder_chunk_size must be 'auto' or a whole number, got {self.encoder_chunk_size!r}")
        if self.use_feature_cache and not self.freeze_encoders:
            raise ArgumentsError("--use_feature_cache needs --freeze_encoders: cached features are only valid for fixed encoders")
        if self.model_name_or_path and (self.text_encoder or self.audio_encoder):
            raise ArgumentsError("give either --model_name_or_path (a TCMP checkpoint) or encoder folders, not both")
        for flag in ("model_name_or_path", "text_encoder", "audio_encoder"):
            try:
                if getattr(self, flag):
                    require_folder_or_hub_id(getattr(self, flag))
            except FileNotFoundError as error:
                raise ArgumentsError(f"--{flag} {error}") from None

    def config_overrides(self) -> dict:
        """Config values this run sets on the model, whichever way it is built."""
        overrides = {
            "modality": self.modality,
            "no_context": self.no_context,
            "freeze_encoders": self.freeze_encoders,
            "freeze_feature_encoder": self.freeze_feature_encoder,
        }
        for name in ("dropout", "num_negatives", "text_pooling"):
            if getattr(self, name) is not None:
                overrides[name] = getattr(self, name)
        if self.encoder_chunk_size == "auto":
            overrides["encoder_chunk_size"] = "auto"
        elif self.encoder_chunk_size is not None:
            overrides["encoder_chunk_size"] = int(self.encoder_chunk_size) or None
        return overrides


@dataclass
class DataArguments:
    """Which corpus to load (by name or path) and how much of it."""

    dataset: str = field(
        default="demo",
        metadata={"help": "'demo', a MELD CSV folder, an IEMOCAP root, a UMD manifest or the original release."},
    )
    dataset_options: str | None = field(
        default=None, metadata={"help": 'Extra loader options as JSON, e.g. \'{"media_dir": "clips"}\'.'}
    )
    allow_pickle: bool = field(
        default=False, metadata={"help": "Allow reading the original release's joblib (pickle) files: trusted files only."}
    )
    max_train_samples: int | None = field(default=None, metadata={"help": "Keep the first N training rows."})
    max_eval_samples: int | None = field(default=None, metadata={"help": "Keep the first N validation rows."})
    max_test_samples: int | None = field(default=None, metadata={"help": "Keep the first N test rows."})

    def loader_options(self) -> dict:
        options = json.loads(self.dataset_options) if self.dataset_options else {}
        if not isinstance(options, dict):
            raise ArgumentsError(f"--dataset_options must be a JSON object, got {self.dataset_options!r}")
        if self.allow_pickle:
            options["allow_pickle"] = True
        return options

    def truncate(self, splits: dict) -> dict:
        """The splits with the --max_*_samples limits applied (`datasets.Dataset.select`)."""
        limits = {"train": self.max_train_samples, "validation": self.max_eval_samples, "test": self.max_test_samples}
        return {
            name: split.select(range(min(limits[name], len(split)))) if limits.get(name) is not None else split
            for name, split in splits.items()
        }


@dataclass
class PretrainingDataArguments(DataArguments):
    window: int = field(default=11, metadata={"help": "Utterances per pre-training window."})
    stride: int = field(default=5, metadata={"help": "Start offset between windows (shifted each epoch)."})
    retrieval_seed: int = field(default=0, metadata={"help": "Seed fixing the retrieval candidate sets of dev/test."})


@dataclass
class FinetuningDataArguments(DataArguments):
    per_dialogue_training: str | None = field(
        default=None,
        metadata={
            "help": "Train on dialogues instead of samples, each utterance encoded once per row and every target of "
            "the row scored in one pass (tcmp.data.prerecognition_dialogues): 'exact' (each target sees exactly its "
            "sample's context) or 'history' (the whole dialogue before it). Evaluation stays per sample.",
            "choices": ["exact", "history"],
        },
    )


PLATEAU_DECAY = {"factor": 0.75, "patience": 0, "threshold": 0.0}
"""The paper's rule: the learning rate times 0.75 after an evaluation without improvement."""


@dataclass
class TCMPTrainingArguments(TrainingArguments):
    """`TrainingArguments` with the paper's defaults and a separate learning rate for the two utterance encoders."""

    encoder_learning_rate: float = field(default=2e-6, metadata={"help": "Learning rate of the two utterance encoders."})
    early_stopping_patience: int | None = field(
        default=10, metadata={"help": "Evaluations without improvement before stopping (None: never stop early)."}
    )
    max_grad_norm: float = field(default=5.0, metadata={"help": "Gradient clipping."})
    lr_scheduler_type: SchedulerType | str = field(
        default="reduce_lr_on_plateau", metadata={"help": "Default: × 0.75 after each epoch without improvement."}
    )
    lr_scheduler_kwargs: dict | str | None = field(
        default_factory=lambda: dict(PLATEAU_DECAY), metadata={"help": "Options of the LR scheduler, as JSON."}
    )
    eval_strategy: str = field(default="epoch", metadata={"help": "When to evaluate on the validation split."})
    save_strategy: str = field(default="epoch", metadata={"help": "When to save a checkpoint."})
    save_total_limit: int | None = field(default=2, metadata={"help": "Checkpoints kept (the best one always is)."})
    load_best_model_at_end: bool = field(default=True, metadata={"help": "End with the best dev checkpoint."})
    greater_is_better: bool | None = field(default=True, metadata={"help": "Whether the selection metric grows."})
    report_to: None | str | list[str] = field(default="tensorboard", metadata={"help": "Logging integrations."})
    remove_unused_columns: bool = field(
        default=False, metadata={"help": "Must stay False: the collator reads the text and audio columns."}
    )
    ddp_find_unused_parameters: bool | None = field(
        default=True, metadata={"help": "Ablated streams and short contexts leave parameters unused in some steps."}
    )
    restore_callback_states_from_checkpoint: bool = field(
        default=True, metadata={"help": "Resume the early-stopping counter too."}
    )
    min_free_disk_gb: float = field(
        default=1.0,
        metadata={"help": "Free space (GB) the output folder's disk must have at start; the run stops at once otherwise."},
    )
    resume_from_checkpoint: str | None = field(
        default=None,
        metadata={"help": "A checkpoint folder to continue from, or 'last': the newest complete one in --output_dir."},
    )
    do_train: bool = field(default=True, metadata={"help": "Train on the training split."})
    do_eval: bool = field(default=True, metadata={"help": "Evaluate the final model on the validation split."})
    do_predict: bool = field(default=True, metadata={"help": "Evaluate the final model once on the test split."})

    def __post_init__(self):
        if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch.cuda.is_available():
            self.use_cpu = True  # `accelerate launch --multi_gpu` on a machine without GPUs: DDP over gloo on CPUs
        if self.remove_unused_columns:
            raise ArgumentsError("--remove_unused_columns must be False: TCMPDataCollator needs the raw text/audio columns")
        for flag in ("per_device_train_batch_size", "per_device_eval_batch_size", "gradient_accumulation_steps"):
            if getattr(self, flag) < 1:
                raise ArgumentsError(f"--{flag} must be at least 1, got {getattr(self, flag)}")
        if self.do_train and self.max_steps <= 0 and self.num_train_epochs <= 0:
            raise ArgumentsError(
                f"--num_train_epochs must be above 0 (or give --max_steps), got {self.num_train_epochs}: nothing would train"
            )
        super().__post_init__()
        if self.lr_scheduler_type == SchedulerType.REDUCE_ON_PLATEAU:
            self.lr_scheduler_kwargs = {"mode": "max" if self.greater_is_better else "min", **self.lr_scheduler_kwargs}


@dataclass
class PretrainingArguments(TCMPTrainingArguments):
    learning_rate: float = field(default=2e-4, metadata={"help": "Learning rate of the new layers."})
    num_train_epochs: float = field(default=30.0, metadata={"help": "Training epochs (paper: up to 30)."})
    metric_for_best_model: str | None = field(
        default="text_r1@11", metadata={"help": "Dev metric that selects the checkpoint (paper: text R1@11)."}
    )


@dataclass
class FinetuningArguments(TCMPTrainingArguments):
    learning_rate: float = field(default=2e-5, metadata={"help": "Learning rate of the new layers."})
    num_train_epochs: float = field(default=50.0, metadata={"help": "Training epochs (paper: up to 50)."})
    metric_for_best_model: str | None = field(
        default="wa", metadata={"help": "Dev metric that selects the checkpoint (paper: WA)."}
    )


def check_selection_metric(args: TrainingArguments, streams) -> None:
    """A retrieval selection metric must name a stream the model has (an audio-only model has no text R1@11)."""
    stream = args.metric_for_best_model.removeprefix("eval_").split("_")[0]
    if stream in STREAMS and stream not in streams:
        raise ArgumentsError(
            f"--metric_for_best_model {args.metric_for_best_model} needs the {stream} stream, but the model has "
            f"{list(streams)}: choose e.g. {streams[0]}_r1@11"
        )


def parse_arguments(dataclass_types, argv=None) -> tuple:
    """
    Command-line flags, or one `.json`/`.yaml` file holding them all. A value the argument classes refuse (ours or
    `TrainingArguments`') is an `ArgumentsError` with their message.
    """
    parser = HfArgumentParser(dataclass_types)
    argv = sys.argv[1:] if argv is None else [str(a) for a in argv]
    arguments_file = argv[0] if len(argv) == 1 and argv[0].endswith((".json", ".yaml", ".yml")) else None
    if arguments_file and not os.path.isfile(arguments_file):
        raise ArgumentsError(f"no such arguments file: {arguments_file}")
    try:
        if arguments_file is None:
            return parser.parse_args_into_dataclasses(args=argv)
        if arguments_file.endswith(".json"):
            return parser.parse_json_file(os.path.abspath(arguments_file))
        return parser.parse_yaml_file(os.path.abspath(arguments_file))
    except ArgumentsError:
        raise
    except (ValueError, yaml.YAMLError) as error:
        raise ArgumentsError(f"{arguments_file}: {error}" if arguments_file else str(error)) from None


# -------------------------------------------------------------------------------------------------- model and data


@contextlib.contextmanager
def loading(what: str):
    """
    Turn a failure to load `what` (a flag and its value) into an `ArgumentsError` naming it; settings the model
    config refuses (`TCMPConfig`'s checks) likewise. A damaged checkpoint stays a `CheckpointError`.
    """
    try:
        yield
    except CheckpointError:
        raise
    except OSError as error:
        raise ArgumentsError(f"{what} could not be loaded: {error}") from None
    except ValueError as error:
        raise ArgumentsError(f"{what}: {error}") from None


def build_model_and_processor(model_args: ModelArguments, model_class, train_texts, **config_kwargs):
    """
    The model and its processor: from a TCMP checkpoint folder, around two local encoder folders, or a tiny random
    config with a word tokenizer built from `train_texts` (an iterable of str). `config_kwargs` (labels, ...) and the
    model arguments' overrides are set on the config.
    """
    overrides = {**model_args.config_overrides(), **config_kwargs}
    if model_args.model_name_or_path:
        with loading(f"--model_name_or_path {model_args.model_name_or_path}"):
            processor = AutoProcessor.from_pretrained(model_args.model_name_or_path)
            model = model_class.from_pretrained(model_args.model_name_or_path, **overrides)
        return model, processor
    if model_args.hidden_size is not None:
        overrides["hidden_size"] = model_args.hidden_size
    if model_args.text_encoder or model_args.audio_encoder:
        encoders = (("text_encoder", model_args.text_encoder), ("audio_encoder", model_args.audio_encoder))
        with loading(" / ".join(f"--{flag} {folder}" for flag, folder in encoders if folder)):
            if model_args.text_encoder:
                tokenizer = AutoTokenizer.from_pretrained(model_args.text_encoder)
                overrides.setdefault("hidden_size", AutoConfig.from_pretrained(model_args.text_encoder).hidden_size)
            else:
                tokenizer = word_tokenizer(train_texts)
            model = model_class.from_text_audio_pretrained(model_args.text_encoder, model_args.audio_encoder, **overrides)
    else:
        tokenizer = word_tokenizer(train_texts)
        with loading("a tiny random model"):
            model = model_class(tiny_config(len(tokenizer), audio=not model_args.text_only, **overrides))
    processor = make_processor(tokenizer, model_args.max_text_length, model_args.max_audio_length)
    return model, processor


def training_texts(split) -> list[str]:
    """Every utterance transcript of a dataset split whose rows hold a `text` list (for a word tokenizer)."""
    return [text for texts in split["text"] for text in texts]


def data_collator(model_args: ModelArguments, splits: dict, model, processor):
    """
    The splits and the collator that batches their rows: raw rows, or with `--use_feature_cache` the rows' indices
    into features of the frozen encoders, computed once (`tcmp.feature_cache`).
    """
    if not model_args.use_feature_cache:
        return splits, TCMPDataCollator.for_model(processor, model.config)
    from .feature_cache import cached_feature_dataset

    cached, collator = cached_feature_dataset(DatasetDict(splits), model, processor, cache_dir=model_args.feature_cache_dir)
    return dict(cached), collator


class CachedFeatureWindows(torch.utils.data.Dataset):
    """
    `PretrainingWindows` over feature-cached dialogues: each window's `feature_index` (one entry per utterance of the
    whole dialogue in the cache) is cut to the window's utterances, like the text and audio columns.
    """

    def __init__(self, windows):
        self.windows = windows

    def set_epoch(self, epoch: int):
        self.windows.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.windows)

    def __getitem__(self, i: int) -> dict:
        item = self.windows[i]
        if len(item["feature_index"]) != len(item["text"]):
            start = item["window_start"]
            item["feature_index"] = item["feature_index"][start : start + len(item["text"])]
        return item


# ------------------------------------------------------------------------------------------------ trainer, callbacks


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
    A `Trainer` with the two learning rates of TCMP, a disk check around every checkpoint save and the script's model
    card.
    """

    ignore_keys_at_inference = ["forthcoming_embeds"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.model_card: str | None = None

    def create_optimizer(self, model=None):
        if self.optimizer is None:
            opt_model = self.model if model is None else model
            decay_names = set(self.get_decay_parameter_names(opt_model))
            optimizer_cls, optimizer_kwargs = self.get_optimizer_cls_and_kwargs(self.args, opt_model)
            self.optimizer = optimizer_cls(parameter_groups(opt_model, decay_names, self.args), **optimizer_kwargs)
        return self.optimizer

    def _save_checkpoint(self, model, trial):
        folder = os.path.join(self._get_output_dir(trial), f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}")
        with room_to_save(self.args, folder, self.state.global_step):
            super()._save_checkpoint(model, trial)

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
        mask = inputs["utterance_mask"].bool()
        predicted_utterances = torch.zeros(int(mask.sum()), dtype=torch.bool, device=mask.device)
        predicted_utterances[outputs.prediction_labels] = True
        slots = torch.zeros_like(mask)
        slots[mask] = predicted_utterances
        grid_shape = (*mask.shape, *outputs.predicted_embeds.shape[1:])
        predicted = outputs.predicted_embeds.new_zeros(grid_shape)
        predicted[slots] = outputs.predicted_embeds
        target = outputs.target_embeds.new_zeros(grid_shape)
        target[slots] = outputs.target_embeds
        groups = torch.full(mask.shape, -100, dtype=torch.long, device=mask.device)
        groups[slots] = outputs.prediction_dialogue_ids
        return loss, (predicted, target), groups


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


# ------------------------------------------------------------------------------------------------------------- metrics


class PreRecognitionMetrics:
    """`compute_metrics` for fine-tuning: WA, AA, macro-F1 and per-class recall/F1 (named by label)."""

    def __init__(self, label_names: list[str]):
        self.label_names = list(label_names)
        self.metric = load_metric("pre_recognition")

    def compute(self, predictions: np.ndarray, references: np.ndarray) -> dict:
        """The metric module's full result (with per-class lists and the confusion matrix)."""
        return self.metric.compute(
            predictions=predictions, references=references, num_labels=len(self.label_names)
        )

    def __call__(self, eval_pred) -> dict:
        logits = eval_pred.predictions[0] if isinstance(eval_pred.predictions, tuple) else eval_pred.predictions
        result = self.compute(np.argmax(logits, axis=-1), eval_pred.label_ids)
        scores = {name: float(result[name]) for name in ("wa", "aa", "f1")}
        for i, label in enumerate(self.label_names):
            scores[f"recall_{label}"] = float(result["per_class_recall"][i])
            scores[f"f1_{label}"] = float(result["per_class_f1"][i])
        return scores


class RetrievalMetrics:
    """`compute_metrics` for pre-training: R1@5, R2@5, R1@11, R2@11 per stream over seeded candidate sets."""

    def __init__(self, streams, num_negatives: int = 10, seed: int = 0):
        self.streams = list(streams)
        self.num_negatives = num_negatives
        self.seed = seed
        self.metric = load_metric("forthcoming_retrieval")

    def __call__(self, eval_pred) -> dict:
        predicted, target = eval_pred.predictions
        groups = eval_pred.label_ids
        keep = groups != -100
        scores = {}
        for stream in self.streams:
            slot = STREAMS.index(stream)
            true_scores, negative_scores = sample_retrieval_candidates(
                predicted[keep][:, slot], target[keep][:, slot], groups[keep], self.num_negatives, self.seed
            )
            result = self.metric.compute(true_scores=true_scores, negative_scores=negative_scores)
            scores.update({f"{stream}_{name}": float(value) for name, value in result.items()})
        return scores


def majority_baseline(train_labels, metrics: PreRecognitionMetrics, prefix: str):
    """`extra_metrics` for `evaluate_split`: WA/AA/F1 of always predicting the most frequent training label."""
    majority = int(np.bincount(np.asarray(train_labels), minlength=len(metrics.label_names)).argmax())

    def scores(output) -> dict:
        result = metrics.compute(np.full_like(output.label_ids, majority), output.label_ids)
        return {f"{prefix}_majority_{name}": float(result[name]) for name in ("wa", "aa", "f1")}

    return scores


# ------------------------------------------------------------------------------------------------------------- outputs


def write_prerecognition_report(
    output_dir: str, split: str, prediction_output, metrics: PreRecognitionMetrics
) -> str:
    """Per-class table (returned, and written to `{split}_per_class.txt`) and `{split}_confusion_matrix.png`."""
    logits = prediction_output.predictions
    logits = logits[0] if isinstance(logits, tuple) else logits
    result = metrics.compute(np.argmax(logits, axis=-1), prediction_output.label_ids)
    table = format_per_class_table(result, metrics.label_names)
    with open(os.path.join(output_dir, f"{split}_per_class.txt"), "w", encoding="utf-8") as handle:
        handle.write(table + "\n")
    plot_confusion_matrix(
        result["confusion_matrix"],
        metrics.label_names,
        os.path.join(output_dir, f"{split}_confusion_matrix.png"),
        title=f"{split}: WA {result['wa']:.3f}  AA {result['aa']:.3f}  F1 {result['f1']:.3f}",
    )
    return table


def reconstruction_rule(splits) -> str:
    """The sample reconstruction rule a dataset build recorded in its info, in words."""
    from .data.common import kind_of
    from .data.rule import ReconstructionRule

    rule = kind_of(splits).get("rule")
    return ReconstructionRule.from_value(rule).describe() if rule else "not recorded by the dataset build"


def model_card(title: str, dataset: str, rule: str, model, args: TCMPTrainingArguments, results: dict, extra: str = "") -> str:
    """A model card (`README.md`) with the dataset and its reconstruction rule, the settings and the results."""
    config = model.config
    results = {name: value for name, value in results.items() if not name.endswith(("_runtime", "_per_second"))}
    encoders = ", ".join(
        f"{kind}: {sub.model_type} ({sub.num_hidden_layers} layers, width {sub.hidden_size})"
        for kind, sub in (("text", config.text_config), ("audio", config.audio_config))
        if sub is not None
    )
    settings = {
        "encoders": encoders,
        "hidden size d": config.hidden_size,
        "modality": config.modality,
        "no_context": config.no_context,
        "freeze_encoders": config.freeze_encoders,
        "freeze_feature_encoder": config.freeze_feature_encoder,
        "learning rate (new layers / encoders)": f"{args.learning_rate:g} / {args.encoder_learning_rate:g}",
        "optimizer": f"{getattr(args.optim, 'value', args.optim)}, weight decay {args.weight_decay:g}, clipping {args.max_grad_norm:g}",
        "LR schedule": f"{getattr(args.lr_scheduler_type, 'value', args.lr_scheduler_type)} {args.lr_scheduler_kwargs or ''}",
        "batch size per device × accumulation": f"{args.per_device_train_batch_size} × {args.gradient_accumulation_steps}",
        "epochs (max) / early-stopping patience": f"{args.num_train_epochs:g} / {args.early_stopping_patience}",
        "model selection": f"dev {args.metric_for_best_model}",
        "seed": args.seed,
    }
    lines = [
        "---",
        "library_name: transformers",
        "tags: [tcmp, emotion-pre-recognition, multimodal]",
        "---",
        "",
        f"# {title}",
        "",
        "TCMP (Ju et al., CIKM 2023) emotion pre-recognition: the emotion of the next utterance of a conversation, "
        "predicted from the earlier ones only. Load it with `import tcmp` and the Auto classes, or with "
        "`trust_remote_code=True`.",
        "",
        "## Dataset",
        "",
        dataset,
        "",
        "## Reconstruction rule",
        "",
        rule,
        "",
        "## Settings",
        "",
        "| setting | value |",
        "|---|---|",
        *[f"| {name} | {value} |" for name, value in settings.items()],
        "",
        "## Results",
        "",
        "| metric | value |",
        "|---|---|",
        *[f"| {name} | {value:.4f} |" if isinstance(value, float) else f"| {name} | {value} |" for name, value in results.items()],
        "",
    ]
    if extra:
        lines += [extra, ""]
    return "\n".join(lines)
