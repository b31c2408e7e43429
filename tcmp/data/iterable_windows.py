"""
Iterable pre-training windows, read lazily from sharded UMD-style JSON Lines manifests (a `datasets`
`IterableDataset`: "streaming" in the `datasets` sense, `--streaming` in `run_pretrain.py`), for corpora larger
than memory or disk. Not streaming inference (`tcmp.streaming`), nor the modality streams of the model.

Nothing is materialised: each shard is read line by line (`read_manifest`: the checks of `build_umd`, except for
duplicate ids, which would need every id in memory), each dialogue is cut into windows on the fly by the rule of
`PretrainingWindows` (`window_starts`), and at most `shuffle_buffer` windows are held at a time. What is kept grows
only with a shard's distinct audio files (each file's duration, checked once).
"""

import glob
import os
from dataclasses import dataclass

from datasets import IterableDataset
from datasets.distributed import split_dataset_by_node

from ..errors import DataError, MissingFileError
from .umd import read_manifest
from .windows import cut_window, window_starts


SHARD_BITS = 32
"""`dialogue_index` = shard number << 32 | line of the dialogue in its shard: unique across every shard."""


def manifest_shards(source: str) -> list[str]:
    """The shard files of `source`: one `.jsonl` file, a folder (its `*.jsonl`, sorted) or a glob pattern."""
    if os.path.isdir(source):
        shards = sorted(glob.glob(os.path.join(source, "*.jsonl")))
        if not shards:
            raise MissingFileError(f"streaming source {source!r}: a folder without *.jsonl manifest shards")
        return shards
    if os.path.isfile(source):
        return [source]
    shards = sorted(glob.glob(source))
    if not shards:
        raise MissingFileError(f"streaming source {source!r}: no such manifest, folder of shards or matching files")
    return shards


@dataclass
class WindowSchedule:
    """Window length, stride and seed; `set_epoch(e)` shifts the start offset to `(seed + e) % stride`."""

    window: int = 11
    stride: int = 5
    seed: int = 0
    epoch: int = 0

    def __post_init__(self):
        if self.window < 1 or self.stride < 1:
            raise DataError(f"window and stride must be >= 1, got window={self.window}, stride={self.stride}")

    @property
    def offset(self) -> int:
        return (self.seed + self.epoch) % self.stride

    def set_epoch(self, epoch: int):
        self.epoch = int(epoch)


def _windows_of_shards(shards, schedule: WindowSchedule):
    for number, path in shards:
        for line, dialogue in enumerate(read_manifest(path, check_ids=False)):
            dialogue_index = (number << SHARD_BITS) | line
            for start in window_starts(len(dialogue["text"]), schedule.window, schedule.stride, schedule.offset):
                yield cut_window(dialogue, start, schedule.window, dialogue_index)


def stream_pretraining_windows(
    source: str,
    window: int = 11,
    stride: int = 5,
    seed: int = 0,
    shuffle_buffer: int = 0,
    rank: int | None = None,
    world_size: int | None = None,
) -> tuple[IterableDataset, WindowSchedule]:
    """
    Windows of the dialogues of the manifest shards of `source` (see `manifest_shards`) as a `datasets`
    `IterableDataset` with one data source per shard, and the `WindowSchedule` whose `set_epoch` shifts them.
    Rows are those of `PretrainingWindows` as plain Python values (no `Features` given: encoding every row into
    Arrow types would triple the time and buy nothing, since the collator reads them as lists).

    `shuffle_buffer` > 0 shuffles the shard order and the windows through a buffer of that many (seeded by `seed`
    and the dataset's epoch). With `rank` and `world_size`, `split_dataset_by_node` keeps this process's shards
    (for a loop of your own; under the `Trainer`, Accelerate assigns the shards to processes itself).
    """
    schedule = WindowSchedule(window, stride, seed)
    shards = list(enumerate(manifest_shards(source)))
    windows = IterableDataset.from_generator(_windows_of_shards, gen_kwargs={"shards": shards, "schedule": schedule})
    if shuffle_buffer > 0:
        windows = windows.shuffle(seed=seed, buffer_size=shuffle_buffer)
    if world_size is not None and world_size > 1:
        windows = split_dataset_by_node(windows, rank=rank, world_size=world_size)
    return windows, schedule


def stream_texts(source: str):
    """Every utterance transcript of the manifest shards of `source`, one at a time (for a word tokenizer)."""
    for path in manifest_shards(source):
        for dialogue in read_manifest(path, check_ids=False):
            yield from dialogue["text"]
