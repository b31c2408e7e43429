"""
Lazy audio decoding with soundfile + scipy (no torchcodec/FFmpeg libraries needed), and media → wav extraction with
the `ffmpeg` command-line tool.

Datasets store audio as file paths plus optional start/end seconds; `load_audio` decodes at collate time.
"""

import math
import os
import shutil
import subprocess
import tempfile

import numpy as np

from ..processing_tcmp import input_samples_needed, resample
from ..errors import AudioLoadError

MIN_SAMPLING_RATE = 1000
"""A file whose sample rate is below this is rejected as corrupt (speech needs far more)."""


def audio_info(path: str):
    """`soundfile.info` of `path`, with `AudioLoadError` (naming the file and reason) instead of library errors."""
    import soundfile

    if path is None:
        raise AudioLoadError("audio path is None")
    if not os.path.isfile(path):
        raise AudioLoadError(f"audio file {path!r}: missing (no such file)")
    if os.path.getsize(path) == 0:
        raise AudioLoadError(f"audio file {path!r}: empty (0 bytes)")
    try:
        info = soundfile.info(path)
    except Exception as error:  # soundfile raises LibsndfileError/RuntimeError/TypeError on junk
        raise AudioLoadError(f"audio file {path!r}: unreadable ({type(error).__name__}: {error})") from None
    if info.samplerate < MIN_SAMPLING_RATE:
        raise AudioLoadError(
            f"audio file {path!r}: absurd sample rate {info.samplerate} Hz (< {MIN_SAMPLING_RATE} Hz); the file is "
            "probably corrupt or mislabelled"
        )
    if info.frames == 0:
        raise AudioLoadError(f"audio file {path!r}: empty (0 audio frames)")
    return info


def check_audio(path: str) -> str | None:
    """None when `path` is a readable, non-empty audio file with a sane sample rate; else the reason (a string)."""
    try:
        audio_info(path)
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
    Decode `path` to a float32 mono waveform at `sampling_rate` (channels averaged; resampled with
    `scipy.signal.resample_poly`). With `start`/`end` (seconds) only those frames are read; with `max_samples` only
    the frames that determine the first `max_samples` output samples (the same samples as decoding all and cutting).

    Raises `AudioLoadError` (a `ValueError`) naming the file and the reason: missing, unreadable, empty, NaN,
    absurd sample rate, or a start/end outside the file.
    """
    import soundfile

    info = audio_info(path)
    rate = info.samplerate
    for name, value in (("start", start), ("end", end)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float, np.number))
                                  or not math.isfinite(value)):
            raise AudioLoadError(f"audio file {path!r}: {name} must be a finite number of seconds, got {value!r}")
    first = 0 if start is None else int(round(float(start) * rate))
    last = info.frames if end is None else min(int(round(float(end) * rate)), info.frames)
    if first < 0 or first >= info.frames or last <= first:
        raise AudioLoadError(
            f"audio file {path!r}: empty segment start={start} end={end} (file has {info.frames / rate:.3f} s)"
        )
    if max_samples is not None:
        last = min(last, first + input_samples_needed(max_samples, rate, sampling_rate))
    try:
        data, _ = soundfile.read(path, start=first, stop=last, dtype="float32", always_2d=True)
    except Exception as error:
        raise AudioLoadError(f"audio file {path!r}: unreadable ({type(error).__name__}: {error})") from None
    if data.size == 0:
        raise AudioLoadError(f"audio file {path!r}: empty (no samples decoded)")
    waveform = data.mean(axis=1)
    if not np.all(np.isfinite(waveform)):
        raise AudioLoadError(f"audio file {path!r}: contains NaN or infinite samples")
    waveform = resample(waveform, int(rate), int(sampling_rate))
    return np.ascontiguousarray(waveform[:max_samples], dtype=np.float32)


def ffmpeg_available() -> bool:
    return shutil.which("ffmpeg") is not None


def extract_audio(media_path: str, wav_path: str, sampling_rate: int = 16000) -> str:
    """
    Extract the audio track of `media_path` (e.g. a MELD `.mp4` clip) into a mono `sampling_rate` 16-bit wav at
    `wav_path` with the `ffmpeg` command-line tool. The wav appears atomically (written to a temporary file, then
    renamed), so an interrupted extraction never leaves a truncated wav. Returns `wav_path`.
    """
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        raise AudioLoadError(
            f"cannot extract audio from {media_path!r}: the `ffmpeg` program is not installed (install FFmpeg, e.g. "
            "`apt-get install ffmpeg`, or pass pre-extracted 16 kHz wavs named like the clips)"
        )
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
