"""
Audio, in one place: the one decoding path of the processor and the datasets (samples or a file, read with
soundfile → mono float32 → `resample_poly` to the target rate → truncated; no torchcodec/FFmpeg libraries needed),
the lazy `load_audio` of dataset rows (file paths plus optional start/end seconds, decoded at collate time), and
media → wav extraction with the `ffmpeg` command-line tool. Errors name the utterance or file.
"""

import math
import os
import shutil
import subprocess
import tempfile
from math import gcd

import numpy as np
import torch

from .errors import AudioLoadError, TCMPInputError


MAX_ABS_SAMPLE = 2.0**31
"""Float samples beyond this are no audio (int32 PCM given as floats stays below it); their squares would overflow the
float32 normalisation of the speech feature extractors and turn the utterance into NaN."""

SAMPLING_RATES = (1000, 384000)
"""Plausible sampling rates (Hz): below, a file is corrupt or mislabelled; above, no audio hardware records."""


def check_sampling_rate(sampling_rate, where: str, error: type[ValueError] = TCMPInputError) -> int:
    """The sampling rate as an int: a whole number of Hz in `SAMPLING_RATES`, else `error` naming `where`."""
    if sampling_rate is None:
        raise error(f"{where}: audio given without its sampling_rate")
    if isinstance(sampling_rate, (bool, np.bool_)) or not isinstance(sampling_rate, (int, float, np.integer, np.floating)):
        raise error(f"{where}: sampling_rate must be a number of Hz, got {sampling_rate!r}")
    low, high = SAMPLING_RATES
    if not (np.isfinite(sampling_rate) and float(sampling_rate).is_integer() and low <= sampling_rate <= high):
        raise error(
            f"{where}: implausible sampling_rate {sampling_rate!r} (an absurd sample rate: expected a whole number of "
            f"Hz in {low}..{high})"
        )
    return int(sampling_rate)


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


def _resampling_factors(orig_rate: int, target_rate: int) -> tuple[int, int]:
    divisor = gcd(orig_rate, target_rate)
    return target_rate // divisor, orig_rate // divisor


def resample(audio: np.ndarray, orig_rate: int, target_rate: int) -> np.ndarray:
    """Polyphase resampling of a 1-D waveform."""
    if orig_rate == target_rate:
        return audio
    from scipy.signal import resample_poly  # imported when first needed: scipy.signal takes seconds to import

    up, down = _resampling_factors(int(orig_rate), int(target_rate))
    return resample_poly(audio, up, down).astype(np.float32)


def input_samples_needed(output_samples: int, orig_rate: int, target_rate: int) -> int:
    """Input frames that determine the first `output_samples` of `resample` exactly (with resample_poly's filter)."""
    if orig_rate == target_rate:
        return output_samples
    up, down = _resampling_factors(orig_rate, target_rate)
    filter_reach = -(-10 * max(up, down) // up) + 1
    return -(-output_samples * down // up) + filter_reach


def decode_samples(audio, sampling_rate, target_rate: int, where: str, max_samples: int | None = None) -> np.ndarray:
    """Samples at `sampling_rate` → mono float32 at `target_rate`, the first `max_samples` of it (only those decoded)."""
    rate = check_sampling_rate(sampling_rate, where)
    keep = None if max_samples is None else input_samples_needed(max_samples, rate, target_rate)
    return resample(to_mono_float(audio, where, max_samples=keep), rate, target_rate)[:max_samples]


def audio_file_info(path: str, where: str | None = None):
    """`soundfile.info` of an audio file, after checking it exists, is not empty and has a plausible rate."""
    import soundfile

    name = f"{where + ': ' if where else ''}audio file {path!r}"
    if path is None:
        raise AudioLoadError(f"{where + ': ' if where else ''}audio path is None")
    if os.path.isdir(path):
        raise AudioLoadError(f"{name} is a folder, not an audio file")
    if not os.path.isfile(path):
        raise AudioLoadError(f"{name} does not exist (missing file)")
    if os.path.getsize(path) == 0:
        raise AudioLoadError(f"{name}: empty (0 bytes)")
    try:
        info = soundfile.info(path)
    except Exception as error:  # soundfile raises LibsndfileError/RuntimeError/TypeError on junk
        raise AudioLoadError(
            f"{name} cannot be read ({os.path.basename(path)!r}: unreadable, {type(error).__name__}: {error})"
        ) from None
    check_sampling_rate(info.samplerate, name, error=AudioLoadError)
    if info.frames == 0:
        raise AudioLoadError(f"{name}: empty (0 audio frames)")
    return info


def decode_file(
    path: str,
    target_rate: int,
    where: str | None = None,
    start: float | None = None,
    end: float | None = None,
    max_samples: int | None = None,
) -> tuple[np.ndarray, int]:
    """
    An audio file soundfile reads (WAV, FLAC, OGG, ...) → (mono float32 at `target_rate`, the file's own rate), the
    same samples `decode_samples` gives for its decoded frames. With `start`/`end` (seconds) only those frames are
    read; with `max_samples` only the frames that determine the first `max_samples` output samples. `AudioLoadError`
    (a `DataError` and a `TCMPInputError`) names `where` and the file: missing, unreadable, empty, NaN, absurd
    sample rate, or a start/end outside the file.
    """
    import soundfile

    info = audio_file_info(path, where)
    name = f"{where + ': ' if where else ''}audio file {path!r}"
    rate = info.samplerate
    for label, value in (("start", start), ("end", end)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float, np.number))
                                  or not math.isfinite(value)):
            raise AudioLoadError(f"{name}: {label} must be a finite number of seconds, got {value!r}")
    first = 0 if start is None else int(round(float(start) * rate))
    last = info.frames if end is None else min(int(round(float(end) * rate)), info.frames)
    if first < 0 or first >= info.frames or last <= first:
        raise AudioLoadError(f"{name}: empty segment start={start} end={end} (file has {info.frames / rate:.3f} s)")
    if max_samples is not None:
        last = min(last, first + input_samples_needed(max_samples, rate, target_rate))
    try:
        data, _ = soundfile.read(path, start=first, stop=last, dtype="float32", always_2d=True)
    except Exception as error:
        raise AudioLoadError(
            f"{name} cannot be read ({os.path.basename(path)!r}: unreadable, {type(error).__name__}: {error})"
        ) from None
    if data.size == 0:
        raise AudioLoadError(f"{name}: empty (no samples decoded)")
    try:
        return decode_samples(data.mean(axis=1), rate, target_rate, name, max_samples), rate
    except TCMPInputError as error:
        raise AudioLoadError(str(error)) from None


def check_audio(path: str) -> str | None:
    """None when `path` is a readable, non-empty audio file with a sane sample rate; else the reason (a string)."""
    try:
        audio_file_info(path)
    except AudioLoadError as error:
        return str(error)
    return None


def load_audio(
    path: str,
    sampling_rate: int = 16000,
    start: float | None = None,
    end: float | None = None,
    max_samples: int | None = None,
) -> np.ndarray:
    """
    Decode `path` to a float32 mono waveform at `sampling_rate` (`decode_file`, the processor's path). With
    `start`/`end` (seconds) only those frames are read; with `max_samples` only the frames that determine the first
    `max_samples` output samples (the same samples as decoding all and cutting).

    Raises `AudioLoadError` (a `ValueError`) naming the file and the reason: missing, unreadable, empty, NaN,
    absurd sample rate, or a start/end outside the file.
    """
    return decode_file(path, sampling_rate, start=start, end=end, max_samples=max_samples)[0]


def ffmpeg_executable(media_path: str) -> str:
    """
    The `ffmpeg` program: the one on PATH, else the binary of the `imageio-ffmpeg` wheel (`pip install
    imageio-ffmpeg`, in the `[test]` extra). Neither: an `AudioLoadError` naming `media_path` and what to install.
    """
    found = shutil.which("ffmpeg")
    if found is not None:
        return found
    try:
        import imageio_ffmpeg
    except ImportError:
        raise AudioLoadError(
            f"cannot extract audio from {media_path!r}: no `ffmpeg` program (install the wheel that ships one, "
            "`pip install imageio-ffmpeg`, or FFmpeg itself, or pass pre-extracted 16 kHz wavs named like the clips)"
        ) from None
    return imageio_ffmpeg.get_ffmpeg_exe()


def extract_audio(media_path: str, wav_path: str, sampling_rate: int = 16000) -> str:
    """
    Extract the audio track of `media_path` (e.g. a MELD `.mp4` clip) into a mono `sampling_rate` 16-bit wav at
    `wav_path` with the `ffmpeg` program (`ffmpeg_executable`). The wav appears atomically (written to a temporary
    file, then renamed), so an interrupted extraction never leaves a truncated wav. Returns `wav_path`.
    """
    ffmpeg = ffmpeg_executable(media_path)
    if not os.path.isfile(media_path):
        raise AudioLoadError(f"media file {media_path!r}: missing (no such file)")
    folder = os.path.dirname(os.path.abspath(wav_path))
    os.makedirs(folder, exist_ok=True)
    handle, tmp = tempfile.mkstemp(suffix=".wav", dir=folder, prefix=".partial-")
    os.close(handle)
    command = [ffmpeg, "-nostdin", "-y", "-loglevel", "error", "-i", media_path, "-vn", "-ac", "1",
               "-ar", str(sampling_rate), "-acodec", "pcm_s16le", "-f", "wav", tmp]
    try:
        result = subprocess.run(command, capture_output=True, text=True)
        if result.returncode != 0:
            raise AudioLoadError(
                f"media file {media_path!r}: ffmpeg failed (exit {result.returncode}): {result.stderr.strip()[-500:]}"
            )
        os.replace(tmp, wav_path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return wav_path


__all__ = [
    "MAX_ABS_SAMPLE", "SAMPLING_RATES", "check_sampling_rate", "to_mono_float", "resample", "input_samples_needed",
    "decode_samples", "audio_file_info", "decode_file", "check_audio", "load_audio", "extract_audio",
]
