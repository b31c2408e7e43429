"""Batching dataset rows (pre-training windows or pre-recognition samples) into TCMP model inputs."""

from dataclasses import dataclass

import torch

from .audio_utils import load_audio
from .data.schema import row_utterances
from .processing_tcmp import TCMPProcessor


def position_labels(rows: list[dict], num_utterances: int) -> torch.Tensor:
    """
    `labels` of per-dialogue rows (`tcmp.data.prerecognition_dialogues`): (batch, num_utterances + 1), each row's
    `target_labels` at its `target_positions`, -100 elsewhere.
    """
    labels = torch.full((len(rows), num_utterances + 1), -100, dtype=torch.long)
    for i, row in enumerate(rows):
        labels[i, torch.as_tensor(row["target_positions"], dtype=torch.long)] = torch.as_tensor(
            row["target_labels"], dtype=torch.long
        )
    return labels


def add_targets(batch: dict, rows: list[dict]) -> dict:
    """`labels` (per sample, or per position for per-dialogue rows) and `dialogue_ids` of `rows`, when they have them."""
    if "label" in rows[0]:
        batch["labels"] = torch.tensor([row["label"] for row in rows], dtype=torch.long)
    elif "target_positions" in rows[0]:
        batch["labels"] = position_labels(rows, batch["utterance_mask"].shape[1])
    if "dialogue_index" in rows[0]:
        batch["dialogue_ids"] = torch.tensor([row["dialogue_index"] for row in rows], dtype=torch.long)
    return batch


@dataclass
class TCMPDataCollator:
    """
    Turns rows with per-utterance lists (`text`, `audio_path`, `audio_start`, `audio_end`, `speaker`) into a batch:
    audio is decoded here, lazily, at the processor's sampling rate; the processor pads to the longest of the batch.
    Rows with `label` give `labels`; per-dialogue rows (`target_positions`, `target_labels`) give per-position
    `labels`; rows with `dialogue_index` give `dialogue_ids` (for in-batch negatives).
    """

    processor: TCMPProcessor
    use_text: bool = True
    use_audio: bool = True

    @classmethod
    def for_model(cls, processor: TCMPProcessor, config) -> "TCMPDataCollator":
        return cls(processor, use_text=config.has_text, use_audio=config.has_audio)

    def utterances(self, row: dict) -> list[dict]:
        """The processor's utterance dicts of a row, its audio decoded."""
        rate = self.processor.sampling_rate
        utterances = []
        for i, columns in enumerate(row_utterances(row)):
            utterance = {"speaker": columns["speaker"]}
            if self.use_text:
                utterance["text"] = columns["text"]
            if self.use_audio:
                if columns["audio_path"] is None:
                    raise ValueError(
                        f"row {row.get('sample_id', row.get('dialogue_id'))!r}, utterance {i}: the model has an audio "
                        "encoder but the dataset has no audio for this utterance (build it with a media folder, or "
                        "use a text-only model)"
                    )
                utterance["audio"] = load_audio(
                    columns["audio_path"], sampling_rate=rate, start=columns["audio_start"], end=columns["audio_end"],
                    max_samples=self.processor.max_audio_length,
                )
                utterance["sampling_rate"] = rate
            utterances.append(utterance)
        return utterances

    def __call__(self, rows: list[dict]) -> dict:
        return add_targets(self.processor([self.utterances(row) for row in rows]), rows)
