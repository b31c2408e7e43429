"""
The causal state of dialogues between calls (`past_state`, `use_cache=True`): one batched type and its one packing,
used by the model, the streaming predictor (a batch of one row per session) and the exported streaming step (flat
tensors of fixed width).
"""

from dataclasses import dataclass

import torch
import torch.nn.functional as F


STATE_FIELDS = ("context_hidden", "recent_context", "memory_hidden", "memory", "memory_mask")
"""The tensors of one stream's state, in the order the exported streaming step takes and gives them."""


@dataclass
class TCMPStreamState:
    """
    What one stream keeps of each of B dialogues after n utterances, for continuing them later (`past_state`):

    - `context_hidden` (B, d): the context GRU's state after utterance n-1;
    - `recent_context` (B, 2, d): the context states c_{n-2}, c_{n-1} (zeros before the dialogue starts), the next
      query's inputs;
    - `memory_hidden` (B, d): the memory GRU's state after h_{n-3};
    - `memory` (B, M, d) and `memory_mask` (B, M): the memory states h_j that the next prediction may read (see
      `TCMPForthcomingPredictor.still_readable`), right-aligned: the last real column of a row is its h_{n-3}.
    """

    context_hidden: torch.Tensor
    recent_context: torch.Tensor
    memory_hidden: torch.Tensor
    memory: torch.Tensor
    memory_mask: torch.BoolTensor

    @classmethod
    def empty(cls, batch_size: int, hidden_size: int, device=None, dtype=None, memory_width: int = 0):
        """B dialogues that have not started; `memory_width` masked memory columns (a fixed-shape state)."""
        zeros = torch.zeros(batch_size, hidden_size, device=device, dtype=dtype)
        return cls(
            zeros,
            zeros.new_zeros(batch_size, 2, hidden_size),
            zeros.clone(),
            zeros.new_zeros(batch_size, memory_width, hidden_size),
            torch.zeros(batch_size, memory_width, dtype=torch.bool, device=device),
        )

    def row(self, index: int) -> "TCMPStreamState":
        """Row `index` as a batch of one, keeping only its real memory columns."""
        real = self.memory_mask[index]
        one = slice(index, index + 1)
        return TCMPStreamState(
            self.context_hidden[one], self.recent_context[one], self.memory_hidden[one],
            self.memory[index][real].unsqueeze(0), self.memory_mask[index][real].unsqueeze(0),
        )

    @classmethod
    def stack(cls, states: list["TCMPStreamState"]) -> "TCMPStreamState":
        """States of several batches as one: memories right-aligned, padded on the left to the widest with masked columns."""
        width = max(state.memory.shape[1] for state in states)
        return cls(
            torch.cat([state.context_hidden for state in states]),
            torch.cat([state.recent_context for state in states]),
            torch.cat([state.memory_hidden for state in states]),
            torch.cat([F.pad(s.memory, (0, 0, width - s.memory.shape[1], 0)) for s in states]),
            torch.cat([F.pad(s.memory_mask, (width - s.memory_mask.shape[1], 0)) for s in states]),
        )

    def num_elements(self) -> int:
        """Floats held: bounded by the attention window, whatever the number of utterances."""
        return sum(t.numel() for t in (self.context_hidden, self.recent_context, self.memory_hidden, self.memory))


@dataclass
class TCMPDialogueState:
    """
    The causal state of B dialogues after `num_utterances` (B,) utterances each, one `TCMPStreamState` per stream:
    everything the model needs to continue them utterance by utterance (as decoders pass `past_key_values`).
    """

    num_utterances: torch.LongTensor
    streams: dict[str, TCMPStreamState]

    @classmethod
    def empty(cls, batch_size: int, streams, hidden_size: int, device=None, dtype=None, memory_width: int = 0):
        """B dialogues that have not started, with a state for each of `streams`."""
        return cls(
            torch.zeros(batch_size, dtype=torch.long, device=device),
            {s: TCMPStreamState.empty(batch_size, hidden_size, device, dtype, memory_width) for s in streams},
        )

    def row(self, index: int) -> "TCMPDialogueState":
        """Dialogue `index` alone (a batch of one, only its real memory): what a streaming session keeps."""
        one = self.num_utterances[index : index + 1]
        return TCMPDialogueState(one, {name: state.row(index) for name, state in self.streams.items()})

    @classmethod
    def stack(cls, states: list["TCMPDialogueState"]) -> "TCMPDialogueState":
        """Several batches of dialogues (e.g. sessions' one-row states) as one batch."""
        names = list(states[0].streams)
        return cls(
            torch.cat([state.num_utterances for state in states]),
            {name: TCMPStreamState.stack([state.streams[name] for state in states]) for name in names},
        )

    @property
    def turns(self) -> int:
        """The number of utterances of a one-dialogue state (a streaming session)."""
        return int(self.num_utterances.item())

    def num_elements(self) -> int:
        """Floats held by the streams' states."""
        return sum(state.num_elements() for state in self.streams.values())

    def tensors(self) -> tuple[torch.Tensor, ...]:
        """`num_utterances`, then each stream's `STATE_FIELDS`: the flat form of the exported streaming step."""
        fields = [getattr(state, field) for state in self.streams.values() for field in STATE_FIELDS]
        return (self.num_utterances, *fields)

    @classmethod
    def from_tensors(cls, tensors, streams) -> "TCMPDialogueState":
        """The inverse of `tensors()`, for the given stream names (in order)."""
        num_utterances, *fields = tensors
        width = len(STATE_FIELDS)
        return cls(
            num_utterances,
            {s: TCMPStreamState(*fields[i * width : (i + 1) * width]) for i, s in enumerate(streams)},
        )


__all__ = ["TCMPDialogueState", "TCMPStreamState", "STATE_FIELDS"]
