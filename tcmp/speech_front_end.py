"""
A faster CPU path for the convolutional front end of HuBERT / wav2vec 2.0 / WavLM speech encoders with layer-norm
convolutions (`feat_extract_norm="layer"`): same weights and results (to float tolerance), contiguous memory only.

The stock layer runs its 1-D convolution on (batch, channels, time), its layer norm on the transposed view and its
GELU on the transposed-back view: on CPU the GELU backward then runs on transposed strides (slow), and the layer norm
and convolutions copy their inputs and gradients between layouts, forward and backward. Here each layer moves its
activations between the two layouts exactly once each way, forward and backward alike (`_Transposed`), and the layer
norm, GELU and convolution read contiguous memory only. The raw waveform gets no gradient (the stock front end asks
for one, for gradient checkpointing only).
"""

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


_CLASSES: dict[type, type] = {}


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


def use_contiguous_front_end(audio_model: nn.Module) -> nn.Module:
    """
    Make `audio_model.feature_extractor` run the faster path on CPU, in place (same module, weights and state dict;
    other front ends are left as they are); returns `audio_model`.
    """
    front_end = getattr(audio_model, "feature_extractor", None)
    if not supports_contiguous_front_end(front_end) or isinstance(front_end, ContiguousFrontEndMixin):
        return audio_model
    stock = type(front_end)
    if stock not in _CLASSES:
        name = f"Contiguous{stock.__name__}"
        _CLASSES[stock] = type(name, (ContiguousFrontEndMixin, stock), {"__module__": __name__, "__qualname__": name})
        globals()[name] = _CLASSES[stock]
    front_end.__class__ = _CLASSES[stock]
    return audio_model


def use_stock_front_end(audio_model: nn.Module) -> nn.Module:
    """Undo `use_contiguous_front_end` (the stock Transformers path, e.g. to time the original's processing)."""
    front_end = getattr(audio_model, "feature_extractor", None)
    if isinstance(front_end, ContiguousFrontEndMixin):
        front_end.__class__ = type(front_end).__mro__[2]
    return audio_model
