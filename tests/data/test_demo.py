"""The demo corpus: deterministic, balanced, and the next mood predictable from the context in text AND audio."""

from collections import Counter

import numpy as np
import pytest

from tcmp.data import PretrainingWindows, build_demo, load_audio
from tcmp.data.demo import MOOD_WORDS

SMALL = dict(num_pretrain_dialogues=20, num_labelled_dialogues=120)


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    cache = str(tmp_path_factory.mktemp("demo"))
    return cache, build_demo(cache_dir=cache, **SMALL)


def text_mood(text):
    counts = {mood: sum(word in words for word in text.split()) for mood, words in MOOD_WORDS.items()}
    best = max(counts, key=counts.get)
    return best if counts[best] > 0 else "neutral"


def test_demo_shapes_determinism_and_cache(demo):
    cache, (pretraining, samples) = demo
    assert set(pretraining) == set(samples) == {"train", "validation", "test"}
    lengths = [len(t) for t in pretraining["train"]["text"]]
    assert min(lengths) >= 20 and max(lengths) <= 40
    words = [len(t.split()) for texts in samples["train"]["text"] for t in texts]
    assert min(words) >= 5 and max(words) <= 30
    for row in samples["train"].select(range(50)):
        assert row["target_utterance_id"] not in row["utterance_id"]
    again_pre, again = build_demo(cache_dir=cache, **SMALL)
    assert again["train"].cache_files == samples["train"].cache_files
    assert again["train"]["text"] == samples["train"]["text"]
    other = build_demo(cache_dir=cache, seed=1, **SMALL)[1]
    assert other["train"].cache_files != samples["train"].cache_files
    assert other["train"]["text"][:5] != samples["train"]["text"][:5]
    audio = load_audio(samples["train"][0]["audio_path"][0])
    assert 16000 <= len(audio) <= 80000
    windows = PretrainingWindows(pretraining["train"])
    assert len(windows[0]["text"]) == 11


def test_demo_balanced_and_text_predictable(demo):
    _, (_, samples) = demo
    names = samples["train"].features["label"].names
    labels = [names[i] for i in samples["train"]["label"]]
    majority = max(Counter(labels).values()) / len(labels)
    assert majority <= 0.45
    # context-only predictor: the next speaker's mood = the mood words of the last context utterance
    predictions = [text_mood(texts[-1]) for texts in samples["train"]["text"]]
    accuracy = np.mean([p == y for p, y in zip(predictions, labels)])
    assert accuracy > majority + 0.15, (accuracy, majority)


def prosody(path):
    audio = load_audio(path)
    frames = audio[: len(audio) // 400 * 400].reshape(-1, 400)
    energy = np.sqrt((frames ** 2).mean(axis=1))
    voiced = frames[energy > 0.3 * energy.max()]
    pitches = []
    for frame in voiced[:: max(1, len(voiced) // 12)]:
        corr = np.correlate(frame, frame, "full")[399:]
        lag = 40 + int(np.argmax(corr[40:200]))  # 80–400 Hz
        pitches.append(16000 / lag)
    return float(energy[energy > 0.3 * energy.max()].mean()), float(np.median(pitches))


def test_demo_audio_carries_the_signal(demo):
    _, (_, samples) = demo
    rows = samples["train"].select(range(300))
    names = rows.features["label"].names
    labels = [names[i] for i in rows["label"]]
    features, moods, speakers = [], [], []
    for row in rows:  # the last context utterance: its audio prosody, and the mood its words show
        features.append(prosody(row["audio_path"][-1]))
        moods.append(text_mood(row["text"][-1]))
        speakers.append(row["speaker"][-1])
    features = np.array(features)
    # pitch relative to the speaker's own median pitch (voices differ), energy as is
    pitch = np.array([features[i, 1] / np.median(features[[j for j, s in enumerate(speakers) if s == speakers[i]], 1])
                      for i in range(len(rows))])
    energy = features[:, 0]
    majority = max(Counter(labels).values()) / len(labels)
    for name, values in (("energy", energy), ("pitch", pitch)):
        half = len(values) // 2  # class means of the last utterance's mood (fitted on half), then predict the rest
        means = {m: values[:half][np.array(moods[:half]) == m].mean() for m in MOOD_WORDS}
        heard = [min(means, key=lambda m: abs(v - means[m])) for v in values[half:]]
        accuracy = np.mean([h == y for h, y in zip(heard, labels[half:])])
        assert accuracy > majority + 0.1, (name, accuracy, majority)
    assert energy[np.array(moods) == "positive"].mean() > energy[np.array(moods) == "negative"].mean()
    assert pitch[np.array(moods) == "positive"].mean() > pitch[np.array(moods) == "negative"].mean()
