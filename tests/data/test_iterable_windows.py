"""Iterable pre-training windows read lazily from shards: the same windows as the map-style path, shards per
process, flat memory."""

import gc
import json

import psutil
import pytest

from tcmp.data import MissingFileError, PretrainingWindows, build_umd
from tcmp.data.iterable_windows import SHARD_BITS, manifest_shards, stream_pretraining_windows
from tests.data.conftest import write_manifest
from tests.data.test_other_sources import manifest_dialogues


def without_index(row: dict) -> dict:
    return {key: value for key, value in row.items() if key != "dialogue_index"}


def test_streamed_windows_equal_the_map_style_windows(tmp_path):
    folder = tmp_path / "umd"
    dialogues = manifest_dialogues(folder, [23, 7, 11, 21, 12, 16])
    whole = build_umd(str(write_manifest(folder, dialogues)), cache_dir=str(tmp_path / "c"))["train"]
    for number, part in enumerate((dialogues[:2], dialogues[2:5], dialogues[5:])):  # next to umd.jsonl: same audio
        (folder / f"part{number}.jsonl").write_text("".join(json.dumps(d) + "\n" for d in part))
    shards = str(folder / "part*.jsonl")
    assert manifest_shards(shards) == [str(folder / f"part{n}.jsonl") for n in range(3)]
    mapped = PretrainingWindows(whole, window=11, stride=5, seed=2)
    streamed, schedule = stream_pretraining_windows(shards, window=11, stride=5, seed=2)
    assert streamed.num_shards == 3
    for epoch in (0, 1, 4):
        mapped.set_epoch(epoch)
        schedule.set_epoch(epoch)
        rows = list(streamed)
        assert [without_index(row) for row in rows] == [without_index(mapped[i]) for i in range(len(mapped))]
        assert {row["window_start"] for row in rows} != {0}
    # one index per dialogue, never shared by two: the shard number in the high bits, the line in the low ones
    index = {row["dialogue_id"]: row["dialogue_index"] for row in rows}
    assert index == {"d0": 0, "d1": 1, "d2": 1 << SHARD_BITS, "d3": (1 << SHARD_BITS) + 1,
                     "d4": (1 << SHARD_BITS) + 2, "d5": 2 << SHARD_BITS}
    shuffled, shuffled_schedule = stream_pretraining_windows(shards, seed=2, shuffle_buffer=4)
    shuffled_schedule.set_epoch(4)
    assert sorted(map(json.dumps, shuffled)) == sorted(map(json.dumps, rows)) != list(map(json.dumps, shuffled))


def test_each_process_reads_its_own_shards(tmp_path):
    for number in range(4):
        (tmp_path / f"part{number}.jsonl").write_text("".join(
            json.dumps({"dialogue_id": f"s{number}d{k}", "utterances": [{"text": "hi"}] * 12}) + "\n" for k in range(3)
        ))
    seen = [{row["dialogue_id"] for row in stream_pretraining_windows(str(tmp_path), rank=rank, world_size=2)[0]}
            for rank in (0, 1)]
    assert not seen[0] & seen[1] and len(seen[0] | seen[1]) == 12
    assert {d[:2] for d in seen[0]} == {"s0", "s2"}  # whole shards, every other one
    with pytest.raises(MissingFileError, match="no such manifest"):
        stream_pretraining_windows(str(tmp_path / "nothing-*.jsonl"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(MissingFileError, match="a folder without"):
        manifest_shards(str(tmp_path / "empty"))


@pytest.mark.slow
def test_fifty_thousand_dialogues_stream_with_flat_memory(tmp_path):
    """
    50,000 text-only dialogues (18 MB of JSON Lines) through the windows and a shuffle buffer. Materialised as rows
    they take ~100 MB; the stream must stay far below that (benchmarks/bench_streaming_memory.py gives the figure).
    """
    for number in range(10):
        with open(tmp_path / f"part{number}.jsonl", "w") as handle:
            for k in range(5000):
                handle.write(json.dumps({"dialogue_id": f"{number}-{k}", "utterances": [
                    {"text": f"utterance {i} of dialogue {k}", "speaker": "AB"[i % 2]} for i in range(2 + k % 4)]}) + "\n")
    process = psutil.Process()
    windows, _ = stream_pretraining_windows(str(tmp_path), shuffle_buffer=1000)
    gc.collect()
    start, peak, count = process.memory_info().rss, 0, 0
    for count, _ in enumerate(windows, start=1):
        if count % 5000 == 0:
            peak = max(peak, process.memory_info().rss - start)
    assert count == 50000
    assert peak < 40e6, f"RSS grew by {peak / 1e6:.0f} MB while streaming"


def test_the_former_module_name_documented_in_the_readme_still_imports():
    import tcmp.data.iterable_windows as iterable_windows
    import tcmp.data.streaming as former

    for name in former.__all__:
        assert getattr(former, name) is getattr(iterable_windows, name)
