"""Scaling: pre-training time per epoch at 1x, 2x and 4x the demo corpus size (should grow linearly).

Corpus: the first `--base_dialogues × s` dialogues of the pre-training train split of `tcmp.data.build_demo` (demo
lengths: 6–17 words, 2–4.5 s of audio per utterance; taken from one build, since small builds keep at least one
dialogue per split and would not scale exactly), cut into 11-utterance windows by `PretrainingWindows` (stride 5); one epoch = every window,
forward + backward + AdamW step, `--windows_per_step` windows per batch through `TCMPDataCollator` (audio decoded
there) with in-batch negatives; the library's defaults (encoders on length-sorted chunks), fp32.
"""

import argparse
import os
import sys
import tempfile

import torch
from torch.utils.data import DataLoader

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.common import (  # noqa: E402
    benchmark_config,
    benchmark_processor,
    settings_line,
    timed,
)
from tcmp import TCMPForPreTraining  # noqa: E402
from tcmp.collator import TCMPDataCollator  # noqa: E402
from tcmp.data import PretrainingWindows, build_demo  # noqa: E402


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter, allow_abbrev=False
    )
    parser.add_argument("--base_dialogues", type=int, default=1, help="pre-training dialogues of the 1x corpus")
    parser.add_argument("--scales", type=float, nargs="+", default=[1, 2, 4])
    parser.add_argument("--windows_per_step", type=int, default=4)
    args = parser.parse_args()
    print(settings_line(text="BERT 6x384", audio="HuBERT 4x384", base_dialogues=args.base_dialogues,
                        scales=args.scales, windows_per_step=args.windows_per_step,
                        data="tcmp.data.build_demo pre-training train split"))
    torch.manual_seed(0)
    processor = benchmark_processor()
    model = TCMPForPreTraining(benchmark_config(processor)).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5)
    collator = TCMPDataCollator.for_model(processor, model.config)

    def train_on(windows):
        for batch in DataLoader(windows, batch_size=args.windows_per_step, collate_fn=collator):
            model(**batch).loss.backward()
            optimizer.step()
            optimizer.zero_grad()

    results = {}
    with tempfile.TemporaryDirectory() as cache:
        largest = int(args.base_dialogues * max(args.scales))
        dialogues = build_demo(cache_dir=cache, num_pretrain_dialogues=largest + 2, num_labelled_dialogues=4,
                               dev_fraction=0.0, test_fraction=0.0)[0]["train"]
        corpora = {
            scale: PretrainingWindows(dialogues.select(range(int(args.base_dialogues * scale))))
            for scale in args.scales
        }
        train_on(torch.utils.data.Subset(corpora[args.scales[0]], [0]))  # warm-up
        for scale, windows in corpora.items():
            results[scale], _ = timed(lambda: train_on(windows))
            print(f"{scale:g}x ({len(windows)} windows): epoch {results[scale]:.1f} s, "
                  f"{results[scale] / len(windows):.2f} s per window, "
                  f"{results[scale] / results[args.scales[0]]:.2f}x the {args.scales[0]:g}x epoch, "
                  f"{len(windows) / len(corpora[args.scales[0]]):.2f}x its windows")


if __name__ == "__main__":
    main()
