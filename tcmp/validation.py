"""
Value checks of what a TCMP model is built from and fed: its config's values (with the `config.json` named when
they come from a saved folder), its weights (finite after loading) and its token ids (inside the vocabulary).
"""

import contextlib
import math
import os

import torch
from huggingface_hub.errors import StrictDataclassFieldValidationError

from .errors import CheckpointError


MODALITIES = ("all", "text", "audio", "text2audio", "fused")
TEXT_POOLINGS = ("max_mean", "normalized_mean")
MAX_HIDDEN_SIZE = 1 << 16
"""Widest `hidden_size` accepted (the widest published encoders are 12–16k): larger values are typos that would
otherwise ask torch for terabytes."""


def check_encoder_chunk_size(chunk_size) -> None:
    """The rule for `encoder_chunk_size` (the config's, also applied to the `--encoder_chunk_size` flag)."""
    if not (chunk_size is None or chunk_size == "auto" or (type(chunk_size) is int and chunk_size >= 1)):
        raise ValueError(f"TCMPConfig.encoder_chunk_size must be 'auto', None or at least 1, got {chunk_size!r}")


def _whole_number(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_config_values(config) -> None:
    """Every value of a `TCMPConfig` that would fail later in torch (a negative width, a dropout of 2) is a `ValueError` naming it."""
    hidden_size = config.hidden_size
    if not _whole_number(hidden_size) or not 1 <= hidden_size <= MAX_HIDDEN_SIZE:
        raise ValueError(f"TCMPConfig.hidden_size must be a whole number from 1 to {MAX_HIDDEN_SIZE}, got {hidden_size!r}")
    if not isinstance(config.dropout, (int, float)) or not 0 <= config.dropout < 1:
        raise ValueError(f"TCMPConfig.dropout must be a number from 0 to below 1, got {config.dropout!r}")
    if config.modality not in MODALITIES:
        raise ValueError(f"TCMPConfig.modality must be one of {MODALITIES}, got {config.modality!r}")
    if config.num_negatives is not None and config.num_negatives < 1:
        raise ValueError(f"TCMPConfig.num_negatives must be None or at least 1, got {config.num_negatives}")
    if config.text_pooling not in TEXT_POOLINGS:
        raise ValueError(f"TCMPConfig.text_pooling must be one of {TEXT_POOLINGS}, got {config.text_pooling!r}")
    if config.attention_window is not None and config.attention_window < 1:
        raise ValueError(f"TCMPConfig.attention_window must be None or at least 1, got {config.attention_window}")
    weights = config.class_weights
    if weights is not None and not all(isinstance(w, (int, float)) and math.isfinite(w) and w >= 0 for w in weights):
        raise ValueError(f"TCMPConfig.class_weights must be finite numbers >= 0, got {weights!r}")
    offsets = config.logit_adjustment
    if offsets is not None and not all(isinstance(v, (int, float)) and math.isfinite(v) for v in offsets):
        raise ValueError(f"TCMPConfig.logit_adjustment must be finite numbers, got {offsets!r}")
    weight = config.context_emotion_loss_weight
    if not isinstance(weight, (int, float)) or not math.isfinite(weight) or weight < 0:
        raise ValueError(f"TCMPConfig.context_emotion_loss_weight must be a finite number >= 0, got {weight!r}")
    check_encoder_chunk_size(config.encoder_chunk_size)


@contextlib.contextmanager
def config_file_errors(source: str | None):
    """
    While a config is built from a saved `config.json`: a value it refuses (`check_config_values`, or a field of the
    wrong type) becomes a one-line `ValueError` naming the file, the field and the value. `source` None (a config
    built in code): errors pass unchanged.
    """
    if source is None:
        yield
        return
    path = os.path.join(source, "config.json") if os.path.isdir(source) else source
    try:
        yield
    except StrictDataclassFieldValidationError as error:
        cause = error.__cause__ or error
        raise ValueError(f"{path}: {' '.join(str(cause).split())}") from None
    except ValueError as error:
        raise ValueError(f"{path}: {error}") from None


def check_finite_weights(model: torch.nn.Module, source: str) -> None:
    """A loaded model whose weights hold NaN or infinity (a diverged run, a tampered file) is refused naming the tensor."""
    for name, tensor in [*model.named_parameters(), *model.named_buffers()]:
        if tensor.is_floating_point() and not tensor.is_meta and not torch.isfinite(tensor).all():
            bad = int((~torch.isfinite(tensor)).sum())
            raise CheckpointError(
                f"{source}: the weights of {name} hold NaN or infinite values ({bad} of {tensor.numel()}): the "
                "model is damaged (saved from a diverged run?); use an earlier checkpoint or train again"
            )


def check_token_ids(input_ids: torch.Tensor, vocab_size: int) -> None:
    """
    Token ids outside the text encoder's vocabulary (a tokenizer of another model) are a `ValueError` naming one.
    Not checked while torch.compile or torch.export traces the model (a branch on the values has no graph).
    """
    if not input_ids.numel() or torch.compiler.is_compiling():
        return
    lowest, highest = (int(value) for value in torch.aminmax(input_ids))
    if lowest < 0 or highest >= vocab_size:
        bad = highest if highest >= vocab_size else lowest
        raise ValueError(
            f"input_ids hold the token id {bad}, outside the text encoder's vocabulary of {vocab_size} tokens "
            f"(ids 0 to {vocab_size - 1}): the tokenizer does not belong to this model"
        )


__all__ = [
    "MODALITIES", "TEXT_POOLINGS", "MAX_HIDDEN_SIZE", "check_encoder_chunk_size", "check_config_values",
    "config_file_errors", "check_finite_weights", "check_token_ids",
]
