"""Processor for TCMP: turns dialogues (lists of utterances with text and/or audio) into model inputs."""

import os
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


MAX_ABS_SAMPLE = 2.0**31
"""Float samples beyond this are no audio (int32 PCM given as floats stays below it); their squares would overflow the
float32 normalisation of the speech feature extractors and turn the utterance into NaN."""


def to_mono_float(audio, where: str, max_samples: int | None = None) -> np.ndarray:
    """
    A 1-D float32 waveform from mono or multi-channel, float or integer PCM audio (a NumPy array, a list of numbers
    or a tensor). With `max_samples`, only the first `max_samples` frames are converted (an hour of audio never gets
    copied whole).
    """
    if isinstance(audio, torch.Tensor):
        audio = audio.detach().cpu()
        audio = audio.float() if audio.is_floating_point() else audio
    try:
        array = np.asarray(audio)
    except (TypeError, ValueError) as error:
        raise TCMPInputError(f"{where}: audio is not an array of samples ({type(audio).__name__}: {error})") from None
    if array.dtype.kind not in "fiu":
        raise TCMPInputError(f"{where}: audio must be numeric samples, got dtype {array.dtype}")
    if array.size == 0:
        raise TCMPInputError(f"{where}: audio is empty (0 samples)")
    if array.ndim not in (1, 2):
        raise TCMPInputError(f"{where}: audio must be 1-D (mono) or 2-D (channels), got shape {array.shape}")
    channel_axis = None if array.ndim == 1 else (0 if array.shape[0] <= array.shape[1] else 1)
    if max_samples is not None:
        array = array[:max_samples] if channel_axis != 0 else array[:, :max_samples]
    if array.dtype.kind in "iu":
        info = np.iinfo(array.dtype)
        scale = max(abs(info.min), info.max)
        array = (array.astype(np.float64) - (0 if info.min < 0 else (info.max + 1) / 2)) / scale
    elif not np.isfinite(array).all():
        raise TCMPInputError(f"{where}: audio contains NaN or infinite samples")
    else:
        peak = float(np.abs(array).max())
        if peak > MAX_ABS_SAMPLE:
            raise TCMPInputError(
                f"{where}: audio sample magnitude {peak:.3g} is beyond {MAX_ABS_SAMPLE:.3g}; float audio is expected "
                "in [-1, 1] (or integer PCM values)"
            )
    if channel_axis is not None:
        array = array.mean(axis=channel_axis)
    return array.astype(np.float32)


def read_audio_file(path: str, where: str, max_seconds: float) -> tuple[np.ndarray, int]:
    """
    The first `max_seconds` of an audio file soundfile can read (WAV, FLAC, OGG, ...), as (frames, channels) float32,
    and its rate. (The processor decodes files itself, so that a saved processor needs no `tcmp.data` to do it.)
    """
    import soundfile

    if not os.path.isfile(path):
        raise TCMPInputError(f"{where}: audio file {path!r} does not exist")
    try:
        with soundfile.SoundFile(path) as handle:
            frames = min(handle.frames, int(np.ceil(max_seconds * handle.samplerate)))
            return handle.read(frames, dtype="float32", always_2d=True), handle.samplerate
    except (RuntimeError, TypeError, ValueError) as error:
        raise TCMPInputError(f"{where}: audio file {path!r} cannot be read ({error})") from None


def check_sampling_rate(sampling_rate, where: str) -> int:
    """The sampling rate as an int: a whole number of Hz between 1000 and 384000, else `TCMPInputError`."""
    if sampling_rate is None:
        raise TCMPInputError(f"{where}: audio given without its sampling_rate")
    if isinstance(sampling_rate, (bool, np.bool_)) or not isinstance(sampling_rate, (int, float, np.integer, np.floating)):
        raise TCMPInputError(f"{where}: sampling_rate must be a number of Hz, got {sampling_rate!r}")
    if not (np.isfinite(sampling_rate) and float(sampling_rate).is_integer() and 1000 <= sampling_rate <= 384000):
        raise TCMPInputError(
            f"{where}: implausible sampling_rate {sampling_rate!r} (expected a whole number of Hz in 1000..384000)"
        )
    return int(sampling_rate)


def _resampling_factors(orig_rate: int, target_rate: int) -> tuple[int, int]:
    divisor = gcd(orig_rate, target_rate)
    return target_rate // divisor, orig_rate // divisor


def resample(audio: np.ndarray, orig_rate: int, target_rate: int) -> np.ndarray:
    """Polyphase resampling of a 1-D waveform."""
    if orig_rate == target_rate:
        return audio
    up, down = _resampling_factors(int(orig_rate), int(target_rate))
    return resample_poly(audio, up, down).astype(np.float32)


def input_samples_needed(output_samples: int, orig_rate: int, target_rate: int) -> int:
    """Input frames that determine the first `output_samples` of `resample` exactly (with resample_poly's filter)."""
    if orig_rate == target_rate:
        return output_samples
    up, down = _resampling_factors(orig_rate, target_rate)
    filter_reach = -(-10 * max(up, down) // up) + 1
    return -(-output_samples * down // up) + filter_reach


def _check_text(text, where: str):
    if not isinstance(text, str):
        raise TCMPInputError(f"{where}: text must be a str, got {type(text).__name__}")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as error:
        raise TCMPInputError(
            f"{where}: text is not valid Unicode ({error.reason} {text[error.start:error.end]!r} at character "
            f"{error.start})"
        ) from None


class TCMPProcessor(ProcessorMixin):
    r"""
    Pairs a tokenizer with a speech feature extractor (e.g. `Wav2Vec2FeatureExtractor`) and turns a batch of dialogues
    into TCMP inputs, padding each utterance only to the longest of the batch.

    A dialogue is a list of utterances; an utterance is a dict with `text` (str), and/or `audio` (array of samples,
    mono or `(channels, samples)`, float or integer PCM, with its `sampling_rate`; or the path of an audio file that
    soundfile reads, at the file's own rate), and optionally `speaker`.

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
        """
        Mono, resampled to the extractor's rate, truncated to `max_audio_length`, padded to a minimum length. `audio`
        is samples at `sampling_rate`, or the path of an audio file (its own rate is used; a `sampling_rate` given
        with it must agree).
        """
        if isinstance(audio, (str, os.PathLike)):
            kept_seconds = self.max_audio_length / self.sampling_rate
            audio, file_rate = read_audio_file(os.fspath(audio), where, max_seconds=kept_seconds + 1)
            if sampling_rate is not None and check_sampling_rate(sampling_rate, where) != file_rate:
                raise TCMPInputError(f"{where}: sampling_rate {sampling_rate} given, but the audio file is {file_rate} Hz")
            sampling_rate = file_rate
        rate = check_sampling_rate(sampling_rate, where)
        keep = input_samples_needed(self.max_audio_length, rate, self.sampling_rate)
        waveform = resample(to_mono_float(audio, where, max_samples=keep), rate, self.sampling_rate)
        waveform = waveform[: self.max_audio_length]
        if waveform.size < MIN_AUDIO_SAMPLES:
            waveform = np.pad(waveform, (0, MIN_AUDIO_SAMPLES - waveform.size))
        return waveform

    def __call__(
        self,
        dialogues: list[list[dict]] | None = None,
        return_tensors: str = "pt",
        dialogue_names: list[str] | None = None,
        text: str | list[str] | None = None,
        audio=None,
        sampling_rate: int | None = None,
        **kwargs,
    ) -> BatchFeature:
        """
        Returns a `BatchFeature` with `utterance_mask` (batch, max dialogue length) and, for the real utterances only
        in row-major order, `input_ids`/`attention_mask` (when the utterances have text) and
        `input_values`/`audio_attention_mask` (when they have audio); PyTorch tensors, or NumPy arrays with
        `return_tensors="np"` (e.g. for ONNX Runtime). Errors name the dialogue by its index, or by its entry in
        `dialogue_names` when given (e.g. "session 'call-1'").

        One dialogue may instead be given as `text=` (one str per utterance) and/or `audio=` (one waveform or file
        path per utterance, with `sampling_rate` for waveforms), as other processors take them.
        """
        if return_tensors not in ("pt", "np"):
            raise ValueError(f"TCMPProcessor returns return_tensors='pt' or 'np', got {return_tensors!r}")
        if text is not None or audio is not None:
            if dialogues is not None:
                raise TCMPInputError("pass either dialogues= or text=/audio= (one dialogue), not both")
            dialogues = [self._dialogue_from(text, audio, sampling_rate)]
        if return_tensors == "np":
            batch = self(dialogues, dialogue_names=dialogue_names, **kwargs)
            return BatchFeature(data={k: v.numpy() for k, v in batch.items()}, tensor_type="np")
        if not isinstance(dialogues, (list, tuple)):
            raise TCMPInputError(
                f"TCMPProcessor takes a list of dialogues, each a list of utterance dicts, got {type(dialogues).__name__}"
            )
        if dialogues and isinstance(dialogues[0], dict):
            raise TCMPInputError(
                "TCMPProcessor takes a list of dialogues, each a list of utterance dicts, got one dialogue: pass "
                "[dialogue]"
            )
        if len(dialogues) == 0:
            raise TCMPInputError("TCMPProcessor got no dialogues")
        texts, audios, where = [], [], []
        for d, dialogue in enumerate(dialogues):
            name = f"dialogue {d}" if dialogue_names is None else dialogue_names[d]
            if not isinstance(dialogue, (list, tuple)):
                raise TCMPInputError(f"{name}: expected a list of utterance dicts, got {type(dialogue).__name__}")
            if len(dialogue) == 0:
                raise TCMPInputError(f"{name} is empty: every dialogue needs at least one utterance")
            for u, utterance in enumerate(dialogue):
                place = f"{name}, utterance {u}"
                if not isinstance(utterance, dict):
                    raise TCMPInputError(f"{place}: expected a dict with 'text' and/or 'audio', got {type(utterance)}")
                text, audio = utterance.get("text"), utterance.get("audio")
                if text is None and audio is None:
                    raise TCMPInputError(f"{place} has neither text nor audio")
                if text is not None:
                    _check_text(text, place)
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
    def _dialogue_from(text, audio, sampling_rate) -> list[dict]:
        """One dialogue's utterance dicts from per-utterance `text` and `audio` lists (a single item: one utterance)."""
        texts = [text] if isinstance(text, str) else text
        audios = [audio] if audio is not None and not isinstance(audio, (list, tuple)) else audio
        if texts is not None and audios is not None and len(texts) != len(audios):
            raise TCMPInputError(
                f"text has {len(texts)} utterances but audio has {len(audios)}: give one of each per utterance"
            )
        count = len(texts) if texts is not None else len(audios)
        dialogue = [{} for _ in range(count)]
        for u, utterance in enumerate(dialogue):
            if texts is not None:
                utterance["text"] = texts[u]
            if audios is not None:
                utterance["audio"] = audios[u]
                if sampling_rate is not None:
                    utterance["sampling_rate"] = sampling_rate
        return dialogue

    @staticmethod
    def _require_all(values, where, name):
        missing = [place for place, value in zip(where, values) if value is None]
        if missing:
            raise TCMPInputError(
                f"{missing[0]} has no {name} while other utterances of the batch do "
                f"({len(missing)} utterance(s) lack it): give every utterance {name}, or none"
            )


__all__ = [
    "TCMPProcessor", "TCMPInputError", "MIN_AUDIO_SAMPLES", "MAX_ABS_SAMPLE", "check_sampling_rate", "to_mono_float",
    "resample",
]
