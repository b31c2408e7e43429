"""Per-dialogue pre-recognition rows: one row scores many targets of a dialogue in one pass (training only)."""

from ..errors import DataError
from .schema import UTTERANCE_COLUMNS

CONTEXT_MODES = ("exact", "history")


def prerecognition_dialogues(samples, context: str = "exact"):
    """
    Rows that each hold consecutive utterances of one dialogue and several pre-recognition targets in them, built
    from the pre-recognition `samples` (rows of the usual schema: `dialogue_id`, per-utterance lists, `label`).

    `context="exact"`: samples whose contexts start at the same utterance share one row (their contexts are then
    prefixes of the longest one), so every target sees exactly its sample's context: the model gives the same
    prediction as on the sample itself. On P-MELD (contexts of at most 10) that is one row for the first 11
    utterances of a dialogue and one per later target.
    `context="history"`: the samples of a dialogue whose contexts join up share one row, so a target also sees the
    dialogue before its sample's context (the recurrent states run over the whole row).

    Each row: `dialogue_id`, the list columns, `target_positions` (target k follows the first
    `target_positions[k]` utterances of the row), `target_labels` and `target_sample_ids`. The collators turn these
    into `labels` of shape (batch, utterances + 1), -100 where nothing is a target.
    """
    from datasets import Dataset, Features, Sequence, Value

    if context not in CONTEXT_MODES:
        raise DataError(f"per-dialogue context must be one of {CONTEXT_MODES}, got {context!r}")
    columns = [c for c in UTTERANCE_COLUMNS if c in samples.column_names]
    missing = [c for c in ("sample_id", "dialogue_id", "utterance_id", "text", "label") if c not in samples.column_names]
    if missing:
        raise DataError(f"pre-recognition samples need the column(s) {missing} to be grouped by dialogue")
    rows, open_row = [], {}
    for sample in samples:
        ids = sample["utterance_id"]
        if not ids:
            raise DataError(f"sample {sample['sample_id']!r} has an empty context")
        key = (sample["dialogue_id"], ids[0]) if context == "exact" else sample["dialogue_id"]
        row = open_row.get(key)
        start = row["utterance_id"].index(ids[0]) if row is not None and ids[0] in row["utterance_id"] else None
        overlap = 0 if start is None else min(len(row["utterance_id"]) - start, len(ids))
        if start is None or row["utterance_id"][start : start + overlap] != ids[:overlap]:
            if context == "exact" and row is not None:
                raise DataError(
                    f"sample {sample['sample_id']!r}: its context starts like an earlier one of dialogue "
                    f"{sample['dialogue_id']!r} but is not an extension of it"
                )
            row = {"dialogue_id": sample["dialogue_id"], **{c: [] for c in columns},
                   "target_positions": [], "target_labels": [], "target_sample_ids": []}
            open_row[key], start, overlap = row, 0, 0
            rows.append(row)
        for column in columns:
            row[column].extend(sample[column][overlap:])
        row["target_positions"].append(start + len(ids))
        row["target_labels"].append(int(sample["label"]))
        row["target_sample_ids"].append(sample["sample_id"])
    features = {name: samples.features[name] for name in ("dialogue_id", *columns)}
    features.update(
        target_positions=Sequence(Value("int32")), target_labels=Sequence(Value("int64")),
        target_sample_ids=Sequence(Value("string")),
    )
    return Dataset.from_list(rows, features=Features(features))


__all__ = ["CONTEXT_MODES", "prerecognition_dialogues"]
