"""One `StreamingPreRecognizer` shared by threads: no utterance is lost, and the state is that of the calls in turn."""

import threading

import numpy as np
import torch

from tcmp.streaming import StreamingPreRecognizer
from tests.streaming.test_streaming import make_model

THREADS, TURNS = 4, 10
UTTERANCE = {"text": "hello how are you", "audio": np.linspace(-0.3, 0.3, 3200, dtype=np.float32), "sampling_rate": 16000}


def in_threads(work):
    """Run `work(thread index)` in `THREADS` threads started together; re-raise the first error any of them hit."""
    start, errors = threading.Barrier(THREADS), []

    def run(index):
        start.wait()
        try:
            work(index)
        except Exception as error:  # reported below: a thread's exception would otherwise only be printed
            errors.append(error)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]


def test_threads_adding_to_one_session_lose_no_turn(tokenizer, processor):
    recognizer = StreamingPreRecognizer(make_model(tokenizer), processor)
    in_threads(lambda _: [recognizer.add_utterance(**UTTERANCE, session="call") for _ in range(TURNS)])
    assert recognizer.sessions["call"].turns == THREADS * TURNS
    alone = StreamingPreRecognizer(recognizer.model, processor)
    for _ in range(THREADS * TURNS):
        alone.add_utterance(**UTTERANCE, session="call")
    torch.testing.assert_close(recognizer.add_utterance(**UTTERANCE, session="call").logits,
                               alone.add_utterance(**UTTERANCE, session="call").logits)


def test_threads_on_their_own_sessions_and_resets(tokenizer, processor):
    recognizer = StreamingPreRecognizer(make_model(tokenizer), processor)

    def work(index):
        for turn in range(TURNS):
            recognizer.add_utterances({f"own-{index}": UTTERANCE, "shared": UTTERANCE})
            if index == 0 and turn == TURNS // 2:
                recognizer.reset(f"own-{index}")

    in_threads(work)
    assert recognizer.sessions["shared"].turns == THREADS * TURNS
    assert [recognizer.sessions[f"own-{i}"].turns for i in range(THREADS)] == [TURNS - TURNS // 2 - 1] + [TURNS] * 3
