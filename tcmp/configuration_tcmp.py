"""TCMP model configuration."""

import re
from typing import Literal

from huggingface_hub.dataclasses import strict
from transformers import AutoConfig, PreTrainedConfig
from transformers.configuration_utils import SubConfigSpec

from .validation import MODALITIES, TEXT_POOLINGS, check_config_values, check_encoder_chunk_size, config_file_errors


STREAMS = ("text", "audio", "fused")
"""The modality streams of the model (not streaming inference, `tcmp.streaming`, nor iterable datasets)."""


@strict
class TCMPConfig(PreTrainedConfig):
    r"""
    Configuration of a TCMP model (Ju et al., CIKM 2023): utterance encoders for text and audio, three modality
    streams (text, audio, fused), a causal dialogue context and a forthcoming-utterance predictor per stream.

    text_config (`dict` or `PreTrainedConfig`, *optional*):
        Config of any Transformers text encoder (BERT, RoBERTa, ...). `None` builds a model without text.
    audio_config (`dict` or `PreTrainedConfig`, *optional*):
        Config of any Transformers speech encoder (HuBERT, wav2vec 2.0, WavLM). `None` builds a model without audio.
    hidden_size (`int`, defaults to 768):
        Size d of the shared utterance space, the dialogue context and the predictor.
    dropout (`float`, defaults to 0.1):
        Dropout after the utterance projections and in the classifier.
    num_negatives (`int`, *optional*):
        Negatives per forthcoming-utterance prediction during pre-training, drawn at random from the other
        dialogues of the batch (and the extra negatives passed in). `None` uses every one of them.
    modality (`str`, defaults to `"all"`):
        `"all"` uses every stream; `"text"`, `"audio"` and `"fused"` keep one stream's prediction loss in pre-training
        and zero the other streams' vectors in the classifier. `"text2audio"` is the paper's name of `"fused"`.
    attention_window (`int`, *optional*, defaults to 8):
        The predictor attends over at most this many of the latest memory states h_j (j ≤ t-3). 8 is all that the
        paper's 11-utterance windows and 10-utterance contexts ever reach, so it changes nothing there; it bounds the
        state streaming inference (`StreamingPreRecognizer`) keeps. `None` attends over the whole history.
    no_context (`bool`, defaults to `False`):
        Ablation: the predictor uses its query alone, without attending over the earlier dialogue.
    freeze_encoders (`bool`, defaults to `False`):
        Keep both utterance encoders fixed (no gradients, always in eval mode), e.g. to train on cached features.
    freeze_feature_encoder (`bool`, defaults to `False`):
        Keep the speech encoder's convolutional feature encoder (HuBERT, wav2vec 2.0, WavLM) fixed while the rest of
        the encoder trains, as the Transformers speech fine-tuning examples do: that front end's backward pass is most
        of a training step's audio cost. The paper trains it, hence off by default.
    encoder_chunk_size (`int` or `"auto"`, *optional*, defaults to `"auto"`):
        The encoders run on the batch's utterances sorted by length, this many at a time, each chunk padded only to
        its own longest utterance: much less padding to encode than one pass over the whole batch (audio lengths
        vary a lot). `None` encodes the batch in one pass. `"auto"`: the speech encoder in chunks of 2 on CPU (the
        fastest there in `benchmarks/bench_pretraining_throughput.py`, with fp32 and bf16: its convolutional front
        end is memory-bound on wide batches) and in one pass on accelerators; the text encoder in one pass (short
        texts; wider batches measured faster). Speed only: every utterance's features are its own whatever its chunk
        (a group-norm speech front end, HuBERT-base, wav2vec 2.0-base, normalises each utterance over its own frames:
        `tcmp.speech_front_end`), so every chunk size gives the same numbers.
    gather_negatives (`bool`, defaults to `True`):
        Under torch.distributed with several processes (DDP, FSDP), pre-training scores each process's predictions
        against the utterances of every process (gathered with their gradients), not only its own batch's: more
        processes, more negatives. The losses are scaled so that the averaged gradients equal those of one process
        given the union of the batches. No effect in a single process.
    text_pooling (`str`, defaults to `"max_mean"`):
        How a text utterance's token states become one vector: `"max_mean"`, the paper's average of max- and
        mean-pooling; `"normalized_mean"`, mean-pooling then L2 normalisation, the pooling sentence encoders such as
        all-MiniLM-L6-v2 are trained with (their frozen vectors are only meaningful pooled that way).
    class_weights (`list[float]`, *optional*):
        Weights of the classification loss, one per label (count them on the training split only).
    logit_adjustment (`list[float]`, *optional*):
        Added to the logits inside the classification loss only, one per label: τ · log(the label's training prior),
        the logit-adjusted loss (Menon et al., 2021). Predictions use the raw logits, so they lean away from the
        frequent classes as a balanced loss does, but every sample keeps its weight. Count the priors on the
        training split only.
    context_emotion_loss_weight (`float`, defaults to 0.0):
        Fine-tuning per dialogue, the weight of an auxiliary loss that recognises the emotion of each context
        utterance whose label the row holds from its own stream vectors (a linear head on T_i / A_i / M_i), added to
        the pre-recognition loss. It teaches the streams the emotional content that the next emotion mostly follows;
        the head never feeds the prediction, and no label is ever an input. 0 leaves it out (no head).

    Example:

    ```python
    >>> from transformers import BertConfig, HubertConfig
    >>> from tcmp import TCMPConfig, TCMPModel
    >>> config = TCMPConfig(text_config=BertConfig(), audio_config=HubertConfig())  # the paper's sizes
    >>> text_only = TCMPConfig(text_config=BertConfig(), audio_config=None)
    ```
    """

    model_type = "tcmp"
    sub_configs_defaults = {
        "text_config": SubConfigSpec(config_class=AutoConfig, model_type="bert", optional=True),
        "audio_config": SubConfigSpec(config_class=AutoConfig, model_type="hubert", optional=True),
    }

    text_config: dict | PreTrainedConfig | None = None
    audio_config: dict | PreTrainedConfig | None = None
    hidden_size: int = 768
    dropout: float = 0.1
    num_negatives: int | None = None
    modality: Literal["all", "text", "audio", "text2audio", "fused"] = "all"
    attention_window: int | None = 8
    no_context: bool = False
    freeze_encoders: bool = False
    freeze_feature_encoder: bool = False
    encoder_chunk_size: int | Literal["auto"] | None = "auto"
    gather_negatives: bool = True
    text_pooling: Literal["max_mean", "normalized_mean"] = "max_mean"
    class_weights: list[float] | None = None
    logit_adjustment: list[float] | None = None
    context_emotion_loss_weight: float = 0.0

    def __post_init__(self, **kwargs):
        super().__post_init__(**kwargs)
        check_config_values(self)
        if self.text_config is not None or self.audio_config is not None:
            missing = [s for s in self.active_streams if s not in self.available_streams]
            if missing:
                raise ValueError(
                    f"TCMPConfig.modality={self.modality!r} needs the {missing[0]} stream, but the config has "
                    f"text_config={'set' if self.has_text else 'None'} and "
                    f"audio_config={'set' if self.has_audio else 'None'}"
                )

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *args, **kwargs):
        """As `PreTrainedConfig.from_pretrained`; a bad value in the saved config.json is one line naming the file."""
        with config_file_errors(str(pretrained_model_name_or_path)):
            return super().from_pretrained(pretrained_model_name_or_path, *args, **kwargs)

    @classmethod
    def from_dict(cls, config_dict, **kwargs):
        """As `PreTrainedConfig.from_dict`; from `AutoConfig.from_pretrained`, a bad value names the folder's config.json."""
        with config_file_errors(kwargs.get("name_or_path")):
            return super().from_dict(config_dict, **kwargs)

    @classmethod
    def field_doc(cls, name: str) -> str:
        """The description of field `name` in this class's docstring, on one line (the help of the flag that sets it)."""
        entry = re.search(rf"^    {name} \(.*\):\n((?:        .*\n)+)", cls.__doc__, re.MULTILINE)
        if entry is None:
            raise KeyError(f"TCMPConfig's docstring does not describe {name!r}")
        return " ".join(line.strip() for line in entry.group(1).splitlines())

    @property
    def has_text(self) -> bool:
        return self.text_config is not None

    @property
    def has_audio(self) -> bool:
        return self.audio_config is not None

    @property
    def input_modalities(self) -> tuple[str, ...]:
        """The modalities the encoders read: "text" and/or "audio"."""
        return tuple(name for name, present in (("text", self.has_text), ("audio", self.has_audio)) if present)

    @property
    def available_streams(self) -> tuple[str, ...]:
        """Modality streams the encoders can produce: the fused one needs both modalities."""
        streams = []
        if self.has_text:
            streams.append("text")
        if self.has_audio:
            streams.append("audio")
        if self.has_text and self.has_audio:
            streams.append("fused")
        return tuple(streams)

    @property
    def active_streams(self) -> tuple[str, ...]:
        """Modality streams whose prediction loss is trained and whose vectors reach the classifier."""
        if self.modality == "all":
            return self.available_streams
        return {"text": ("text",), "audio": ("audio",), "text2audio": ("fused",), "fused": ("fused",)}[self.modality]


__all__ = ["TCMPConfig", "MODALITIES", "STREAMS", "TEXT_POOLINGS", "check_encoder_chunk_size"]
