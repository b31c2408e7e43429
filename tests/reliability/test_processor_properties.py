"""Property-based tests: hostile and odd utterances give correct tensors or a clear TCMPInputError, never NaN."""

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tcmp import TCMPForEmotionPreRecognition, TCMPInputError
from tcmp.presets import tiny_config

RATES = st.sampled_from([8000, 16000, 22050, 44100, 48000])
PROPERTY_SETTINGS = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@st.composite
def waveforms(draw):
    """Mono or stereo, float or int16, silent, tiny or a few seconds, sometimes with NaN/inf."""
    length = draw(st.sampled_from([0, 1, 5, 399, 400, 4000, 44100, 150000]))
    channels = draw(st.sampled_from([None, 2]))
    kind = draw(st.sampled_from(["noise", "zeros", "int16", "nan", "inf", "loud"]))
    shape = (length,) if channels is None else (channels, length)
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    if kind == "zeros":
        return np.zeros(shape, dtype=np.float32), kind
    if kind == "int16":
        return rng.integers(-32768, 32767, size=shape).astype(np.int16), kind
    audio = rng.standard_normal(shape).astype(np.float32)
    if kind == "loud":
        audio *= 1e4
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
    if kind in ("nan", "inf"):
        with pytest.raises(TCMPInputError, match="NaN or infinite"):
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
        assert kind in ("nan", "inf") or waveform.shape[-1] == 0, error
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
