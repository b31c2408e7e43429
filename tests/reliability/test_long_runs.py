"""
Long runs hold nothing per step: the number of live tensors after many pre-training steps or streaming turns equals
the number after a few (a leak of one tensor per step would show). The resident-memory figures of long runs are in
benchmarks/bench_long_run_memory.py.
"""

import gc

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from tcmp import StreamingPreRecognizer, TCMPForEmotionPreRecognition, TCMPForPreTraining
from tcmp.collator import TCMPDataCollator
from tcmp.data import PretrainingWindows, build_demo
from tcmp.presets import make_processor, tiny_config, word_tokenizer
from tests.scripts.conftest import TINY_DEMO


def live_tensors() -> int:
    gc.collect()
    return sum(1 for obj in gc.get_objects() if type(obj) is torch.Tensor or type(obj) is torch.nn.Parameter)


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    pretraining, _ = build_demo(cache_dir=str(tmp_path_factory.mktemp("demo")), **TINY_DEMO)
    dialogues = pretraining["train"]
    processor = make_processor(word_tokenizer(" ".join(row) for row in dialogues["text"]), max_audio_length=4000)
    return dialogues, processor


@pytest.mark.slow
def test_pretraining_steps_hold_no_tensors(demo):
    dialogues, processor = demo
    model = TCMPForPreTraining(tiny_config(len(processor.tokenizer))).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    windows = PretrainingWindows(dialogues)
    collator = TCMPDataCollator.for_model(processor, model.config)
    counts, losses, step = {}, [], 0
    for epoch in range(20):
        windows.set_epoch(epoch)
        for batch in DataLoader(windows, batch_size=4, shuffle=True, collate_fn=collator):
            loss = model(**batch).loss
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            losses.append(loss.item())
            del batch, loss
            step += 1
            if step in (5, 30):
                counts[step] = live_tensors()
        if step >= 30:
            break
    assert counts[30] == counts[5], f"live tensors grew from {counts[5]} (step 5) to {counts[30]} (step 30)"
    assert np.isfinite(losses).all() and np.mean(losses[-5:]) < np.mean(losses[:5])


@pytest.mark.slow
def test_streaming_turns_hold_no_tensors(demo):
    dialogues, processor = demo
    model = TCMPForEmotionPreRecognition(tiny_config(len(processor.tokenizer), num_labels=3)).eval()
    recognizer = StreamingPreRecognizer(model, processor)
    rng = np.random.default_rng(0)
    texts = [text for row in dialogues["text"] for text in row]
    counts = {}
    for turn in range(1, 301):
        audio = rng.standard_normal(int(rng.integers(800, 4000))).astype(np.float32)
        utterance = {"text": texts[turn % len(texts)], "audio": audio, "sampling_rate": 16000}
        recognizer.add_utterances({"call-1": utterance, "call-2": utterance})
        if turn in (50, 300):
            counts[turn] = live_tensors()
    assert counts[300] == counts[50], f"live tensors grew from {counts[50]} (turn 50) to {counts[300]} (turn 300)"
    assert {name: s.turns for name, s in recognizer.sessions.items()} == {"call-1": 300, "call-2": 300}
