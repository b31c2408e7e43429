"""Turn-by-turn emotion pre-recognition: each new utterance is encoded once and advances a small causal state."""

from dataclasses import dataclass, field

import torch

from .configuration_tcmp import STREAMS
from .modeling_tcmp import TCMPForEmotionPreRecognition
from .processing_tcmp import TCMPProcessor, check_utterance


@dataclass
class StreamState:
    """
    What one stream (text, audio or fused) of one conversation keeps after n utterances:

    - `context_hidden` (d,): the context GRU's state after utterance n-1;
    - `recent_context` (2, d): the context states c_{n-2}, c_{n-1} (zeros before the dialogue starts), the query's inputs;
    - `memory_hidden` (d,): the memory GRU's state after h_{n-3};
    - `memory` (k, d): the memory states h_j, j ≤ n-3, that the next prediction may attend to — the latest
      `attention_window` of them (all of them when the window is `None`, so then it grows with the dialogue).
    """

    context_hidden: torch.Tensor
    recent_context: torch.Tensor
    memory_hidden: torch.Tensor
    memory: torch.Tensor

    @classmethod
    def empty(cls, hidden_size: int, device, dtype) -> "StreamState":
        zeros = torch.zeros(hidden_size, device=device, dtype=dtype)
        return cls(zeros, zeros.new_zeros(2, hidden_size), zeros, zeros.new_zeros(0, hidden_size))

    def num_elements(self) -> int:
        return sum(t.numel() for t in (self.context_hidden, self.recent_context, self.memory_hidden, self.memory))


@dataclass
class SessionState:
    """One conversation: how many utterances it has had and the state of each stream the classifier uses."""

    turns: int = 0
    streams: dict[str, StreamState] = field(default_factory=dict)

    def num_elements(self) -> int:
        """Number of tensor elements held: bounded by the attention window, whatever the number of turns."""
        return sum(state.num_elements() for state in self.streams.values())


@dataclass
class NextEmotion:
    """The predicted emotion of the utterance that comes next: top label, probability per label name, raw logits."""

    label: str
    probabilities: dict[str, float]
    logits: torch.Tensor


class StreamingPreRecognizer:
    r"""
    Predicts the next utterance's emotion while a conversation runs, for any number of conversations ("sessions").

    Each new utterance goes through the processor and the encoders alone; then, per stream, one step of the context
    GRU (and its dense layer), one step of the memory GRU and one attention read give e_{n} — exactly what
    `TCMPForEmotionPreRecognition` computes from the whole dialogue so far (same modules, same weights).

    Bounded memory: the predictor for position n attends over the memory states h_j with n-3-W < j ≤ n-3
    (W = `config.attention_window`) and its query reads c_{n-1} and c_{n-2}; nothing older is ever read. So a session
    holds two GRU states, the last two context states and the last W memory states per stream: O(W) whatever the
    length of the conversation. With `attention_window=None` the model attends over the whole history, and the
    memory (one d-vector per utterance and stream) grows with the conversation.

    Only the streams the classifier uses (`config.active_streams`) are computed; the others are zero, as in the model.

    Example:

    ```python
    >>> recognizer = StreamingPreRecognizer.from_pretrained("my-tcmp")
    >>> recognizer.add_utterance(text="that is terrible news", speaker="A").probabilities
    >>> recognizer.add_utterances({"call-1": {"text": "hello"}, "call-2": {"text": "okay then"}})
    ```
    """

    def __init__(self, model: TCMPForEmotionPreRecognition, processor: TCMPProcessor):
        if not isinstance(model, TCMPForEmotionPreRecognition):
            raise TypeError(f"StreamingPreRecognizer needs a TCMPForEmotionPreRecognition, got {type(model).__name__}")
        self.model = model.eval()
        self.processor = processor
        self.config = model.config
        self.sessions: dict[str, SessionState] = {}

    @classmethod
    def from_pretrained(cls, folder: str, **model_kwargs) -> "StreamingPreRecognizer":
        """Model and processor saved together in `folder` (`save_pretrained` of both)."""
        model = TCMPForEmotionPreRecognition.from_pretrained(folder, **model_kwargs)
        return cls(model, TCMPProcessor.from_pretrained(folder))

    def reset(self, session: str | None = "default"):
        """Forget one conversation (or every conversation with `session=None`)."""
        if session is None:
            self.sessions.clear()
        else:
            self.sessions.pop(session, None)

    def add_utterance(
        self, text=None, audio=None, sampling_rate=None, speaker=None, session: str = "default"
    ) -> NextEmotion:
        """Add the utterance just spoken in `session`; returns the predicted emotion of the one that follows."""
        utterance = {"text": text, "audio": audio, "sampling_rate": sampling_rate, "speaker": speaker}
        return self.add_utterances({session: utterance})[session]

    @torch.no_grad()
    def add_utterances(self, utterances: dict[str, dict]) -> dict[str, NextEmotion]:
        """
        One new utterance (a dict like the processor's) for each of several sessions, encoded in one pass. An
        utterance the processor or model refuses raises an error naming its session, and no session changes.
        """
        if not isinstance(utterances, dict) or not utterances:
            raise ValueError("add_utterances got no utterances: pass {session: utterance dict}")
        names = list(utterances)
        for name in names:
            check_utterance(utterances[name], f"session {name!r}", self.config.input_modalities)
        batch = self.processor(
            [[{k: v for k, v in utterances[n].items() if v is not None}] for n in names],
            dialogue_names=[f"session {n!r}" for n in names],
        )
        device = self.model.device
        vectors = self.model.tcmp.encode_utterances(
            **{k: v.to(device) for k, v in batch.items() if k != "utterance_mask"}
        )
        states = [self._session(name, vectors) for name in names]
        reference = next(iter(vectors.values()))
        forthcoming = reference.new_zeros(len(names), len(STREAMS), reference.shape[-1])
        for stream in self.config.active_streams:
            forthcoming[:, STREAMS.index(stream)] = self._step(
                stream, [s.streams[stream] for s in states], [s.turns for s in states], vectors[stream]
            )
        for state in states:
            state.turns += 1
        _, logits = self.model.classify(forthcoming)
        return {name: self._prediction(row) for name, row in zip(names, logits)}

    def _session(self, name: str, vectors: dict[str, torch.Tensor]) -> SessionState:
        if name not in self.sessions:
            reference = next(iter(vectors.values()))
            hidden, device, dtype = reference.shape[-1], reference.device, reference.dtype
            streams = {s: StreamState.empty(hidden, device, dtype) for s in self.config.active_streams}
            self.sessions[name] = SessionState(streams=streams)
        return self.sessions[name]

    def _step(self, stream: str, states: list[StreamState], turns: list[int], vectors: torch.Tensor) -> torch.Tensor:
        """Utterance n of each session (n = `turns`) → e_{n+1} of this stream, updating the states in place."""
        context_module = self.model.tcmp.context[stream]
        predictor = self.model.tcmp.predictor[stream]
        hidden = torch.stack([s.context_hidden for s in states]).unsqueeze(0)
        context, hidden = context_module.advance(vectors.unsqueeze(1), hidden)
        context = context[:, 0]
        if not self.config.no_context:
            self._advance_memory(predictor, states, turns)
        for i, state in enumerate(states):
            state.context_hidden = hidden[0, i]
            state.recent_context = torch.stack([state.recent_context[1], context[i]])
        recent = torch.stack([s.recent_context for s in states])
        query = predictor.make_query(recent[:, 1:2], recent[:, 0:1])
        memory, allowed = self._memory_batch(states)
        return predictor.predict(query, memory, allowed)[:, 0]

    def _advance_memory(self, predictor, states: list[StreamState], turns: list[int]):
        """h_{n-2} = memory GRU step on c_{n-2}: the state the prediction for position n+1 may read last."""
        ready = [i for i, n in enumerate(turns) if n >= 2]
        if not ready:
            return
        inputs = torch.stack([states[i].recent_context[0] for i in ready]).unsqueeze(1)
        hidden = torch.stack([states[i].memory_hidden for i in ready]).unsqueeze(0)
        memory, hidden = predictor.memory_gru(inputs, hidden)
        window = self.config.attention_window
        for row, i in enumerate(ready):
            state = states[i]
            state.memory_hidden = hidden[0, row]
            state.memory = torch.cat([state.memory, memory[row]])
            if window is not None:
                state.memory = state.memory[-window:]

    @staticmethod
    def _memory_batch(states: list[StreamState]) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """The sessions' memories padded to one length, with a (S, 1, M) mask of the real states."""
        length = max(s.memory.shape[0] for s in states)
        if length == 0:
            return None, None
        memory = states[0].memory.new_zeros(len(states), length, states[0].memory.shape[-1])
        allowed = torch.zeros(len(states), 1, length, dtype=torch.bool, device=memory.device)
        for i, state in enumerate(states):
            memory[i, : state.memory.shape[0]] = state.memory
            allowed[i, 0, : state.memory.shape[0]] = True
        return memory, allowed

    def _prediction(self, logits: torch.Tensor) -> NextEmotion:
        probabilities = logits.softmax(-1).tolist()
        names = [self.config.id2label[i] for i in range(len(probabilities))]
        top = max(range(len(probabilities)), key=probabilities.__getitem__)
        return NextEmotion(names[top], dict(zip(names, probabilities)), logits)


__all__ = ["StreamingPreRecognizer", "SessionState", "StreamState", "NextEmotion"]
