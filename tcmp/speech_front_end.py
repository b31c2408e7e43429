"""
The convolutional front end of HuBERT / wav2vec 2.0 / WavLM speech encoders, adapted in place (same module, weights
and state dict; `adapt_front_end`):

- group-norm front ends (`feat_extract_norm="group"`, HuBERT-base, wav2vec 2.0-base): the first convolution's
  `GroupNorm` normalises over the whole (padded) time axis, so an utterance's features would depend on the longest
  one of its batch. `MaskedGroupNormFrontEndMixin` takes those statistics over each utterance's own frames instead
  (its samples given by `utterance_lengths`); the later convolutions and the transformer already ignore padding, so
  one padded pass gives every utterance exactly the features it has alone.
- layer-norm front ends (`feat_extract_norm="layer"`): a faster CPU path, same results (to float tolerance),
  contiguous memory only.

The stock layer runs its 1-D convolution on (batch, channels, time), its layer norm on the transposed view and its
GELU on the transposed-back view: on CPU the GELU backward then runs on transposed strides (slow), and the layer norm
and convolutions copy their inputs and gradients between layouts, forward and backward. Here each layer moves its
activations between the two layouts exactly once each way, forward and backward alike (`_Transposed`), and the layer
norm, GELU and convolution read contiguous memory only. The raw waveform gets no gradient (the stock front end asks
for one, for gradient checkpointing only).
"""

from contextlib import contextmanager

import torch
from torch import nn


class _Transposed(torch.autograd.Function):
    """(batch, a, b) → (batch, b, a), contiguous; its gradient comes back contiguous too."""

    @staticmethod
    def forward(ctx, hidden: torch.Tensor) -> torch.Tensor:
        return hidden.transpose(1, 2).contiguous()

    @staticmethod
    def backward(ctx, gradient: torch.Tensor) -> torch.Tensor:
        return gradient.transpose(1, 2).contiguous()


class ContiguousFrontEndMixin:
    """Overrides a speech feature encoder's `forward` (its `conv_layers` are conv + layer norm + activation)."""

    def forward(self, input_values: torch.Tensor) -> torch.Tensor:
        if input_values.device.type != "cpu" or any(
            getattr(layer, "gradient_checkpointing", False) and self.training for layer in self.conv_layers
        ):
            return super().forward(input_values)
        hidden = input_values[:, None]
        for layer in self.conv_layers[:-1]:
            hidden = _Transposed.apply(_time_major_layer(layer, hidden))
        return _time_major_layer(self.conv_layers[-1], hidden).transpose(1, 2)


def _time_major_layer(layer: nn.Module, hidden: torch.Tensor) -> torch.Tensor:
    """One layer: (batch, channels in, time) contiguous → (batch, time out, channels out) contiguous."""
    return layer.activation(layer.layer_norm(_Transposed.apply(layer.conv(hidden))))


def supports_contiguous_front_end(front_end: nn.Module | None) -> bool:
    """Whether `front_end` is a stock feature encoder of layer-norm convolutions (conv, layer_norm, activation)."""
    layers = getattr(front_end, "conv_layers", None)
    if not isinstance(layers, nn.ModuleList) or len(layers) == 0:
        return False
    for layer in layers:
        conv = getattr(layer, "conv", None)
        norm = getattr(layer, "layer_norm", None)
        if not isinstance(conv, nn.Conv1d) or conv.groups != 1 or conv.padding_mode != "zeros":
            return False
        if not isinstance(norm, nn.LayerNorm) or not hasattr(layer, "activation") or len(list(layer.children())) > 3:
            return False
    return True


class MaskedGroupNormFrontEndMixin:
    """
    Overrides a group-norm feature encoder's `forward`: while `sample_lengths` (B,) is set (`utterance_lengths`), the
    first convolution's `GroupNorm` takes its statistics over each row's own frames; otherwise the stock forward.
    """

    sample_lengths: torch.Tensor | None = None

    def forward(self, input_values: torch.Tensor) -> torch.Tensor:
        if self.sample_lengths is None:
            return super().forward(input_values)
        first, *rest = self.conv_layers
        hidden = first.conv(input_values[:, None])
        frames = torch.div(self.sample_lengths - first.conv.kernel_size[0], first.conv.stride[0], rounding_mode="floor")
        hidden = first.activation(masked_group_norm(hidden, frames + 1, first.layer_norm))
        for layer in rest:
            hidden = layer(hidden)
        return hidden


def masked_group_norm(hidden: torch.Tensor, lengths: torch.Tensor, norm: nn.GroupNorm) -> torch.Tensor:
    """`norm` on (batch, channels, time) with each row's statistics over its first `lengths` (B,) frames only."""
    batch_size, channels, time = hidden.shape
    grouped = hidden.float().reshape(batch_size, norm.num_groups, channels // norm.num_groups, time)
    real = (torch.arange(time, device=hidden.device) < lengths.unsqueeze(1)).to(grouped.dtype)[:, None, None]
    count = lengths.clamp(min=1).to(grouped.dtype).view(-1, 1, 1, 1) * grouped.shape[2]
    mean = (grouped * real).sum(dim=(2, 3), keepdim=True) / count
    centred = grouped - mean
    variance = (centred.square() * real).sum(dim=(2, 3), keepdim=True) / count
    normed = (centred * torch.rsqrt(variance + norm.eps)).reshape(batch_size, channels, time).to(hidden.dtype)
    if norm.affine:
        normed = normed * norm.weight.view(1, -1, 1) + norm.bias.view(1, -1, 1)
    return normed


def supports_masked_group_norm(front_end: nn.Module | None) -> bool:
    """Whether `front_end` is a stock group-norm feature encoder: its first layer conv, `GroupNorm`, activation."""
    layers = getattr(front_end, "conv_layers", None)
    if not isinstance(layers, nn.ModuleList) or len(layers) == 0:
        return False
    first = layers[0]
    return (
        isinstance(getattr(first, "conv", None), nn.Conv1d)
        and isinstance(getattr(first, "layer_norm", None), nn.GroupNorm)
        and hasattr(first, "activation")
        and len(list(first.children())) <= 3
        and not any(isinstance(m, nn.GroupNorm) for layer in layers[1:] for m in layer.modules())
    )


@contextmanager
def utterance_lengths(audio_model: nn.Module, audio_attention_mask: torch.Tensor):
    """While inside, a masked-group-norm front end of `audio_model` normalises each row over its own samples."""
    front_end = getattr(audio_model, "feature_extractor", None)
    if not isinstance(front_end, MaskedGroupNormFrontEndMixin):
        yield
        return
    front_end.sample_lengths = audio_attention_mask.sum(dim=-1)
    try:
        yield
    finally:
        front_end.sample_lengths = None


_CLASSES: dict[tuple[type, type], type] = {}


def _mix_in(front_end: nn.Module, mixin: type) -> None:
    """Give `front_end` the class `mixin` + its own class (one such class per stock class), in place."""
    stock = type(front_end)
    if (mixin, stock) not in _CLASSES:
        name = f"{mixin.__name__.removesuffix('FrontEndMixin')}{stock.__name__}"
        _CLASSES[mixin, stock] = type(name, (mixin, stock), {"__module__": __name__, "__qualname__": name})
        globals()[name] = _CLASSES[mixin, stock]
    front_end.__class__ = _CLASSES[mixin, stock]


def adapt_front_end(audio_model: nn.Module) -> nn.Module:
    """
    In place, make `audio_model.feature_extractor` batch-independent (group norm: `MaskedGroupNormFrontEndMixin`) or
    faster on CPU (layer norm: `ContiguousFrontEndMixin`); other front ends are left as they are. Returns `audio_model`.
    """
    front_end = getattr(audio_model, "feature_extractor", None)
    if isinstance(front_end, (ContiguousFrontEndMixin, MaskedGroupNormFrontEndMixin)):
        return audio_model
    if supports_contiguous_front_end(front_end):
        _mix_in(front_end, ContiguousFrontEndMixin)
    elif supports_masked_group_norm(front_end):
        _mix_in(front_end, MaskedGroupNormFrontEndMixin)
    return audio_model


def use_stock_front_end(audio_model: nn.Module) -> nn.Module:
    """Undo `adapt_front_end` (the stock Transformers path, e.g. to time the original's processing)."""
    front_end = getattr(audio_model, "feature_extractor", None)
    if isinstance(front_end, (ContiguousFrontEndMixin, MaskedGroupNormFrontEndMixin)):
        front_end.__class__ = type(front_end).__mro__[2]
    return audio_model
