"""Long runs: resident memory over a long pre-training run and a long streaming session (both should stay flat).

pre-training: TCMPForPreTraining (tiny random text + audio encoders, so that many steps fit in minutes) trained with
              AdamW on the demo corpus's pre-training windows through the library's own data path
              (PretrainingWindows → TCMPDataCollator, audio decoded at collate time), several epochs (the window
              offset shifts each epoch).
streaming:    StreamingPreRecognizer over one conversation of thousands of turns (demo utterances, cycled).
Resident set size is sampled after `gc.collect()` and glibc's `malloc_trim(0)` (which hands freed heap pages back, so
that the allocator's swings with variable-sized audio batches do not hide or fake a trend) every `--every`
steps/turns; the growth is the least-squares slope over the second half of the run (after warm-up: allocator pools,
optimizer state), in MB per 100 steps/turns.
"""

import argparse
import ctypes
import ctypes.util
import gc
import os
import sys

import numpy as np
import torch
from torch.utils.data import DataLoader

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.common import benchmark_processor, demo_pretraining_dialogues, demo_turns, settings_line  # noqa: E402
from tcmp import TCMPForEmotionPreRecognition, TCMPForPreTraining  # noqa: E402
from tcmp.collator import TCMPDataCollator  # noqa: E402
from tcmp.data import PretrainingWindows  # noqa: E402
from tcmp.presets import tiny_config  # noqa: E402
from tcmp.streaming import StreamingPreRecognizer  # noqa: E402

FLAT_MB_PER_100 = 1.0
"""Growth below this many MB per 100 steps/turns in the second half counts as flat."""


LIBC = ctypes.CDLL(ctypes.util.find_library("c"))
TRIM = getattr(LIBC, "malloc_trim", None)
"""glibc's malloc_trim; None on other C libraries (then freed heap pages may stay resident)."""


def rss_mb() -> float:
    """Current resident set size of this process, after collecting garbage and trimming the heap."""
    gc.collect()
    if TRIM is not None:
        TRIM(0)
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def report(name: str, unit: str, samples: list[tuple[int, float]]) -> None:
    """Print the samples and the second-half slope with its verdict."""
    print(f"{name}: RSS (MB) by {unit}: " + ", ".join(f"{n}: {mb:.0f}" for n, mb in samples))
    second_half = samples[len(samples) // 2 :]
    x, y = np.array([n for n, _ in second_half], dtype=float), np.array([mb for _, mb in second_half])
    slope = np.polyfit(x, y, 1)[0] * 100
    verdict = "flat" if slope < FLAT_MB_PER_100 else "GROWING"
    print(f"{name}: second half {second_half[0][0]}–{second_half[-1][0]} {unit}: {slope:+.2f} MB per 100 {unit} "
          f"({verdict}; threshold {FLAT_MB_PER_100} MB), peak-to-end {max(y) - y[-1]:.0f} MB, "
          f"start {samples[0][1]:.0f} MB → end {samples[-1][1]:.0f} MB")


def pretraining(processor, steps: int, every: int, batch_size: int) -> None:
    torch.manual_seed(0)
    model = TCMPForPreTraining(tiny_config(len(processor.tokenizer))).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    windows = PretrainingWindows(demo_pretraining_dialogues())
    collator = TCMPDataCollator.for_model(processor, model.config)
    samples, step, epoch = [], 0, 0
    while step < steps:
        windows.set_epoch(epoch)
        for batch in DataLoader(windows, batch_size=batch_size, shuffle=True, collate_fn=collator):
            model(**batch).loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            if step % every == 0:
                samples.append((step, rss_mb()))
            if step == steps:
                break
        epoch += 1
    print(f"pre-training: {steps} steps of {batch_size} windows over {epoch} epochs of {len(windows)} windows")
    report("pre-training", "steps", samples)


def streaming(processor, turns: int, every: int) -> None:
    torch.manual_seed(0)
    model = TCMPForEmotionPreRecognition(tiny_config(len(processor.tokenizer), num_labels=3))
    recognizer = StreamingPreRecognizer(model, processor)
    utterances = demo_turns(200)
    samples = []
    for turn in range(1, turns + 1):
        recognizer.add_utterance(**utterances[turn % len(utterances)])
        if turn % every == 0:
            samples.append((turn, rss_mb()))
    state = recognizer.sessions["default"].num_elements()
    print(f"streaming: {turns} turns, session state {state} floats at the end (bounded by the attention window)")
    report("streaming", "turns", samples)


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter, allow_abbrev=False
    )
    parser.add_argument("--steps", type=int, default=400, help="pre-training optimizer steps")
    parser.add_argument("--turns", type=int, default=3000, help="streaming turns")
    parser.add_argument("--batch_size", type=int, default=4, help="windows per pre-training step")
    parser.add_argument("--every", type=int, default=20, help="sample RSS every N steps (turns: every 5N)")
    args = parser.parse_args()
    print(settings_line(model="tiny random (BERT 2x32, HuBERT 2x32, d=32)", steps=args.steps, turns=args.turns,
                        batch_size=args.batch_size, data="demo corpus pre-training dialogues",
                        malloc_trim=TRIM is not None))
    processor = benchmark_processor()
    pretraining(processor, args.steps, args.every, args.batch_size)
    streaming(processor, args.turns, 5 * args.every)


if __name__ == "__main__":
    main()
