"""The former name of `tcmp.data.iterable_windows` (iterable pre-training windows read lazily from manifest shards),
kept so that `from tcmp.data.streaming import ...` keeps working."""

from .iterable_windows import SHARD_BITS, WindowSchedule, manifest_shards, stream_pretraining_windows, stream_texts


__all__ = ["SHARD_BITS", "WindowSchedule", "manifest_shards", "stream_pretraining_windows", "stream_texts"]
