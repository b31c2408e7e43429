"""The processor: padding, truncation, resampling, channel mixing, saving and clear errors."""

import numpy as np
import pytest
import torch
from transformers import AutoProcessor

import tcmp  # noqa: F401  (registers the Auto classes)
from tcmp import TCMPInputError, TCMPProcessor
from tcmp.presets import make_processor

from .conftest import random_dialogues


def dominant_frequency(waveform: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(waveform))
    return float(np.fft.rfftfreq(len(waveform), 1 / rate)[spectrum.argmax()])


def test_dynamic_padding_and_masks(processor):
    dialogues = random_dialogues(0, [3, 1])
    dialogues[0][1]["text"] = "hello " * 10
    batch = processor(dialogues)
    assert batch["utterance_mask"].tolist() == [[True, True, True], [True, False, False]]
    assert batch["input_ids"].shape == (4, 12)
    assert batch["attention_mask"].sum(dim=1).tolist()[1] == 12
    lengths = [len(u["audio"]) for d in dialogues for u in d]
    assert batch["input_values"].shape == (4, max(lengths))
    assert batch["audio_attention_mask"].sum(dim=1).tolist() == lengths


def test_truncation_to_max_lengths(tokenizer):
    processor = make_processor(tokenizer, max_text_length=6, max_audio_length=1000)
    dialogue = [[{"text": "hello " * 50, "audio": np.ones(5000), "sampling_rate": 16000}]]
    batch = processor(dialogue)
    assert batch["input_ids"].shape == (1, 6)
    assert batch["input_values"].shape == (1, 1000)


@pytest.mark.parametrize("rate", [8000, 22050, 44100])
def test_resampling_keeps_pitch(processor, rate):
    seconds = 0.5
    t = np.arange(int(rate * seconds)) / rate
    tone = np.sin(2 * np.pi * 440 * t)
    prepared = processor.prepare_audio(tone, rate)
    assert abs(len(prepared) - 16000 * seconds) <= 1
    assert abs(dominant_frequency(prepared, 16000) - 440) < 5


def test_stereo_and_int16_become_mono_float(processor):
    rng = np.random.default_rng(0)
    left = rng.standard_normal(4000).astype(np.float32)
    stereo = np.stack([left, left])
    assert np.allclose(processor.prepare_audio(stereo, 16000), left, atol=1e-6)
    assert np.allclose(processor.prepare_audio(stereo.T, 16000), left, atol=1e-6)
    pcm = (np.clip(left, -1, 1) * 32767).astype(np.int16)
    assert np.allclose(processor.prepare_audio(pcm, 16000), np.clip(left, -1, 1), atol=1e-3)


def test_short_audio_is_padded_to_one_frame(processor):
    assert len(processor.prepare_audio(np.ones(10), 16000)) == 400


def test_save_and_auto_load_round_trip(processor, tmp_path):
    processor.save_pretrained(tmp_path)
    loaded = AutoProcessor.from_pretrained(tmp_path)
    assert isinstance(loaded, TCMPProcessor)
    assert loaded.max_text_length == processor.max_text_length
    assert loaded.max_audio_length == processor.max_audio_length
    dialogues = random_dialogues(1, [2, 3])
    a, b = processor(dialogues), loaded(dialogues)
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


@pytest.mark.parametrize(
    "dialogues,message",
    [
        ([[]], "dialogue 0 is empty"),
        ([[{"text": "hello"}], [{"speaker": "A"}]], "dialogue 1, utterance 0 has neither text nor audio"),
        ([[{"text": "hello"}, {"audio": np.ones(800), "sampling_rate": 16000}]], "utterance 1 has no text"),
        ([[{"text": "hi", "audio": np.ones(800)}]], "audio given without its sampling_rate"),
        ([[{"text": "hi", "audio": np.array([0.0, np.nan]), "sampling_rate": 16000}]], "NaN or infinite"),
        ([[{"text": "hi", "audio": np.zeros(0), "sampling_rate": 16000}]], "audio is empty"),
        ([[{"text": "hi", "audio": np.ones(800), "sampling_rate": 5}]], "implausible sampling_rate 5"),
        ([[{"text": 3}]], "text must be a str"),
        ([], "got no dialogues"),
    ],
)
def test_clear_errors(processor, dialogues, message):
    with pytest.raises(TCMPInputError, match=message):
        processor(dialogues)


def test_audio_file_paths_equal_their_samples(tokenizer, tmp_path):
    import soundfile

    processor = make_processor(tokenizer, max_audio_length=16000)
    rng = np.random.default_rng(0)
    stereo = (0.3 * rng.standard_normal((2 * 44100, 2))).astype(np.float32)  # 2 s at 44.1 kHz, longer than kept
    soundfile.write(tmp_path / "stereo.wav", stereo, 44100, subtype="FLOAT")
    mono = (0.3 * rng.standard_normal(8000)).astype(np.float32)
    soundfile.write(tmp_path / "mono.flac", mono, 8000, subtype="PCM_24")
    decoded, _ = soundfile.read(tmp_path / "mono.flac", dtype="float32")
    from_files = processor([[{"audio": str(tmp_path / "stereo.wav")}, {"audio": tmp_path / "mono.flac"}]])
    from_samples = processor([[
        {"audio": stereo.T, "sampling_rate": 44100},
        {"audio": decoded, "sampling_rate": 8000},
    ]])
    assert torch.equal(from_files["input_values"], from_samples["input_values"])
    assert from_files["audio_attention_mask"].sum(dim=1).tolist() == [16000, 16000]
    agreeing = processor([[{"audio": str(tmp_path / "stereo.wav"), "sampling_rate": 44100}]])
    assert torch.equal(agreeing["input_values"][0], from_files["input_values"][0])


def test_audio_file_errors_name_the_utterance_and_file(processor, tmp_path):
    (tmp_path / "not_audio.wav").write_text("hello")
    cases = [
        ({"audio": str(tmp_path / "missing.wav")}, f"audio file '{tmp_path / 'missing.wav'}' does not exist"),
        ({"audio": str(tmp_path / "not_audio.wav")}, f"audio file '{tmp_path / 'not_audio.wav'}' cannot be read"),
    ]
    for utterance, message in cases:
        with pytest.raises(TCMPInputError, match=f"dialogue 1, utterance 0: {message}"):
            processor([[{"text": "hi", "audio": np.zeros(800), "sampling_rate": 16000}], [utterance]])
    import soundfile

    soundfile.write(tmp_path / "tone.wav", np.zeros(1600, dtype=np.float32), 16000)
    with pytest.raises(TCMPInputError, match="sampling_rate 8000 given, but the audio file is 16000 Hz"):
        processor([[{"audio": str(tmp_path / "tone.wav"), "sampling_rate": 8000}]])


def test_one_dialogue_as_text_and_audio_equals_dialogues(processor):
    dialogue = random_dialogues(5, [3])[0]
    expected = processor([dialogue])
    batch = processor(
        text=[u["text"] for u in dialogue], audio=[u["audio"] for u in dialogue], sampling_rate=16000,
        return_tensors="pt",
    )
    assert set(batch) == set(expected)
    for name in expected:
        assert torch.equal(batch[name], expected[name])
    text_only = processor(text="hello how are you")
    assert text_only["utterance_mask"].tolist() == [[True]] and "input_values" not in text_only
    with pytest.raises(TCMPInputError, match="text has 2 utterances but audio has 1"):
        processor(text=["hello", "fine thanks"], audio=[dialogue[0]["audio"]], sampling_rate=16000)
    with pytest.raises(TCMPInputError, match="either dialogues= or text=/audio="):
        processor([dialogue], text=["hello"])


def test_numpy_tensors_on_request(processor):
    dialogues = random_dialogues(6, [2, 1])
    as_torch, as_numpy = processor(dialogues), processor(dialogues, return_tensors="np")
    for name, value in as_torch.items():
        assert isinstance(as_numpy[name], np.ndarray) and np.array_equal(as_numpy[name], value.numpy())
    with pytest.raises(ValueError, match="return_tensors='pt' or 'np', got 'tf'"):
        processor(dialogues, return_tensors="tf")
