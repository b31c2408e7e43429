"""Fixtures for the training-script tests: a tiny demo corpus and tiny-model flags shared by every run."""

import json
import os
import sys

import pytest


REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
if REPO not in sys.path:
    sys.path.insert(0, REPO)

TINY_DEMO = {
    "num_pretrain_dialogues": 15,
    "pretrain_turns": [12, 16],
    "num_labelled_dialogues": 16,
    "labelled_turns": [6, 8],
    "dev_fraction": 0.2,
    "test_fraction": 0.2,
    "clip_variants": 1,
}
"""Options of `tcmp.data.build_demo` for a corpus that trains in seconds."""


def tiny_flags(output_dir, *extra, dataset="demo", dataset_options=TINY_DEMO) -> list[str]:
    """Flags of a seconds-long run: tiny demo corpus, tiny random model, no logging integrations, no progress bars."""
    return [
        "--dataset", str(dataset),
        *(["--dataset_options", json.dumps(dataset_options)] if dataset_options else []),
        "--hidden_size", "16",
        "--max_audio_length", "4000",
        "--per_device_train_batch_size", "4",
        "--per_device_eval_batch_size", "4",
        "--report_to", "none",
        "--disable_tqdm", "true",
        "--seed", "0",
        "--output_dir", str(output_dir),
        *extra,
    ]


@pytest.fixture(scope="session")
def pretrained(tmp_path_factory):
    """A tiny pre-trained checkpoint folder (one epoch) and its results, shared by the tests that fine-tune from it."""
    import run_pretrain

    output_dir = tmp_path_factory.mktemp("pretrain")
    results = run_pretrain.main(tiny_flags(output_dir, "--num_train_epochs", "1", "--learning_rate", "1e-3"))
    return output_dir, results
