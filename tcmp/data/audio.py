"""
Lazy audio decoding (`tcmp.audio_utils`: soundfile + scipy, no torchcodec/FFmpeg libraries needed), and media → wav
extraction with the `ffmpeg` command-line tool (the one on PATH, else the binary the `imageio-ffmpeg` wheel ships).

Datasets store audio as file paths plus optional start/end seconds; `load_audio` decodes at collate time.
"""

import os
import shutil
import subprocess
import tempfile

import numpy as np

from ..audio_utils import audio_file_info, decode_file
from ..errors import AudioLoadError


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
    Decode `path` to a float32 mono waveform at `sampling_rate` (`tcmp.audio_utils.decode_file`, the processor's
    path). With `start`/`end` (seconds) only those frames are read; with `max_samples` only the frames that determine
    the first `max_samples` output samples (the same samples as decoding all and cutting).

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
