"""Pre-training throughput (utterances/s, forward + backward, fp32 unless named): ours against the original code.

original:  the original research code itself (`TCMP_pre` of cm-xcju/TCMP), when a copy of it with a driver is at
           `--original` (a folder outside the repository's tracked files, see the README): one 11-utterance window
           per step, every utterance padded to 60 tokens and 80,000 samples, 10 negatives encoded in a second pass.
reference: the original's processing inside our model: the same windows, padding and negatives, each encoder pass
           over the whole fixed width (`encoder_chunk_size=None`) and the stock Transformers speech front end, as the
           original's.
ours:      the library's defaults: `--windows_per_step` windows a step, each utterance encoded once, the other
           windows' utterances as negatives, the encoders on length-sorted chunks, the speech front end on contiguous
           memory (`tcmp.speech_front_end`).
floor:     the bare encoders: `pooled_text_features` + `pooled_audio_features` forward + backward on ours' batch, with
           the same chunking, and nothing else.
ours_bf16: ours under bf16 autocast (what `--bf16` gives the training scripts).
ours_group_norm: ours with HuBERT-base's group-norm front end (`feat_extract_norm="group"`), batched like ours: its
           first GroupNorm takes each utterance's statistics over its own frames (`tcmp.speech_front_end`).

Every mode runs in this one process, in rounds: a round times each mode once, in turn, after one warm-up step each,
so a machine's drift falls on all of them alike, and ratios are taken within a round. The original and reference
pad every utterance to the same width, so their step time does not depend on which window they get: they time
`--reference_windows` windows a round (the first of ours'), ours one step.
"""

import argparse
import importlib.util
import os
import statistics
import sys

import torch

REPOSITORY = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPOSITORY)

from benchmarks.common import processor_with_vocabulary, saved_or_demo_utterances, settings_line, timed  # noqa: E402
from tcmp import TCMPConfig, TCMPForPreTraining  # noqa: E402
from tcmp.presets import benchmark_audio_config, benchmark_text_config  # noqa: E402
from tcmp.speech_front_end import use_stock_front_end  # noqa: E402

WINDOW = 11
NUM_NEGATIVES = 10
TEXT_WIDTH, AUDIO_WIDTH = 60, 80000
MODES = ("original", "reference", "ours", "floor", "ours_bf16", "ours_group_norm")


def fixed_padding(batch: dict, prefix: str = "") -> dict:
    """Pad every utterance to 60 tokens and 80,000 samples, like the original code."""
    widths = {"input_ids": TEXT_WIDTH, "attention_mask": TEXT_WIDTH, "token_type_ids": TEXT_WIDTH,
              "input_values": AUDIO_WIDTH, "audio_attention_mask": AUDIO_WIDTH}
    return {
        prefix + name: torch.nn.functional.pad(tensor, (0, widths[name] - tensor.shape[1]))
        for name, tensor in batch.items()
        if name in widths
    }


def load_original(folder: str):
    """The driver module of a copy of the original code (`driver.py` in `folder`), or None when there is none."""
    path = os.path.join(folder, "driver.py")
    if not os.path.isfile(path):
        return None
    spec = importlib.util.spec_from_file_location("tcmp_original_driver", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def tcmp_step(model, batch, bf16=False):
    model.zero_grad(set_to_none=True)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        loss = model(**batch).loss
    loss.backward()
    return loss.item()


def floor_step(model, batch):
    """The encoders alone: pooled text and audio features forward + backward (their sum as the loss)."""
    model.zero_grad(set_to_none=True)
    base = model.tcmp
    text = base.pooled_text_features(batch["input_ids"], batch["attention_mask"], batch.get("token_type_ids"))
    audio = base.pooled_audio_features(batch["input_values"], batch["audio_attention_mask"])
    loss = text.sum() + audio.sum()
    loss.backward()
    return loss.item()


def build_modes(args, utterances) -> dict:
    """mode → (utterances a step, [warm-up step, timed step]) as zero-argument callables."""
    processor = processor_with_vocabulary(utterances["vocabulary"])
    text_config = benchmark_text_config(len(processor.tokenizer))
    dialogues, negatives_pool = utterances["dialogues"], utterances["negatives"]
    per_step = args.windows_per_step
    timed_windows, warm_windows = dialogues[:per_step], dialogues[per_step : 2 * per_step]
    negatives = fixed_padding(processor([[u] for u in negatives_pool]))

    def ours_batch(windows):
        batch = dict(processor(windows))
        batch["dialogue_ids"] = torch.arange(len(windows))
        return batch

    def reference_batches(windows):
        return [{"utterance_mask": processor([w])["utterance_mask"], **fixed_padding(processor([w])),
                 **{"negative_" + k: v for k, v in negatives.items()}} for w in windows]

    torch.manual_seed(0)
    ours = TCMPForPreTraining(TCMPConfig(text_config=text_config, audio_config=benchmark_audio_config(),
                                         hidden_size=384)).train()
    reference = TCMPForPreTraining(TCMPConfig(text_config=text_config, audio_config=benchmark_audio_config(),
                                              hidden_size=384, encoder_chunk_size=None)).train()
    use_stock_front_end(reference.tcmp.audio_model)
    group_norm = TCMPForPreTraining(TCMPConfig(text_config=text_config, hidden_size=384,
                                               audio_config=benchmark_audio_config(feat_extract_norm="group"))).train()
    ours_timed, ours_warm = ours_batch(timed_windows), ours_batch(warm_windows)
    reference_timed = reference_batches(timed_windows[: args.reference_windows])
    reference_warm = reference_batches(warm_windows[:1])
    modes = {
        "reference": (len(reference_timed) * WINDOW, [
            lambda: [tcmp_step(reference, b) for b in reference_warm],
            lambda: [tcmp_step(reference, b) for b in reference_timed],
        ]),
        "ours": (per_step * WINDOW, [lambda: tcmp_step(ours, ours_warm), lambda: tcmp_step(ours, ours_timed)]),
        "floor": (per_step * WINDOW, [lambda: floor_step(ours, ours_warm), lambda: floor_step(ours, ours_timed)]),
        "ours_bf16": (per_step * WINDOW, [
            lambda: tcmp_step(ours, ours_warm, bf16=True), lambda: tcmp_step(ours, ours_timed, bf16=True),
        ]),
        "ours_group_norm": (per_step * WINDOW, [
            lambda: tcmp_step(group_norm, ours_warm), lambda: tcmp_step(group_norm, ours_timed),
        ]),
    }
    driver = load_original(args.original)
    if driver is not None:
        original = driver.build(text_config, benchmark_audio_config(), 384)
        original_timed = [driver.inputs(fixed_padding(processor([w])), negatives)
                          for w in timed_windows[: args.reference_windows]]
        original_warm = [driver.inputs(fixed_padding(processor([w])), negatives) for w in warm_windows[:1]]
        modes["original"] = (len(original_timed) * WINDOW, [
            lambda: [driver.step(original, b) for b in original_warm],
            lambda: [driver.step(original, b) for b in original_timed],
        ])
    return {mode: modes[mode] for mode in MODES if mode in modes}


def spread(values) -> str:
    return f"{statistics.median(values):.3f} (min {min(values):.3f}, max {max(values):.3f})"


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter, allow_abbrev=False
    )
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds (each times every mode once)")
    parser.add_argument("--windows_per_step", type=int, default=4, help="windows in ours' step")
    parser.add_argument("--reference_windows", type=int, default=1, help="windows the original/reference time a round")
    parser.add_argument("--original", default=os.path.join(REPOSITORY, ".original"),
                        help="folder with a copy of the original code and its driver.py (skipped when absent)")
    parser.add_argument("--utterances", default=None,
                        help="a .pt file of the timed utterances: read when it exists, else built from the demo "
                             "corpus and written there (for a machine without `datasets`/`soundfile`)")
    parser.add_argument("--skip", nargs="*", default=[], choices=["ours_bf16", "ours_group_norm"],
                        help="optional modes to leave out (bf16 is slow on CPUs without fast bf16 kernels)")
    args = parser.parse_args()
    utterances = saved_or_demo_utterances(args.utterances, 2 * args.windows_per_step, WINDOW, NUM_NEGATIVES)
    modes = {mode: step for mode, step in build_modes(args, utterances).items() if mode not in args.skip}
    print(settings_line(text="BERT 6x384", audio="HuBERT 4x384", d=384, window=WINDOW,
                        windows_per_step=args.windows_per_step, reference_windows=args.reference_windows,
                        rounds=args.rounds, modes="/".join(modes),
                        data="demo corpus pre-training dialogues, first 11 utterances each"))
    print(f"utterances timed (ours): {utterances['lengths']}")
    warm_up_seconds, _ = timed(lambda: [warm() for _, (warm, _) in modes.values()])
    print(f"warm-up (one step of each mode): {warm_up_seconds:.0f} s", flush=True)
    rates = {mode: [] for mode in modes}
    for r in range(args.rounds):
        for mode, (count, (_, step)) in modes.items():
            seconds, _ = timed(step)
            rates[mode].append(count / seconds)
        print(f"round {r + 1}: " + ", ".join(f"{mode} {rates[mode][-1]:.3f}" for mode in modes) + " utt/s", flush=True)
    for mode, values in rates.items():
        print(f"{mode:9s}: {spread(values)} utt/s")
    base = "original" if "original" in modes else "reference"
    for mode in modes:
        if mode != base:
            print(f"{mode} / {base}: {spread([a / b for a, b in zip(rates[mode], rates[base])])}x")
    print(f"ours / floor: {spread([a / b for a, b in zip(rates['floor'], rates['ours'])])}x the time (target <= 1.2)")
    if base == "original":
        agreement = statistics.median(a / b for a, b in zip(rates["reference"], rates["original"]))
        verdict = "within" if abs(agreement - 1) <= 0.10 else "NOT within"
        print(f"reference vs original: {agreement:.3f}x the original's utt/s, {verdict} 10%")


if __name__ == "__main__":
    main()
