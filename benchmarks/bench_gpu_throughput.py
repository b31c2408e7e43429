"""
Pre-training throughput on one accelerator (utterances/s, forward + backward) and peak device memory: the table of
issue 29, one line per setting as it is measured, then a `torch.profiler` summary of one step of ours.

sizes:      benchmark (BERT 6x384 + HuBERT 4x384, d=384: `tcmp.presets.benchmark_*`, layer-norm front end) and base
            (BERT-base 12x768 + HuBERT-base 12x768, d=768: the `BertConfig()` / `HubertConfig()` defaults, HuBERT-base's
            group-norm front end), random init;
modes:      original (the original research code, when a copy with its driver is at `--original`, as in
            `bench_pretraining_throughput.py`; `.cuda()` is real there), reference (the original's processing in our
            model: one window a step, every utterance padded to 60 tokens and 80,000 samples, 10 negatives, whole-width
            encoder passes, the stock speech front end), ours (the library's defaults, `--windows` windows a step),
            floor (the bare encoders forward + backward on ours' batch);
precisions: fp32 with TF32 matmuls off (PyTorch's default), fp32 with TF32 on, bf16 autocast.

Each setting: `--warmup` untimed steps, then steps until `--seconds` have passed (at least 2). Data: random windows
of 11 utterances (5-20 random words, 1-5 s of noise at 16 kHz, MELD-like lengths). Without CUDA it runs the same code
on the CPU with tiny encoders and one timed step (a smoke run, not a figure).
"""

import argparse
import os
import sys
import time

import numpy as np
import torch
from transformers import BertConfig, HubertConfig

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.bench_pretraining_throughput import NUM_NEGATIVES, fixed_padding, load_original  # noqa: E402
from tcmp import TCMPConfig, TCMPForPreTraining  # noqa: E402
from tcmp.presets import (  # noqa: E402
    benchmark_audio_config,
    benchmark_text_config,
    make_processor,
    tiny_audio_config,
    tiny_text_config,
    word_tokenizer,
)
from tcmp.speech_front_end import use_stock_front_end  # noqa: E402

WORDS = [f"w{i}" for i in range(2000)]
WINDOW = 11
MODES = ("original", "reference", "ours", "floor")
PRECISIONS = ("fp32", "tf32", "bf16")


def encoder_configs(size: str, vocab_size: int):
    if size == "benchmark":
        return benchmark_text_config(vocab_size), benchmark_audio_config(), 384
    if size == "base":
        return BertConfig(vocab_size=vocab_size), HubertConfig(mask_time_prob=0.0), 768
    return tiny_text_config(vocab_size), tiny_audio_config(feat_extract_norm="group"), 32


def random_windows(count: int, seed: int, max_seconds: float) -> list[list[dict]]:
    rng = np.random.default_rng(seed)
    return [[{"speaker": "AB"[i % 2], "text": " ".join(rng.choice(WORDS, size=rng.integers(5, 21))),
              "audio": rng.standard_normal(int(16000 * rng.uniform(1.0, max_seconds))).astype(np.float32),
              "sampling_rate": 16000} for i in range(WINDOW)] for _ in range(count)]


def on(device, batch: dict) -> dict:
    return {key: value.to(device) for key, value in batch.items()}


def ours_batches(processor, count, windows, max_seconds, device) -> list[dict]:
    batches = []
    for seed in range(count):
        batch = dict(processor(random_windows(windows, seed, max_seconds)))
        batch["dialogue_ids"] = torch.arange(windows)
        batches.append(on(device, batch))
    return batches


def reference_batches(processor, count, max_seconds, device) -> tuple[list[dict], dict]:
    """One window a step, padded as the original pads, with its 10 extra negatives (`bench_pretraining_throughput`)."""
    negatives = fixed_padding(processor([[w[0]] for w in random_windows(NUM_NEGATIVES, 99, max_seconds)]))
    batches = []
    for seed in range(count):
        window = random_windows(1, seed, max_seconds)
        batch = {"utterance_mask": processor(window)["utterance_mask"], **fixed_padding(processor(window)),
                 **{"negative_" + k: v for k, v in negatives.items()}}
        batches.append(on(device, batch))
    return batches, negatives


def tcmp_step(model, batch, bf16, device):
    model.zero_grad(set_to_none=True)
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
        loss = model(**batch).loss
    loss.backward()


def floor_step(model, batch, bf16, device):
    """The encoders alone: pooled text and audio features forward + backward (their sum as the loss)."""
    model.zero_grad(set_to_none=True)
    base = model.tcmp
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
        text = base.pooled_text_features(batch["input_ids"], batch["attention_mask"], batch.get("token_type_ids"))
        audio = base.pooled_audio_features(batch["input_values"], batch["audio_attention_mask"])
        loss = text.float().sum() + audio.float().sum()
    loss.backward()


def synchronize(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def measure(run, batches, device, warmup, seconds, min_steps) -> tuple[float, float | None]:
    """`run(batch)` timed: (utterances/s, peak device memory in GB or None on CPU)."""
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    for i in range(warmup):
        run(batches[i % len(batches)])
    synchronize(device)
    steps, utterances, start = 0, 0, time.perf_counter()
    while steps < min_steps or time.perf_counter() - start < seconds:
        batch = batches[steps % len(batches)]
        run(batch)
        steps, utterances = steps + 1, utterances + int(batch["utterance_mask"].sum())
        synchronize(device)
    elapsed = time.perf_counter() - start
    peak = torch.cuda.max_memory_allocated() / 1e9 if device.type == "cuda" else None
    return utterances / elapsed, peak


def set_precision(precision: str, device) -> bool:
    """TF32 on for "tf32" only (CUDA); returns whether to autocast to bf16."""
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = precision == "tf32"
    return precision == "bf16"


def size_modes(size, processor, args, device, cuda) -> dict:
    """mode → (model, batches, step(model, batch, bf16, device)) for one size."""
    text, audio, hidden = encoder_configs(size, len(processor.tokenizer))
    max_seconds = 5.0 if cuda else 2.0
    torch.manual_seed(0)
    ours = TCMPForPreTraining(TCMPConfig(text_config=text, audio_config=audio, hidden_size=hidden)).to(device).train()
    reference = TCMPForPreTraining(
        TCMPConfig(text_config=text, audio_config=audio, hidden_size=hidden, encoder_chunk_size=None)
    ).to(device).train()
    use_stock_front_end(reference.tcmp.audio_model)
    batches = ours_batches(processor, 3, args.windows if cuda else 2, max_seconds, device)
    padded, negatives = reference_batches(processor, 2, max_seconds, device)
    modes = {"reference": (reference, padded, tcmp_step), "ours": (ours, batches, tcmp_step),
             "floor": (ours, batches, floor_step)}
    driver = load_original(args.original)
    if driver is not None:
        original = driver.build(text, audio, hidden)
        inputs = [driver.inputs(fixed_padding(processor(random_windows(1, seed, max_seconds))), negatives)
                  for seed in range(2)]
        modes["original"] = (original, inputs, lambda model, batch, bf16, device: driver.step(model, batch))
    return {mode: modes[mode] for mode in MODES if mode in modes}


def profile_one_step(model, batch, bf16, device, rows: int):
    """The `torch.profiler` summary of one step: the operators that take the most device (or CPU) time."""
    activities = [torch.profiler.ProfilerActivity.CPU]
    if device.type == "cuda":
        activities.append(torch.profiler.ProfilerActivity.CUDA)
    tcmp_step(model, batch, bf16, device)  # warm
    synchronize(device)
    with torch.profiler.profile(activities=activities) as profiler:
        tcmp_step(model, batch, bf16, device)
        synchronize(device)
    key = "cuda_time_total" if device.type == "cuda" else "cpu_time_total"
    print(profiler.key_averages().table(sort_by=key, row_limit=rows), flush=True)


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter, allow_abbrev=False
    )
    parser.add_argument("--sizes", default="benchmark,base")
    parser.add_argument("--windows", type=int, default=8, help="11-utterance windows in ours' step")
    parser.add_argument("--seconds", type=float, default=3.0, help="timed seconds per setting")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--original", default=os.path.join(os.path.dirname(os.path.dirname(__file__)), ".original"),
                        help="folder with a copy of the original code and its driver.py (skipped when absent)")
    parser.add_argument("--profile_rows", type=int, default=20)
    args = parser.parse_args()
    cuda = torch.cuda.is_available()
    device = torch.device("cuda" if cuda else "cpu")
    sizes = args.sizes.split(",") if cuda else ["tiny"]
    precisions = PRECISIONS if cuda else ("fp32", "bf16")
    if cuda:
        print(f"device: {torch.cuda.get_device_name()}, torch {torch.__version__}, bf16 supported: "
              f"{torch.cuda.is_bf16_supported()}", flush=True)
    else:
        print("no CUDA device: CPU smoke run of the same code paths (tiny encoders, one timed step), no figures",
              flush=True)
    processor = make_processor(word_tokenizer([" ".join(WORDS)]))
    print(f"ours: {args.windows if cuda else 2} windows x {WINDOW} utterances a step; reference/original: one window "
          f"padded to 60 tokens and 80,000 samples + {NUM_NEGATIVES} negatives; forward + backward", flush=True)
    print(f"{'size':9} | {'mode':9} | {'precision':9} | {'utt/s':>9} | peak memory", flush=True)
    for size in sizes:
        modes = size_modes(size, processor, args, device, cuda)
        for mode, (model, batches, step) in modes.items():
            for precision in precisions:
                bf16 = set_precision(precision, device)
                try:
                    rate, peak = measure(lambda batch: step(model, batch, bf16, device), batches, device,
                                         args.warmup if cuda else 1, args.seconds if cuda else 0.0, 2 if cuda else 1)
                except torch.OutOfMemoryError:
                    print(f"{size:9} | {mode:9} | {precision:9} | out of memory", flush=True)
                    continue
                memory = f"{peak:.2f} GB" if peak is not None else "n/a (CPU)"
                print(f"{size:9} | {mode:9} | {precision:9} | {rate:9.1f} | {memory}", flush=True)
        model, batches, _ = modes["ours"]
        print(f"\n[{size}] profile of one step of ours (bf16):", flush=True)
        set_precision("bf16", device)
        profile_one_step(model, batches[0], True, device, args.profile_rows)
        del modes, model, batches
        if cuda:
            torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
