"""The streaming predictor equals the full-context model at every turn, with a state bounded by the window."""

import numpy as np
import pytest
import torch

from tcmp import TCMPForEmotionPreRecognition
from tcmp.presets import tiny_config
from tcmp.streaming import StreamingPreRecognizer
from tests.conftest import FRONT_ENDS, random_dialogues


LABELS = {0: "negative", 1: "neutral", 2: "positive"}


def make_model(tokenizer, text=True, audio=True, **kwargs):
    config = tiny_config(len(tokenizer), text=text, audio=audio, num_labels=3, dropout=0.0, id2label=LABELS, **kwargs)
    return TCMPForEmotionPreRecognition(config).eval()


def full_logits(model, processor, dialogue):
    with torch.no_grad():
        return model(**processor([dialogue])).logits[0]


CASES = [
    ((True, True), {}),
    ((True, True), {"attention_window": None}),
    ((True, True), {"attention_window": 2}),
    ((True, False), {}),
    ((True, False), {"attention_window": None}),
    ((False, True), {"attention_window": 3}),
    ((True, True), {"no_context": True}),
    ((True, True), {"modality": "text2audio"}),
    ((True, True), {"modality": "audio", "attention_window": 1}),
]


@pytest.mark.parametrize(
    "modalities, options",
    CASES + [(m, {**o, "feat_extract_norm": "group"}) for m, o in CASES if m[1]],  # each speech front end
)
def test_equals_full_model_at_every_turn(tokenizer, processor, modalities, options):
    text, audio = modalities
    model = make_model(tokenizer, text=text, audio=audio, **options)
    dialogue = random_dialogues(3, [14], text=text, audio=audio)[0]
    recognizer = StreamingPreRecognizer(model, processor)
    for turn, utterance in enumerate(dialogue, start=1):
        prediction = recognizer.add_utterance(**utterance)
        expected = full_logits(model, processor, dialogue[:turn])
        torch.testing.assert_close(prediction.logits, expected, rtol=1e-4, atol=1e-5)
        probabilities = expected.softmax(-1)
        assert list(prediction.probabilities) == list(LABELS.values())
        assert prediction.label == LABELS[int(probabilities.argmax())]
        assert prediction.probabilities["neutral"] == pytest.approx(float(probabilities[1]), abs=1e-5)


@pytest.mark.parametrize("front_end", FRONT_ENDS)
def test_sessions_in_one_batch_equal_separate_runs(tokenizer, processor, front_end):
    model = make_model(tokenizer, feat_extract_norm=front_end)
    dialogues = random_dialogues(5, [9, 4, 7])
    batched, alone = StreamingPreRecognizer(model, processor), StreamingPreRecognizer(model, processor)
    for turn in range(9):
        live = {f"s{i}": d[turn] for i, d in enumerate(dialogues) if turn < len(d)}
        together = batched.add_utterances(live)
        for name, utterance in live.items():
            separate = alone.add_utterance(**utterance, session=name)
            torch.testing.assert_close(together[name].logits, separate.logits, rtol=1e-4, atol=1e-5)
            dialogue = dialogues[int(name[1:])]
            torch.testing.assert_close(
                together[name].logits, full_logits(model, processor, dialogue[: turn + 1]), rtol=1e-4, atol=1e-5
            )
    assert {name: s.turns for name, s in batched.sessions.items()} == {"s0": 9, "s1": 4, "s2": 7}


def test_audio_files_stream_like_their_samples(tokenizer, processor, tmp_path):
    import soundfile

    model = make_model(tokenizer)
    dialogue = random_dialogues(6, [4])[0]
    from_files, from_samples = StreamingPreRecognizer(model, processor), StreamingPreRecognizer(model, processor)
    for turn, utterance in enumerate(dialogue):
        path = tmp_path / f"turn{turn}.wav"
        soundfile.write(path, utterance["audio"], utterance["sampling_rate"], subtype="FLOAT")
        by_path = from_files.add_utterance(text=utterance["text"], audio=str(path), speaker=utterance["speaker"])
        by_samples = from_samples.add_utterance(**utterance)
        assert torch.equal(by_path.logits, by_samples.logits)


def test_reset_starts_the_conversation_again(tokenizer, processor):
    model = make_model(tokenizer, audio=False)
    first, second = random_dialogues(7, [5, 1], audio=False)
    recognizer = StreamingPreRecognizer(model, processor)
    for utterance in first:
        recognizer.add_utterance(**utterance, session="a")
    recognizer.add_utterance(**first[0], session="b")
    recognizer.reset("a")
    assert "a" not in recognizer.sessions and recognizer.sessions["b"].turns == 1
    restarted = recognizer.add_utterance(**second[0], session="a")
    torch.testing.assert_close(restarted.logits, full_logits(model, processor, second), rtol=1e-4, atol=1e-5)
    recognizer.reset(None)
    assert recognizer.sessions == {}


def test_state_is_bounded_by_the_window_and_stays_exact(tokenizer, processor):
    window = 4
    model = make_model(tokenizer, audio=False, attention_window=window)
    dialogue = random_dialogues(11, [1000], audio=False)[0]
    recognizer = StreamingPreRecognizer(model, processor)
    sizes = {}
    for turn, utterance in enumerate(dialogue, start=1):
        prediction = recognizer.add_utterance(**utterance)
        if turn in (10, 1000):
            sizes[turn] = recognizer.sessions["default"].num_elements()
            torch.testing.assert_close(
                prediction.logits, full_logits(model, processor, dialogue[:turn]), rtol=1e-4, atol=1e-5
            )
    d = model.config.hidden_size
    assert sizes[10] == sizes[1000] == (2 + 2 + window) * d
    assert recognizer.sessions["default"].streams["text"].memory.shape == (1, window, d)


def test_memory_grows_without_a_window(tokenizer, processor):
    model = make_model(tokenizer, audio=False, attention_window=None)
    recognizer = StreamingPreRecognizer(model, processor)
    for utterance in random_dialogues(2, [20], audio=False)[0]:
        recognizer.add_utterance(**utterance)
    assert recognizer.sessions["default"].streams["text"].memory.shape[1] == 20 - 2


def test_from_pretrained_and_bad_input(tokenizer, processor, tmp_path):
    model = make_model(tokenizer)
    model.save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)
    recognizer = StreamingPreRecognizer.from_pretrained(tmp_path)
    utterance = random_dialogues(0, [1])[0][0]
    torch.testing.assert_close(
        recognizer.add_utterance(**utterance).logits, full_logits(model, processor, [utterance]), rtol=1e-4, atol=1e-5
    )
    with pytest.raises(ValueError, match="session 'x'.*text.*audio"):
        recognizer.add_utterance(session="x")
    with pytest.raises(ValueError, match="session .default.: .*has no audio"):
        recognizer.add_utterance(text="hello", speaker="A")
    with pytest.raises(TypeError, match="TCMPForEmotionPreRecognition"):
        StreamingPreRecognizer(model.tcmp, processor)
    assert np.isclose(sum(recognizer.add_utterance(**utterance).probabilities.values()), 1.0)
