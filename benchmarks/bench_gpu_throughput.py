"""
Pre-training throughput on one accelerator (utterances/s, forward + backward) and peak device memory, printed one
line per setting as it is measured:

sizes:  benchmark (BERT 6x384 + HuBERT 4x384, d=384: `tcmp.presets.benchmark_*`) and base (BERT-base 12x768 +
        HuBERT-base 12x768, d=768: the `BertConfig()` / `HubertConfig()` defaults), random init;
dtype:  fp32, and bf16 autocast;
chunks: `encoder_chunk_size` None (one pass over the padded batch), 2 (length-sorted chunks of 2), "auto" (one pass
        on accelerators, audio in chunks of 2 on CPUs).

Each setting: `--warmup` untimed steps, then steps until `--seconds` have passed (at least 2). Data: random windows
of 11 utterances (5-20 random words, 1.5-5 s of noise at 16 kHz), `--windows` per step. Without CUDA it runs the
same code on the CPU with tiny encoders and one timed step (a smoke run, not a figure).
"""

import argparse
import os
import sys
import time

import numpy as np
import torch
from transformers import BertConfig, HubertConfig

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tcmp import TCMPConfig, TCMPForPreTraining  # noqa: E402
from tcmp.presets import (  # noqa: E402
    benchmark_audio_config,
    benchmark_text_config,
    make_processor,
    tiny_audio_config,
    tiny_text_config,
    word_tokenizer,
)


WORDS = [f"w{i}" for i in range(2000)]
WINDOW = 11


def encoder_configs(size: str, vocab_size: int):
    if size == "benchmark":
        return benchmark_text_config(vocab_size), benchmark_audio_config(), 384
    if size == "base":
        return BertConfig(vocab_size=vocab_size), HubertConfig(mask_time_prob=0.0), 768
    return tiny_text_config(vocab_size), tiny_audio_config(), 32


def random_windows(count: int, seed: int, max_seconds: float) -> list[list[dict]]:
    rng = np.random.default_rng(seed)
    return [[{"speaker": "AB"[i % 2], "text": " ".join(rng.choice(WORDS, size=rng.integers(5, 21))),
              "audio": rng.standard_normal(int(16000 * rng.uniform(1.5, max_seconds))).astype(np.float32),
              "sampling_rate": 16000} for i in range(WINDOW)] for _ in range(count)]


def make_batches(processor, count: int, windows: int, max_seconds: float, device) -> list[dict]:
    batches = []
    for seed in range(count):
        batch = dict(processor(random_windows(windows, seed, max_seconds)))
        batch["dialogue_ids"] = torch.arange(windows)
        batches.append({key: value.to(device) for key, value in batch.items()})
    return batches


def step(model, batch, bf16: bool, device) -> None:
    model.zero_grad(set_to_none=True)
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
        loss = model(**batch).loss
    loss.backward()


def synchronize(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def measure(model, batches, bf16, device, warmup, seconds, min_steps) -> tuple[float, float | None]:
    """(utterances/s, peak device memory in GB or None on CPU)."""
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    for i in range(warmup):
        step(model, batches[i % len(batches)], bf16, device)
    synchronize(device)
    steps, utterances, start = 0, 0, time.perf_counter()
    while steps < min_steps or time.perf_counter() - start < seconds:
        batch = batches[steps % len(batches)]
        step(model, batch, bf16, device)
        steps, utterances = steps + 1, utterances + int(batch["utterance_mask"].sum())
        synchronize(device)
    elapsed = time.perf_counter() - start
    peak = torch.cuda.max_memory_allocated() / 1e9 if device.type == "cuda" else None
    return utterances / elapsed, peak


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter, allow_abbrev=False
    )
    parser.add_argument("--sizes", default="benchmark,base")
    parser.add_argument("--windows", type=int, default=8, help="11-utterance windows per step")
    parser.add_argument("--seconds", type=float, default=5.0, help="timed seconds per setting")
    parser.add_argument("--warmup", type=int, default=2)
    args = parser.parse_args()
    cuda = torch.cuda.is_available()
    device = torch.device("cuda" if cuda else "cpu")
    sizes = args.sizes.split(",") if cuda else ["tiny"]
    if cuda:
        print(f"device: {torch.cuda.get_device_name()}, torch {torch.__version__}, bf16 supported: "
              f"{torch.cuda.is_bf16_supported()}", flush=True)
    else:
        print("no CUDA device: CPU smoke run of the same code paths (tiny encoders, one timed step), no figures",
              flush=True)
    windows, seconds, max_seconds = (args.windows, args.seconds, 5.0) if cuda else (2, 0.0, 2.0)
    processor = make_processor(word_tokenizer([" ".join(WORDS)]))
    batches = make_batches(processor, 3, windows, max_seconds, device)
    print(f"{windows} windows x {WINDOW} utterances per step, forward + backward, TF32 matmuls off (PyTorch default)",
          flush=True)
    for size in sizes:
        text, audio, hidden = encoder_configs(size, len(processor.tokenizer))
        base = TCMPForPreTraining(TCMPConfig(text_config=text, audio_config=audio, hidden_size=hidden)).to(device).train()
        print(f"[{size}] {sum(p.numel() for p in base.parameters()) / 1e6:.1f} M parameters", flush=True)
        for bf16 in (False, True):
            for chunk in (None, 2, "auto"):
                base.config.encoder_chunk_size = chunk
                try:
                    rate, peak = measure(base, batches, bf16, device, args.warmup if cuda else 1, seconds, 2 if cuda else 1)
                except torch.OutOfMemoryError:
                    print(f"[{size}] {'bf16' if bf16 else 'fp32'} chunks={chunk!s:4}: out of memory", flush=True)
                    continue
                memory = f", peak memory {peak:.2f} GB" if peak is not None else ""
                print(f"[{size}] {'bf16' if bf16 else 'fp32'} chunks={chunk!s:4}: {rate:8.1f} utterances/s{memory}",
                      flush=True)
        del base
        if cuda:
            torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
