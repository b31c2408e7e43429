"""Shared pieces of the benchmarks: the stated model size, realistic synthetic dialogues, timing and peak memory."""

import json
import resource
import statistics
import subprocess
import sys
import time

import numpy as np
import torch

from tcmp import TCMPConfig
from tcmp.presets import benchmark_audio_config, benchmark_text_config, make_processor, word_tokenizer


WORDS = (
    "i you we they it is are was not no yes okay really what why how when where so very just know think "
    "want need like love hate happy sad angry fine good bad great terrible sorry thanks hello right well "
    "oh come go get see look tell say mean sure maybe never always now then here there time today"
).split()
SAMPLING_RATE = 16000


def synthetic_dialogues(num_dialogues: int, length: int = 11, seed: int = 0, min_seconds=1.0, max_seconds=5.0):
    """Dialogues with the stated realistic lengths: 5–30 words of text and 1–5 s of 16 kHz audio per utterance."""
    rng = np.random.default_rng(seed)
    dialogues = []
    for _ in range(num_dialogues):
        dialogue = []
        for turn in range(length):
            seconds = rng.uniform(min_seconds, max_seconds)
            dialogue.append(
                {
                    "speaker": "AB"[turn % 2],
                    "text": " ".join(rng.choice(WORDS, size=int(rng.integers(5, 31)))),
                    "audio": (0.1 * rng.standard_normal(int(seconds * SAMPLING_RATE))).astype(np.float32),
                    "sampling_rate": SAMPLING_RATE,
                }
            )
        dialogues.append(dialogue)
    return dialogues


def benchmark_processor():
    return make_processor(word_tokenizer([" ".join(WORDS)]))


def benchmark_config(processor, **kwargs) -> TCMPConfig:
    """BERT 6 layers × 384 and HuBERT 4 layers × 384 (tcmp.presets), d = 384."""
    return TCMPConfig(
        text_config=benchmark_text_config(len(processor.tokenizer)),
        audio_config=benchmark_audio_config(),
        hidden_size=384,
        **kwargs,
    )


def timed(function):
    start = time.perf_counter()
    result = function()
    return time.perf_counter() - start, result


def percentile(values, q):
    return float(np.percentile(np.asarray(values), q))


def peak_rss_mb() -> float:
    """High-water resident set size of this process (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_child(script: str, args: list[str]) -> dict:
    """Run one measurement in a fresh process (so its peak RSS is its own) and read the JSON it prints last."""
    output = subprocess.run([sys.executable, script, *args], check=True, capture_output=True, text=True).stdout
    return json.loads(output.strip().splitlines()[-1])


def settings_line(**settings) -> str:
    threads = torch.get_num_threads()
    return "settings: " + ", ".join(f"{k}={v}" for k, v in {**settings, "torch_threads": threads}.items())


def median(values):
    return statistics.median(values)


def length_bucketed_features(model, batch: dict, chunk_size: int = 8) -> dict:
    """
    The batch's encoder features computed in chunks of utterances of similar length, each chunk cut to its own
    longest utterance (through the model's own `text_features` / `audio_features`, so gradients still reach the
    encoders). Returns the batch with `text_features` / `audio_features` in place of the raw inputs.
    """
    base = model.base_model
    out = {k: v for k, v in batch.items() if k not in ("input_ids", "attention_mask", "token_type_ids",
                                                        "input_values", "audio_attention_mask")}
    for name, mask_name, encode, inputs in (
        ("text_features", "attention_mask", base.text_features, ("input_ids", "attention_mask", "token_type_ids")),
        ("audio_features", "audio_attention_mask", base.audio_features, ("input_values", "audio_attention_mask")),
    ):
        if mask_name not in batch:
            continue
        lengths = batch[mask_name].sum(dim=1)
        order = lengths.argsort()
        pieces = []
        for chunk in order.split(chunk_size):
            longest = int(lengths[chunk].max())
            pieces.append(encode(*[batch[k][chunk, :longest] if k in batch else None for k in inputs]))
        features = torch.cat(pieces)
        out[name] = features[order.argsort()]
    return out
