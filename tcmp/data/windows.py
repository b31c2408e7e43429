"""Lazy sliding windows over pre-training dialogues."""

import pyarrow.compute as pc
import torch

from ..errors import DataError
from .schema import UTTERANCE_COLUMNS


def window_starts(n: int, window: int, stride: int, offset: int) -> list[int]:
    """Starts of the windows of a dialogue of `n` utterances (the rule of `PretrainingWindows`)."""
    if n <= window:
        return [0]
    last = n - window
    return [min(offset + j * stride, last) for j in range(1 + last // stride)]


def cut_window(dialogue: dict, start: int, window: int, dialogue_index: int) -> dict:
    """The row of the window of `dialogue` that begins at utterance `start`."""
    item = {key: value[start:start + window] if key in UTTERANCE_COLUMNS else value for key, value in dialogue.items()}
    item["dialogue_index"] = dialogue_index
    item["window_start"] = start
    return item


class PretrainingWindows(torch.utils.data.Dataset):
    """
    Windows of `window` consecutive utterances over the dialogues (rows) of `dialogues`, every `stride` utterances.

    A dialogue of n > window utterances gives k = 1 + (n - window) // stride windows (the same count every epoch),
    starting at `offset + j * stride` (clamped to n - window); `set_epoch(e)` sets `offset = (seed + e) % stride`,
    so the windows shift deterministically each epoch and every offset in [0, stride) comes round. A dialogue of
    n <= window utterances gives one window: the whole dialogue.

    Only `(row, start)` pairs are kept in memory; each item reads its dialogue row from the (memory-mapped) Arrow
    dataset and slices the list columns. Items: the list columns sliced, `dialogue_id`, `dialogue_index` (the row),
    and `window_start`.
    """

    def __init__(self, dialogues, window: int = 11, stride: int = 5, seed: int = 0):
        if window < 1 or stride < 1:
            raise DataError(f"window and stride must be >= 1, got window={window}, stride={stride}")
        self.dialogues, self.window, self.stride, self.seed = dialogues, window, stride, seed
        self.lengths = []
        for batch in dialogues.select_columns(["text"]).with_format("arrow").iter(batch_size=1000):
            self.lengths += pc.list_value_length(batch.column("text")).to_pylist()
        self.set_epoch(0)

    @property
    def offset(self) -> int:
        return (self.seed + self.epoch) % self.stride

    def set_epoch(self, epoch: int):
        self.epoch = int(epoch)
        offset = self.offset
        self.index = [
            (row, start) for row, n in enumerate(self.lengths) for start in window_starts(n, self.window, self.stride, offset)
        ]

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int) -> dict:
        row, start = self.index[i]
        return cut_window(self.dialogues[row], start, self.window, row)
