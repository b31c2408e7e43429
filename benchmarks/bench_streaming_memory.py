"""
Memory of the streaming pre-training path (`tcmp.data.iterable_windows`) on a generated corpus of short text-only
dialogues in JSON Lines shards, next to the same windows materialised as a list.

Resident set size is read after `gc.collect()` and glibc's `malloc_trim(0)` every `--every` windows; the figure is
the growth over the RSS before iterating (max over the samples), and the time is the whole pass.
"""

import argparse
import ctypes
import ctypes.util
import gc
import json
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.common import settings_line  # noqa: E402
from tcmp.data.iterable_windows import stream_pretraining_windows  # noqa: E402


TRIM = getattr(ctypes.CDLL(ctypes.util.find_library("c")), "malloc_trim", None)


def rss_mb() -> float:
    gc.collect()
    if TRIM is not None:
        TRIM(0)
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e6


def write_corpus(folder: str, dialogues: int, shards: int) -> float:
    """`dialogues` dialogues of 2–5 utterances over `shards` files; returns the corpus size in MB."""
    per_shard = -(-dialogues // shards)
    for number in range(shards):
        with open(os.path.join(folder, f"part{number:03d}.jsonl"), "w") as handle:
            for k in range(number * per_shard, min(dialogues, (number + 1) * per_shard)):
                utterances = [{"text": f"utterance {i} of dialogue {k}", "speaker": "AB"[i % 2]} for i in range(2 + k % 4)]
                handle.write(json.dumps({"dialogue_id": str(k), "utterances": utterances}) + "\n")
    return sum(os.path.getsize(os.path.join(folder, name)) for name in os.listdir(folder)) / 1e6


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter, allow_abbrev=False
    )
    parser.add_argument("--dialogues", type=int, default=200_000)
    parser.add_argument("--shards", type=int, default=16)
    parser.add_argument("--shuffle_buffer", type=int, default=1000)
    parser.add_argument("--every", type=int, default=10_000)
    args = parser.parse_args()
    print(settings_line(dialogues=args.dialogues, shards=args.shards, shuffle_buffer=args.shuffle_buffer,
                        data="generated text-only dialogues of 2-5 utterances"))
    with tempfile.TemporaryDirectory() as folder:
        size = write_corpus(folder, args.dialogues, args.shards)
        windows, _ = stream_pretraining_windows(folder, shuffle_buffer=args.shuffle_buffer)
        start = rss_mb()
        growth, count, began = 0.0, 0, time.perf_counter()
        for count, _ in enumerate(windows, start=1):
            if count % args.every == 0:
                growth = max(growth, rss_mb() - start)
        seconds = time.perf_counter() - began
        print(f"corpus: {size:.1f} MB of JSON Lines, {count} windows")
        print(f"streamed:     RSS {start:.0f} MB at start, growth {growth:+.1f} MB (max), {count / seconds:,.0f} windows/s")
        materialised = list(windows)
        print(f"materialised: RSS growth {rss_mb() - start:+.1f} MB for {len(materialised)} windows held as rows")


if __name__ == "__main__":
    main()
