"""Shared pieces of the benchmarks: the stated model size, dialogues of the demo corpus, timing."""

import functools
import os
import statistics
import tempfile
import time

import numpy as np
import torch

from transformers import BertTokenizer

from tcmp import TCMPConfig
from tcmp.presets import benchmark_audio_config, benchmark_text_config, make_processor, word_tokenizer


DEMO_CACHE = os.path.join(tempfile.gettempdir(), "tcmp-benchmarks-demo")
"""Where the benchmarks keep the demo corpus they build (`tcmp.data.build_demo`, cached by `datasets`)."""
SAMPLING_RATE = 16000


@functools.cache
def demo_pretraining_dialogues():
    """The demo corpus's pre-training dialogues (rows of per-utterance lists): 200 dialogues of 20–40 utterances."""
    from tcmp.data import build_demo

    return build_demo(cache_dir=DEMO_CACHE, num_pretrain_dialogues=200, num_labelled_dialogues=8,
                      dev_fraction=0.0, test_fraction=0.0)[0]["train"]


def demo_dialogues(num_dialogues: int, length: int, first: int = 0) -> list[list[dict]]:
    """
    `num_dialogues` demo dialogues (from the `first`-th on) cut to their first `length` utterances, as the processor
    takes them: demo text (5–20 words) and its synthesised 16 kHz audio (1.5–5 s), decoded with `load_audio`.
    """
    from tcmp.data import load_audio

    rows = demo_pretraining_dialogues()
    return [[{"speaker": row["speaker"][i], "text": row["text"][i], "audio": load_audio(row["audio_path"][i]),
              "sampling_rate": SAMPLING_RATE} for i in range(length)]
            for row in rows.select(range(first, first + num_dialogues))]


def demo_turns(num_turns: int, first_dialogue: int = 0) -> list[dict]:
    """A conversation of `num_turns` demo utterances: consecutive demo dialogues joined end to end."""
    dialogues = demo_dialogues(-(-num_turns // 20), 20, first=first_dialogue)
    return [turn for dialogue in dialogues for turn in dialogue][:num_turns]


def length_summary(dialogues: list[list[dict]]) -> str:
    """The text (words) and audio (seconds) lengths of the utterances measured: min–max (median)."""
    words = [len(u["text"].split()) for d in dialogues for u in d]
    seconds = [len(u["audio"]) / u["sampling_rate"] for d in dialogues for u in d]
    return (f"text {min(words)}–{max(words)} words (median {statistics.median(words):g}), "
            f"audio {min(seconds):.1f}–{max(seconds):.1f} s (median {statistics.median(seconds):.1f})")


def benchmark_processor():
    """A word tokenizer over the demo corpus's texts + the speech feature extractor (60 tokens, 5 s)."""
    return make_processor(word_tokenizer(text for texts in demo_pretraining_dialogues()["text"] for text in texts))


def saved_or_demo_utterances(path: str | None, num_windows: int, window: int, num_negatives: int) -> dict:
    """
    `num_windows` demo dialogues cut to `window` utterances, `num_negatives` more utterances (the first of the next
    dialogues) and the benchmark tokenizer's vocabulary: read from `path` (a `torch.save` file) when it exists, else
    built from the demo corpus and, when `path` is given, written there, so a machine without `datasets` and
    `soundfile` can time the same utterances.
    """
    if path is not None and os.path.exists(path):
        saved = torch.load(path, weights_only=True)
        if len(saved["dialogues"]) < num_windows or len(saved["negatives"]) < num_negatives:
            raise ValueError(f"{path} holds {len(saved['dialogues'])} windows and {len(saved['negatives'])} "
                             f"negatives; this run needs {num_windows} and {num_negatives}: write it again")
        return saved
    dialogues = demo_dialogues(num_windows + num_negatives, window)
    for dialogue in dialogues:
        for utterance in dialogue:
            utterance["audio"] = torch.from_numpy(np.asarray(utterance["audio"], dtype=np.float32))
    saved = {
        "dialogues": dialogues[:num_windows],
        "negatives": [d[0] for d in dialogues[num_windows:]],
        "vocabulary": benchmark_processor().tokenizer.get_vocab(),
        "lengths": length_summary(dialogues[:num_windows]),
    }
    if path is not None:
        torch.save(saved, path)
    return saved


def processor_with_vocabulary(vocabulary: dict):
    """The benchmark processor (`benchmark_processor`) from a saved word vocabulary (token → id)."""
    return make_processor(BertTokenizer(vocab=vocabulary, do_lower_case=True))


def benchmark_config(processor, feat_extract_norm: str = "layer", **kwargs) -> TCMPConfig:
    """BERT 6 layers × 384 and HuBERT 4 layers × 384 (tcmp.presets; `feat_extract_norm` its front end), d = 384."""
    return TCMPConfig(
        text_config=benchmark_text_config(len(processor.tokenizer)),
        audio_config=benchmark_audio_config(feat_extract_norm),
        hidden_size=384,
        **kwargs,
    )


def timed(function):
    start = time.perf_counter()
    result = function()
    return time.perf_counter() - start, result


def percentile(values, q):
    return float(np.percentile(np.asarray(values), q))


def settings_line(**settings) -> str:
    threads = torch.get_num_threads()
    return "settings: " + ", ".join(f"{k}={v}" for k, v in {**settings, "torch_threads": threads}.items())


def median(values):
    return statistics.median(values)
