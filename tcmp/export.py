"""
Deployment of the streaming predictor: one turn as a module of tensors only, for `torch.export` and ONNX.

`TCMPForEmotionPreRecognition` itself exports with `torch.export.export(model, (), kwargs=batch)` (the checks that
read tensor values are left out while exporting, the encoders run in one pass). The streaming step needs a state of
fixed shape instead of `TCMPDialogueState`'s growing memory: `TCMPStreamingStep` keeps, per active stream, the
memory of the last `attention_window` positions with a mask (unused columns masked), which is all the model reads.
"""

import torch
from torch import nn

from .dialogue_state import STATE_FIELDS, TCMPDialogueState
from .modeling_tcmp import TCMPForEmotionPreRecognition


class TCMPStreamingStep(nn.Module):
    r"""
    One turn of B conversations: each one's new utterance and its state in, the emotion logits of the utterance that
    follows and the new state out. Inputs, in the order of `input_names`: the utterance tensors the processor gives
    for one utterance per conversation (`input_ids`, `attention_mask` for text — one segment, so no
    `token_type_ids`; `input_values`, `audio_attention_mask` for audio), then `num_utterances` (B,) and the state tensors
    (`state_names`: per active stream `context_hidden` (B, d), `recent_context` (B, 2, d), `memory_hidden` (B, d),
    `memory` (B, W, d), `memory_mask` (B, W), W = `config.attention_window`). Outputs: `logits`, then the new
    `num_utterances` and state, in the same order (`output_names`). `initial_state(B)` starts B conversations.

    Example:

    ```python
    >>> step = TCMPStreamingStep(model)
    >>> inputs = step.inputs(processor([[utterance]]), step.initial_state(1))
    >>> program = torch.export.export(step, inputs, dynamic_shapes=step.dynamic_shapes())
    >>> logits, *state = program.module()(*inputs)
    ```
    """

    def __init__(self, model: TCMPForEmotionPreRecognition):
        super().__init__()
        if model.config.attention_window is None:
            raise ValueError(
                "TCMPStreamingStep needs a bounded state: the model has attention_window=None (its memory grows with "
                "the conversation); use a model with an attention_window"
            )
        self.model = model.eval()
        config = model.config
        self.streams = config.active_streams
        self.utterance_names = []
        if config.has_text:
            self.utterance_names += ["input_ids", "attention_mask"]
        if config.has_audio:
            self.utterance_names += ["input_values", "audio_attention_mask"]
        self.state_names = [f"{stream}_{field}" for stream in self.streams for field in STATE_FIELDS]
        self.input_names = [*self.utterance_names, "num_utterances", *self.state_names]
        self.output_names = ["logits", "next_num_utterances", *(f"next_{name}" for name in self.state_names)]

    def initial_state(self, batch_size: int) -> tuple[torch.Tensor, ...]:
        """`num_utterances` and the state tensors of B conversations that have not started."""
        parameter = next(self.model.parameters())
        config = self.model.config
        return TCMPDialogueState.empty(
            batch_size, self.streams, config.hidden_size, parameter.device, parameter.dtype, config.attention_window
        ).tensors()

    def inputs(self, batch: dict, state: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
        """The step's inputs from a processor batch of one utterance per conversation and a state."""
        missing = [name for name in self.utterance_names if name not in batch]
        if missing:
            raise ValueError(f"the batch has no {missing[0]!r}; this model needs {', '.join(self.utterance_names)}")
        if batch["utterance_mask"].shape[1] != 1:
            raise ValueError(
                f"a streaming step takes one utterance per conversation, got {batch['utterance_mask'].shape[1]}"
            )
        return (*(batch[name] for name in self.utterance_names), *state)

    def dynamic_shapes(self) -> tuple:
        """
        For `torch.export.export` / `torch.onnx.export`: text length and number of samples dynamic (`Dim.AUTO`: the
        exporter keeps the ranges the encoders allow), the number of conversations fixed to the example's.
        """
        lengths = {"input_ids": 1, "attention_mask": 1, "input_values": 1, "audio_attention_mask": 1}
        auto = torch.export.Dim.AUTO
        per_input = [{lengths[name]: auto} for name in self.utterance_names]
        per_input += [None for _ in self.input_names[len(self.utterance_names) :]]
        return (tuple(per_input),)  # `forward(*tensors)`: one variadic argument

    def forward(self, *tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
        utterance = dict(zip(self.utterance_names, tensors))
        past = TCMPDialogueState.from_tensors(tensors[len(self.utterance_names) :], self.streams)
        num_utterances = past.num_utterances
        utterance_mask = torch.ones(num_utterances.shape[0], 1, dtype=torch.bool, device=num_utterances.device)
        outputs = self.model(
            utterance_mask=utterance_mask, past_state=past, use_cache=True, return_dict=True, **utterance
        )
        return (outputs.logits, *outputs.past_state.tensors())


__all__ = ["TCMPStreamingStep", "STATE_FIELDS"]
