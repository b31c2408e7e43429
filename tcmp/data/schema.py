"""
The row schema of every dataset tcmp builds, in one place: the per-utterance columns, the pre-recognition sample,
the pre-training dialogue, the columns each encoder reads, and the two ways between a row's columns and its
utterances. Builders, windows, the reconstruction rule, the
collator and the feature cache all take their column names from here.
"""

from datasets import ClassLabel, Features, List, Value


UTTERANCE_FEATURES = {
    "utterance_id": List(Value("string")),
    "text": List(Value("string")),
    "speaker": List(Value("string")),
    "audio_path": List(Value("string")),
    "audio_start": List(Value("float64")),
    "audio_end": List(Value("float64")),
}
"""The per-utterance lists of a row, one entry per utterance in dialogue order (audio: a file path and optional
start/end seconds, decoded at collate time)."""

UTTERANCE_COLUMNS = tuple(UTTERANCE_FEATURES)

SPLITS = ("train", "validation", "test")
"""The splits of a built `DatasetDict`, whichever of them exist."""

MODALITY_COLUMNS = {"text": ("text",), "audio": ("audio_path", "audio_start", "audio_end")}
"""The utterance columns each encoder reads."""


def prerecognition_features(label_names) -> Features:
    """A pre-recognition sample: the context's utterance lists, then who speaks the target, and its label."""
    return Features(
        {
            "sample_id": Value("string"),
            "dialogue_id": Value("string"),
            **UTTERANCE_FEATURES,
            "target_speaker": Value("string"),
            "target_utterance_id": Value("string"),
            "label": ClassLabel(names=list(label_names)),
        }
    )


def dialogue_features() -> Features:
    """A pre-training dialogue: its id and the utterance lists of the whole dialogue."""
    return Features({"dialogue_id": Value("string"), **UTTERANCE_FEATURES})


def utterance_columns(utterances: list[dict]) -> dict[str, list]:
    """The utterance columns of a row from its utterances, one dict each (None where an utterance lacks a column)."""
    return {column: [utterance.get(column) for utterance in utterances] for column in UTTERANCE_COLUMNS}


def row_utterances(row: dict) -> list[dict]:
    """The utterances of a row (its `text` list and the other utterance columns it has) as one dict each, with every
    utterance column (None where the row lacks it)."""
    return [
        {column: row[column][i] if row.get(column) else None for column in UTTERANCE_COLUMNS}
        for i in range(len(row["text"]))
    ]


__all__ = [
    "UTTERANCE_FEATURES", "UTTERANCE_COLUMNS", "SPLITS", "MODALITY_COLUMNS", "prerecognition_features", "dialogue_features",
    "utterance_columns", "row_utterances",
]
