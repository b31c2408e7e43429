"""Pre-training throughput (utterances/s, forward + backward) and peak memory: ours vs the original's processing.

ours:      several 11-utterance windows per step, each utterance encoded once, padded to the longest of the batch,
           the other windows' utterances as negatives (in-batch) — the library as it is.
bucketed:  the same batches, with the encoders run on chunks of similar-length utterances each cut to its own
           longest (benchmarks.common.length_bucketed_features, through the model's own text/audio_features).
reference: one 11-utterance window per step, every utterance padded to 60 tokens and 80,000 samples, and 10 extra
           negatives (text + audio) encoded separately through the encoders, as in the original code.
Each mode runs in its own process, so the reported peak RSS is its own.
"""

import argparse
import json
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.common import (  # noqa: E402
    benchmark_config,
    benchmark_processor,
    length_bucketed_features,
    peak_rss_mb,
    run_child,
    settings_line,
    synthetic_dialogues,
    timed,
)
from tcmp import TCMPForPreTraining  # noqa: E402


WINDOW = 11
NUM_NEGATIVES = 10


def fixed_padding(batch: dict, prefix: str = "") -> dict:
    """Pad every utterance to 60 tokens and 80,000 samples, like the original code."""
    pads = {"input_ids": 60, "attention_mask": 60, "token_type_ids": 60, "input_values": 80000, "audio_attention_mask": 80000}
    return {
        prefix + name: torch.nn.functional.pad(tensor, (0, pads[name] - tensor.shape[1]))
        for name, tensor in batch.items()
        if name in pads
    }


def step(model, batch, bucketed=False):
    model.zero_grad(set_to_none=True)
    loss = model(**(length_bucketed_features(model, batch) if bucketed else batch)).loss
    loss.backward()
    return loss.item()


def measure(mode: str, steps: int, windows_per_step: int):
    torch.manual_seed(0)
    processor = benchmark_processor()
    model = TCMPForPreTraining(benchmark_config(processor)).train()
    per_step = 1 if mode == "reference" else windows_per_step
    dialogues = synthetic_dialogues((steps + 1) * per_step + NUM_NEGATIVES, WINDOW, seed=1)
    negatives_pool = [d[0] for d in dialogues[-NUM_NEGATIVES:]]
    batches = []
    for s in range(steps + 1):
        windows = dialogues[s * per_step : (s + 1) * per_step]
        if mode != "reference":
            batch = dict(processor(windows))
            batch["dialogue_ids"] = torch.arange(len(windows))
        else:
            batch = {"utterance_mask": processor(windows)["utterance_mask"], **fixed_padding(processor(windows))}
            batch.update(fixed_padding(processor([[u] for u in negatives_pool]), prefix="negative_"))
        batches.append(batch)
    bucketed = mode == "bucketed"
    step(model, batches[0], bucketed)  # warm-up
    seconds, _ = timed(lambda: [step(model, b, bucketed) for b in batches[1:]])
    utterances = steps * per_step * WINDOW
    return {"mode": mode, "utterances": utterances, "seconds": seconds, "per_second": utterances / seconds,
            "peak_rss_mb": peak_rss_mb()}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=3, help="timed steps of ours (the reference runs steps × windows)")
    parser.add_argument("--windows_per_step", type=int, default=4)
    parser.add_argument("--mode", choices=["ours", "bucketed", "reference"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.mode:
        steps = args.steps * args.windows_per_step if args.mode == "reference" else args.steps
        print(json.dumps(measure(args.mode, steps, args.windows_per_step)))
        return
    print(settings_line(text="BERT 6x384", audio="HuBERT 4x384", text_words="5-30", audio_seconds="1-5",
                        window=WINDOW, windows_per_step=args.windows_per_step, steps=args.steps,
                        data="synthetic (random words, noise audio)"))
    common = ["--steps", str(args.steps), "--windows_per_step", str(args.windows_per_step)]
    results = {mode: run_child(__file__, common + ["--mode", mode]) for mode in ("reference", "ours", "bucketed")}
    for mode, r in results.items():
        print(f"{mode:9s}: {r['utterances']} utterances in {r['seconds']:.1f} s = {r['per_second']:.2f} utt/s, "
              f"peak RSS {r['peak_rss_mb']:.0f} MB")
    for mode in ("ours", "bucketed"):
        speedup = results[mode]["per_second"] / results["reference"]["per_second"]
        print(f"speed-up of {mode} over reference: {speedup:.2f}x (target >= 4x)")


if __name__ == "__main__":
    main()
