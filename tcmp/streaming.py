"""Turn-by-turn emotion pre-recognition: each new utterance is encoded once and advances a small causal state."""

import functools
import threading
from dataclasses import dataclass

import torch

from .dialogue_state import TCMPDialogueState
from .modeling_tcmp import TCMPForEmotionPreRecognition
from .processing_tcmp import TCMPProcessor, check_utterance


@dataclass
class NextEmotion:
    """The predicted emotion of the utterance that comes next: top label, probability per label name, raw logits."""

    label: str
    probabilities: dict[str, float]
    logits: torch.Tensor


def one_call_at_a_time(method):
    """Run a `StreamingPreRecognizer` method under its lock: a session's state is read, advanced and written whole."""

    @functools.wraps(method)
    def locked(self, *args, **kwargs):
        with self._lock:
            return method(self, *args, **kwargs)

    return locked


class StreamingPreRecognizer:
    r"""
    Predicts the next utterance's emotion while a conversation runs, for any number of conversations ("sessions").

    Each new utterance goes through the processor and the encoders alone; then the model continues each session
    from its state (`past_state`, `use_cache=True`: per stream, one step of the context GRU, one of the memory GRU and
    one attention read) and gives e_{n} — exactly what `TCMPForEmotionPreRecognition` computes from the whole
    dialogue so far, through the same forward pass.

    Bounded memory: the predictor for position n attends over the memory states h_j with n-3-W < j ≤ n-3
    (W = `config.attention_window`) and its query reads c_{n-1} and c_{n-2}; nothing older is ever read. So a session
    holds two GRU states, the last two context states and the last W memory states per stream: O(W) whatever the
    length of the conversation. With `attention_window=None` the model attends over the whole history, and the
    memory (one d-vector per utterance and stream) grows with the conversation.

    Only the streams the classifier uses (`config.active_streams`) are computed; the others are zero, as in the model.

    Thread-safe: one recognizer may be shared by several threads (e.g. a web server's). Its calls run one at a
    time (a lock per recognizer), so no utterance is lost and each session advances in the order its calls got the
    lock; to use the model on many sessions at once, give them to one `add_utterances` call (one batched pass).

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
        self.sessions: dict[str, TCMPDialogueState] = {}
        """Each session's state: a batch of one dialogue (`TCMPDialogueState.row`), its real memory only."""
        self._lock = threading.Lock()

    @classmethod
    def from_pretrained(cls, folder: str, **model_kwargs) -> "StreamingPreRecognizer":
        """Model and processor saved together in `folder` (`save_pretrained` of both)."""
        model = TCMPForEmotionPreRecognition.from_pretrained(folder, **model_kwargs)
        return cls(model, TCMPProcessor.from_pretrained(folder))

    @one_call_at_a_time
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

    @one_call_at_a_time
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
        outputs = self.model(
            **{k: v.to(device) for k, v in batch.items()}, past_state=self._past_state(names), use_cache=True
        )
        for row, name in enumerate(names):
            self.sessions[name] = outputs.past_state.row(row)
        return {name: self._prediction(row) for name, row in zip(names, outputs.logits)}

    def _past_state(self, names: list[str]) -> TCMPDialogueState:
        """The sessions' states as one batch for the model (a new session starts from zeros, as a dialogue does)."""
        parameter = next(self.model.parameters())
        new = TCMPDialogueState.empty(
            1, self.config.active_streams, self.config.hidden_size, parameter.device, parameter.dtype
        )
        return TCMPDialogueState.stack([self.sessions.get(name, new) for name in names])

    def _prediction(self, logits: torch.Tensor) -> NextEmotion:
        probabilities = logits.softmax(-1).tolist()
        names = [self.config.id2label[i] for i in range(len(probabilities))]
        top = max(range(len(probabilities)), key=probabilities.__getitem__)
        return NextEmotion(names[top], dict(zip(names, probabilities)), logits)


__all__ = ["StreamingPreRecognizer", "NextEmotion"]
