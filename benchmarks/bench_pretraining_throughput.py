"""Pre-training throughput (utterances/s, forward + backward) and peak memory: ours vs the original's processing.

reference: one 11-utterance window per step, every utterance padded to 60 tokens and 80,000 samples, and 10 extra
           negatives (text + audio) encoded separately through the encoders, as in the original code (fp32); each
           encoder pass runs over the whole fixed width (`encoder_chunk_size=None`), as the original's did.
one_pass:  several 11-utterance windows per step, each utterance encoded once, the other windows' utterances as
           negatives (in-batch), the encoders run on the whole batch padded to its longest utterance
           (`encoder_chunk_size=None`), fp32.
ours:      the library's defaults: as one_pass, with the encoders run on length-sorted chunks (`encoder_chunk_size`
           "auto": 2 utterances on CPU), each padded only to its own longest, fp32.
ours_bf16: ours under bf16 autocast (what `--bf16` gives the training scripts on a CPU with AVX512-BF16 or AMX).
ours_frozen_front_end: ours (fp32) with the speech encoder's convolutional front end fixed (`--freeze_feature_encoder`,
           as the Transformers speech fine-tuning examples do); not like for like: that front end is not trained.
ours_group_norm: ours (fp32) with HuBERT-base's group-norm front end (`feat_extract_norm="group"`, no conv bias),
           whose features change with padding: each speech-encoder pass holds utterances of one length only, so the
           cost of batch-independent features shows against ours.
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
    demo_dialogues,
    length_summary,
    peak_rss_mb,
    run_child,
    settings_line,
    timed,
)
from tcmp import TCMPConfig, TCMPForPreTraining  # noqa: E402


WINDOW = 11
NUM_NEGATIVES = 10
MODES = ("reference", "one_pass", "ours", "ours_bf16", "ours_frozen_front_end", "ours_group_norm")


def fixed_padding(batch: dict, prefix: str = "") -> dict:
    """Pad every utterance to 60 tokens and 80,000 samples, like the original code."""
    pads = {"input_ids": 60, "attention_mask": 60, "token_type_ids": 60, "input_values": 80000, "audio_attention_mask": 80000}
    return {
        prefix + name: torch.nn.functional.pad(tensor, (0, pads[name] - tensor.shape[1]))
        for name, tensor in batch.items()
        if name in pads
    }


def step(model, batch, bf16=False):
    model.zero_grad(set_to_none=True)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        loss = model(**batch).loss
    loss.backward()
    return loss.item()


def measure(mode: str, steps: int, windows_per_step: int):
    torch.manual_seed(0)
    processor = benchmark_processor()
    chunk_size = None if mode in ("reference", "one_pass") else TCMPConfig.encoder_chunk_size
    frozen_front_end = mode == "ours_frozen_front_end"
    config = benchmark_config(
        processor,
        feat_extract_norm="group" if mode == "ours_group_norm" else "layer",
        encoder_chunk_size=chunk_size,
        freeze_feature_encoder=frozen_front_end,
    )
    model = TCMPForPreTraining(config).train()
    per_step = 1 if mode == "reference" else windows_per_step
    dialogues = demo_dialogues((steps + 1) * per_step + NUM_NEGATIVES, WINDOW)
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
    bf16 = mode == "ours_bf16"
    step(model, batches[0], bf16)  # warm-up
    seconds, _ = timed(lambda: [step(model, b, bf16) for b in batches[1:]])
    utterances = steps * per_step * WINDOW
    return {"mode": mode, "utterances": utterances, "seconds": seconds, "per_second": utterances / seconds,
            "peak_rss_mb": peak_rss_mb(), "lengths": length_summary(dialogues)}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=3, help="timed steps of ours (the reference runs steps × windows)")
    parser.add_argument("--windows_per_step", type=int, default=4)
    parser.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES), help="the modes to run (default: all)")
    parser.add_argument("--mode", choices=MODES, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.mode:
        steps = args.steps * args.windows_per_step if args.mode == "reference" else args.steps
        print(json.dumps(measure(args.mode, steps, args.windows_per_step)))
        return
    print(settings_line(text="BERT 6x384", audio="HuBERT 4x384", window=WINDOW,
                        windows_per_step=args.windows_per_step, steps=args.steps,
                        data="demo corpus pre-training dialogues (tcmp.data.build_demo), first 11 utterances each"))
    common = ["--steps", str(args.steps), "--windows_per_step", str(args.windows_per_step)]
    results = {mode: run_child(__file__, common + ["--mode", mode]) for mode in MODES if mode in args.modes}
    print(f"utterances timed: {results.get('ours', next(iter(results.values())))['lengths']}")
    for mode, r in results.items():
        print(f"{mode:21s}: {r['utterances']} utterances in {r['seconds']:.1f} s = {r['per_second']:.2f} utt/s, "
              f"peak RSS {r['peak_rss_mb']:.0f} MB")
    for mode in results:
        if mode != "reference" and "reference" in results:
            speedup = results[mode]["per_second"] / results["reference"]["per_second"]
            print(f"speed-up of {mode} over reference: {speedup:.2f}x (target >= 4x)")
    if "ours" in results and "ours_group_norm" in results:
        ratio = results["ours_group_norm"]["per_second"] / results["ours"]["per_second"]
        print(f"ours_group_norm / ours (layer-norm front end): {ratio:.2f}x the throughput")


if __name__ == "__main__":
    main()
