"""torch.export of the pre-recognition model and of the streaming step, and the step through ONNX Runtime."""

import numpy as np
import pytest
import torch

from tcmp import StreamingPreRecognizer, TCMPForEmotionPreRecognition
from tcmp.export import TCMPStreamingStep
from tcmp.presets import tiny_config

from .conftest import random_dialogues


def test_exported_pre_recognition_model_gives_the_eager_logits(config, make_batch):
    model = TCMPForEmotionPreRecognition(config).eval()
    batch = make_batch(random_dialogues(0, [4, 2, 3]))  # padded dialogues; eager encodes audio in chunks of 2
    program = torch.export.export(model, (), kwargs=batch)
    exported = program.module()(**batch)
    torch.testing.assert_close(exported.logits, model(**batch).logits, atol=1e-5, rtol=1e-5)


@pytest.fixture(scope="module")
def exported_step(tokenizer, processor):
    torch.manual_seed(0)
    model = TCMPForEmotionPreRecognition(tiny_config(len(tokenizer), num_labels=3, attention_window=2)).eval()
    step = TCMPStreamingStep(model)
    first = random_dialogues(10, [1])[0][0]
    inputs = step.inputs(processor([[first]]), step.initial_state(1))
    return model, step, torch.export.export(step, inputs, dynamic_shapes=step.dynamic_shapes())


def _turns():
    """Seven utterances of different text and audio lengths: past the attention window of 2."""
    return random_dialogues(11, [7])[0]


@pytest.mark.slow
def test_exported_streaming_step_gives_the_eager_logits_and_state_turn_by_turn(exported_step, processor):
    model, step, program = exported_step
    recognizer = StreamingPreRecognizer(model, processor)
    run = program.module()
    state = step.initial_state(1)
    for turn, utterance in enumerate(_turns()):
        logits, *state = run(*step.inputs(processor([[utterance]]), tuple(state)))
        expected = recognizer.add_utterance(utterance["text"], utterance["audio"], utterance["sampling_rate"])
        torch.testing.assert_close(logits[0], expected.logits, atol=1e-5, rtol=1e-5)
        assert int(state[0]) == turn + 1
    kept = recognizer.sessions["default"].streams["text"].memory[0]
    assert torch.equal(state[step.state_names.index("text_memory_mask") + 1][0], torch.tensor([True, True]))
    torch.testing.assert_close(state[step.state_names.index("text_memory") + 1][0], kept, atol=1e-5, rtol=1e-5)


@pytest.mark.slow
def test_onnx_streaming_step_in_onnxruntime_gives_the_eager_logits(exported_step, processor, tmp_path):
    import onnxruntime  # the `onnx` extra, part of `test`
    model, step, program = exported_step
    onnx_program = torch.onnx.export(
        program, (), input_names=step.input_names, output_names=step.output_names, dynamo=True, optimize=False
    )
    onnx_program.save(str(tmp_path / "step.onnx"))
    session = onnxruntime.InferenceSession(str(tmp_path / "step.onnx"), providers=["CPUExecutionProvider"])
    recognizer = StreamingPreRecognizer(model, processor)
    state = [t.numpy() for t in step.initial_state(1)]
    for utterance in _turns():
        utterance_inputs = step.inputs(processor([[utterance]]), ())
        feeds = dict(zip(step.input_names, [t.numpy() for t in utterance_inputs] + state))
        logits, *state = session.run(step.output_names, feeds)
        expected = recognizer.add_utterance(utterance["text"], utterance["audio"], utterance["sampling_rate"])
        np.testing.assert_allclose(logits[0], expected.logits.numpy(), atol=1e-5, rtol=1e-5)


def test_the_streaming_step_needs_a_bounded_state(tokenizer):
    model = TCMPForEmotionPreRecognition(tiny_config(len(tokenizer), num_labels=3, attention_window=None))
    with pytest.raises(ValueError, match="attention_window=None"):
        TCMPStreamingStep(model)
