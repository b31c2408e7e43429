"""Property-based tests: hostile and odd utterances give correct tensors or a clear TCMPInputError, never NaN."""

import math

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tcmp import TCMPForEmotionPreRecognition, TCMPInputError
from tcmp.presets import make_processor, tiny_config
from tcmp.audio_utils import MAX_ABS_SAMPLE, input_samples_needed, resample, to_mono_float
from tcmp.processing_tcmp import MIN_AUDIO_SAMPLES

RATES = st.sampled_from([8000, 16000, 22050, 44100, 48000])
PROPERTY_SETTINGS = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@st.composite
def waveforms(draw):
    """Mono or stereo, float or int16, silent, tiny or a few seconds, sometimes with NaN/inf or absurd magnitudes."""
    length = draw(st.sampled_from([0, 1, 5, 399, 400, 4000, 44100, 150000]))
    channels = draw(st.sampled_from([None, 2]))
    kind = draw(st.sampled_from(["noise", "zeros", "int16", "nan", "inf", "loud", "huge"]))
    shape = (length,) if channels is None else (channels, length)
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    if kind == "zeros":
        return np.zeros(shape, dtype=np.float32), kind
    if kind == "int16":
        return rng.integers(-32768, 32767, size=shape).astype(np.int16), kind
    audio = rng.standard_normal(shape).astype(np.float32)
    if kind == "loud":
        audio *= 1e4
    if kind == "huge" and length > 0:
        audio.reshape(-1)[rng.integers(audio.size)] = draw(st.sampled_from([1e10, 1e30, 3e38]))
    if kind in ("nan", "inf") and length > 0:
        audio.reshape(-1)[rng.integers(audio.size)] = np.nan if kind == "nan" else np.inf
    return audio, kind


@st.composite
def texts(draw):
    return draw(
        st.one_of(
            st.just(""),
            st.text(max_size=40),
            st.text(alphabet=st.characters(codec="utf-8"), min_size=500, max_size=3000),
            st.just("😀🔥 emoji only 🙃" * 5),
        )
    )


@PROPERTY_SETTINGS
@given(audio=waveforms(), rate=RATES)
def test_any_waveform_is_prepared_or_refused_clearly(processor, audio, rate):
    waveform, kind = audio
    if waveform.shape[-1] == 0:
        with pytest.raises(TCMPInputError, match="empty"):
            processor.prepare_audio(waveform, rate)
        return
    kept = waveform[..., : input_samples_needed(processor.max_audio_length, rate, processor.sampling_rate)]
    if kind in ("nan", "inf") and not np.isfinite(kept).all():
        with pytest.raises(TCMPInputError, match="NaN or infinite"):
            processor.prepare_audio(waveform, rate)
        return
    if kind == "huge" and np.abs(kept).max() > MAX_ABS_SAMPLE:
        with pytest.raises(TCMPInputError, match="sample magnitude .* is beyond"):
            processor.prepare_audio(waveform, rate)
        return
    prepared = processor.prepare_audio(waveform, rate)
    assert prepared.ndim == 1 and prepared.dtype == np.float32
    assert np.isfinite(prepared).all()
    assert 400 <= len(prepared) <= processor.max_audio_length


@PROPERTY_SETTINGS
@given(
    text_list=st.lists(texts(), min_size=1, max_size=4),
    audio=waveforms(),
    rate=RATES,
)
def test_model_never_returns_nan_for_accepted_input(tokenizer, processor, text_list, audio, rate):
    waveform, kind = audio
    dialogue = [{"text": text, "audio": waveform, "sampling_rate": rate} for text in text_list]
    try:
        batch = processor([dialogue])
    except TCMPInputError as error:
        assert kind in ("nan", "inf", "huge") or waveform.shape[-1] == 0, error
        assert "dialogue 0, utterance 0" in str(error)
        return
    assert batch["input_ids"].shape[1] <= processor.max_text_length
    model = _model(len(tokenizer))
    with torch.no_grad():
        logits = model(**batch).logits
    assert torch.isfinite(logits).all()


_MODELS = {}


def _model(vocab_size):
    if vocab_size not in _MODELS:
        torch.manual_seed(0)
        _MODELS[vocab_size] = TCMPForEmotionPreRecognition(tiny_config(vocab_size, num_labels=3)).eval()
    return _MODELS[vocab_size]


@PROPERTY_SETTINGS
@given(lengths=st.lists(st.integers(0, 6), min_size=1, max_size=5))
def test_dialogue_lengths_are_masked_or_empty_ones_refused(processor, lengths):
    dialogues = [[{"text": "hello"}] * n for n in lengths]
    if 0 in lengths:
        with pytest.raises(TCMPInputError, match=f"dialogue {lengths.index(0)} is empty"):
            processor(dialogues)
        return
    batch = processor(dialogues)
    assert batch["utterance_mask"].sum(dim=1).tolist() == lengths
    assert batch["input_ids"].shape[0] == sum(lengths)


def test_a_dialogue_of_thousands_of_utterances(tokenizer, processor):
    dialogue = [{"text": f"hello {i % 7}"} for i in range(3000)]
    model = TCMPForEmotionPreRecognition(tiny_config(len(tokenizer), audio=False, num_labels=3)).eval()
    with torch.no_grad():
        logits = model(**processor([dialogue])).logits
    assert logits.shape == (1, 3) and torch.isfinite(logits).all()


def test_an_hour_of_audio_is_truncated_not_kept(processor):
    hour = np.zeros(16000 * 3600, dtype=np.float32)
    assert len(processor.prepare_audio(hour, 16000)) == processor.max_audio_length


def test_the_largest_accepted_samples_still_give_finite_logits(tokenizer, processor):
    loud = np.full(4000, MAX_ABS_SAMPLE, dtype=np.float64)
    loud[::2] *= -1
    batch = processor([[{"text": "hello", "audio": loud, "sampling_rate": 16000}]])
    with torch.no_grad():
        assert torch.isfinite(_model(len(tokenizer))(**batch).logits).all()


@PROPERTY_SETTINGS
@given(
    rate=st.sampled_from([8000, 11025, 22050, 44100, 48000, 96000]),
    extra=st.integers(-3000, 30000),
    stereo=st.booleans(),
    int16=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_long_audio_is_cut_before_resampling_without_changing_the_result(tokenizer, rate, extra, stereo, int16, seed):
    processor = make_processor(tokenizer, max_audio_length=4000)
    length = max(1, input_samples_needed(4000, rate, 16000) + extra)
    rng = np.random.default_rng(seed)
    audio = rng.uniform(-0.9, 0.9, size=(2, length) if stereo else length)
    if int16:
        audio = (audio * 32767).astype(np.int16)
    whole = resample(to_mono_float(audio, "x"), rate, 16000)[:4000]
    whole = np.pad(whole, (0, max(0, MIN_AUDIO_SAMPLES - whole.size)))
    np.testing.assert_array_equal(processor.prepare_audio(audio, rate), whole)


@PROPERTY_SETTINGS
@given(
    rate=st.one_of(
        st.integers(-10**6, 10**6),
        st.floats(allow_nan=True, allow_infinity=True),
        st.sampled_from([8000.0, 44100.0, 16000.5, True, False, "16000", b"8000", [16000], None]),
    )
)
def test_sampling_rate_is_a_whole_number_of_hz_or_refused(processor, rate):
    audio = np.ones(800, dtype=np.float32)
    valid = (
        isinstance(rate, (int, float)) and not isinstance(rate, bool) and math.isfinite(rate)
        and float(rate).is_integer() and 1000 <= rate <= 384000
    )
    if not valid:
        with pytest.raises(TCMPInputError, match="dialogue 0, utterance 0: .*sampling_rate"):
            processor([[{"audio": audio, "sampling_rate": rate}]])
        return
    prepared = processor.prepare_audio(audio, rate)
    assert len(prepared) == max(MIN_AUDIO_SAMPLES, math.ceil(800 * 16000 / int(rate)))


@PROPERTY_SETTINGS
@given(
    samples=st.lists(st.floats(-1, 1, width=32), min_size=1, max_size=2000),
    form=st.sampled_from(["list", "tuple", "tensor", "bfloat16"]),
    rate=RATES,
)
def test_audio_as_python_numbers_or_tensors_equals_the_numpy_array(processor, samples, form, rate):
    array = np.asarray(samples, dtype=np.float32)
    given_audio = {
        "list": list(samples), "tuple": tuple(samples), "tensor": torch.tensor(array),
        "bfloat16": torch.tensor(array).bfloat16(),
    }[form]
    expected = array if form != "bfloat16" else torch.tensor(array).bfloat16().float().numpy()
    np.testing.assert_allclose(processor.prepare_audio(given_audio, rate), processor.prepare_audio(expected, rate))


def modality_mixes():
    """Dialogues whose utterances have text, audio, both or neither."""
    kinds = st.sampled_from(["text", "audio", "both", "neither"])
    return st.lists(st.lists(kinds, min_size=1, max_size=4), min_size=1, max_size=3)


@PROPERTY_SETTINGS
@given(kinds=modality_mixes())
def test_mismatched_texts_and_audios_are_named(processor, kinds):
    dialogues = [[
        {**({"text": "hello you"} if kind in ("text", "both") else {}),
         **({"audio": np.ones(1600, np.float32), "sampling_rate": 16000} if kind in ("audio", "both") else {})}
        for kind in dialogue] for dialogue in kinds]
    flat = [(d, u, kind) for d, dialogue in enumerate(kinds) for u, kind in enumerate(dialogue)]
    neither = [(d, u) for d, u, kind in flat if kind == "neither"]
    if neither:
        with pytest.raises(TCMPInputError, match=f"dialogue {neither[0][0]}, utterance {neither[0][1]} has neither"):
            processor(dialogues)
        return
    has_text = [kind in ("text", "both") for _, _, kind in flat]
    has_audio = [kind in ("audio", "both") for _, _, kind in flat]
    for name, present in (("text", has_text), ("audio", has_audio)):
        if any(present) and not all(present):
            d, u, _ = flat[present.index(False)]
            with pytest.raises(TCMPInputError, match=f"dialogue {d}, utterance {u} has no {name} while other"):
                processor(dialogues)
            return
    batch = processor(dialogues)
    assert ("input_ids" in batch) == all(has_text) and ("input_values" in batch) == all(has_audio)
    assert batch["utterance_mask"].sum().item() == len(flat)


@pytest.mark.parametrize(
    "dialogues, message",
    [
        (None, "list of dialogues.*got NoneType"),
        ("hello", "list of dialogues.*got str"),
        (np.array([[{"text": "x"}]], dtype=object), "list of dialogues.*got ndarray"),
        ([{"text": "x"}], r"got one dialogue: pass \[dialogue\]"),
        ([[{"text": "x"}], None], "dialogue 1: expected a list of utterance dicts, got NoneType"),
        ([[{"text": "x"}, "hello"]], "dialogue 0, utterance 1: expected a dict"),
        ([[{"text": b"bytes"}]], "dialogue 0, utterance 0: text must be a str, got bytes"),
        ([[{"text": "ok"}, {"text": "bad \ud800 half"}]], "dialogue 0, utterance 1: text is not valid Unicode"),
        ([[{"audio": [[0.1, 0.2], [0.3]], "sampling_rate": 16000}]], "utterance 0: audio is not an array of samples"),
        ([[{"audio": np.zeros((2, 2, 100)), "sampling_rate": 16000}]], "must be 1-D .* or 2-D"),
        ([[{"audio": np.array(["a", "b"]), "sampling_rate": 16000}]], "must be numeric samples"),
    ],
)
def test_wrong_types_are_refused_naming_the_input(processor, dialogues, message):
    with pytest.raises(TCMPInputError, match=message):
        processor(dialogues)


def test_an_hour_of_int16_stereo_at_44_1_khz_is_cut_exactly(tokenizer, processor):
    hour = np.zeros((2, 44100 * 3600), dtype=np.int16)  # pages untouched past the first seconds: cheap to allocate
    hour[:, : 44100 * 10] = np.random.default_rng(0).integers(-20000, 20000, size=(2, 44100 * 10))
    prepared = processor.prepare_audio(hour, 44100)
    first_seconds = processor.prepare_audio(hour[:, : 44100 * 6], 44100)
    np.testing.assert_array_equal(prepared, first_seconds)
    assert len(prepared) == processor.max_audio_length
    batch = processor([[{"text": "hello", "audio": hour, "sampling_rate": 44100}]])
    with torch.no_grad():
        assert torch.isfinite(_model(len(tokenizer))(**batch).logits).all()
