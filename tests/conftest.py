"""Shared fixtures: a word tokenizer, tiny random TCMP configs and random dialogues."""

import numpy as np
import pytest
import torch

from tcmp.presets import make_processor, tiny_config, word_tokenizer


WORDS = "hello how are you fine thanks i am sad happy great terrible okay really what why no yes good bad".split()


@pytest.fixture(scope="session")
def tokenizer():
    return word_tokenizer([" ".join(WORDS)])


@pytest.fixture(scope="session")
def processor(tokenizer):
    return make_processor(tokenizer)


FRONT_ENDS = ("layer", "group")
"""Speech front ends (`feat_extract_norm`): layer norms (HuBERT-large style), group norm (HuBERT-base style)."""


@pytest.fixture
def config(tokenizer):
    return tiny_config(len(tokenizer), num_labels=3, dropout=0.0)


@pytest.fixture(params=FRONT_ENDS)
def config_each_front_end(tokenizer, request):
    """`config` with each speech front end, for results that must not depend on the batch."""
    return tiny_config(len(tokenizer), num_labels=3, dropout=0.0, feat_extract_norm=request.param)


def random_dialogues(seed: int, lengths, text=True, audio=True):
    """Dialogues of random words and 0.1–0.4 s of random audio at 16 kHz."""
    rng = np.random.default_rng(seed)
    dialogues = []
    for length in lengths:
        dialogue = []
        for _ in range(length):
            utterance = {"speaker": str(rng.integers(2))}
            if text:
                utterance["text"] = " ".join(rng.choice(WORDS, size=rng.integers(2, 9)))
            if audio:
                utterance["audio"] = rng.standard_normal(int(rng.integers(1600, 6400))).astype(np.float32)
                utterance["sampling_rate"] = 16000
            dialogue.append(utterance)
        dialogues.append(dialogue)
    return dialogues


@pytest.fixture
def make_batch(processor):
    def make(dialogues):
        return dict(processor(dialogues))

    return make


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
