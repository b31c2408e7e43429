"""Model and data set-up of a run: the model and processor from the flags, the splits and their collator."""

import contextlib
import logging
import os

from datasets import DatasetDict
from transformers import AutoConfig, AutoProcessor, AutoTokenizer

from ..checkpoints import PARTIAL_CHECKPOINT_FILE
from ..collator import TCMPDataCollator
from ..errors import ArgumentsError, CheckpointError, DataError
from ..presets import make_processor, tiny_config, word_tokenizer
from .arguments import SHAPE_FLAGS, ModelArguments
from .reports import display_name


logger = logging.getLogger(__name__)


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


def check_checkpoint_flags(model_args: ModelArguments, config, processor) -> None:
    """
    Flags that shape a new model or processor cannot change a loaded checkpoint: one that asks for another value
    than the checkpoint's is an `ArgumentsError` (rather than silently ignored).
    """
    shaped = {"config": config, "processor": processor}
    for flag, (owner, what) in SHAPE_FLAGS.items():
        asked, kept = getattr(model_args, flag), getattr(shaped[owner], flag)
        if asked is not None and asked != kept:
            raise ArgumentsError(
                f"--{flag} {asked} cannot apply to --model_name_or_path {model_args.model_name_or_path}, whose "
                f"{what} is {kept}: leave --{flag} out, or build a new model (--text_encoder / --audio_encoder)"
            )
    if model_args.text_only and config.has_audio:
        raise ArgumentsError(
            f"--text_only cannot apply to --model_name_or_path {model_args.model_name_or_path}, which has an audio "
            "encoder: use --modality text to train its text stream only"
        )
    if os.path.isfile(os.path.join(model_args.model_name_or_path, PARTIAL_CHECKPOINT_FILE)):
        raise ArgumentsError(
            f"--model_name_or_path {model_args.model_name_or_path} is an intermediate checkpoint saved without its "
            "frozen weights: start from the run's output folder, or continue the run with --resume_from_checkpoint"
        )


NEW_HEAD_MODULES = ("classifier.", "context_emotion_head.")
"""Weights a pre-trained checkpoint lacks when fine-tuning starts from it: the pre-recognition head's."""


@contextlib.contextmanager
def quiet_new_head_report(model_class, path: str):
    """
    Hold back transformers' load report while a checkpoint loads into `model_class`; yields a list to receive the
    load info. A report whose only missing weights are the new classification head (a pre-trained checkpoint
    starting fine-tuning: expected) becomes one info line; any other is logged as transformers wrote it.
    """
    held = []

    def hold(record):
        if "LOAD REPORT" in record.getMessage():
            held.append(record)
            return False
        return True

    transformers_logger = logging.getLogger("transformers.modeling_utils")
    transformers_logger.addFilter(hold)
    info = []
    try:
        yield info
    finally:
        transformers_logger.removeFilter(hold)
    missing = info[0]["missing_keys"] if info else set()
    head_only = (
        info and missing and all(key.startswith(NEW_HEAD_MODULES) for key in missing)
        and not info[0]["unexpected_keys"] and not info[0]["mismatched_keys"]
    )
    if head_only:
        logger.info("%s: a new classification head on %s (its other weights are loaded)", model_class.__name__, path)
    else:
        for record in held:
            transformers_logger.handle(record)


def build_model_and_processor(model_args: ModelArguments, model_class, train_texts, **config_kwargs):
    """
    The model and its processor: from a TCMP checkpoint folder, around two local encoder folders, or a tiny random
    config with a word tokenizer built from `train_texts` (an iterable of str). `config_kwargs` (labels, ...) and the
    model arguments' overrides are set on the config. Resolves `model_args.use_feature_cache` (None: whether the
    encoders are frozen).
    """
    model, processor = _build(model_args, model_class, train_texts, config_kwargs)
    frozen = model.config.freeze_encoders
    model_args.check_feature_cache(
        frozen, f"--model_name_or_path {model_args.model_name_or_path} was trained with trainable encoders"
    )
    if model_args.use_feature_cache is None:
        model_args.use_feature_cache = frozen
        if frozen:
            logger.info("frozen encoders: training on their cached features (--use_feature_cache false to encode every step)")
    return model, processor


def _build(model_args: ModelArguments, model_class, train_texts, config_kwargs):
    overrides = {**model_args.config_overrides(), **config_kwargs}
    if model_args.model_name_or_path:
        path = model_args.model_name_or_path
        with loading(f"--model_name_or_path {path}"):
            processor = AutoProcessor.from_pretrained(path)
            check_checkpoint_flags(model_args, AutoConfig.from_pretrained(path), processor)
            with quiet_new_head_report(model_class, path) as info:
                model, load_info = model_class.from_pretrained(path, output_loading_info=True, **overrides)
                info.append(load_info)
        return model, processor
    overrides.update(model_args.shaping("config"))
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
    processor = make_processor(tokenizer, **model_args.shaping("processor"))
    return model, processor


SPLIT_FILES = {"train": "train_sent_emo.csv", "validation": "dev_sent_emo.csv", "test": "test_sent_emo.csv"}
"""The MELD CSV each split is built from, named when a split is missing."""


def check_splits(splits: dict, args, source: str) -> None:
    """
    The splits a run needs are there and not empty, before any model work: train with `--do_train`, validation
    to select checkpoints during training and for `--do_eval`. A missing one is a `DataError` naming it (test is
    optional: a run without one is not scored on it).
    """
    needs = {
        "train": "--do_train" if args.do_train else "the run (tokenizer, labels)",
        "validation": f"checkpoint selection (--eval_strategy {getattr(args.eval_strategy, 'value', args.eval_strategy)})"
        if args.do_train and args.eval_strategy != "no" else "--do_eval" if args.do_eval else None,
    }
    for split, needed_by in needs.items():
        if needed_by and (split not in splits or len(splits[split]) == 0):
            meld = os.path.isdir(source) and any(name.endswith("_sent_emo.csv") for name in os.listdir(source))
            hint = f": add {SPLIT_FILES[split]} to {source}" if meld else ""
            state = "an empty" if split in splits else "no"
            raise DataError(f"--dataset {source} has {state} {split} split, which {needed_by} needs{hint}")


def starting_point(model_args: ModelArguments) -> str:
    """Where a run's model started, in words (for its model card: folders by name, not by path)."""
    if model_args.model_name_or_path:
        return f"TCMP checkpoint `{display_name(model_args.model_name_or_path)}`"
    encoders = [f"{kind} encoder `{display_name(folder)}`" for kind, folder in
                (("text", model_args.text_encoder), ("audio", model_args.audio_encoder)) if folder]
    if encoders:
        return " and ".join(encoders) + "; the other TCMP layers from random initialisation (from scratch)"
    return "random initialisation, tiny config (from scratch)"


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
    from ..feature_cache import cached_feature_dataset

    cached, collator = cached_feature_dataset(DatasetDict(splits), model, processor, cache_dir=model_args.feature_cache_dir)
    return dict(cached), collator
