"""run_pretrain.py end to end on a tiny config and corpus."""

import json

import pytest

import numpy as np
import torch
from transformers import AutoModel, AutoModelForPreTraining, AutoProcessor
from transformers.trainer_utils import EvalPrediction

import run_pretrain
from tcmp import TCMPForPreTraining
from tcmp.data import PretrainingWindows, load_pretraining_dataset
from tcmp.feature_cache import CachedFeatureWindows
from tcmp.metrics import RetrievalMetrics
from tcmp.training import (
    ModelArguments,
    PretrainingArguments,
    SetEpochCallback,
    TCMPPreTrainer,
    build_model_and_processor,
    data_collator,
    training_texts,
)

from .conftest import TINY_DEMO, tiny_flags


RETRIEVAL = ("r1@5", "r2@5", "r1@11", "r2@11")


def test_pretrain_writes_metrics_checkpoint_and_card(pretrained):
    output_dir, results = pretrained
    saved = json.loads((output_dir / "all_results.json").read_text())
    for prefix in ("eval", "test"):
        for stream in ("text", "audio", "fused"):
            for name in RETRIEVAL:
                assert 0.0 <= saved[f"{prefix}_{stream}_{name}"] <= 1.0
    assert saved == {k: v for k, v in results.items() if k in saved}
    assert "train_loss" in saved
    base = AutoModel.from_pretrained(output_dir)
    head = AutoModelForPreTraining.from_pretrained(output_dir)
    assert isinstance(head, TCMPForPreTraining)
    torch.testing.assert_close(base.state_dict()["fusion.weight"], head.state_dict()["tcmp.fusion.weight"])
    processor = AutoProcessor.from_pretrained(output_dir)
    assert processor.tokenizer.get_vocab() == AutoProcessor.from_pretrained(next(output_dir.glob("checkpoint-*"))).tokenizer.get_vocab()
    card = (output_dir / "README.md").read_text()
    assert "Reconstruction rule" in card and "test_text_r1@11" in card


def test_retrieval_metrics_do_not_depend_on_batching(tmp_path):
    """Candidate sets are fixed by a seed over the whole eval set: the eval batch size changes nothing."""
    dialogues = load_pretraining_dataset("demo", **TINY_DEMO)
    model_args = ModelArguments(hidden_size=16)
    model, processor = build_model_and_processor(model_args, TCMPForPreTraining, training_texts(dialogues["train"]))
    windows = PretrainingWindows(dialogues["validation"], window=11, stride=5, seed=0)
    _, collator = data_collator(model_args, {}, model, processor)
    scores = []
    for batch_size in (2, 5):
        args = PretrainingArguments(output_dir=str(tmp_path), per_device_eval_batch_size=batch_size, report_to="none")
        trainer = TCMPPreTrainer(
            model=model, args=args, data_collator=collator, eval_dataset=windows, processing_class=processor,
            compute_metrics=RetrievalMetrics(model.config.available_streams, seed=0),
        )
        scores.append(trainer.evaluate())
    for name in RETRIEVAL:
        assert scores[0][f"eval_text_{name}"] == scores[1][f"eval_text_{name}"]


def test_retrieval_metrics_ignore_unpredicted_slots():
    """Slots marked -100 (padding, the first two utterances of a window) never become predictions or candidates."""
    groups = np.arange(6)[:, None].repeat(4, axis=1)
    groups[:, :2] = -100
    predicted = np.zeros((6, 4, 3, 12), dtype=np.float32)
    predicted[groups != -100] = np.eye(12, dtype=np.float32)[:, None, :]  # distinct one-hot predictions
    target = predicted.copy()  # a perfect predictor: each prediction is its own target
    perfect = RetrievalMetrics(["text"], seed=0)(EvalPrediction(predictions=(predicted, target), label_ids=groups))
    assert all(perfect[f"text_{name}"] == 1.0 for name in RETRIEVAL)
    target[groups == -100] = 1e6  # garbage where nothing is predicted must change nothing
    again = RetrievalMetrics(["text"], seed=0)(EvalPrediction(predictions=(predicted, target), label_ids=groups))
    assert again == perfect


def test_set_epoch_callback_shifts_the_windows():
    dialogues = load_pretraining_dataset("demo", **TINY_DEMO)["train"]
    windows = PretrainingWindows(dialogues, window=11, stride=5, seed=0)
    first = [windows[i]["utterance_id"] for i in range(len(windows))]
    SetEpochCallback(windows).on_epoch_begin(None, type("State", (), {"epoch": 1.0})(), None)
    assert [windows[i]["utterance_id"] for i in range(len(windows))] != first


def test_selection_metric_must_name_a_stream_of_the_model(tmp_path):
    with pytest.raises(ValueError, match="needs the audio stream"):
        run_pretrain.main(tiny_flags(tmp_path, "--text_only", "--metric_for_best_model", "audio_r1@11"))


def test_cached_feature_windows_hold_the_features_of_the_window_utterances(tmp_path):
    dialogues = load_pretraining_dataset("demo", **TINY_DEMO)
    model_args = ModelArguments(
        hidden_size=16, text_only=True, freeze_encoders=True, use_feature_cache=True, feature_cache_dir=str(tmp_path)
    )
    model, processor = build_model_and_processor(model_args, TCMPForPreTraining, training_texts(dialogues["train"]))
    cached, collator = data_collator(model_args, dict(dialogues), model, processor)
    windows = CachedFeatureWindows(PretrainingWindows(cached["train"], window=11, stride=5, seed=0))
    windows.set_epoch(1)
    item = next(windows[i] for i in range(len(windows)) if windows[i]["window_start"] > 0)
    batch = collator([item])
    encoded = processor([[{"text": text} for text in item["text"]]])
    with torch.no_grad():
        expected = model.tcmp.pooled_text_features(encoded["input_ids"], encoded["attention_mask"], encoded["token_type_ids"])
    assert batch["utterance_mask"].sum() == len(item["text"])
    torch.testing.assert_close(batch["text_features"], expected, rtol=1e-4, atol=1e-5)
