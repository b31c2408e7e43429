"""TCMP: contrastive multimodal dialogue pre-training and emotion pre-recognition (Ju et al., CIKM 2023)."""

import os
import inspect
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any, TypedDict

import torch
import torch.nn.functional as F
from torch import nn
from transformers import AutoConfig, AutoModel, PreTrainedModel
from transformers import initialization as init
from transformers.modeling_outputs import BaseModelOutputWithPooling
from transformers.processing_utils import Unpack
from transformers.utils import ModelOutput
from transformers.utils.generic import can_return_tuple

from .checkpoints import require_folder_or_hub_id, saved_file_errors, verify_checksums, write_checksums
from .configuration_tcmp import STREAMS, TCMPConfig
from .dialogue_state import TCMPDialogueState, TCMPStreamState
from .gather import candidate_pool, gathering_world_size, global_count
from .length_chunks import CPU_AUDIO_CHUNK_SIZE, encode_in_length_chunks
from .speech_front_end import adapt_front_end, utterance_lengths
from .validation import check_finite_weights, check_token_ids


class TCMPInputs(TypedDict, total=False):
    r"""
    The keyword inputs every TCMP class takes besides its own arguments (one place for all three heads):

    input_ids, attention_mask, token_type_ids (`(num_real_utterances, text_length)`):
        Tokenised transcripts of the real utterances only, in row-major order of `utterance_mask`.
    input_values, audio_attention_mask (`(num_real_utterances, num_samples)`):
        16 kHz mono waveforms of the real utterances, in the same order.
    text_features, audio_features (`(num_real_utterances, encoder width)`):
        Precomputed pooled encoder outputs that replace the encoders (see `pooled_text_features()`).
    output_hidden_states, output_attentions (`bool`):
        Also return the encoders' hidden states / attentions, in `text_model_output` and `audio_model_output` (as
        CLIP and CLAP return their towers' outputs); defaults: the config's. The encoders then run in one pass.
    """

    input_ids: torch.LongTensor | None
    attention_mask: torch.LongTensor | None
    token_type_ids: torch.LongTensor | None
    input_values: torch.FloatTensor | None
    audio_attention_mask: torch.LongTensor | None
    text_features: torch.FloatTensor | None
    audio_features: torch.FloatTensor | None
    output_hidden_states: bool | None
    output_attentions: bool | None


class _WithEncoderOutputs(ModelOutput):
    """`to_tuple` turns the nested encoder outputs into tuples too (as `CLIPOutput` does)."""

    def to_tuple(self) -> tuple[Any]:
        return tuple(v.to_tuple() if isinstance(v, ModelOutput) else v for v in self.values())


@dataclass
class TCMPModelOutput(_WithEncoderOutputs):
    r"""
    text_embeds / audio_embeds / fused_embeds (`torch.FloatTensor` of shape `(batch_size, num_utterances, hidden_size)`):
        The utterance vectors T_i, A_i and M_i of each stream (zeros at padding utterances); `None` for a stream the
        config does not have.
    forthcoming_embeds (`torch.FloatTensor` of shape `(batch_size, num_utterances + 1, 3, hidden_size)`):
        e_t for every position t = 0 .. num_utterances and each stream (text, audio, fused; zeros for a missing
        stream): the prediction of utterance t from utterances 0 .. t-1 only.
    utterance_mask (`torch.BoolTensor` of shape `(batch_size, num_utterances)`):
        Which utterance slots are real.
    past_state (`TCMPDialogueState`, *optional*, returned with `use_cache=True`):
        The dialogues' causal state after the given utterances, to continue them with a later call.
    text_model_output / audio_model_output (`BaseModelOutputWithPooling`, *optional*, returned with
        `output_hidden_states` or `output_attentions`):
        The text / audio encoder's output on the flat batch of utterances (`pooler_output`: the pooled features
        before the projection), with its `hidden_states` / `attentions`.
    """

    text_embeds: torch.FloatTensor | None = None
    audio_embeds: torch.FloatTensor | None = None
    fused_embeds: torch.FloatTensor | None = None
    forthcoming_embeds: torch.FloatTensor | None = None
    utterance_mask: torch.BoolTensor | None = None
    past_state: TCMPDialogueState | None = None
    text_model_output: BaseModelOutputWithPooling | None = None
    audio_model_output: BaseModelOutputWithPooling | None = None


@dataclass
class TCMPForPreTrainingOutput(_WithEncoderOutputs):
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
    prediction_mask (`torch.BoolTensor` of shape `(batch_size, num_utterances)`):
        The utterance slots that were predicted, in the order of the predictions: `grid[prediction_mask] =
        predicted_embeds` puts the flat outputs back on the (window, utterance) grid.
    text_model_output / audio_model_output (`BaseModelOutputWithPooling`, *optional*, returned with
        `output_hidden_states` or `output_attentions`):
        The text / audio encoder's output on the flat batch of utterances (`pooler_output`: the pooled features
        before the projection), with its `hidden_states` / `attentions`.
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
    prediction_mask: torch.BoolTensor | None = None
    text_model_output: BaseModelOutputWithPooling | None = None
    audio_model_output: BaseModelOutputWithPooling | None = None


@dataclass
class TCMPPreRecognitionOutput(_WithEncoderOutputs):
    r"""
    loss (`torch.FloatTensor` of shape `()`, *optional*, returned when `labels` is given):
        The loss of `config.problem_type` (see `pre_recognition_loss`): by default class-weighted cross-entropy of
        the next utterance's emotion.
    logits (`torch.FloatTensor` of shape `(batch_size, num_labels)`):
        Scores of the next utterance's emotion; `(batch_size, num_utterances + 1, num_labels)` with per-position
        labels (the scores of each position's utterance).
    forthcoming_embeds (`torch.FloatTensor` of shape `(batch_size, 3, hidden_size)`):
        The stream vectors e^T, e^A, e^M the classifier saw (zeros for ablated or missing streams); one set per
        position with per-position labels.
    past_state (`TCMPDialogueState`, *optional*, returned with `use_cache=True`):
        The dialogues' causal state after the given utterances.
    text_model_output / audio_model_output (`BaseModelOutputWithPooling`, *optional*, returned with
        `output_hidden_states` or `output_attentions`):
        The text / audio encoder's output on the flat batch of utterances (`pooler_output`: the pooled features
        before the projection), with its `hidden_states` / `attentions`.
    """

    loss: torch.FloatTensor | None = None
    logits: torch.FloatTensor | None = None
    forthcoming_embeds: torch.FloatTensor | None = None
    past_state: TCMPDialogueState | None = None
    text_model_output: BaseModelOutputWithPooling | None = None
    audio_model_output: BaseModelOutputWithPooling | None = None


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


def normalized_mean_pool(hidden_states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over the real positions of each row, then L2 normalisation (the pooling of sentence encoders)."""
    return F.normalize(masked_mean_pool(hidden_states, mask), dim=-1)


TEXT_POOLING_FUNCTIONS = {"max_mean": masked_max_mean_pool, "normalized_mean": normalized_mean_pool}
"""`config.text_pooling` → the function that pools the text encoder's output: the one place that reads it."""


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

    def forward(
        self, utterances: torch.Tensor, hidden: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, T, d) utterances, from the GRU state `hidden` (B, d) → context (B, T, d) and the GRU state after each."""
        states, _ = self.gru(utterances, None if hidden is None else hidden.unsqueeze(0).contiguous())
        return self.dense(states), states


class TCMPForthcomingPredictor(nn.Module):
    """
    e_t = W_e [attention(q_t, h_{≤t-3}); q_t] with q_t = tanh(W_q [c_{t-1}; c_{t-2}]) and h = GRU(c).

    Nothing at or after position t enters e_t. Attention covers at most `attention_window` memory states
    (`readable` and `still_readable` are the one place this rule is written, with `MEMORY_LAG`). The memory GRU runs
    two positions behind the context: h_j is computed when it first becomes readable.
    """

    MEMORY_LAG = 3
    """e_t reads the memory states h_j with j ≤ t - MEMORY_LAG (and, with a window W, j > t - MEMORY_LAG - W)."""

    def __init__(self, hidden_size: int, attention_window: int | None, no_context: bool):
        super().__init__()
        self.memory_gru = nn.GRU(hidden_size, hidden_size, batch_first=True)
        self.query = nn.Linear(2 * hidden_size, hidden_size)
        self.output = nn.Linear(2 * hidden_size, hidden_size)
        self.attention_window = attention_window
        self.no_context = no_context

    def readable(self, query_positions: torch.Tensor, memory_positions: torch.Tensor) -> torch.BoolTensor:
        """(B, Q) query positions t, (B, M) memory positions j (-1: none) → (B, Q, M): t-3-window < j ≤ t-3."""
        query, memory = query_positions.unsqueeze(2), memory_positions.unsqueeze(1)
        allowed = (memory >= 0) & (memory <= query - self.MEMORY_LAG)
        if self.attention_window is not None:
            allowed = allowed & (memory > query - self.MEMORY_LAG - self.attention_window)
        return allowed

    def still_readable(self, states: torch.Tensor, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """
        The memory (B, M, d) with positions (B, M), right-aligned up to h_{n-3}, that a later prediction may still
        read: the latest `attention_window` columns (all of them without a window).
        """
        if self.attention_window is None:
            return states, positions
        return states[:, -self.attention_window :], positions[:, -self.attention_window :]

    def forward(
        self,
        context: torch.Tensor,
        utterance_mask: torch.BoolTensor,
        past: TCMPStreamState | None = None,
        num_past: torch.LongTensor | None = None,
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor, torch.BoolTensor, torch.Tensor]]:
        """
        Context states c (B, T, d) of T new utterances after `num_past` (B,) earlier ones summarised by `past` →
        e_t for t = num_past … num_past + T, shape (B, T + 1, d), and the memory (states, their positions, the
        memory GRU's state after them).
        """
        batch_size, length, hidden_size = context.shape
        if num_past is None:
            num_past = torch.zeros(batch_size, dtype=torch.long, device=context.device)
        recent = context.new_zeros(batch_size, 2, hidden_size) if past is None else past.recent_context
        extended = torch.cat([recent, context], dim=1)  # positions num_past - 2 … num_past + T - 1
        query = self.make_query(extended[:, 1 : length + 2], extended[:, : length + 1])
        query_positions = num_past.unsqueeze(1) + torch.arange(length + 1, device=context.device)
        memory = self._extend_memory(extended, utterance_mask, past, num_past)
        allowed = None if memory is None else self.readable(query_positions, memory[1])
        return self.predict(query, None if memory is None else memory[0], allowed), memory

    def _extend_memory(self, extended, utterance_mask, past, num_past):
        """
        The memory after the new utterances: the past memory, then h_j for every j ≤ num_past + T - 3 not yet
        computed (the two carried context states first, then the new ones); `None` under `no_context`.
        """
        if self.no_context:
            return None
        batch_size, length = utterance_mask.shape
        hidden_size = extended.shape[-1]
        device = extended.device
        hidden = extended.new_zeros(batch_size, hidden_size) if past is None else past.memory_hidden
        states, positions = [], []
        if past is not None and past.memory.shape[1] > 0:
            columns = past.memory.shape[1]
            offsets = torch.arange(columns - 1, -1, -1, device=device)
            states.append(past.memory)
            positions.append((num_past.unsqueeze(1) - 3 - offsets).masked_fill(~past.memory_mask, -1))
        for carried in range(min(2, length)):
            position = num_past - 2 + carried
            step, new_hidden = self.memory_gru(extended[:, carried : carried + 1], hidden.unsqueeze(0).contiguous())
            valid = position >= 0
            hidden = torch.where(valid.unsqueeze(1), new_hidden[0], hidden)
            states.append(step)
            positions.append(position.masked_fill(~valid, -1).unsqueeze(1))
        if length > 2:
            new, new_hidden = self.memory_gru(extended[:, 2:length], hidden.unsqueeze(0).contiguous())
            hidden = new_hidden[0]
            states.append(new)
            new_positions = num_past.unsqueeze(1) + torch.arange(length - 2, device=device)
            positions.append(new_positions.masked_fill(~utterance_mask[:, : length - 2], -1))
        if not states:
            return extended.new_zeros(batch_size, 0, hidden_size), num_past.new_zeros(batch_size, 0), hidden
        return torch.cat(states, dim=1), torch.cat(positions, dim=1), hidden

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
        if memory is not None and memory.shape[1] > 0:
            scores = torch.bmm(query, memory.transpose(1, 2))
            scores = scores.masked_fill(~allowed, torch.finfo(scores.dtype).min)
            weights = torch.softmax(scores, dim=-1) * allowed.any(dim=-1, keepdim=True)
            attended = torch.bmm(weights, memory)
        return self.output(torch.cat([attended, query], dim=-1))


class TCMPPreTrainedModel(PreTrainedModel):
    config: TCMPConfig
    config_class = TCMPConfig
    base_model_prefix = "tcmp"
    main_input_name = "utterance_mask"
    input_modalities = ("text", "audio")
    supports_gradient_checkpointing = True
    _supports_sdpa = True
    _supports_flash_attn = True
    _supports_flex_attn = True
    """TCMP's own layers hold no attention kernel: `attn_implementation` reaches the encoders (`text_config` and
    `audio_config`, e.g. `{"text_config": "sdpa", "audio_config": "eager"}`), as in CLIP; an encoder that lacks the
    implementation asked for refuses it when the model is built."""
    accepts_loss_kwargs = False
    """The losses are means over the batch's predictions: `Trainer` must not pass `num_items_in_batch`."""
    _no_split_modules = ["TCMPUtteranceProjection", "TCMPDialogueContext", "TCMPForthcomingPredictor"]
    """FSDP/device-map units: TCMP's blocks; `post_init` adds the encoders' own (`BertLayer`, `HubertEncoderLayer`...)."""

    def resize_token_embeddings(self, *args, **kwargs) -> nn.Embedding:
        """As `PreTrainedModel.resize_token_embeddings`, on the text encoder (`text_config.vocab_size` follows)."""
        if not self.config.has_text:
            raise ValueError("this TCMP model has no text encoder (text_config=None), so no token embeddings to resize")
        return super().resize_token_embeddings(*args, **kwargs)

    def _check_inputs(self, inputs: dict) -> None:
        """A keyword that is neither an argument of `forward` nor a `TCMPInputs` key is a `TypeError` naming it."""
        unknown = [name for name in inputs if name not in TCMPInputs.__annotations__]
        if unknown:
            own = [name for name in inspect.signature(type(self).forward).parameters if name not in ("self", "inputs")]
            raise TypeError(
                f"{type(self).__name__}.forward() got an unexpected keyword argument {unknown[0]!r}; it takes "
                f"{', '.join(own + list(TCMPInputs.__annotations__))} and return_dict"
            )

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
        """
        Save as `PreTrainedModel` does, plus the weights' checksums. Transformers' `auto_map` names the saved head only;
        it is widened to every TCMP head registered with an Auto class (`register_for_auto_class` in `tcmp/__init__.py`),
        so that any of those Auto classes loads the folder with `trust_remote_code=True`.
        """
        registered = [head for head in TCMPPreTrainedModel.__subclasses__() if head._auto_class is not None]
        self.config.auto_map = {
            **getattr(self.config, "auto_map", {}),
            **{head._auto_class: f"{head.__module__.rsplit('.', 1)[-1]}.{head.__name__}" for head in registered},
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
        with saved_file_errors(folder, cls):
            loaded = super().from_pretrained(pretrained_model_name_or_path, *args, **kwargs)
        model = loaded[0] if isinstance(loaded, tuple) else loaded  # (model, loading info) with output_loading_info
        check_finite_weights(model, folder)
        model.base_model.apply_encoder_freezing()
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
            base.audio_model = adapt_front_end(_without_pooler(AutoModel.from_pretrained(audio_model_path)))
        base.apply_encoder_freezing()
        return model


class TCMPModel(TCMPPreTrainedModel):
    """Utterance encoders, the three streams, the causal dialogue context and the forthcoming-utterance predictors."""

    def __init__(self, config: TCMPConfig):
        super().__init__(config)
        if not (config.has_text or config.has_audio):
            raise ValueError("TCMPConfig needs a text_config, an audio_config or both; it has neither")
        d = config.hidden_size
        self.text_model = _without_pooler(AutoModel.from_config(config.text_config)) if config.has_text else None
        self.audio_model = (
            adapt_front_end(_without_pooler(AutoModel.from_config(config.audio_config)))
            if config.has_audio
            else None
        )
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
        self.apply_encoder_freezing()

    def get_input_embeddings(self):
        return self.text_model.get_input_embeddings() if self.text_model is not None else None

    def set_input_embeddings(self, value: nn.Module):
        """The text encoder's token embeddings (`resize_token_embeddings` then updates `text_config.vocab_size`)."""
        if self.text_model is None:
            raise ValueError("this TCMP model has no text encoder (text_config=None), so no token embeddings to set")
        self.text_model.set_input_embeddings(value)

    def set_encoders_frozen(self, frozen: bool):
        """
        Freeze (no gradients, always in eval mode) or unfreeze both utterance encoders after the model is built: the
        one place that writes `config.freeze_encoders` (so that a save keeps the choice).
        """
        self.config.freeze_encoders = frozen
        self.apply_encoder_freezing()

    def apply_encoder_freezing(self):
        """
        Make the encoders follow the config (at init and after loading): `freeze_encoders` fixes both, and
        `freeze_feature_encoder` the speech encoder's convolutional front end either way.
        """
        frozen = self.config.freeze_encoders
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

    @can_return_tuple
    def get_text_features(
        self, input_ids, attention_mask=None, token_type_ids=None, **kwargs
    ) -> BaseModelOutputWithPooling:
        """
        The text encoder's output on a flat batch of utterances, whose `pooler_output` is each utterance's text
        vector T_i in the shared space, after the projection (as CLIP's): (N, d), the vectors `forward` uses.
        `kwargs`: `output_hidden_states`, `output_attentions`.
        """
        output = self.text_encoder_output(input_ids, attention_mask, token_type_ids, **kwargs)
        output.pooler_output = self.text_projection(output.pooler_output)
        return output

    @can_return_tuple
    def get_audio_features(self, input_values, audio_attention_mask=None, **kwargs) -> BaseModelOutputWithPooling:
        """
        The audio encoder's output on a flat batch of utterances, whose `pooler_output` is each utterance's audio
        vector A_i in the shared space, after the projection (as CLIP's): (N, d), the vectors `forward` uses.
        """
        output = self.audio_encoder_output(input_values, audio_attention_mask, **kwargs)
        output.pooler_output = self.audio_projection(output.pooler_output)
        return output

    def text_encoder_output(
        self, input_ids, attention_mask=None, token_type_ids=None, output_hidden_states=None, output_attentions=None
    ) -> BaseModelOutputWithPooling:
        """
        The text encoder in one pass over (N, L) tokens, the one text path (`pooled_text_features` runs it in
        chunks); `pooler_output`: each utterance's features pooled as `config.text_pooling` says (N, text width).
        """
        inputs = self._text_inputs(input_ids, attention_mask, token_type_ids)
        check_token_ids(input_ids, self.text_model.get_input_embeddings().num_embeddings)
        options = self._encoder_options(self.text_model, output_hidden_states, output_attentions)
        with self._encoder_grad():
            output = self.text_model(**inputs, **options, return_dict=True)
            pool = TEXT_POOLING_FUNCTIONS[self.config.text_pooling]
            pooled = pool(output.last_hidden_state, inputs["attention_mask"])
        return BaseModelOutputWithPooling(output.last_hidden_state, pooled, output.hidden_states, output.attentions)

    def audio_encoder_output(
        self, input_values, audio_attention_mask=None, output_hidden_states=None, output_attentions=None
    ) -> BaseModelOutputWithPooling:
        """
        The audio encoder in one pass over (N, samples), the one audio path (`pooled_audio_features` runs it in
        chunks); `pooler_output`: each utterance's real frames, max+mean pooled (N, audio width). A group-norm front
        end normalises each utterance over its own samples (`tcmp.speech_front_end`): padding changes nothing.
        """
        inputs = self._audio_inputs(input_values, audio_attention_mask)
        mask = inputs["audio_attention_mask"]
        options = self._encoder_options(self.audio_model, output_hidden_states, output_attentions)
        with self._encoder_grad(), utterance_lengths(self.audio_model, mask):
            output = self.audio_model(inputs["input_values"], attention_mask=mask, **options, return_dict=True)
            hidden = output.last_hidden_state
            frame_mask = self.audio_model._get_feature_vector_attention_mask(hidden.shape[1], mask)
            pooled = masked_max_mean_pool(hidden, frame_mask)
        return BaseModelOutputWithPooling(hidden, pooled, output.hidden_states, output.attentions)

    def pooled_text_features(self, input_ids, attention_mask=None, token_type_ids=None) -> torch.Tensor:
        """`text_encoder_output(...).pooler_output` (before the trainable projection), in chunks: (N, text width)."""
        inputs = self._text_inputs(input_ids, attention_mask, token_type_ids)
        return self._pooled_in_chunks(self.text_encoder_output, inputs, inputs["attention_mask"], auto_chunk_size=None)

    def pooled_audio_features(self, input_values, audio_attention_mask=None) -> torch.Tensor:
        """`audio_encoder_output(...).pooler_output` (before the projection), in chunks: (N, audio width)."""
        inputs = self._audio_inputs(input_values, audio_attention_mask)
        auto_chunk_size = CPU_AUDIO_CHUNK_SIZE if input_values.device.type == "cpu" else None
        mask = inputs["audio_attention_mask"]
        return self._pooled_in_chunks(self.audio_encoder_output, inputs, mask, auto_chunk_size)

    def _pooled_in_chunks(self, encoder_output, inputs: dict, mask: torch.Tensor, auto_chunk_size: int | None):
        """
        `encoder_output(**inputs).pooler_output` over length-sorted chunks of `config.encoder_chunk_size` utterances
        (`auto_chunk_size` under "auto"; one pass while `torch.export` traces, chunking being data-dependent), for
        speed only: each utterance's features are its own whatever its batch, so the numbers are one pass's.
        """
        chunk_size = self.config.encoder_chunk_size
        if chunk_size == "auto":
            chunk_size = auto_chunk_size

        def pooled(**rows):
            return encoder_output(**rows, output_hidden_states=False, output_attentions=False).pooler_output

        if chunk_size is None or torch.compiler.is_exporting():
            return pooled(**inputs)
        return encode_in_length_chunks(pooled, inputs, mask, chunk_size)

    @staticmethod
    def _text_inputs(input_ids, attention_mask, token_type_ids) -> dict:
        if input_ids is None:
            raise ValueError("this TCMP model has a text encoder: pass input_ids (the processor's text output)")
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        return {"input_ids": input_ids, "attention_mask": attention_mask, "token_type_ids": token_type_ids}

    @staticmethod
    def _audio_inputs(input_values, audio_attention_mask) -> dict:
        if input_values is None:
            raise ValueError(
                "this TCMP model has an audio encoder: pass input_values (audio for every utterance), "
                "or use a text-only config (audio_config=None)"
            )
        if audio_attention_mask is None:
            audio_attention_mask = torch.ones(input_values.shape, dtype=torch.long, device=input_values.device)
        return {"input_values": input_values, "audio_attention_mask": audio_attention_mask}

    def _encoder_options(self, encoder: PreTrainedModel, output_hidden_states, output_attentions) -> dict[str, bool]:
        """`output_hidden_states` / `output_attentions`: the values given, else this config's or the encoder's."""
        given = {"output_hidden_states": output_hidden_states, "output_attentions": output_attentions}
        return {
            name: bool(getattr(self.config, name) or getattr(encoder.config, name)) if value is None else value
            for name, value in given.items()
        }

    def encode_utterances(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.LongTensor | None = None,
        token_type_ids: torch.LongTensor | None = None,
        input_values: torch.FloatTensor | None = None,
        audio_attention_mask: torch.LongTensor | None = None,
        text_features: torch.FloatTensor | None = None,
        audio_features: torch.FloatTensor | None = None,
        output_hidden_states: bool | None = None,
        output_attentions: bool | None = None,
    ) -> tuple[dict[str, torch.Tensor], dict[str, BaseModelOutputWithPooling]]:
        """
        Encode a flat batch of utterances once each → (stream name → (num_utterances, d), encoder name → its output
        when hidden states or attentions are asked for). Precomputed encoder features (`text_features` /
        `audio_features`, e.g. a feature cache of frozen encoders: `pooled_*_features`) skip the encoders. The
        encoders run in one pass when their hidden states or attentions are asked for, else in chunks
        (`pooled_*_features`): the same numbers.
        """
        vectors, encoder_outputs = {}, {}
        options = {"output_hidden_states": output_hidden_states, "output_attentions": output_attentions}
        for name, encoder in (("text", self.text_model), ("audio", self.audio_model)):
            if encoder is None:
                continue
            features = text_features if name == "text" else audio_features
            wanted = any(self._encoder_options(encoder, **options).values())
            if features is None and wanted:
                if name == "text":
                    output = self.text_encoder_output(input_ids, attention_mask, token_type_ids, **options)
                else:
                    output = self.audio_encoder_output(input_values, audio_attention_mask, **options)
                features = output.pooler_output
                encoder_outputs[name] = output
            elif features is None and name == "text":
                features = self.pooled_text_features(input_ids, attention_mask, token_type_ids)
            elif features is None:
                features = self.pooled_audio_features(input_values, audio_attention_mask)
            projection = self.text_projection if name == "text" else self.audio_projection
            vectors[name] = projection(features)
        if self.fusion is not None:
            vectors["fused"] = self.fusion(torch.cat([vectors["text"], vectors["audio"]], dim=-1))
        return vectors, encoder_outputs

    @can_return_tuple
    def forward(
        self,
        utterance_mask: torch.BoolTensor,
        past_state: TCMPDialogueState | None = None,
        use_cache: bool = False,
        streams: tuple[str, ...] | None = None,
        **inputs: Unpack[TCMPInputs],
    ) -> TCMPModelOutput:
        r"""
        utterance_mask (`torch.BoolTensor` of shape `(batch_size, num_utterances)`):
            Which utterance slots of each dialogue are real; utterances are left-aligned.
        past_state (`TCMPDialogueState`, *optional*):
            The state of these dialogues after their earlier utterances (from a call with `use_cache=True`): the
            utterances given continue them.
        use_cache (`bool`, defaults to `False`):
            Also return the dialogues' state after the given utterances (`past_state` of the output); then every
            utterance slot must be real.
        streams (`tuple[str, ...]`, *optional*):
            The streams whose context and predictions to compute (default: every stream the encoders give); the
            others' predictions are zeros and they keep no state.
        **inputs (`TCMPInputs`):
            The real utterances' text and/or audio (or precomputed features), and `output_hidden_states` /
            `output_attentions`.
        """
        self._check_inputs(inputs)
        utterance_mask = self._check_utterance_mask(utterance_mask, inputs, use_cache)
        flat, encoder_outputs = self.encode_utterances(**inputs)
        outputs = self.dialogue_forward(flat, utterance_mask, past_state, use_cache, streams)
        outputs.text_model_output = encoder_outputs.get("text")
        outputs.audio_model_output = encoder_outputs.get("audio")
        return outputs

    def dialogue_forward(
        self,
        flat: dict[str, torch.Tensor],
        utterance_mask: torch.BoolTensor,
        past_state: TCMPDialogueState | None = None,
        use_cache: bool = False,
        streams: tuple[str, ...] | None = None,
    ) -> TCMPModelOutput:
        """
        Streams, context and predictions from already-encoded utterance vectors (stream → (num_real, d)), for the
        given `streams` (default: every stream the encoders produce; the others' predictions are zeros).
        """
        batch_size, length = utterance_mask.shape
        num_past = None if past_state is None else past_state.num_utterances
        embeds, forthcoming, states = {}, [], {}
        for stream in STREAMS:
            if stream not in flat or (streams is not None and stream not in streams):
                forthcoming.append(None)
                continue
            dialogue = place_on_grid(flat[stream], utterance_mask)
            embeds[stream] = dialogue
            past = None if past_state is None else past_state.streams[stream]
            context, context_states = self.context[stream](dialogue, None if past is None else past.context_hidden)
            predicted, memory = self.predictor[stream](context, utterance_mask, past, num_past)
            forthcoming.append(predicted)
            if use_cache:
                states[stream] = _next_stream_state(context, context_states, past, memory, self.predictor[stream])
        reference = next(f for f in forthcoming if f is not None)
        forthcoming = torch.stack([f if f is not None else torch.zeros_like(reference) for f in forthcoming], dim=2)
        next_state = None
        if use_cache:
            total = utterance_mask.sum(dim=1) if num_past is None else num_past + utterance_mask.sum(dim=1)
            next_state = TCMPDialogueState(num_utterances=total, streams=states)
        return TCMPModelOutput(
            text_embeds=embeds.get("text"),
            audio_embeds=embeds.get("audio"),
            fused_embeds=embeds.get("fused"),
            forthcoming_embeds=forthcoming,
            utterance_mask=utterance_mask,
            past_state=next_state,
        )

    @staticmethod
    def _check_utterance_mask(utterance_mask, inputs: dict, use_cache: bool) -> torch.BoolTensor:
        """
        The mask as booleans, after checking it against the inputs (`TCMPInputs`: one row per real utterance in
        `input_ids`, `input_values`, `text_features`, `audio_features`); the checks that read tensor values are left out
        while `torch.export` traces the model (an exported program takes the inputs it was traced for on trust).
        """
        if utterance_mask is None or utterance_mask.dim() != 2:
            raise ValueError("utterance_mask must be a (batch_size, num_utterances) tensor from the TCMP processor")
        utterance_mask = utterance_mask.bool()
        if torch.compiler.is_exporting():
            return utterance_mask
        if utterance_mask.shape[1] > 1 and (utterance_mask[:, 1:] & ~utterance_mask[:, :-1]).any():
            raise ValueError("utterance_mask must be left-aligned: real utterances first, padding after")
        if use_cache and not utterance_mask.all():
            raise ValueError(
                "use_cache=True needs every utterance slot real (the same number of new utterances in each row): "
                "continue dialogues of different lengths in separate calls"
            )
        num_real = int(utterance_mask.sum())
        for name in ("input_ids", "input_values", "text_features", "audio_features"):
            tensor = inputs.get(name)
            if tensor is not None and tensor.shape[0] != num_real:
                raise ValueError(
                    f"{name} has {tensor.shape[0]} rows but utterance_mask marks {num_real} real utterances; "
                    "pass one row per real utterance, in row-major order"
                )
        return utterance_mask


def place_on_grid(vectors: torch.Tensor, utterance_mask: torch.BoolTensor) -> torch.Tensor:
    """
    Flat vectors of the real utterances (N, d), in row-major order → (B, T, d) with zeros at padding slots
    (`grid[utterance_mask] = vectors`, written as a gather so that `torch.export` needs no data-dependent shape).
    """
    batch_size, length = utterance_mask.shape
    if vectors.shape[0] == 0:
        return vectors.new_zeros(batch_size, length, vectors.shape[-1])
    index = (torch.cumsum(utterance_mask.reshape(-1).long(), 0) - 1).clamp(min=0)
    grid = vectors[index].reshape(batch_size, length, vectors.shape[-1])
    return grid.masked_fill(~utterance_mask.unsqueeze(-1), 0)


def _next_stream_state(context, context_states, past, memory, predictor) -> TCMPStreamState:
    """A stream's state after the new utterances (every slot real): GRU states, the last two c, the readable memory."""
    batch_size, _, hidden_size = context.shape
    if past is None:
        past = TCMPStreamState.empty(batch_size, hidden_size, context.device, context.dtype)
    if context.shape[1] == 0:
        return past
    recent = torch.cat([past.recent_context, context], dim=1)[:, -2:]
    if memory is None:
        return TCMPStreamState(context_states[:, -1], recent, past.memory_hidden, past.memory, past.memory_mask)
    states, positions, memory_hidden = memory
    states, positions = predictor.still_readable(states, positions)
    return TCMPStreamState(context_states[:, -1], recent, memory_hidden, states, positions >= 0)


def _active_stream_slots(config: TCMPConfig) -> list[int]:
    return [STREAMS.index(s) for s in config.active_streams]


def text_audio_matching_loss(
    text: torch.Tensor, audio: torch.Tensor, groups: torch.Tensor, normalizer: float | None = None
) -> torch.Tensor:
    """
    (L_t→a + L_a→t) / 2: each utterance's text vector (N, d) must pick its own audio vector (N, d) and vice versa,
    among the utterances of the same group (window) only. Summed and divided by `normalizer` (default N: the mean;
    across W processes, their total number of utterances / W, so that averaging their gradients gives the mean).
    """
    same_group = groups.unsqueeze(0) == groups.unsqueeze(1)
    logits = (text @ audio.T).masked_fill(~same_group, torch.finfo(text.dtype).min)
    target = torch.arange(logits.shape[0], device=logits.device)
    both = F.cross_entropy(logits, target, reduction="sum") + F.cross_entropy(logits.T, target, reduction="sum")
    return both / 2 / (logits.shape[0] if normalizer is None else normalizer)


def forthcoming_scores(predicted: torch.Tensor, candidates: torch.Tensor, allowed: torch.BoolTensor) -> torch.Tensor:
    """Dot products of predictions e_t (P, d) with candidates (C, d); candidates not `allowed` (P, C) get the minimum."""
    return (predicted @ candidates.T).masked_fill(~allowed, torch.finfo(predicted.dtype).min)


def forthcoming_prediction_loss(
    scores: torch.Tensor, labels: torch.Tensor, normalizer: float | None = None
) -> torch.Tensor:
    """
    Cross-entropy of picking the true next utterance (`labels`, indices into the candidates) from `scores`, summed
    and divided by `normalizer` (default: the number of predictions; see `text_audio_matching_loss`).
    """
    return F.cross_entropy(scores, labels, reduction="sum") / (labels.shape[0] if normalizer is None else normalizer)


class TCMPForPreTraining(TCMPPreTrainedModel):
    """TCMP with its two pre-training objectives: text–audio matching and forthcoming-utterance prediction."""

    def __init__(self, config: TCMPConfig):
        super().__init__(config)
        self.tcmp = TCMPModel(config)
        self.post_init()

    @can_return_tuple
    def forward(
        self,
        utterance_mask: torch.BoolTensor,
        dialogue_ids: torch.LongTensor | None = None,
        negative_input_ids: torch.LongTensor | None = None,
        negative_attention_mask: torch.LongTensor | None = None,
        negative_token_type_ids: torch.LongTensor | None = None,
        negative_input_values: torch.FloatTensor | None = None,
        negative_audio_attention_mask: torch.LongTensor | None = None,
        **inputs: Unpack[TCMPInputs],
    ) -> TCMPForPreTrainingOutput:
        r"""
        utterance_mask, **inputs: as `TCMPModel.forward` (`TCMPInputs`).
        dialogue_ids (`torch.LongTensor` of shape `(batch_size,)`, *optional*):
            Which dialogue each row comes from (two windows of one dialogue never serve as each other's negatives).
            Defaults to one dialogue per row.
        negative_* (*optional*):
            Extra negative utterances (flat, like the main inputs), encoded once and added to every prediction's
            candidates, after the other dialogues' utterances of the batch.
        """
        self._check_inputs(inputs)
        base = self.tcmp
        outputs = base(utterance_mask, return_dict=True, **inputs)
        utterance_mask = outputs.utterance_mask
        grids = {"text": outputs.text_embeds, "audio": outputs.audio_embeds, "fused": outputs.fused_embeds}
        flat = {stream: grid[utterance_mask] for stream, grid in grids.items() if grid is not None}
        batch_size, length = utterance_mask.shape
        row_of_utterance = torch.arange(batch_size, device=utterance_mask.device).repeat_interleave(
            utterance_mask.sum(dim=1)
        )
        world_size = gathering_world_size(self.config.gather_negatives)
        if world_size > 1 and dialogue_ids is None:
            raise ValueError("gathering negatives across processes needs dialogue_ids that are unique across them")
        if dialogue_ids is None:
            dialogue_ids = torch.arange(batch_size, device=utterance_mask.device)
        negatives = {}
        if negative_input_ids is not None or negative_input_values is not None:
            negatives, _ = base.encode_utterances(
                negative_input_ids,
                negative_attention_mask,
                negative_token_type_ids,
                negative_input_values,
                negative_audio_attention_mask,
                output_hidden_states=False,
                output_attentions=False,
            )
        matching_loss = None
        if "text" in flat and "audio" in flat:
            num_matched = global_count(row_of_utterance.shape[0], world_size, utterance_mask.device)
            matching_loss = text_audio_matching_loss(
                flat["text"], flat["audio"], row_of_utterance, num_matched / world_size
            )

        prediction_mask = utterance_mask & (torch.arange(length, device=utterance_mask.device) >= 2)
        flat_index = torch.cumsum(utterance_mask.reshape(-1).long(), 0).reshape(batch_size, length) - 1
        prediction_labels = flat_index[prediction_mask]
        prediction_dialogue = dialogue_ids.unsqueeze(1).expand(batch_size, length)[prediction_mask]
        predicted = outputs.forthcoming_embeds[:, :length][prediction_mask]
        num_predictions = global_count(prediction_labels.shape[0], world_size, utterance_mask.device)
        candidates, candidate_dialogue, label_offset = candidate_pool(
            flat, negatives, dialogue_ids[row_of_utterance], world_size
        )
        allowed = self._candidate_mask(prediction_labels + label_offset, prediction_dialogue, candidate_dialogue)

        losses, scores, targets = {}, [], []
        for slot, stream in enumerate(STREAMS):
            if stream not in flat:
                scores.append(predicted.new_zeros(predicted.shape[0], candidate_dialogue.shape[0]))
                targets.append(predicted.new_zeros(predicted.shape[0], predicted.shape[-1]))
                continue
            scores.append(forthcoming_scores(predicted[:, slot], candidates[stream], allowed))
            targets.append(flat[stream][prediction_labels])
            if stream in self.config.active_streams and num_predictions > 0:
                losses[stream] = forthcoming_prediction_loss(
                    scores[-1], prediction_labels + label_offset, num_predictions / world_size
                )

        loss_terms = [torch.stack(list(losses.values())).mean()] if losses else []
        if matching_loss is not None:
            loss_terms.append(matching_loss)
        return TCMPForPreTrainingOutput(
            loss=torch.stack(loss_terms).sum() if loss_terms else None,
            matching_loss=matching_loss,
            text_prediction_loss=losses.get("text"),
            audio_prediction_loss=losses.get("audio"),
            fused_prediction_loss=losses.get("fused"),
            prediction_scores=torch.stack(scores, dim=1),
            prediction_labels=prediction_labels + label_offset,
            predicted_embeds=predicted,
            target_embeds=torch.stack(targets, dim=1),
            prediction_dialogue_ids=prediction_dialogue,
            prediction_mask=prediction_mask,
            text_model_output=outputs.text_model_output,
            audio_model_output=outputs.audio_model_output,
        )

    def _candidate_mask(self, labels, prediction_dialogue, candidate_dialogue) -> torch.BoolTensor:
        """
        The true utterance, every utterance of another dialogue and every extra negative (optionally sampled);
        `candidate_dialogue` holds -1 for an extra negative and -2 for padding (never allowed).
        """
        negative = (prediction_dialogue.unsqueeze(1) != candidate_dialogue.unsqueeze(0)) & (candidate_dialogue != -2)
        if self.config.num_negatives is not None:
            draw = torch.rand(negative.shape, device=labels.device).masked_fill(~negative, -1.0)
            keep = min(self.config.num_negatives, negative.shape[1])
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
        self.context_emotion_head = nn.Linear(d, config.num_labels) if config.context_emotion_loss_weight > 0 else None
        self.post_init()

    def set_class_weights(self, weights: list[float] | None):
        """Weights of the loss, one per label (count them on the training split only); `None` for plain CE."""
        if weights is not None and len(weights) != self.config.num_labels:
            raise ValueError(f"class weights need {self.config.num_labels} values (one per label), got {len(weights)}")
        self.config.class_weights = None if weights is None else [float(w) for w in weights]

    def set_logit_adjustment(self, offsets: list[float] | None):
        """Offsets added to the logits in the loss only, one per label (`tcmp.metrics.logit_adjustment`); `None`: none."""
        if offsets is not None and len(offsets) != self.config.num_labels:
            raise ValueError(f"logit adjustment needs {self.config.num_labels} values (one per label), got {len(offsets)}")
        self.config.logit_adjustment = None if offsets is None else [float(v) for v in offsets]

    def classify(self, forthcoming: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """e_t per stream (B, 3, d) → (the vectors with ablated streams zeroed, logits (B, num_labels))."""
        keep = torch.zeros(len(STREAMS), dtype=forthcoming.dtype, device=forthcoming.device)
        keep[_active_stream_slots(self.config)] = 1
        forthcoming = forthcoming * keep.view(1, -1, 1)
        return forthcoming, self.classifier(forthcoming.flatten(1))

    @can_return_tuple
    def forward(
        self,
        utterance_mask: torch.BoolTensor,
        labels: torch.Tensor | None = None,
        past_state: TCMPDialogueState | None = None,
        use_cache: bool = False,
        **inputs: Unpack[TCMPInputs],
    ) -> TCMPPreRecognitionOutput:
        r"""
        utterance_mask (`(batch_size, num_utterances)`), **inputs: the context utterances of each sample, as
            `TCMPModel.forward` (`TCMPInputs`). The target utterance is never an input: the model predicts the
            emotion of the utterance after the context.
        labels (`torch.Tensor`, *optional*): the target utterance's emotion, as `config.problem_type` wants it
            (see `pre_recognition_loss`): by default a class id per sample, `(batch_size,)`; or, for per-dialogue
            training (`tcmp.data.prerecognition_dialogues`), class ids `(batch_size, num_utterances + 1)`: the
            emotion of the utterance at each position t (-100 where t is not a target), every position scored from
            the utterances before it.
        past_state, use_cache: continue dialogues from an earlier call's state, or return their state after the
            given utterances (as `TCMPModel.forward`; the streaming predictor passes one utterance at a time).
        """
        self._check_inputs(inputs)
        outputs = self.tcmp(
            utterance_mask, past_state, use_cache, streams=self.config.active_streams, return_dict=True, **inputs
        )
        lengths = outputs.utterance_mask.sum(dim=1)
        seen = lengths if past_state is None else lengths + past_state.num_utterances
        if not torch.compiler.is_exporting() and (seen == 0).any():
            empty = int((seen == 0).nonzero()[0])
            raise ValueError(
                f"sample {empty} of the batch has an empty context: pre-recognition needs at least one earlier utterance"
            )
        per_position = labels is not None and labels.dim() == 2 and not labels.is_floating_point()
        if per_position and self.config.problem_type != "multi_label_classification":
            return self._score_positions(outputs, labels)
        rows = torch.arange(lengths.shape[0], device=lengths.device)
        forthcoming, logits = self.classify(outputs.forthcoming_embeds[rows, lengths])
        loss = None
        if labels is not None:
            loss = pre_recognition_loss(
                logits, labels, self.config.problem_type, self.config.class_weights, self.config.logit_adjustment
            )
        return TCMPPreRecognitionOutput(
            loss=loss,
            logits=logits,
            forthcoming_embeds=forthcoming,
            past_state=outputs.past_state,
            text_model_output=outputs.text_model_output,
            audio_model_output=outputs.audio_model_output,
        )

    def _score_positions(self, outputs: TCMPModelOutput, labels: torch.Tensor) -> TCMPPreRecognitionOutput:
        """
        Per-dialogue scoring: logits (B, T + 1, num_labels) from e_t at every position, loss over the targets (plus
        the weighted context-emotion loss when the config asks for it).
        """
        forthcoming_embeds = outputs.forthcoming_embeds
        batch_size, positions = forthcoming_embeds.shape[:2]
        if labels.shape != (batch_size, positions):
            raise ValueError(
                f"per-position labels must have shape (batch_size, num_utterances + 1) = {(batch_size, positions)}, "
                f"got {tuple(labels.shape)}"
            )
        forthcoming, logits = self.classify(forthcoming_embeds.flatten(0, 1))
        logits = logits.view(batch_size, positions, -1)
        loss = pre_recognition_loss(
            logits.flatten(0, 1), labels.flatten(), "single_label_classification", self.config.class_weights,
            self.config.logit_adjustment,
        )
        if self.context_emotion_head is not None:
            loss = loss + self.config.context_emotion_loss_weight * self._context_emotion_loss(outputs, labels[:, :-1])
        return TCMPPreRecognitionOutput(
            loss=loss, logits=logits, forthcoming_embeds=forthcoming.view(batch_size, positions, *forthcoming.shape[1:])
        )

    def _context_emotion_loss(self, outputs: TCMPModelOutput, utterance_labels: torch.Tensor) -> torch.Tensor:
        """Cross-entropy of each labelled utterance's emotion (B, T; -100: unknown) from its own stream vectors."""
        vectors = [getattr(outputs, f"{stream}_embeds") for stream in self.config.active_streams]
        logits = torch.stack([self.context_emotion_head(v) for v in vectors if v is not None])
        targets = utterance_labels.unsqueeze(0).expand(logits.shape[0], -1, -1)
        if not (targets != -100).any():
            return logits.sum() * 0.0
        return pre_recognition_loss(
            logits.flatten(0, 2), targets.flatten(), "single_label_classification", self.config.class_weights,
            self.config.logit_adjustment,
        )


PROBLEM_TYPES = ("single_label_classification", "multi_label_classification", "regression")


def pre_recognition_loss(
    logits: torch.Tensor,
    labels: torch.Tensor,
    problem_type: str | None,
    class_weights: list[float] | None = None,
    logit_adjustment: list[float] | None = None,
) -> torch.Tensor:
    """
    The loss of `problem_type`, as `*ForSequenceClassification` of Transformers compute it (when `None`: regression
    for one label, single-label for integer labels, else multi-label):

    - `"single_label_classification"`: cross-entropy of class ids `(batch_size,)`, weighted by `class_weights`, of
      the logits plus `logit_adjustment` (the logit-adjusted loss; predictions keep the raw logits);
    - `"multi_label_classification"`: binary cross-entropy of 0/1 (or soft) targets `(batch_size, num_labels)`,
      each label's term weighted by `class_weights`;
    - `"regression"`: mean squared error of float targets `(batch_size,)` or `(batch_size, num_labels)`.
    """
    num_labels = logits.shape[-1]
    if problem_type is None:
        if num_labels == 1:
            problem_type = "regression"
        elif labels.dtype in (torch.long, torch.int):
            problem_type = "single_label_classification"
        else:
            problem_type = "multi_label_classification"
    if problem_type not in PROBLEM_TYPES:
        raise ValueError(f"config.problem_type must be one of {PROBLEM_TYPES} or None, got {problem_type!r}")
    weight = None if class_weights is None else torch.tensor(class_weights, dtype=logits.dtype, device=logits.device)
    if problem_type == "regression":
        if weight is not None:
            raise ValueError("class_weights weigh classes; problem_type='regression' has none: set them to None")
        if num_labels == 1:
            return F.mse_loss(logits.squeeze(-1), labels.to(logits.dtype).reshape(-1))
        return F.mse_loss(logits, labels.to(logits.dtype))
    if logit_adjustment is not None and problem_type != "single_label_classification":
        raise ValueError(f"logit_adjustment is for single-label classification, not problem_type={problem_type!r}")
    if problem_type == "single_label_classification":
        if logit_adjustment is not None:
            logits = logits + torch.tensor(logit_adjustment, dtype=logits.dtype, device=logits.device)
        return F.cross_entropy(logits.reshape(-1, num_labels), labels.reshape(-1), weight=weight)
    if labels.shape != logits.shape:
        raise ValueError(
            f"multi_label_classification needs labels of shape {tuple(logits.shape)} (one 0/1 target per label), "
            f"got {tuple(labels.shape)}"
        )
    return F.binary_cross_entropy_with_logits(logits, labels.to(logits.dtype), weight=weight)


__all__ = [
    "TCMPPreTrainedModel",
    "TCMPModel",
    "TCMPForPreTraining",
    "TCMPForEmotionPreRecognition",
    "TCMPModelOutput",
    "TCMPForPreTrainingOutput",
    "TCMPPreRecognitionOutput",
    "TCMPDialogueState",
    "TCMPStreamState",
    "masked_max_mean_pool",
    "text_audio_matching_loss",
    "forthcoming_prediction_loss",
    "masked_mean_pool",
    "pre_recognition_loss",
    "place_on_grid",
    "TCMPInputs",
]
