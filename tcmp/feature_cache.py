"""Encoder-feature cache for training with frozen encoders: every distinct utterance is encoded once, kept on disk."""

import hashlib
import json
import os
from dataclasses import dataclass
from functools import partial

import torch
from datasets import Dataset, DatasetDict
from datasets import config as datasets_config
from filelock import FileLock

from .checkpoints import update_with_tensors
from .collator import TCMPDataCollator, add_targets
from .data.schema import MODALITY_COLUMNS
from .processing_tcmp import TCMPProcessor, utterance_mask


FEATURE_COLUMNS = {"text": "text_features", "audio": "audio_features"}


PROVENANCE_KEYS = ("_name_or_path", "architectures", "auto_map", "transformers_version", "_commit_hash", "processor_class")
"""Config and processor entries that say where a model came from, not what it computes: left out of the fingerprint,
so that the same encoders loaded from their own folder or from a TCMP checkpoint share one cache."""


def _without_provenance(values):
    if isinstance(values, dict):
        return {k: _without_provenance(v) for k, v in values.items() if k not in PROVENANCE_KEYS}
    return values


def _settings(values: dict) -> str:
    return json.dumps(_without_provenance(values), sort_keys=True, default=str)


ENCODING_VERSION = "2"
"""Raised when the way features are computed changes (2: group-norm speech front ends give each utterance its own
features; the masked group norm that now does it gives the same values), so that caches written by earlier code are
not reused."""


def encoder_fingerprint(model, processor: TCMPProcessor) -> str:
    """SHA-256 over what the cached features depend on: the encoders' configs (without provenance, `PROVENANCE_KEYS`)
    and weights (names, dtypes, values), the processor's settings (its config and vocabulary), the text pooling
    when it is not the default one, and `ENCODING_VERSION`."""
    base = model.base_model
    digest = hashlib.sha256(f"encoding {ENCODING_VERSION}".encode())
    if model.config.text_pooling != "max_mean":
        digest.update(f"text_pooling={model.config.text_pooling}".encode())
    for encoder in (base.text_model, base.audio_model):
        if encoder is None:
            digest.update(b"none")
            continue
        digest.update(_settings(encoder.config.to_dict()).encode())
        update_with_tensors(digest, encoder.state_dict())
    digest.update(_settings(processor.to_dict()).encode())
    digest.update(json.dumps(sorted(processor.tokenizer.get_vocab().items())).encode())
    return digest.hexdigest()


def _unique_utterances(splits: dict[str, Dataset], modalities: tuple[str, ...]) -> tuple[dict[str, list], dict[str, list]]:
    """The distinct utterances (by content) of all splits as columns, and each row's indices into them."""
    columns = [c for m in modalities for c in MODALITY_COLUMNS[m]]
    table = {c: [] for c in columns}
    index, references = {}, {}
    for split, dataset in splits.items():
        missing = [c for c in columns if c not in dataset.column_names]
        if missing:
            raise ValueError(f"split {split!r} has no {missing[0]!r} column, which the model's encoders need")
        rows = dataset.select_columns(columns).to_dict()
        references[split] = []
        for values in zip(*(rows[c] for c in columns)):
            row_refs = []
            for utterance in zip(*values):
                if utterance not in index:
                    index[utterance] = len(index)
                    for column, value in zip(columns, utterance):
                        table[column].append(value)
                row_refs.append(index[utterance])
            references[split].append(row_refs)
    return table, references


def _length_order(table: dict[str, list], modalities: tuple[str, ...]) -> list[int]:
    """Indices of the distinct utterances from shortest to longest (characters of text, else seconds of audio), ties
    by content: the same utterances give the same order whatever splits and rows they came in."""
    if "text" in modalities:
        lengths = [len(text) for text in table["text"]]
    else:
        lengths = [(end or 0) - (start or 0) for start, end in zip(table["audio_start"], table["audio_end"])]
    contents = [json.dumps(values) for values in zip(*table.values())]
    return sorted(range(len(lengths)), key=lambda i: (lengths[i], contents[i]))


def _encode_batch(batch: dict, model, collator: TCMPDataCollator, modalities: tuple[str, ...]) -> dict:
    """Pooled encoder output of a batch of single utterances (`model.tcmp.text_features` / `audio_features`)."""
    base = model.base_model
    count = len(next(iter(batch.values())))
    inputs = collator.processor([[u] for u in collator.utterances({**batch, "text": batch.get("text", [""] * count)})])
    inputs = {k: v.to(model.device) for k, v in inputs.items()}
    features = {}
    with torch.no_grad():
        if "text" in modalities:
            text = base.pooled_text_features(inputs["input_ids"], inputs["attention_mask"], inputs.get("token_type_ids"))
            features["text_features"] = text.float().cpu().numpy()
        if "audio" in modalities:
            audio = base.pooled_audio_features(inputs["input_values"], inputs["audio_attention_mask"])
            features["audio_features"] = audio.float().cpu().numpy()
    return features


@dataclass
class TCMPFeatureCollator:
    """
    Batches rows that carry `feature_index` (indices into the cached feature table, one per utterance) into model
    inputs — `utterance_mask`, `text_features` / `audio_features`, `labels` (per position for per-dialogue rows),
    `dialogue_ids` — with no audio decoding and no encoder pass.
    """

    text_features: torch.Tensor | None = None
    audio_features: torch.Tensor | None = None

    def __call__(self, rows: list[dict]) -> dict:
        lengths = [len(row["feature_index"]) for row in rows]
        if 0 in lengths:
            raise ValueError("a row has no utterances (empty feature_index)")
        flat = torch.tensor([i for row in rows for i in row["feature_index"]], dtype=torch.long)
        batch = {"utterance_mask": utterance_mask(lengths)}
        if self.text_features is not None:
            batch["text_features"] = self.text_features[flat]
        if self.audio_features is not None:
            batch["audio_features"] = self.audio_features[flat]
        return add_targets(batch, rows)


def cached_feature_dataset(
    dataset: Dataset | DatasetDict,
    model,
    processor: TCMPProcessor,
    cache_dir: str | None = None,
    batch_size: int = 32,
) -> tuple[Dataset | DatasetDict, TCMPFeatureCollator]:
    """
    Encode every distinct utterance of `dataset` (all splits) once with the model's frozen encoders, through
    `datasets.Dataset.map`, cached on disk as `tcmp-features-<fingerprint>.arrow` in `cache_dir` (default: next to
    the dataset's own cache files, else `<HF datasets cache>/tcmp_features`). The fingerprint covers the distinct
    utterances (as a set: the same utterances in other rows or splits, such as the folds of one training split, share
    a cache), the encoders' configs and weights and the processor's settings, so another encoder or processor never
    reuses the cache. Processes that need the same cache at once wait for the first one to write it (a lock file
    beside it) instead of each encoding everything. Returns the dataset with a `feature_index` column (per row, one
    index per utterance) and the `TCMPFeatureCollator` that turns its rows into batches of features.
    """
    config = model.config
    if not config.freeze_encoders:
        raise ValueError(
            "cached encoder features need frozen encoders: build the model with freeze_encoders=True "
            "(or call model.base_model.set_encoders_frozen(True))"
        )
    splits = dict(dataset) if isinstance(dataset, DatasetDict) else {"data": dataset}
    modalities = config.input_modalities
    table, references = _unique_utterances(splits, modalities)
    order = _length_order(table, modalities)  # similar lengths share a batch: little padding
    in_order = {column: [values[i] for i in order] for column, values in table.items()}
    content = hashlib.sha256(json.dumps(in_order, sort_keys=True).encode()).hexdigest()  # the set, not the rows' order
    layout = "rows sorted by length, then content"  # the cache file's row order: part of what the fingerprint names
    fingerprint = hashlib.sha256((content + layout + encoder_fingerprint(model, processor)).encode()).hexdigest()[:32]
    if cache_dir is None:
        cache_files = next(iter(splits.values())).cache_files
        cache_dir = (
            os.path.dirname(cache_files[0]["filename"])
            if cache_files
            else os.path.join(datasets_config.HF_DATASETS_CACHE, "tcmp_features")
        )
    os.makedirs(cache_dir, exist_ok=True)
    collator = TCMPDataCollator.for_model(processor, config)
    was_training = model.training
    model.eval()
    cache_file = os.path.join(cache_dir, f"tcmp-features-{fingerprint}.arrow")
    with FileLock(cache_file + ".lock"):  # processes that need the same cache at once (folds, seeds) encode it once
        features = Dataset.from_dict(in_order).map(
            partial(_encode_batch, model=model, collator=collator, modalities=modalities),
            batched=True,
            batch_size=batch_size,
            remove_columns=list(table),
            cache_file_name=cache_file,
            new_fingerprint=fingerprint,
            load_from_cache_file=True,
            desc="Encoding utterances (frozen encoders)",
        )
    model.train(was_training)
    in_table_order = torch.empty(len(order), dtype=torch.long)
    in_table_order[torch.tensor(order, dtype=torch.long)] = torch.arange(len(order))
    tensors = {name: values[in_table_order] for name, values in features.with_format("torch")[:].items()}
    feature_collator = TCMPFeatureCollator(
        **{FEATURE_COLUMNS[m]: tensors[FEATURE_COLUMNS[m]] for m in modalities}
    )
    with_refs = {name: split.add_column("feature_index", references[name]) for name, split in splits.items()}
    result = DatasetDict(with_refs) if isinstance(dataset, DatasetDict) else with_refs["data"]
    return result, feature_collator


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


__all__ = ["cached_feature_dataset", "CachedFeatureWindows", "TCMPFeatureCollator", "encoder_fingerprint"]
