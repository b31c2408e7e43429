"""The emotion-pre-recognition pipeline loads a saved folder and equals the model on the dialogue so far."""

import pytest
import torch
from transformers import pipeline

import tcmp
from tcmp.presets import tiny_config
from tests.conftest import random_dialogues


LABELS = {0: "anger", 1: "joy", 2: "neutral", 3: "sadness"}


@pytest.fixture
def saved(tokenizer, processor, tmp_path):
    def save(text=True, audio=True):
        config = tiny_config(len(tokenizer), text=text, audio=audio, num_labels=4, dropout=0.0, id2label=LABELS)
        model = tcmp.TCMPForEmotionPreRecognition(config).eval()
        folder = tmp_path / ("both" if audio else "text")
        model.save_pretrained(folder)
        processor.save_pretrained(folder)
        return model, str(folder)

    return save


def expected(model, processor, dialogues):
    with torch.no_grad():
        return model(**processor(dialogues)).logits.softmax(-1)


def test_multimodal_dialogue_and_list_of_dialogues(saved, processor):
    model, folder = saved()
    classifier = pipeline("emotion-pre-recognition", model=folder)
    assert isinstance(classifier, tcmp.EmotionPreRecognitionPipeline)
    assert isinstance(classifier.processor, tcmp.TCMPProcessor)
    dialogues = random_dialogues(4, [3, 6, 1])
    probabilities = expected(model, processor, dialogues)

    single = classifier(dialogues[1])
    assert [entry["label"] for entry in single] == [LABELS[int(i)] for i in probabilities[1].argsort(descending=True)]
    assert [entry["score"] for entry in single] == pytest.approx(sorted(probabilities[1].tolist(), reverse=True), abs=1e-5)

    several = classifier(dialogues, top_k=2)
    assert len(several) == 3 and all(len(result) == 2 for result in several)
    for result, row in zip(several, probabilities):
        assert result[0] == {"label": LABELS[int(row.argmax())], "score": pytest.approx(float(row.max()), abs=1e-5)}
        assert result[0]["score"] >= result[1]["score"]


def test_text_only_dialogue_as_strings(saved, processor):
    model, folder = saved(audio=False)
    classifier = pipeline("emotion-pre-recognition", model=folder)
    texts = ["hello how are you", "i am sad", "really"]
    probabilities = expected(model, processor, [[{"text": t} for t in texts]])[0]
    best = classifier(texts, top_k=1)
    assert best == [{"label": LABELS[int(probabilities.argmax())], "score": pytest.approx(float(probabilities.max()), abs=1e-5)}]
    assert sum(entry["score"] for entry in classifier(texts)) == pytest.approx(1.0, abs=1e-5)


def test_bad_input_is_named(saved):
    _, folder = saved(audio=False)
    classifier = pipeline("emotion-pre-recognition", model=folder)
    with pytest.raises(ValueError, match="dialogue 1: expected a non-empty list"):
        classifier([["hello"], []])
    with pytest.raises(ValueError, match="takes a dialogue"):
        classifier("hello")
    with pytest.raises(ValueError, match="top_k"):
        classifier(["hello"], top_k=0)


def test_an_utterance_without_a_modality_the_model_encodes_is_named(saved):
    _, folder = saved()
    classifier = pipeline("emotion-pre-recognition", model=folder)
    audio = {"text": "hello", "audio": [0.1] * 1600, "sampling_rate": 16000}
    with pytest.raises(ValueError, match="dialogue 1, utterance 1: this model encodes text and audio; the utterance has no audio$"):
        classifier([[audio], [audio, "how are you"]])
    with pytest.raises(ValueError, match="dialogue 0, utterance 0: the utterance needs 'text' and/or 'audio'"):
        classifier([{"speaker": "A"}])
