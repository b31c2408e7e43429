"""Property-based tests: the streaming predictor under hostile turns, resets and interleaved sessions stays equal to the
full-context model, and a refused turn names its session and changes nothing."""

import math

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from tcmp.streaming import StreamingPreRecognizer
from tests.conftest import FRONT_ENDS
from tests.streaming.test_streaming import LABELS, full_logits, make_model

SESSIONS = ("a", "b", "c")
BAD_KINDS = ("nan audio", "inf audio", "empty audio", "huge audio", "no audio", "no sampling rate", "rate 0",
             "3-D audio", "text not a str", "text with a lone surrogate", "nothing")
_MODELS = {}


def _model(tokenizer, **options):
    key = tuple(sorted(options.items()))
    if key not in _MODELS:
        torch.manual_seed(0)
        _MODELS[key] = make_model(tokenizer, **options)
    return _MODELS[key]


@st.composite
def utterances(draw):
    """Text (empty, emoji, long, words) with audio at 8/16/44.1 kHz, mono or stereo, float or int16, short or long."""
    text = draw(st.one_of(st.sampled_from(["", "😀🔥🙃", "hello how are you " * 40, "i am sad"]), st.text(max_size=20)))
    rate = draw(st.sampled_from([8000, 16000, 44100]))
    length = draw(st.sampled_from([1, 300, 2000, 9000]))
    rng = np.random.default_rng(draw(st.integers(0, 1000)))
    audio = rng.uniform(-0.5, 0.5, size=(2, length) if draw(st.booleans()) else length).astype(np.float32)
    if draw(st.booleans()):
        audio = (audio * 32767).astype(np.int16)
    return {"text": text, "audio": audio, "sampling_rate": rate, "speaker": draw(st.sampled_from(["A", "B", None]))}


def bad_utterance(kind: str, good: dict) -> dict:
    """`good` spoilt in one way."""
    bad = dict(good, audio=np.asarray(good["audio"], dtype=np.float32).copy())
    if kind in ("nan audio", "inf audio"):
        bad["audio"].reshape(-1)[0] = math.nan if kind == "nan audio" else math.inf
    elif kind == "huge audio":
        bad["audio"].reshape(-1)[0] = 1e30
    elif kind == "empty audio":
        bad["audio"] = np.zeros(0, dtype=np.float32)
    elif kind == "no audio":
        bad["audio"] = None
    elif kind == "no sampling rate":
        bad["sampling_rate"] = None
    elif kind == "rate 0":
        bad["sampling_rate"] = 0
    elif kind == "3-D audio":
        bad["audio"] = np.zeros((2, 2, 100), dtype=np.float32)
    elif kind == "text not a str":
        bad["text"] = 42
    elif kind == "text with a lone surrogate":
        bad["text"] = "oh \ud800 no"
    else:
        bad["text"] = bad["audio"] = None
    return bad


@st.composite
def operations(draw):
    """A conversation script: turns in one or several sessions at once, refused turns and resets."""
    steps = []
    for _ in range(draw(st.integers(1, 8))):
        kind = draw(st.sampled_from(["turn", "turn", "turn", "together", "refused", "reset"]))
        if kind == "reset":
            steps.append(("reset", draw(st.sampled_from(SESSIONS + (None,)))))
            continue
        names = draw(st.lists(st.sampled_from(SESSIONS), min_size=1, max_size=3 if kind == "together" else 1,
                              unique=True))
        batch = {name: draw(utterances()) for name in names}
        spoilt = draw(st.sampled_from(names)) if kind == "refused" else None
        steps.append((kind, batch, spoilt, draw(st.sampled_from(BAD_KINDS))))
    return steps


def snapshot(recognizer):
    return {name: (session.turns, {stream: [t.clone() for t in vars(state).values()]
                                   for stream, state in session.streams.items()})
            for name, session in recognizer.sessions.items()}


def assert_same_state(before, after):
    assert before.keys() == after.keys()
    for name, (turns, streams) in before.items():
        assert after[name][0] == turns
        for stream, tensors in streams.items():
            for old, new in zip(tensors, after[name][1][stream]):
                assert torch.equal(old, new)


def check_prediction(prediction, model, processor, dialogue):
    probabilities = prediction.probabilities
    assert list(probabilities) == list(LABELS.values())
    assert all(math.isfinite(p) and 0 <= p <= 1 for p in probabilities.values())
    assert sum(probabilities.values()) == pytest.approx(1.0, abs=1e-5)
    assert prediction.label == max(probabilities, key=probabilities.get)
    torch.testing.assert_close(prediction.logits, full_logits(model, processor, dialogue), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("front_end", FRONT_ENDS)
@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=operations())
def test_streaming_under_hostile_turns_equals_the_full_model(tokenizer, processor, front_end, steps):
    model = _model(tokenizer, attention_window=2, feat_extract_norm=front_end)
    recognizer = StreamingPreRecognizer(model, processor)
    dialogues = {}
    for step in steps:
        if step[0] == "reset":
            recognizer.reset(step[1])
            dialogues = {} if step[1] is None else {k: v for k, v in dialogues.items() if k != step[1]}
            continue
        kind, batch, spoilt, bad_kind = step
        if spoilt is not None:
            event(f"refused: {bad_kind}")
            batch = dict(batch, **{spoilt: bad_utterance(bad_kind, batch[spoilt])})
            before = snapshot(recognizer)
            with pytest.raises(ValueError, match=f"session {spoilt!r}"):
                recognizer.add_utterances(batch)
            assert_same_state(before, snapshot(recognizer))
            continue
        predictions = recognizer.add_utterances(batch)
        for name, utterance in batch.items():
            dialogues.setdefault(name, []).append(utterance)
            check_prediction(predictions[name], model, processor, dialogues[name])
    assert {name: s.turns for name, s in recognizer.sessions.items()} == {n: len(d) for n, d in dialogues.items()}


def test_thousands_of_turns_with_refused_ones_keep_the_state_bounded(tokenizer, processor):
    model = _model(tokenizer, audio=False, attention_window=4)
    recognizer = StreamingPreRecognizer(model, processor)
    spoilt = [{"text": 7}, {"text": "x \udc00"}, {"text": None}, {"text": b"bytes"}]
    words = ["hello", "😀", "", "i am sad " * 30, "great"]
    accepted, sizes = [], set()
    for turn in range(1500):
        if turn % 5 == 4:
            before = snapshot(recognizer)
            with pytest.raises(ValueError, match="session 'default'"):
                recognizer.add_utterance(**spoilt[turn % len(spoilt)])
            assert_same_state(before, snapshot(recognizer))
            continue
        accepted.append({"text": words[turn % len(words)]})
        prediction = recognizer.add_utterance(**accepted[-1])
        if len(accepted) >= 10:
            sizes.add(recognizer.sessions["default"].num_elements())
    assert sizes == {(2 + 2 + 4) * model.config.hidden_size}
    check_prediction(prediction, model, processor, accepted)
