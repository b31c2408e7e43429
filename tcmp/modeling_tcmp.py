"""TCMP: contrastive multimodal dialogue pre-training and emotion pre-recognition (Ju et al., CIKM 2023)."""

import hashlib
import json
import os
from contextlib import nullcontext
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import AutoConfig, AutoModel, PreTrainedModel
from transformers import initialization as init
from safetensors import SafetensorError
from transformers.utils import ModelOutput

from .configuration_tcmp import STREAMS, TCMPConfig

CPU_AUDIO_CHUNK_SIZE = 2
"""Utterances per speech-encoder pass on CPU under `encoder_chunk_size="auto"` (measured fastest: fp32 and bf16)."""


@dataclass
class TCMPModelOutput(ModelOutput):
    r"""
    text_embeds / audio_embeds / fused_embeds (`torch.FloatTensor` of shape `(batch_size, num_utterances, hidden_size)`):
        The utterance vectors T_i, A_i and M_i of each stream (zeros at padding utterances); `None` for a stream the
        config does not have.
    forthcoming_embeds (`torch.FloatTensor` of shape `(batch_size, num_utterances + 1, 3, hidden_size)`):
        e_t for every position t = 0 .. num_utterances and each stream (text, audio, fused; zeros for a missing
        stream): the prediction of utterance t from utterances 0 .. t-1 only.
    utterance_mask (`torch.BoolTensor` of shape `(batch_size, num_utterances)`):
        Which utterance slots are real.
    """

    text_embeds: torch.FloatTensor | None = None
    audio_embeds: torch.FloatTensor | None = None
    fused_embeds: torch.FloatTensor | None = None
    forthcoming_embeds: torch.FloatTensor | None = None
    utterance_mask: torch.BoolTensor | None = None


@dataclass
class TCMPForPreTrainingOutput(ModelOutput):
    r"""
    loss (`torch.FloatTensor` of shape `()`):
        (L_t→a + L_a→t) / 2 + the mean of the active streams' forthcoming-utterance losses.
    matching_loss (`torch.FloatTensor` of shape `()`, *optional*):
        The text–audio matching loss (L_t→a + L_a→t) / 2; `None` without both modalities.
    text_prediction_loss / audio_prediction_loss / fused_prediction_loss (`torch.FloatTensor` of shape `()`):
        Forthcoming-utterance prediction loss of each active stream; `None` for an inactive one.
    prediction_scores (`torch.FloatTensor` of shape `(num_predictions, 3, num_candidates)`):
        Dot products of each prediction e_t with every candidate (the batch's utterances, then the extra negatives);
        candidates that are not allowed (other utterances of the same dialogue, unsampled negatives) hold the dtype's
        minimum. Streams: text, audio, fused.
    prediction_labels (`torch.LongTensor` of shape `(num_predictions,)`):
        Index of the true next utterance among the candidates.
    predicted_embeds / target_embeds (`torch.FloatTensor` of shape `(num_predictions, 3, hidden_size)`):
        e_t and the true encoded utterance S_t per stream, for retrieval metrics over a fixed candidate pool.
    prediction_dialogue_ids (`torch.LongTensor` of shape `(num_predictions,)`):
        Dialogue id of each prediction (negatives must come from other dialogues).
    """

    loss: torch.FloatTensor | None = None
    matching_loss: torch.FloatTensor | None = None
    text_prediction_loss: torch.FloatTensor | None = None
    audio_prediction_loss: torch.FloatTensor | None = None
    fused_prediction_loss: torch.FloatTensor | None = None
    prediction_scores: torch.FloatTensor | None = None
    prediction_labels: torch.LongTensor | None = None
    predicted_embeds: torch.FloatTensor | None = None
    target_embeds: torch.FloatTensor | None = None
    prediction_dialogue_ids: torch.LongTensor | None = None


@dataclass
class TCMPPreRecognitionOutput(ModelOutput):
    r"""
    loss (`torch.FloatTensor` of shape `()`, *optional*, returned when `labels` is given):
        Class-weighted cross-entropy of the next utterance's emotion.
    logits (`torch.FloatTensor` of shape `(batch_size, num_labels)`):
        Scores of the next utterance's emotion; `(batch_size, num_utterances + 1, num_labels)` with per-position
        labels (the scores of each position's utterance).
    forthcoming_embeds (`torch.FloatTensor` of shape `(batch_size, 3, hidden_size)`):
        The stream vectors e^T, e^A, e^M the classifier saw (zeros for ablated or missing streams); one set per
        position with per-position labels.
    """

    loss: torch.FloatTensor | None = None
    logits: torch.FloatTensor | None = None
    forthcoming_embeds: torch.FloatTensor | None = None


def masked_max_mean_pool(hidden_states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Average of max-pooling and mean-pooling over the real positions of each row (a row with none gives zeros)."""
    mask = mask.bool()
    weights = mask.unsqueeze(-1).to(hidden_states.dtype)
    count = weights.sum(dim=1)
    mean = (hidden_states * weights).sum(dim=1) / count.clamp(min=1)
    lowest = torch.finfo(hidden_states.dtype).min
    maximum = hidden_states.masked_fill(~mask.unsqueeze(-1), lowest).amax(dim=1)
    maximum = torch.where(count > 0, maximum, torch.zeros_like(maximum))
    return (maximum + mean) / 2


def masked_mean_pool(hidden_states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over the real positions of each row (a row with none gives zeros)."""
    weights = mask.unsqueeze(-1).to(hidden_states.dtype)
    return (hidden_states * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1)


def _without_pooler(encoder: PreTrainedModel) -> PreTrainedModel:
    """TCMP pools hidden states itself: an encoder's own pooler would hold untrained, unused weights."""
    if getattr(encoder, "pooler", None) is not None:
        encoder.pooler = None
    return encoder


class TCMPUtteranceProjection(nn.Module):
    """Linear(encoder width, d) + tanh + dropout: one per modality, so their widths may differ."""

    def __init__(self, input_size: int, hidden_size: int, dropout: float):
        super().__init__()
        self.dense = nn.Linear(input_size, hidden_size)
        self.dropout = nn.Dropout(dropout)

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        return self.dropout(torch.tanh(self.dense(pooled)))


class TCMPDialogueContext(nn.Module):
    """Causal (unidirectional) GRU over a stream's utterance vectors, then Linear(d, d): c_1 … c_n."""

    def __init__(self, hidden_size: int):
        super().__init__()
        self.gru = nn.GRU(hidden_size, hidden_size, batch_first=True)
        self.dense = nn.Linear(hidden_size, hidden_size)

    def forward(self, utterances: torch.Tensor) -> torch.Tensor:
        return self.advance(utterances)[0]

    def advance(self, utterances: torch.Tensor, hidden: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, T, d) utterances from GRU state `hidden` (1, B, d) → context (B, T, d) and the new GRU state."""
        states, hidden = self.gru(utterances, hidden)
        return self.dense(states), hidden


class TCMPForthcomingPredictor(nn.Module):
    """
    e_t = W_e [attention(q_t, h_{≤t-3}); q_t] with q_t = tanh(W_q [c_{t-1}; c_{t-2}]) and h = GRU(c).

    Nothing at or after position t enters e_t. Attention covers at most `attention_window` memory states.
    """

    def __init__(self, hidden_size: int, attention_window: int | None, no_context: bool):
        super().__init__()
        self.memory_gru = nn.GRU(hidden_size, hidden_size, batch_first=True)
        self.query = nn.Linear(2 * hidden_size, hidden_size)
        self.output = nn.Linear(2 * hidden_size, hidden_size)
        self.attention_window = attention_window
        self.no_context = no_context

    def forward(self, context: torch.Tensor, utterance_mask: torch.Tensor) -> torch.Tensor:
        """context (B, T, d) → e_t for t = 0 … T, shape (B, T + 1, d)."""
        batch_size, length, hidden_size = context.shape
        padded = F.pad(context, (0, 0, 2, 0))
        query = self.make_query(padded[:, 1 : length + 2], padded[:, : length + 1])
        memory, allowed = None, None
        if not self.no_context and length > 2:
            memory, _ = self.memory_gru(context)
            position = torch.arange(length + 1, device=context.device).unsqueeze(1)
            slot = torch.arange(length, device=context.device).unsqueeze(0)
            allowed = slot <= position - 3
            if self.attention_window is not None:
                allowed = allowed & (slot > position - 3 - self.attention_window)
            allowed = allowed.unsqueeze(0) & utterance_mask.unsqueeze(1)
        return self.predict(query, memory, allowed)

    def make_query(self, previous: torch.Tensor, before_previous: torch.Tensor) -> torch.Tensor:
        """q_t = tanh(W_q [c_{t-1}; c_{t-2}])."""
        return torch.tanh(self.query(torch.cat([previous, before_previous], dim=-1)))

    def predict(
        self, query: torch.Tensor, memory: torch.Tensor | None, allowed: torch.BoolTensor | None
    ) -> torch.Tensor:
        """
        e = W_e [attention(q, memory); q] for queries (B, Q, d) over memory states (B, M, d), where `allowed`
        (B, Q, M) marks the states each query may read; a query with none (or `memory=None`) attends to nothing.
        """
        attended = torch.zeros_like(query)
        if memory is not None:
            scores = torch.bmm(query, memory.transpose(1, 2))
            scores = scores.masked_fill(~allowed, torch.finfo(scores.dtype).min)
            weights = torch.softmax(scores, dim=-1) * allowed.any(dim=-1, keepdim=True)
            attended = torch.bmm(weights, memory)
        return self.output(torch.cat([attended, query], dim=-1))


CHECKSUM_FILE = "tcmp_checksums.json"


class CheckpointError(OSError):
    """A saved TCMP model that cannot be loaded safely (truncated, corrupted); the message names the file."""


def could_be_hub_id(name: str) -> bool:
    """Whether `name` has the shape of a Hub repository id (`bert-base-uncased`, `org/model`) rather than a path."""
    return not name.startswith(("/", ".", "~")) and name.count("/") <= 1 and not os.path.exists(name)


def require_folder_or_hub_id(name: str) -> None:
    """A path that names no folder is refused here, naming it (transformers would call it a bad Hub repo id)."""
    if not os.path.isdir(os.path.expanduser(name)) and not could_be_hub_id(name):
        raise FileNotFoundError(f"{name}: no such folder")


def _sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_checksums(folder: str):
    """Record the SHA-256 of every weights file of a saved model, so that a damaged copy is refused at load time."""
    names = sorted(n for n in os.listdir(folder) if n.endswith(".safetensors"))
    checksums = {name: _sha256(os.path.join(folder, name)) for name in names}
    with open(os.path.join(folder, CHECKSUM_FILE), "w") as handle:
        json.dump(checksums, handle, indent=2)


def verify_checksums(folder: str):
    """Raise `CheckpointError` naming the first weights file whose bytes differ from what was saved."""
    path = os.path.join(folder, CHECKSUM_FILE)
    if not os.path.isfile(path):
        return
    with open(path) as handle:
        checksums = json.load(handle)
    for name, expected in checksums.items():
        weights = os.path.join(folder, name)
        if not os.path.isfile(weights):
            raise CheckpointError(f"{weights} is missing (listed in {path})")
        if _sha256(weights) != expected:
            raise CheckpointError(f"{weights} is corrupted or truncated: its SHA-256 differs from the saved one")


class TCMPPreTrainedModel(PreTrainedModel):
    config: TCMPConfig
    config_class = TCMPConfig
    base_model_prefix = "tcmp"
    main_input_name = "input_ids"
    input_modalities = ("text", "audio")
    supports_gradient_checkpointing = True

    @torch.no_grad()
    def _init_weights(self, module: nn.Module):
        """New layers keep their activations' scale whatever d is: LeCun-normal linears, orthogonal recurrences."""
        if isinstance(module, nn.Linear):
            init.normal_(module.weight, std=module.in_features**-0.5)
            init.zeros_(module.bias)
        elif isinstance(module, nn.GRU):
            for name, param in module.named_parameters():
                if "weight_ih" in name:
                    init.xavier_uniform_(param)
                elif "weight_hh" in name:
                    init.orthogonal_(param)
                else:
                    init.zeros_(param)
        else:
            super()._init_weights(module)

    def save_pretrained(self, save_directory, *args, **kwargs):
        """Save weights (safetensors), config and the modeling code, with an `auto_map` naming every TCMP head."""
        self.config.auto_map = {
            "AutoConfig": "configuration_tcmp.TCMPConfig",
            "AutoModel": "modeling_tcmp.TCMPModel",
            "AutoModelForPreTraining": "modeling_tcmp.TCMPForPreTraining",
            "AutoModelForSequenceClassification": "modeling_tcmp.TCMPForEmotionPreRecognition",
        }
        result = super().save_pretrained(save_directory, *args, **kwargs)
        if kwargs.get("is_main_process", True):
            write_checksums(str(save_directory))
        return result

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *args, **kwargs):
        """
        Like `PreTrainedModel.from_pretrained`; a local folder's weights are checked against their checksums, and the
        config's frozen encoders (or feature encoder) are frozen again after loading.
        """
        folder = str(pretrained_model_name_or_path)
        require_folder_or_hub_id(folder)
        if os.path.isdir(folder):
            verify_checksums(folder)
        try:
            loaded = super().from_pretrained(pretrained_model_name_or_path, *args, **kwargs)
        except SafetensorError as error:
            raise CheckpointError(f"cannot read the weights in {folder}: {error}") from error
        model = loaded[0] if isinstance(loaded, tuple) else loaded  # (model, loading info) with output_loading_info
        model.base_model.set_encoders_frozen(model.config.freeze_encoders)
        return loaded

    @classmethod
    def from_text_audio_pretrained(
        cls, text_model_path: str | None = None, audio_model_path: str | None = None, **config_kwargs
    ):
        """Build a TCMP model around encoders loaded from two local checkpoint folders (either may be `None`)."""
        if text_model_path is None and audio_model_path is None:
            raise ValueError("from_text_audio_pretrained needs a text_model_path, an audio_model_path or both")
        for path in (text_model_path, audio_model_path):
            if path:
                require_folder_or_hub_id(str(path))
        text_config = AutoConfig.from_pretrained(text_model_path) if text_model_path else None
        audio_config = AutoConfig.from_pretrained(audio_model_path) if audio_model_path else None
        model = cls(TCMPConfig(text_config=text_config, audio_config=audio_config, **config_kwargs))
        base = model.base_model
        if text_model_path:
            base.text_model = _without_pooler(AutoModel.from_pretrained(text_model_path))
        if audio_model_path:
            base.audio_model = _without_pooler(AutoModel.from_pretrained(audio_model_path))
        base.set_encoders_frozen(model.config.freeze_encoders)
        return model


class TCMPModel(TCMPPreTrainedModel):
    """Utterance encoders, the three streams, the causal dialogue context and the forthcoming-utterance predictors."""

    def __init__(self, config: TCMPConfig):
        super().__init__(config)
        if not (config.has_text or config.has_audio):
            raise ValueError("TCMPConfig needs a text_config, an audio_config or both; it has neither")
        d = config.hidden_size
        self.text_model = _without_pooler(AutoModel.from_config(config.text_config)) if config.has_text else None
        self.audio_model = _without_pooler(AutoModel.from_config(config.audio_config)) if config.has_audio else None
        self.text_projection = (
            TCMPUtteranceProjection(config.text_config.hidden_size, d, config.dropout) if config.has_text else None
        )
        self.audio_projection = (
            TCMPUtteranceProjection(config.audio_config.hidden_size, d, config.dropout) if config.has_audio else None
        )
        self.fusion = nn.Linear(2 * d, d) if config.has_text and config.has_audio else None
        self.context = nn.ModuleDict({s: TCMPDialogueContext(d) for s in config.available_streams})
        self.predictor = nn.ModuleDict(
            {
                s: TCMPForthcomingPredictor(d, config.attention_window, config.no_context)
                for s in config.available_streams
            }
        )
        self.post_init()
        self.set_encoders_frozen(config.freeze_encoders)

    def get_input_embeddings(self):
        return self.text_model.get_input_embeddings() if self.text_model is not None else None

    def set_encoders_frozen(self, frozen: bool):
        """
        Freeze (no gradients, always in eval mode) or unfreeze both utterance encoders; kept in the config. With
        `config.freeze_feature_encoder` the speech encoder's convolutional front end stays fixed either way.
        """
        self.config.freeze_encoders = frozen
        for encoder in (self.text_model, self.audio_model):
            if encoder is not None:
                encoder.requires_grad_(not frozen)
                encoder.train(self.training and not frozen)
        if self.config.freeze_feature_encoder:
            front_end = getattr(self.audio_model, "feature_extractor", None)
            if not hasattr(front_end, "_freeze_parameters"):
                kind = "no audio encoder" if self.audio_model is None else f"a {self.config.audio_config.model_type} encoder"
                raise ValueError(
                    "TCMPConfig.freeze_feature_encoder needs a speech encoder with a convolutional feature encoder "
                    f"(HuBERT, wav2vec 2.0, WavLM); this model has {kind}"
                )
            front_end._freeze_parameters()

    def train(self, mode: bool = True):
        super().train(mode)
        if self.config.freeze_encoders:
            for encoder in (self.text_model, self.audio_model):
                if encoder is not None:
                    encoder.eval()
        return self

    def _encoder_grad(self):
        return torch.no_grad() if self.config.freeze_encoders else nullcontext()

    def text_features(self, input_ids, attention_mask=None, token_type_ids=None) -> torch.Tensor:
        """Pooled text-encoder output of each utterance, before the trainable projection: (N, text width)."""
        if input_ids is None:
            raise ValueError("this TCMP model has a text encoder: pass input_ids (the processor's text output)")
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        inputs = {"input_ids": input_ids, "attention_mask": attention_mask, "token_type_ids": token_type_ids}
        return self._encode_in_length_chunks(self._pooled_text, inputs, attention_mask, auto_chunk_size=None)

    def _pooled_text(self, input_ids, attention_mask, token_type_ids) -> torch.Tensor:
        with self._encoder_grad():
            hidden = self.text_model(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
            ).last_hidden_state
            if self.config.text_pooling == "normalized_mean":
                return F.normalize(masked_mean_pool(hidden, attention_mask), dim=-1)
            return masked_max_mean_pool(hidden, attention_mask)

    def audio_features(self, input_values, audio_attention_mask=None) -> torch.Tensor:
        """Pooled audio-encoder output of each utterance (real frames only), before the projection: (N, audio width)."""
        if input_values is None:
            raise ValueError(
                "this TCMP model has an audio encoder: pass input_values (audio for every utterance), "
                "or use a text-only config (audio_config=None)"
            )
        if audio_attention_mask is None:
            audio_attention_mask = torch.ones(input_values.shape, dtype=torch.long, device=input_values.device)
        inputs = {"input_values": input_values, "audio_attention_mask": audio_attention_mask}
        auto_chunk_size = CPU_AUDIO_CHUNK_SIZE if input_values.device.type == "cpu" else None
        return self._encode_in_length_chunks(self._pooled_audio, inputs, audio_attention_mask, auto_chunk_size)

    def _pooled_audio(self, input_values, audio_attention_mask) -> torch.Tensor:
        with self._encoder_grad():
            hidden = self.audio_model(input_values, attention_mask=audio_attention_mask).last_hidden_state
            frame_mask = self.audio_model._get_feature_vector_attention_mask(hidden.shape[1], audio_attention_mask)
            return masked_max_mean_pool(hidden, frame_mask)

    def _encode_in_length_chunks(
        self, encode, inputs: dict, mask: torch.Tensor, auto_chunk_size: int | None
    ) -> torch.Tensor:
        """
        `encode(**inputs)` over the utterances sorted by length (`mask` sums), `config.encoder_chunk_size` at a time
        (`auto_chunk_size` when that is `"auto"`; `None`: one pass), each chunk cut to its own longest utterance (when
        the chunk is right-padded); rows come back in input order.
        """
        chunk_size = self.config.encoder_chunk_size
        if chunk_size == "auto":
            chunk_size = auto_chunk_size
        if chunk_size is None or mask.shape[0] <= chunk_size:
            return encode(**inputs)
        lengths = mask.sum(dim=1)
        order = lengths.argsort(stable=True)
        pieces = []
        for rows in order.split(chunk_size):
            longest = max(int(lengths[rows].max()), 1)
            if mask[rows, longest:].any():
                longest = mask.shape[1]
            pieces.append(
                encode(**{name: None if x is None else x[rows, :longest] for name, x in inputs.items()})
            )
        return torch.cat(pieces)[order.argsort(stable=True)]

    def encode_utterances(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.LongTensor | None = None,
        token_type_ids: torch.LongTensor | None = None,
        input_values: torch.FloatTensor | None = None,
        audio_attention_mask: torch.LongTensor | None = None,
        text_features: torch.FloatTensor | None = None,
        audio_features: torch.FloatTensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """
        Encode a flat batch of utterances once each: stream name → (num_utterances, d). Precomputed encoder features
        (from `text_features` / `audio_features`, e.g. a feature cache of frozen encoders) skip the encoders.
        """
        vectors = {}
        if self.text_model is not None:
            if text_features is None:
                text_features = self.text_features(input_ids, attention_mask, token_type_ids)
            vectors["text"] = self.text_projection(text_features)
        if self.audio_model is not None:
            if audio_features is None:
                audio_features = self.audio_features(input_values, audio_attention_mask)
            vectors["audio"] = self.audio_projection(audio_features)
        if self.fusion is not None:
            vectors["fused"] = self.fusion(torch.cat([vectors["text"], vectors["audio"]], dim=-1))
        return vectors

    def forward(
        self,
        utterance_mask: torch.BoolTensor,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.LongTensor | None = None,
        token_type_ids: torch.LongTensor | None = None,
        input_values: torch.FloatTensor | None = None,
        audio_attention_mask: torch.LongTensor | None = None,
        text_features: torch.FloatTensor | None = None,
        audio_features: torch.FloatTensor | None = None,
        **kwargs,
    ) -> TCMPModelOutput:
        r"""
        utterance_mask (`torch.BoolTensor` of shape `(batch_size, num_utterances)`):
            Which utterance slots of each dialogue are real; utterances are left-aligned.
        input_ids, attention_mask, token_type_ids (`(num_real_utterances, text_length)`):
            Tokenised transcripts of the real utterances only, in row-major order of `utterance_mask`.
        input_values, audio_attention_mask (`(num_real_utterances, num_samples)`):
            16 kHz mono waveforms of the real utterances, in the same order.
        text_features, audio_features (`(num_real_utterances, encoder width)`, *optional*):
            Precomputed pooled encoder outputs that replace the encoders (see `text_features()`).
        """
        utterance_mask = self._check_utterance_mask(utterance_mask, input_ids, input_values, text_features, audio_features)
        flat = self.encode_utterances(
            input_ids, attention_mask, token_type_ids, input_values, audio_attention_mask, text_features, audio_features
        )
        return self.dialogue_forward(flat, utterance_mask)

    def dialogue_forward(self, flat: dict[str, torch.Tensor], utterance_mask: torch.BoolTensor) -> TCMPModelOutput:
        """Streams, context and predictions from already-encoded utterance vectors (stream → (num_real, d))."""
        batch_size, length = utterance_mask.shape
        embeds, forthcoming = {}, []
        for stream in STREAMS:
            if stream not in flat:
                forthcoming.append(None)
                continue
            vectors = flat[stream]
            dialogue = vectors.new_zeros(batch_size, length, vectors.shape[-1])
            dialogue[utterance_mask] = vectors
            embeds[stream] = dialogue
            context = self.context[stream](dialogue)
            forthcoming.append(self.predictor[stream](context, utterance_mask))
        reference = next(f for f in forthcoming if f is not None)
        forthcoming = torch.stack([f if f is not None else torch.zeros_like(reference) for f in forthcoming], dim=2)
        return TCMPModelOutput(
            text_embeds=embeds.get("text"),
            audio_embeds=embeds.get("audio"),
            fused_embeds=embeds.get("fused"),
            forthcoming_embeds=forthcoming,
            utterance_mask=utterance_mask,
        )

    @staticmethod
    def _check_utterance_mask(
        utterance_mask, input_ids=None, input_values=None, text_features=None, audio_features=None
    ) -> torch.BoolTensor:
        if utterance_mask is None or utterance_mask.dim() != 2:
            raise ValueError("utterance_mask must be a (batch_size, num_utterances) tensor from the TCMP processor")
        utterance_mask = utterance_mask.bool()
        if utterance_mask.shape[1] > 1 and (utterance_mask[:, 1:] & ~utterance_mask[:, :-1]).any():
            raise ValueError("utterance_mask must be left-aligned: real utterances first, padding after")
        num_real = int(utterance_mask.sum())
        inputs = {
            "input_ids": input_ids,
            "input_values": input_values,
            "text_features": text_features,
            "audio_features": audio_features,
        }
        for name, tensor in inputs.items():
            if tensor is not None and tensor.shape[0] != num_real:
                raise ValueError(
                    f"{name} has {tensor.shape[0]} rows but utterance_mask marks {num_real} real utterances; "
                    "pass one row per real utterance, in row-major order"
                )
        return utterance_mask


def _active_stream_slots(config: TCMPConfig) -> list[int]:
    return [STREAMS.index(s) for s in config.active_streams]


class TCMPForPreTraining(TCMPPreTrainedModel):
    """TCMP with its two pre-training objectives: text–audio matching and forthcoming-utterance prediction."""

    def __init__(self, config: TCMPConfig):
        super().__init__(config)
        self.tcmp = TCMPModel(config)
        self.post_init()

    def forward(
        self,
        utterance_mask: torch.BoolTensor,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.LongTensor | None = None,
        token_type_ids: torch.LongTensor | None = None,
        input_values: torch.FloatTensor | None = None,
        audio_attention_mask: torch.LongTensor | None = None,
        text_features: torch.FloatTensor | None = None,
        audio_features: torch.FloatTensor | None = None,
        dialogue_ids: torch.LongTensor | None = None,
        negative_input_ids: torch.LongTensor | None = None,
        negative_attention_mask: torch.LongTensor | None = None,
        negative_token_type_ids: torch.LongTensor | None = None,
        negative_input_values: torch.FloatTensor | None = None,
        negative_audio_attention_mask: torch.LongTensor | None = None,
        **kwargs,
    ) -> TCMPForPreTrainingOutput:
        r"""
        dialogue_ids (`torch.LongTensor` of shape `(batch_size,)`, *optional*):
            Which dialogue each row comes from (two windows of one dialogue never serve as each other's negatives).
            Defaults to one dialogue per row.
        negative_* (*optional*):
            Extra negative utterances (flat, like the main inputs), encoded once and added to every prediction's
            candidates, after the other dialogues' utterances of the batch.
        """
        base = self.tcmp
        utterance_mask = base._check_utterance_mask(utterance_mask, input_ids, input_values, text_features, audio_features)
        flat = base.encode_utterances(
            input_ids, attention_mask, token_type_ids, input_values, audio_attention_mask, text_features, audio_features
        )
        outputs = base.dialogue_forward(flat, utterance_mask)
        batch_size, length = utterance_mask.shape
        device = utterance_mask.device
        if dialogue_ids is None:
            dialogue_ids = torch.arange(batch_size, device=device)
        row_grid = torch.arange(batch_size, device=device).unsqueeze(1).expand(batch_size, length)
        row_of_utterance = row_grid[utterance_mask]
        utterance_dialogue = dialogue_ids[row_of_utterance]

        negatives = {}
        if negative_input_ids is not None or negative_input_values is not None:
            negatives = base.encode_utterances(
                negative_input_ids,
                negative_attention_mask,
                negative_token_type_ids,
                negative_input_values,
                negative_audio_attention_mask,
            )

        matching_loss = None
        if "text" in flat and "audio" in flat:
            same_dialogue = row_of_utterance.unsqueeze(0) == row_of_utterance.unsqueeze(1)
            logits = (flat["text"] @ flat["audio"].T).masked_fill(~same_dialogue, torch.finfo(flat["text"].dtype).min)
            target = torch.arange(logits.shape[0], device=device)
            matching_loss = (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2

        flat_index = torch.cumsum(utterance_mask.reshape(-1).long(), 0).reshape(batch_size, length) - 1
        predicted_slots = utterance_mask & (torch.arange(length, device=device).unsqueeze(0) >= 2)
        prediction_labels = flat_index[predicted_slots]
        prediction_dialogue = dialogue_ids[row_grid[predicted_slots]]
        predicted = outputs.forthcoming_embeds[:, :length][predicted_slots]

        num_utterances = row_of_utterance.shape[0]
        num_candidates = num_utterances + (next(iter(negatives.values())).shape[0] if negatives else 0)
        allowed = self._candidate_mask(prediction_labels, prediction_dialogue, utterance_dialogue, num_candidates)

        losses, scores, targets = {}, [], []
        for slot, stream in enumerate(STREAMS):
            if stream not in flat:
                scores.append(predicted.new_zeros(predicted.shape[0], num_candidates))
                targets.append(predicted.new_zeros(predicted.shape[0], predicted.shape[-1]))
                continue
            candidates = flat[stream] if stream not in negatives else torch.cat([flat[stream], negatives[stream]])
            stream_scores = predicted[:, slot] @ candidates.T
            stream_scores = stream_scores.masked_fill(~allowed, torch.finfo(stream_scores.dtype).min)
            scores.append(stream_scores)
            targets.append(flat[stream][prediction_labels])
            if stream in self.config.active_streams and prediction_labels.numel() > 0:
                losses[stream] = F.cross_entropy(stream_scores, prediction_labels)

        loss_terms = [torch.stack(list(losses.values())).mean()] if losses else []
        if matching_loss is not None:
            loss_terms.append(matching_loss)
        loss = torch.stack(loss_terms).sum() if loss_terms else None
        return TCMPForPreTrainingOutput(
            loss=loss,
            matching_loss=matching_loss,
            text_prediction_loss=losses.get("text"),
            audio_prediction_loss=losses.get("audio"),
            fused_prediction_loss=losses.get("fused"),
            prediction_scores=torch.stack(scores, dim=1),
            prediction_labels=prediction_labels,
            predicted_embeds=predicted,
            target_embeds=torch.stack(targets, dim=1),
            prediction_dialogue_ids=prediction_dialogue,
        )

    def _candidate_mask(self, labels, prediction_dialogue, utterance_dialogue, num_candidates) -> torch.BoolTensor:
        """The true utterance, every utterance of another dialogue and every extra negative (optionally sampled)."""
        num_utterances = utterance_dialogue.shape[0]
        negative = torch.ones(labels.shape[0], num_candidates, dtype=torch.bool, device=labels.device)
        negative[:, :num_utterances] = prediction_dialogue.unsqueeze(1) != utterance_dialogue.unsqueeze(0)
        if self.config.num_negatives is not None:
            draw = torch.rand(negative.shape, device=labels.device).masked_fill(~negative, -1.0)
            keep = min(self.config.num_negatives, num_candidates)
            chosen = torch.zeros_like(negative).scatter_(1, draw.topk(keep, dim=1).indices, True)
            negative = negative & chosen
        allowed = negative.clone()
        allowed[torch.arange(labels.shape[0], device=labels.device), labels] = True
        return allowed


class TCMPForEmotionPreRecognition(TCMPPreTrainedModel):
    """TCMP with the pre-recognition head: the emotion of the utterance that follows the given context."""

    def __init__(self, config: TCMPConfig):
        super().__init__(config)
        self.tcmp = TCMPModel(config)
        d = config.hidden_size
        self.classifier = nn.Sequential(
            nn.Linear(3 * d, 2 * d),
            nn.ReLU(),
            nn.Dropout(config.dropout),
            nn.Linear(2 * d, d),
            nn.Linear(d, config.num_labels),
        )
        self.post_init()

    def set_class_weights(self, weights: list[float] | None):
        """Weights of the loss, one per label (count them on the training split only); `None` for plain CE."""
        if weights is not None and len(weights) != self.config.num_labels:
            raise ValueError(f"class weights need {self.config.num_labels} values (one per label), got {len(weights)}")
        self.config.class_weights = None if weights is None else [float(w) for w in weights]

    def classify(self, forthcoming: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """e_t per stream (B, 3, d) → (the vectors with ablated streams zeroed, logits (B, num_labels))."""
        keep = torch.zeros(len(STREAMS), dtype=forthcoming.dtype, device=forthcoming.device)
        keep[_active_stream_slots(self.config)] = 1
        forthcoming = forthcoming * keep.view(1, -1, 1)
        return forthcoming, self.classifier(forthcoming.flatten(1))

    def forward(
        self,
        utterance_mask: torch.BoolTensor,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.LongTensor | None = None,
        token_type_ids: torch.LongTensor | None = None,
        input_values: torch.FloatTensor | None = None,
        audio_attention_mask: torch.LongTensor | None = None,
        text_features: torch.FloatTensor | None = None,
        audio_features: torch.FloatTensor | None = None,
        labels: torch.LongTensor | None = None,
        **kwargs,
    ) -> TCMPPreRecognitionOutput:
        r"""
        utterance_mask (`(batch_size, num_utterances)`): the context utterances of each sample (at least one). The
            target utterance is never an input: the model predicts the emotion of the utterance after the context.
        labels (`torch.LongTensor` of shape `(batch_size,)` or `(batch_size, num_utterances + 1)`, *optional*): the
            target utterance's emotion id; or, for per-dialogue training (`tcmp.data.prerecognition_dialogues`), the
            emotion id of the utterance at each position t (-100 where t is not a target): every position is then
            scored from the utterances before it, and the loss covers every target of the batch.
        """
        utterance_mask = self.tcmp._check_utterance_mask(
            utterance_mask, input_ids, input_values, text_features, audio_features
        )
        lengths = utterance_mask.sum(dim=1)
        if (lengths == 0).any():
            empty = int((lengths == 0).nonzero()[0])
            raise ValueError(
                f"sample {empty} of the batch has an empty context: pre-recognition needs at least one earlier utterance"
            )
        outputs = self.tcmp(
            utterance_mask=utterance_mask,
            input_ids=input_ids,
            attention_mask=attention_mask,
            token_type_ids=token_type_ids,
            input_values=input_values,
            audio_attention_mask=audio_attention_mask,
            text_features=text_features,
            audio_features=audio_features,
        )
        if labels is not None and labels.dim() == 2:
            return self._score_positions(outputs.forthcoming_embeds, labels)
        rows = torch.arange(utterance_mask.shape[0], device=utterance_mask.device)
        forthcoming, logits = self.classify(outputs.forthcoming_embeds[rows, lengths])
        loss = None if labels is None else self._loss(logits, labels)
        return TCMPPreRecognitionOutput(loss=loss, logits=logits, forthcoming_embeds=forthcoming)

    def _loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """(Class-weighted) cross-entropy; labels of -100 are left out."""
        weight = None
        if self.config.class_weights is not None:
            weight = torch.tensor(self.config.class_weights, dtype=logits.dtype, device=logits.device)
        return F.cross_entropy(logits, labels, weight=weight, ignore_index=-100)

    def _score_positions(self, forthcoming_embeds: torch.Tensor, labels: torch.Tensor) -> TCMPPreRecognitionOutput:
        """Per-dialogue scoring: logits (B, T + 1, num_labels) from e_t at every position, loss over the targets."""
        batch_size, positions = forthcoming_embeds.shape[:2]
        if labels.shape != (batch_size, positions):
            raise ValueError(
                f"per-position labels must have shape (batch_size, num_utterances + 1) = {(batch_size, positions)}, "
                f"got {tuple(labels.shape)}"
            )
        forthcoming, logits = self.classify(forthcoming_embeds.flatten(0, 1))
        logits = logits.view(batch_size, positions, -1)
        loss = self._loss(logits.flatten(0, 1), labels.flatten())
        return TCMPPreRecognitionOutput(
            loss=loss, logits=logits, forthcoming_embeds=forthcoming.view(batch_size, positions, *forthcoming.shape[1:])
        )


__all__ = [
    "TCMPPreTrainedModel",
    "TCMPModel",
    "TCMPForPreTraining",
    "TCMPForEmotionPreRecognition",
    "TCMPModelOutput",
    "TCMPForPreTrainingOutput",
    "TCMPPreRecognitionOutput",
    "masked_max_mean_pool",
    "masked_mean_pool",
]
