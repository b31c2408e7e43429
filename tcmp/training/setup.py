"""Model and data set-up of a run: the model and processor from the flags, the splits and their collator."""

import contextlib

import torch
from datasets import DatasetDict
from transformers import AutoConfig, AutoProcessor, AutoTokenizer

from ..collator import TCMPDataCollator
from ..errors import ArgumentsError, CheckpointError
from ..presets import make_processor, tiny_config, word_tokenizer
from .arguments import ModelArguments


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
    from ..feature_cache import cached_feature_dataset

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
