"""Processor for TCMP: turns dialogues (lists of utterances with text and/or audio) into model inputs."""

import os

import numpy as np

# scipy (resampling) and soundfile (audio files) are imported by `audio_utils` where first needed. They are imported
# here too because Transformers checks the imports of the module it loads from a folder (`trust_remote_code=True`),
# not those of the modules it imports: a folder loaded where they are missing stops with Transformers' message "This
# modeling file requires the following packages that were not found in your environment: scipy, soundfile".
import scipy  # noqa: F401
import soundfile  # noqa: F401
import torch
from transformers import BatchFeature
from transformers.processing_utils import ProcessorMixin

from .audio_utils import check_sampling_rate, decode_file, decode_samples
from .checkpoints import saved_file_errors
from .errors import TCMPInputError

MIN_AUDIO_SAMPLES = 400
"""Audio shorter than this (one 25 ms frame of the usual speech encoders at 16 kHz) is zero-padded to it."""


def utterance_mask(lengths) -> torch.BoolTensor:
    """`(num_dialogues, longest)` mask of the real utterance slots (left-aligned) from each dialogue's length."""
    lengths = torch.as_tensor(lengths)
    return torch.arange(int(lengths.max())).unsqueeze(0) < lengths.unsqueeze(1)


def check_utterance(utterance, where: str, modalities: tuple[str, ...] | None = None) -> None:
    """
    Refuse, naming `where`, an utterance that is not a dict, has neither text nor audio, or has text that is not a
    valid Unicode str; with `modalities` (those a model encodes, `TCMPConfig.input_modalities`), one that lacks any.
    """
    if not isinstance(utterance, dict):
        raise TCMPInputError(f"{where}: expected a dict with 'text' and/or 'audio', got {type(utterance)}")
    text = utterance.get("text")
    if text is None and utterance.get("audio") is None:
        raise TCMPInputError(
            f"{where} has neither text nor audio" if modalities is None
            else f"{where}: the utterance needs 'text' and/or 'audio'"
        )
    if text is not None and not isinstance(text, str):
        raise TCMPInputError(f"{where}: text must be a str, got {type(text).__name__}")
    try:
        (text or "").encode("utf-8")
    except UnicodeEncodeError as error:
        raise TCMPInputError(
            f"{where}: text is not valid Unicode ({error.reason} {text[error.start:error.end]!r} at character "
            f"{error.start})"
        ) from None
    missing = [name for name in modalities or () if utterance.get(name) is None]
    if missing:
        raise TCMPInputError(
            f"{where}: this model encodes {' and '.join(modalities)}; the utterance has no {' and no '.join(missing)}"
        )


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

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *args, **kwargs):
        """As `ProcessorMixin.from_pretrained`; a truncated or damaged file of a saved folder is one line naming it."""
        with saved_file_errors(str(pretrained_model_name_or_path)):
            return super().from_pretrained(pretrained_model_name_or_path, *args, **kwargs)

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
            waveform, file_rate = decode_file(os.fspath(audio), self.sampling_rate, where, max_samples=self.max_audio_length)
            if sampling_rate is not None and check_sampling_rate(sampling_rate, where) != file_rate:
                raise TCMPInputError(f"{where}: sampling_rate {sampling_rate} given, but the audio file is {file_rate} Hz")
        else:
            waveform = decode_samples(audio, sampling_rate, self.sampling_rate, where, max_samples=self.max_audio_length)
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
                check_utterance(utterance, place)
                text, audio = utterance.get("text"), utterance.get("audio")
                texts.append(text)
                audios.append(
                    None if audio is None else self.prepare_audio(audio, utterance.get("sampling_rate"), place)
                )
                where.append(place)

        data = {"utterance_mask": utterance_mask([len(dialogue) for dialogue in dialogues])}
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


__all__ = ["TCMPProcessor", "MIN_AUDIO_SAMPLES", "check_utterance", "utterance_mask"]
