"""Per-dialogue pre-recognition (one pass scores every target of a row) against the per-sample path."""

import random

import pytest
import torch
import torch.nn.functional as F
from datasets import Dataset

from tcmp import TCMPForEmotionPreRecognition
from tcmp.collator import TCMPDataCollator
from tcmp.data import DataError, ReconstructionRule, make_samples, prerecognition_dialogues
from tcmp.data.schema import prerecognition_features
from tcmp.feature_cache import TCMPFeatureCollator
from tcmp.presets import make_processor, tiny_config, word_tokenizer

LABELS = ("negative", "neutral", "positive")
WORDS = "yes no maybe okay great terrible fine what really sure never always".split()


def generated_samples(num_dialogues=6, seed=0) -> Dataset:
    """Dialogues of 8–24 turns among 3 speakers, cut into samples by the default rule (contexts of 2–10)."""
    rng = random.Random(seed)
    rows = []
    for d in range(num_dialogues):
        utterances = [
            {"utterance_id": f"d{d}_u{t}", "text": " ".join(rng.choices(WORDS, k=rng.randint(2, 7))),
             "speaker": rng.choice("ABC"), "audio_path": None, "audio_start": None, "audio_end": None,
             "label": rng.choice(LABELS)}
            for t in range(rng.randint(8, 24))
        ]
        rows += make_samples(utterances, ReconstructionRule(), f"d{d}")[0]
    return Dataset.from_list(rows, features=prerecognition_features(LABELS))


@pytest.fixture(scope="module")
def setting():
    samples = generated_samples()
    torch.manual_seed(0)
    processor = make_processor(word_tokenizer(WORDS))
    model = TCMPForEmotionPreRecognition(
        tiny_config(len(processor.tokenizer), audio=False, num_labels=len(LABELS), class_weights=[0.5, 1.0, 2.0])
    ).eval()
    return samples, processor, model


def per_sample_logits(samples, processor, model):
    collator = TCMPDataCollator.for_model(processor, model.config)
    with torch.no_grad():
        return {row["sample_id"]: logits for row in samples
                for logits in model(**collator([row])).logits}


def per_dialogue_logits(rows, batch, model):
    with torch.no_grad():
        output = model(**batch)
    found = {}
    for i, row in enumerate(rows):
        for position, sample_id in zip(row["target_positions"], row["target_sample_ids"]):
            found[sample_id] = output.logits[i, position]
    return found, output.loss


def test_exact_rows_give_each_sample_its_own_prediction_and_the_same_loss(setting):
    samples, processor, model = setting
    rows = list(prerecognition_dialogues(samples, "exact"))
    assert sum(len(r["target_positions"]) for r in rows) == len(samples)
    assert sum(len(r["text"]) for r in rows) < sum(len(t) for t in samples["text"])
    assert max(len(r["text"]) for r in rows) <= 10
    expected = per_sample_logits(samples, processor, model)
    batch = TCMPDataCollator.for_model(processor, model.config)(rows)
    found, loss = per_dialogue_logits(rows, batch, model)
    assert found.keys() == expected.keys()
    for sample_id, logits in expected.items():
        torch.testing.assert_close(found[sample_id], logits, atol=1e-5, rtol=1e-5)
    order = list(expected)
    labels = torch.tensor([samples[samples["sample_id"].index(s)]["label"] for s in order])
    weights = torch.tensor(model.config.class_weights)
    per_sample_loss = F.cross_entropy(torch.stack([expected[s] for s in order]), labels, weight=weights)
    torch.testing.assert_close(loss, per_sample_loss, atol=1e-5, rtol=1e-5)


def test_history_rows_share_utterances_and_match_where_the_history_is_the_context(setting):
    samples, processor, model = setting
    rows = list(prerecognition_dialogues(samples, "history"))
    exact = prerecognition_dialogues(samples, "exact")
    assert sum(len(r["target_positions"]) for r in rows) == len(samples)
    assert sum(len(r["text"]) for r in rows) < sum(len(t) for t in exact["text"])
    expected = per_sample_logits(samples, processor, model)
    found, _ = per_dialogue_logits(rows, TCMPDataCollator.for_model(processor, model.config)(rows), model)
    contexts = dict(zip(samples["sample_id"], samples["utterance_id"]))
    whole, longer = 0, 0
    for row in rows:
        for position, sample_id in zip(row["target_positions"], row["target_sample_ids"]):
            assert row["utterance_id"][position - len(contexts[sample_id]) : position] == contexts[sample_id]
            if position == len(contexts[sample_id]):
                torch.testing.assert_close(found[sample_id], expected[sample_id], atol=1e-5, rtol=1e-5)
                whole += 1
            elif not torch.allclose(found[sample_id], expected[sample_id], atol=1e-4):
                longer += 1
    assert whole > 0 and longer > 0


def test_feature_collator_gives_the_same_per_position_labels(setting):
    samples, processor, model = setting
    rows = list(prerecognition_dialogues(samples, "exact"))[:3]
    collator = TCMPDataCollator.for_model(processor, model.config)
    for i, row in enumerate(rows):
        row["feature_index"] = list(range(i * 10, i * 10 + len(row["text"])))
    features = TCMPFeatureCollator(text_features=torch.zeros(40, model.config.text_config.hidden_size))(rows)
    torch.testing.assert_close(features["labels"], collator(rows)["labels"])
    assert (features["labels"] != -100).sum() == sum(len(r["target_positions"]) for r in rows)


def test_per_position_labels_of_the_wrong_width_are_refused(setting):
    samples, processor, model = setting
    rows = list(prerecognition_dialogues(samples, "exact"))[:2]
    batch = TCMPDataCollator.for_model(processor, model.config)(rows)
    batch["labels"] = batch["labels"][:, :-1]
    with pytest.raises(ValueError, match="num_utterances \\+ 1"):
        model(**batch)


def test_unknown_context_mode_is_a_data_error():
    with pytest.raises(DataError, match="per-dialogue context"):
        prerecognition_dialogues(generated_samples(1), "window")


def test_context_emotion_loss_adds_the_utterances_own_emotion_and_never_feeds_the_prediction(setting):
    samples, processor, _ = setting
    rows = list(prerecognition_dialogues(samples, "history"))[:3]
    torch.manual_seed(0)
    config = tiny_config(len(processor.tokenizer), audio=False, num_labels=len(LABELS), context_emotion_loss_weight=0.5)
    model = TCMPForEmotionPreRecognition(config).eval()
    plain = TCMPForEmotionPreRecognition(config.__class__(**{**config.to_dict(), "context_emotion_loss_weight": 0.0}))
    plain.load_state_dict(model.state_dict(), strict=False)
    plain.eval()
    batch = TCMPDataCollator.for_model(processor, model.config)(rows)
    with torch.no_grad():
        output, without = model(**batch), plain(**batch)
        embeds = model.tcmp(**{k: v for k, v in batch.items() if k != "labels"}).text_embeds
    torch.testing.assert_close(output.logits, without.logits)  # the head never reaches the prediction
    utterance_labels = batch["labels"][:, :-1]
    assert (utterance_labels != -100).sum() > 0
    expected = F.cross_entropy(model.context_emotion_head(embeds).flatten(0, 1), utterance_labels.flatten())
    torch.testing.assert_close(output.loss, without.loss + 0.5 * expected)
    model.train()
    model(**batch).loss.backward()
    assert model.context_emotion_head.weight.grad.abs().sum() > 0
