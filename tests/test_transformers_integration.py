"""TCMP as an in-tree Transformers model: encoder outputs, return_dict, keywords, attention implementations,
resized embeddings, problem types, mismatched heads (what the common suite checks differently for flat models)."""

import pytest
import torch
import torch.nn.functional as F
from transformers import AutoModelForSequenceClassification

from tcmp import TCMPConfig, TCMPForEmotionPreRecognition, TCMPForPreTraining, TCMPModel
from tcmp.modeling_tcmp import pre_recognition_loss
from tcmp.presets import tiny_config

from .conftest import random_dialogues


CLASSES = [TCMPModel, TCMPForPreTraining, TCMPForEmotionPreRecognition]


@pytest.mark.parametrize("model_class", CLASSES)
def test_encoder_hidden_states_and_attentions_come_back_per_tower(model_class, config, make_batch):
    batch = make_batch(random_dialogues(0, [3, 2]))
    model = model_class._from_config(config, attn_implementation="eager").eval()
    plain = model(**batch)
    assert plain.text_model_output is None and plain.audio_model_output is None
    out = model(**batch, output_hidden_states=True, output_attentions=True)
    num_utterances, text_length = batch["input_ids"].shape
    text, audio = out.text_model_output, out.audio_model_output
    assert len(text.hidden_states) == config.text_config.num_hidden_layers + 1
    assert text.hidden_states[-1].shape == (num_utterances, text_length, config.text_config.hidden_size)
    assert text.attentions[0].shape == (num_utterances, config.text_config.num_attention_heads, text_length, text_length)
    assert len(audio.hidden_states) == config.audio_config.num_hidden_layers + 1
    assert audio.attentions[0].shape[:2] == (num_utterances, config.audio_config.num_attention_heads)
    assert torch.equal(text.last_hidden_state, text.hidden_states[-1])
    for field in ("forthcoming_embeds", "prediction_scores", "logits"):
        if hasattr(plain, field) and getattr(plain, field) is not None:
            torch.testing.assert_close(getattr(out, field), getattr(plain, field), atol=1e-5, rtol=1e-5)
    model.config.output_hidden_states = True
    assert len(model(**batch).text_model_output.hidden_states) == config.text_config.num_hidden_layers + 1


def test_gradients_reach_the_towers_hidden_states(config, make_batch):
    model = TCMPForEmotionPreRecognition._from_config(config, attn_implementation="eager")
    out = model(**make_batch(random_dialogues(1, [3])), output_hidden_states=True, output_attentions=True)
    for tower in (out.text_model_output, out.audio_model_output):
        tower.hidden_states[0].retain_grad()
        tower.attentions[0].retain_grad()
    out.logits.sum().backward()
    for tower in (out.text_model_output, out.audio_model_output):
        assert tower.hidden_states[0].grad is not None and tower.attentions[0].grad is not None


def _flatten(value):
    if isinstance(value, (tuple, list)):
        return [leaf for item in value for leaf in _flatten(item)]
    return [value] if isinstance(value, torch.Tensor) else []


@pytest.mark.parametrize("model_class", CLASSES)
def test_return_dict_false_gives_the_same_tuple(model_class, config, make_batch):
    batch = make_batch(random_dialogues(2, [3, 3]))
    if model_class is TCMPForEmotionPreRecognition:
        batch["labels"] = torch.tensor([0, 2])
    model = model_class(config).eval()
    for options in ({}, {"output_hidden_states": True, "output_attentions": True}):
        as_dict = model(**batch, **options)
        as_tuple = model(**batch, **options, return_dict=False)
        assert type(as_tuple) is tuple
        expected, got = _flatten(as_dict.to_tuple()), _flatten(as_tuple)
        assert len(expected) == len(got) > 0
        for left, right in zip(expected, got):
            assert left.dtype == right.dtype and torch.equal(left, right)
    model.config.return_dict = False
    assert type(model(**batch)) is tuple
    assert isinstance(model(**batch, return_dict=True), type(as_dict))


@pytest.mark.parametrize("model_class", CLASSES)
def test_an_unknown_keyword_is_an_error_naming_it(model_class, config, make_batch):
    batch = make_batch(random_dialogues(3, [2]))
    with pytest.raises(TypeError, match=r"unexpected keyword argument 'input_idz'; it takes utterance_mask, .*input_ids"):
        model_class(config)(**batch, input_idz=batch["input_ids"])


def test_main_input_name_is_forward_first_argument():
    for model_class in CLASSES:
        assert model_class.main_input_name == "utterance_mask"


@pytest.mark.parametrize("implementation", ["sdpa", {"text_config": "sdpa", "audio_config": "eager"}])
def test_attention_implementation_reaches_the_encoders_and_matches_eager(implementation, config, make_batch, tmp_path):
    batch = make_batch(random_dialogues(4, [3, 2]))
    eager = TCMPForEmotionPreRecognition._from_config(config, attn_implementation="eager").eval()
    eager.save_pretrained(tmp_path)
    model = TCMPForEmotionPreRecognition.from_pretrained(tmp_path, attn_implementation=implementation).eval()
    expected = implementation if isinstance(implementation, dict) else {"text_config": "sdpa", "audio_config": "sdpa"}
    assert model.config.text_config._attn_implementation == expected["text_config"]
    assert model.config.audio_config._attn_implementation == expected["audio_config"]
    assert model.tcmp.text_model.config._attn_implementation == expected["text_config"]
    torch.testing.assert_close(model(**batch).logits, eager(**batch).logits, atol=1e-5, rtol=1e-5)


def test_resized_token_embeddings_work_save_and_reload(tokenizer, processor, make_batch, tmp_path):
    model = TCMPForEmotionPreRecognition(tiny_config(len(tokenizer), num_labels=3)).eval()
    old_size = len(tokenizer)
    embeddings = model.resize_token_embeddings(old_size + 2)
    assert embeddings.weight.shape[0] == old_size + 2 == model.config.text_config.vocab_size
    batch = make_batch(random_dialogues(5, [2]))
    batch["input_ids"][0, 1] = old_size + 1  # a token that only exists after resizing
    logits = model(**batch).logits
    model.save_pretrained(tmp_path)
    reloaded = TCMPForEmotionPreRecognition.from_pretrained(tmp_path).eval()
    assert reloaded.config.text_config.vocab_size == old_size + 2
    torch.testing.assert_close(reloaded(**batch).logits, logits)
    audio_only = TCMPForEmotionPreRecognition(tiny_config(len(tokenizer), text=False, num_labels=3))
    with pytest.raises(ValueError, match="no text encoder"):
        audio_only.resize_token_embeddings(10)
    with pytest.raises(ValueError, match="no text encoder"):
        audio_only.tcmp.set_input_embeddings(embeddings)


def test_problem_types_use_the_loss_of_sequence_classification(config, make_batch):
    batch = make_batch(random_dialogues(6, [3, 2, 2]))
    config.class_weights = [1.0, 2.0, 0.5]
    model = TCMPForEmotionPreRecognition(config).eval()
    logits = model(**batch).logits
    weight = torch.tensor(config.class_weights)
    ids = torch.tensor([0, 1, 2])
    torch.testing.assert_close(model(**batch, labels=ids).loss, F.cross_entropy(logits, ids, weight=weight))
    targets = torch.tensor([[1.0, 0.0, 1.0], [0.0, 0.0, 1.0], [0.0, 1.0, 0.0]])
    model.config.problem_type = "multi_label_classification"
    expected = F.binary_cross_entropy_with_logits(logits, targets, weight=weight)
    torch.testing.assert_close(model(**batch, labels=targets).loss, expected)
    model.config.problem_type = None
    torch.testing.assert_close(model(**batch, labels=targets).loss, expected)  # float targets: multi-label
    with pytest.raises(ValueError, match=r"needs labels of shape \(3, 3\)"):
        pre_recognition_loss(logits, torch.ones(3, 2), "multi_label_classification")
    regression = TCMPForEmotionPreRecognition(tiny_config(99, num_labels=1, problem_type="regression")).eval()
    scores = torch.tensor([0.5, -1.0, 2.0])
    predicted = regression(**batch).logits
    torch.testing.assert_close(regression(**batch, labels=scores).loss, F.mse_loss(predicted.squeeze(-1), scores))
    with pytest.raises(ValueError, match="problem_type='regression' has none"):
        pre_recognition_loss(predicted, scores, "regression", [1.0])


def test_a_head_of_another_size_loads_only_with_ignore_mismatched_sizes(config, make_batch, tmp_path):
    TCMPForEmotionPreRecognition(config).save_pretrained(tmp_path)
    with pytest.raises(RuntimeError):
        AutoModelForSequenceClassification.from_pretrained(tmp_path, num_labels=42)
    model = AutoModelForSequenceClassification.from_pretrained(tmp_path, num_labels=42, ignore_mismatched_sizes=True)
    assert model(**make_batch(random_dialogues(7, [2]))).logits.shape == (1, 42)
    assert isinstance(model.config, TCMPConfig)
