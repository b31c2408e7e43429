"""Processor for TCMP: turns dialogues (lists of utterances with text and/or audio) into model inputs."""

from math import gcd

import numpy as np
import torch
from scipy.signal import resample_poly
from transformers import BatchFeature
from transformers.processing_utils import ProcessorMixin


MIN_AUDIO_SAMPLES = 400
"""Audio shorter than this (one 25 ms frame of the usual speech encoders at 16 kHz) is zero-padded to it."""


class TCMPInputError(ValueError):
    """An utterance the processor cannot turn into model inputs; the message names the dialogue and utterance."""


def to_mono_float(audio, where: str) -> np.ndarray:
    """A 1-D float32 waveform from mono or multi-channel, float or integer PCM audio."""
    array = np.asarray(audio)
    if array.dtype.kind not in "fiu":
        raise TCMPInputError(f"{where}: audio must be numeric samples, got dtype {array.dtype}")
    if array.size == 0:
        raise TCMPInputError(f"{where}: audio is empty (0 samples)")
    if array.dtype.kind in "iu":
        info = np.iinfo(array.dtype)
        scale = max(abs(info.min), info.max)
        array = (array.astype(np.float64) - (0 if info.min < 0 else (info.max + 1) / 2)) / scale
    if array.ndim == 2:
        channel_axis = 0 if array.shape[0] <= array.shape[1] else 1
        array = array.mean(axis=channel_axis)
    if array.ndim != 1:
        raise TCMPInputError(f"{where}: audio must be 1-D (mono) or 2-D (channels), got shape {array.shape}")
    array = array.astype(np.float32)
    if not np.isfinite(array).all():
        raise TCMPInputError(f"{where}: audio contains NaN or infinite samples")
    return array


def resample(audio: np.ndarray, orig_rate: int, target_rate: int) -> np.ndarray:
    """Polyphase resampling of a 1-D waveform."""
    if orig_rate == target_rate:
        return audio
    divisor = gcd(int(orig_rate), int(target_rate))
    return resample_poly(audio, target_rate // divisor, orig_rate // divisor).astype(np.float32)


class TCMPProcessor(ProcessorMixin):
    r"""
    Pairs a tokenizer with a speech feature extractor (e.g. `Wav2Vec2FeatureExtractor`) and turns a batch of dialogues
    into TCMP inputs, padding each utterance only to the longest of the batch.

    A dialogue is a list of utterances; an utterance is a dict with `text` (str), and/or `audio` (array of samples,
    mono or `(channels, samples)`, float or integer PCM) with its `sampling_rate`, and optionally `speaker`.

    max_text_length (`int`, defaults to 60): tokens kept per utterance.
    max_audio_length (`int`, defaults to 80000): samples kept per utterance after resampling (5 s at 16 kHz).
    """

    def __init__(self, feature_extractor, tokenizer, max_text_length: int = 60, max_audio_length: int = 80000):
        super().__init__(feature_extractor, tokenizer)
        self.max_text_length = max_text_length
        self.max_audio_length = max_audio_length

    @property
    def sampling_rate(self) -> int:
        return self.feature_extractor.sampling_rate

    def prepare_audio(self, audio, sampling_rate: int | None, where: str = "audio") -> np.ndarray:
        """Mono, resampled to the extractor's rate, truncated to `max_audio_length`, padded to a minimum length."""
        if sampling_rate is None:
            raise TCMPInputError(f"{where}: audio given without its sampling_rate")
        if not 1000 <= int(sampling_rate) <= 384000:
            raise TCMPInputError(f"{where}: implausible sampling_rate {sampling_rate}")
        waveform = resample(to_mono_float(audio, where), int(sampling_rate), self.sampling_rate)
        waveform = waveform[: self.max_audio_length]
        if waveform.size < MIN_AUDIO_SAMPLES:
            waveform = np.pad(waveform, (0, MIN_AUDIO_SAMPLES - waveform.size))
        return waveform

    def __call__(self, dialogues: list[list[dict]], return_tensors: str = "pt", **kwargs) -> BatchFeature:
        """
        Returns a `BatchFeature` with `utterance_mask` (batch, max dialogue length) and, for the real utterances only
        in row-major order, `input_ids`/`attention_mask` (when the utterances have text) and
        `input_values`/`audio_attention_mask` (when they have audio).
        """
        if return_tensors != "pt":
            raise ValueError(f"TCMPProcessor returns PyTorch tensors only (return_tensors='pt'), got {return_tensors!r}")
        if isinstance(dialogues, dict) or (dialogues and isinstance(dialogues[0], dict)):
            raise TCMPInputError("TCMPProcessor takes a list of dialogues, each a list of utterance dicts")
        if len(dialogues) == 0:
            raise TCMPInputError("TCMPProcessor got no dialogues")
        texts, audios, where = [], [], []
        for d, dialogue in enumerate(dialogues):
            if len(dialogue) == 0:
                raise TCMPInputError(f"dialogue {d} is empty: every dialogue needs at least one utterance")
            for u, utterance in enumerate(dialogue):
                place = f"dialogue {d}, utterance {u}"
                if not isinstance(utterance, dict):
                    raise TCMPInputError(f"{place}: expected a dict with 'text' and/or 'audio', got {type(utterance)}")
                text, audio = utterance.get("text"), utterance.get("audio")
                if text is None and audio is None:
                    raise TCMPInputError(f"{place} has neither text nor audio")
                if text is not None and not isinstance(text, str):
                    raise TCMPInputError(f"{place}: text must be a str, got {type(text).__name__}")
                texts.append(text)
                audios.append(
                    None if audio is None else self.prepare_audio(audio, utterance.get("sampling_rate"), place)
                )
                where.append(place)

        lengths = torch.tensor([len(dialogue) for dialogue in dialogues])
        data = {"utterance_mask": torch.arange(int(lengths.max())).unsqueeze(0) < lengths.unsqueeze(1)}
        if any(text is not None for text in texts):
            self._require_all(texts, where, "text")
            data.update(
                self.tokenizer(
                    texts,
                    padding="longest",
                    truncation=True,
                    max_length=self.max_text_length,
                    return_tensors="pt",
                )
            )
        if any(audio is not None for audio in audios):
            self._require_all(audios, where, "audio")
            features = self.feature_extractor(
                audios,
                sampling_rate=self.sampling_rate,
                padding="longest",
                return_attention_mask=True,
                return_tensors="pt",
            )
            data["input_values"] = features["input_values"]
            data["audio_attention_mask"] = features["attention_mask"]
        return BatchFeature(data=data)

    @staticmethod
    def _require_all(values, where, name):
        missing = [place for place, value in zip(where, values) if value is None]
        if missing:
            raise TCMPInputError(
                f"{missing[0]} has no {name} while other utterances of the batch do "
                f"({len(missing)} utterance(s) lack it): give every utterance {name}, or none"
            )


__all__ = ["TCMPProcessor", "TCMPInputError", "MIN_AUDIO_SAMPLES", "to_mono_float", "resample"]
