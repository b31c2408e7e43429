"""Frozen-encoder fine-tuning: epoch time with and without the encoder-feature cache (epochs 2+).

without: TCMPDataCollator decodes each sample's context audio and the frozen encoders run on every batch.
with:    tcmp.feature_cache.cached_feature_dataset encodes each distinct utterance once (datasets.map, on disk);
         TCMPFeatureCollator then batches the cached vectors. The one-off encoding time is printed separately.
Data: the pre-recognition train split of `tcmp.data.build_demo(num_labelled_dialogues=--dialogues)`: each sample's
context is the utterances before its target, so contexts overlap as in P-MELD / P-IEM.
"""

import argparse
import copy
import os
import sys
import tempfile

import torch
from torch.utils.data import DataLoader

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.common import benchmark_config, benchmark_processor, settings_line, timed  # noqa: E402
from tcmp import TCMPForEmotionPreRecognition  # noqa: E402
from tcmp.collator import TCMPDataCollator  # noqa: E402
from tcmp.data import build_demo  # noqa: E402
from tcmp.feature_cache import cached_feature_dataset  # noqa: E402


def epoch(model, rows, collate, batch_size, optimizer) -> float:
    def run():
        for batch in DataLoader(rows, batch_size=batch_size, collate_fn=collate):
            model(**batch).loss.backward()
            optimizer.step()
            optimizer.zero_grad()

    model.train()
    return timed(run)[0]


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter, allow_abbrev=False
    )
    parser.add_argument("--dialogues", type=int, default=4, help="labelled demo dialogues (about 8 samples each)")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch_size", type=int, default=4)
    args = parser.parse_args()
    print(settings_line(text="BERT 6x384 (frozen)", audio="HuBERT 4x384 (frozen)", dialogues=args.dialogues, epochs=args.epochs, batch_size=args.batch_size,
                        data="tcmp.data.build_demo pre-recognition train split"))
    torch.manual_seed(0)
    processor = benchmark_processor()
    model = TCMPForEmotionPreRecognition(benchmark_config(processor, num_labels=7, freeze_encoders=True))
    with tempfile.TemporaryDirectory() as folder:
        rows = build_demo(cache_dir=folder, num_pretrain_dialogues=1, num_labelled_dialogues=args.dialogues,
                          dev_fraction=0.0, test_fraction=0.0)[1]["train"]
        print(f"{rows.num_rows} samples, {sum(len(t) for t in rows['text'])} context utterances")
        timings = {}
        plain_model = copy.deepcopy(model)
        optimizer = torch.optim.AdamW([p for p in plain_model.parameters() if p.requires_grad], lr=1e-4)
        collator = TCMPDataCollator.for_model(processor, plain_model.config)
        timings["without cache"] = [epoch(plain_model, list(rows), collator, args.batch_size, optimizer)
                                    for _ in range(args.epochs)]
        encode_seconds, (cached, feature_collator) = timed(
            lambda: cached_feature_dataset(rows, model, processor, cache_dir=os.path.join(folder, "cache"))
        )
        optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
        timings["with cache"] = [epoch(model, list(cached), feature_collator, args.batch_size, optimizer)
                                 for _ in range(args.epochs)]
    print(f"with cache: one-off encoding of the {len(feature_collator.text_features)} distinct utterances "
          f"{encode_seconds:.2f} s")
    for name, seconds in timings.items():
        later = seconds[1:]
        print(f"{name:13s}: epoch times {', '.join(f'{s:.3f}' for s in seconds)} s; "
              f"mean from epoch 2: {sum(later) / len(later):.3f} s")
    speedup = (sum(timings["without cache"][1:]) / sum(timings["with cache"][1:]))
    print(f"speed-up from epoch 2: {speedup:.1f}x (target >= 20x)")


if __name__ == "__main__":
    main()
