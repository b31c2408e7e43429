"""The model: shapes, losses, gradients, masking, causality, batching, modality configs and errors."""

import copy

import pytest
import torch
from huggingface_hub.errors import StrictDataclassFieldValidationError

from tcmp import TCMPConfig, TCMPForEmotionPreRecognition, TCMPForPreTraining, TCMPModel
from tcmp.modeling_tcmp import masked_max_mean_pool, text_audio_matching_loss
from tcmp.presets import tiny_config

from .conftest import random_dialogues


def test_pretraining_output_shapes_and_losses(config, make_batch):
    model = TCMPForPreTraining(config).eval()
    batch = make_batch(random_dialogues(0, [5, 3, 4]))
    out = model(**batch)
    num_utterances = 12
    num_predictions = (5 - 2) + (3 - 2) + (4 - 2)
    assert batch["input_ids"].shape[0] == num_utterances
    assert batch["input_values"].shape[0] == num_utterances
    assert out.prediction_scores.shape == (num_predictions, 3, num_utterances)
    assert out.predicted_embeds.shape == (num_predictions, 3, config.hidden_size)
    assert out.target_embeds.shape == (num_predictions, 3, config.hidden_size)
    assert out.prediction_dialogue_ids.tolist() == [0, 0, 0, 1, 2, 2]
    # the true next utterance of dialogue 0 at position 2 is flat utterance 2; of dialogue 1 at 2, flat 7
    assert out.prediction_labels.tolist() == [2, 3, 4, 7, 10, 11]
    for part in ("matching_loss", "text_prediction_loss", "audio_prediction_loss", "fused_prediction_loss"):
        assert torch.isfinite(getattr(out, part))
    expected = out.matching_loss + (out.text_prediction_loss + out.audio_prediction_loss + out.fused_prediction_loss) / 3
    assert torch.allclose(out.loss, expected)


def test_candidates_are_target_and_other_dialogues_only(config, make_batch):
    model = TCMPForPreTraining(config).eval()
    out = model(**make_batch(random_dialogues(1, [4, 3])))
    allowed = out.prediction_scores[:, 0] > torch.finfo(torch.float32).min
    # dialogue 0 (flat utterances 0-3) predicts positions 2, 3: candidates = itself + dialogue 1's 3 utterances
    assert allowed[0].tolist() == [False, False, True, False, True, True, True]
    assert allowed[1].tolist() == [False, False, False, True, True, True, True]
    assert allowed[2].tolist() == [True, True, True, True, False, False, True]


def test_two_windows_of_one_dialogue_are_not_negatives_of_each_other(config, make_batch):
    model = TCMPForPreTraining(config).eval()
    batch = make_batch(random_dialogues(2, [3, 3, 3]))
    out = model(**batch, dialogue_ids=torch.tensor([7, 7, 9]))
    allowed = out.prediction_scores[0, 0] > torch.finfo(torch.float32).min
    assert allowed.tolist() == [False, False, True, False, False, False, True, True, True]


def test_num_negatives_samples_that_many(tokenizer, make_batch):
    model = TCMPForPreTraining(tiny_config(len(tokenizer), num_negatives=2)).eval()
    out = model(**make_batch(random_dialogues(3, [4, 4, 4])))
    allowed = (out.prediction_scores[:, 0] > torch.finfo(torch.float32).min).sum(dim=1)
    assert allowed.tolist() == [3] * out.prediction_labels.shape[0]


def test_extra_negatives_join_every_candidate_set(config, make_batch):
    model = TCMPForPreTraining(config).eval()
    batch = make_batch(random_dialogues(4, [4]))
    extra = make_batch(random_dialogues(5, [3]))
    out = model(
        **batch,
        negative_input_ids=extra["input_ids"],
        negative_attention_mask=extra["attention_mask"],
        negative_input_values=extra["input_values"],
        negative_audio_attention_mask=extra["audio_attention_mask"],
    )
    assert out.prediction_scores.shape == (2, 3, 7)
    allowed = out.prediction_scores[:, 0] > torch.finfo(torch.float32).min
    assert allowed.sum(dim=1).tolist() == [4, 4]
    assert out.text_prediction_loss > 0


@pytest.mark.parametrize("head", ["pretraining", "classification"])
def test_losses_decrease_and_gradients_reach_both_encoders(head, config, make_batch):
    torch.manual_seed(0)
    batch = make_batch(random_dialogues(6, [6, 4, 5, 3]))
    if head == "pretraining":
        model = TCMPForPreTraining(config)
    else:
        model = TCMPForEmotionPreRecognition(config)
        batch["labels"] = torch.tensor([0, 1, 2, 1])
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for step in range(8):
        out = model(**batch)
        assert torch.isfinite(out.loss)
        optimizer.zero_grad()
        out.loss.backward()
        if step == 0:
            text_grad = model.tcmp.text_model.embeddings.word_embeddings.weight.grad
            audio_grad = model.tcmp.audio_model.feature_extractor.conv_layers[0].conv.weight.grad
            assert text_grad is not None and text_grad.abs().sum() > 0
            assert audio_grad is not None and audio_grad.abs().sum() > 0
        optimizer.step()
        losses.append(out.loss.item())
    assert losses[-1] < losses[0] * 0.9, losses


def test_masked_pooling_ignores_padding():
    hidden = torch.randn(2, 5, 4)
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 0, 0, 0, 0]])
    garbage = hidden.clone()
    garbage[mask == 0] = 1e6
    pooled = masked_max_mean_pool(garbage, mask)
    assert torch.allclose(pooled[0], (hidden[0, :3].max(0).values + hidden[0, :3].mean(0)) / 2)
    assert torch.allclose(pooled[1], hidden[1, 0])
    assert torch.equal(masked_max_mean_pool(hidden, torch.zeros(2, 5)), torch.zeros(2, 4))


def test_normalized_mean_text_pooling_is_the_sentence_encoder_pooling(config):
    pooled_config = copy.deepcopy(config)
    pooled_config.text_pooling = "normalized_mean"
    model = TCMPModel(pooled_config).eval()
    input_ids = torch.randint(5, pooled_config.text_config.vocab_size, (2, 6))
    attention_mask = torch.tensor([[1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 1]])
    hidden = model.text_model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
    expected = torch.stack([hidden[0, :4].mean(0), hidden[1].mean(0)])
    expected = expected / expected.norm(dim=-1, keepdim=True)
    torch.testing.assert_close(model.pooled_text_features(input_ids, attention_mask), expected)
    paper_pooling = TCMPModel(config).eval()
    paper_pooling.load_state_dict(model.state_dict())
    assert not torch.allclose(paper_pooling.pooled_text_features(input_ids, attention_mask), expected)
    with pytest.raises((ValueError, StrictDataclassFieldValidationError), match="text_pooling"):
        TCMPConfig(text_pooling="max")


def test_more_padding_changes_nothing(config_each_front_end, make_batch):
    model = TCMPModel(config_each_front_end).eval()
    dialogue = random_dialogues(7, [3])
    long_neighbour = random_dialogues(8, [5])
    long_neighbour[0][0]["text"] = " ".join(["hello"] * 40)
    long_neighbour[0][0]["audio"] = torch.randn(20000).numpy()
    alone = model(**make_batch(dialogue))
    padded = model(**make_batch(dialogue + long_neighbour))
    assert torch.allclose(alone.text_embeds[0], padded.text_embeds[0, :3], atol=1e-5)
    assert torch.allclose(alone.audio_embeds[0], padded.audio_embeds[0, :3], atol=1e-5)
    assert torch.allclose(alone.forthcoming_embeds[0], padded.forthcoming_embeds[0, :4], atol=1e-5)


def test_length_sorted_encoder_chunks_equal_one_pass(tokenizer, make_batch):
    one_pass = TCMPForPreTraining(tiny_config(len(tokenizer), encoder_chunk_size=None, dropout=0.0)).eval()
    chunked = TCMPForPreTraining(tiny_config(len(tokenizer), encoder_chunk_size=3, dropout=0.0)).eval()
    chunked.load_state_dict(one_pass.state_dict())
    dialogues = random_dialogues(12, [5, 4, 6])
    dialogues[1][2]["text"] = " ".join(["long"] * 30)
    dialogues[2][0]["audio"] = torch.randn(24000).numpy()
    batch = make_batch(dialogues)
    batch["dialogue_ids"] = torch.arange(3)
    calls = []
    chunked.tcmp.audio_model.register_forward_hook(lambda module, args, out: calls.append(args[0].shape))
    a, b = one_pass(**batch), chunked(**batch)
    assert len(calls) == 5 and max(shape[1] for shape in calls[:-1]) < calls[-1][1] == 24000  # 15 utterances / 3
    assert torch.allclose(a.target_embeds, b.target_embeds, atol=1e-5)
    assert torch.allclose(a.prediction_scores, b.prediction_scores, atol=1e-4)
    assert torch.allclose(a.loss, b.loss, atol=1e-5)
    a.loss.backward()
    b.loss.backward()
    for name in ("tcmp.text_model.embeddings.word_embeddings.weight", "tcmp.audio_model.encoder.layers.0.attention.q_proj.weight"):
        grad_a, grad_b = one_pass.get_parameter(name).grad, chunked.get_parameter(name).grad
        assert grad_a.abs().sum() > 0 and torch.allclose(grad_a, grad_b, atol=1e-5), name


def test_auto_chunks_audio_in_twos_on_cpu_text_in_one_pass_and_bad_sizes_are_refused(tokenizer, make_batch):
    model = TCMPModel(tiny_config(len(tokenizer))).eval()
    assert model.config.encoder_chunk_size == "auto"
    text_calls, audio_calls = [], []
    model.text_model.register_forward_hook(lambda module, args, out: text_calls.append(1))
    model.audio_model.register_forward_hook(lambda module, args, out: audio_calls.append(1))
    model(**make_batch(random_dialogues(13, [4, 3])))
    assert (len(text_calls), len(audio_calls)) == (1, 4)  # 7 utterances: one text pass, audio in chunks of 2
    for bad in (0, -1):
        with pytest.raises(ValueError, match=f"encoder_chunk_size must be 'auto', None or at least 1, got {bad!r}"):
            tiny_config(len(tokenizer), encoder_chunk_size=bad)
    for bad in (2.5, "big"):  # refused by the config's own type check, naming the field and the value
        with pytest.raises(StrictDataclassFieldValidationError, match=f"(?s)encoder_chunk_size.*{bad}"):
            tiny_config(len(tokenizer), encoder_chunk_size=bad)


def test_prediction_is_causal(config, make_batch):
    model = TCMPModel(config).eval()
    dialogues = random_dialogues(9, [8])
    base = model(**make_batch(dialogues)).forthcoming_embeds[0]
    for j in (0, 3, 7):
        changed = [dict(u) for u in dialogues[0]]
        changed[j] = random_dialogues(100 + j, [1])[0][0]
        after = model(**make_batch([changed])).forthcoming_embeds[0]
        assert torch.allclose(base[: j + 1], after[: j + 1], atol=1e-6), f"e_t for t <= {j} changed"
        assert not torch.allclose(base[j + 1], after[j + 1]), f"e_{j + 1} ignores utterance {j}"


def test_attention_window_limits_what_is_attended(tokenizer, make_batch):
    dialogues = random_dialogues(10, [12])
    full = TCMPModel(tiny_config(len(tokenizer), attention_window=None)).eval()
    windowed = TCMPModel(tiny_config(len(tokenizer), attention_window=2)).eval()
    windowed.load_state_dict(full.state_dict())
    a = full(**make_batch(dialogues)).forthcoming_embeds[0]
    b = windowed(**make_batch(dialogues)).forthcoming_embeds[0]
    # positions up to t = 4 attend over at most 2 states (j <= t - 3): identical; later ones differ
    assert torch.allclose(a[:5], b[:5], atol=1e-6)
    assert not torch.allclose(a[6:], b[6:])


def test_batch_equals_each_dialogue_alone(config_each_front_end, make_batch):
    model = TCMPForEmotionPreRecognition(config_each_front_end).eval()
    dialogues = random_dialogues(11, [4, 1, 7, 2])
    together = model(**make_batch(dialogues)).logits
    for i, dialogue in enumerate(dialogues):
        alone = model(**make_batch([dialogue])).logits
        assert torch.allclose(together[i], alone[0], atol=1e-5)


def test_pretraining_batch_equals_each_dialogue_alone(config_each_front_end, make_batch):
    model = TCMPForPreTraining(config_each_front_end).eval()
    dialogues = random_dialogues(18, [4, 3, 6])
    together = model(**make_batch(dialogues))
    for i, dialogue in enumerate(dialogues):
        alone = model(**make_batch([dialogue]))
        rows = together.prediction_dialogue_ids == i
        assert rows.sum() == len(dialogue) - 2
        assert torch.allclose(together.predicted_embeds[rows], alone.predicted_embeds, atol=1e-5)
        assert torch.allclose(together.target_embeds[rows], alone.target_embeds, atol=1e-5)


def test_context_of_one_utterance_works_and_zero_is_an_error(config, make_batch):
    model = TCMPForEmotionPreRecognition(config).eval()
    out = model(**make_batch(random_dialogues(12, [1])))
    assert out.logits.shape == (1, 3) and torch.isfinite(out.logits).all()
    batch = make_batch(random_dialogues(12, [2, 1]))
    batch["utterance_mask"][1] = False
    batch = {k: v[:2] if k in ("input_ids", "attention_mask", "token_type_ids", "input_values", "audio_attention_mask")
             else v for k, v in batch.items()}
    with pytest.raises(ValueError, match="sample 1 of the batch has an empty context"):
        model(**batch)


def test_the_target_cannot_be_an_input(config, make_batch):
    """The classifier reads e at the position after the context: no slot for the target utterance exists."""
    model = TCMPForEmotionPreRecognition(config).eval()
    dialogues = random_dialogues(13, [5])
    context = [dialogues[0][:4]]
    logits = model(**make_batch(context)).logits
    full = model.tcmp(**make_batch(context)).forthcoming_embeds[0, 4]
    assert torch.allclose(model.classifier(full.flatten()), logits[0], atol=1e-6)


@pytest.mark.parametrize("text,audio", [(True, False), (False, True)])
def test_single_modality_configs(text, audio, tokenizer, make_batch):
    config = tiny_config(len(tokenizer), text=text, audio=audio, num_labels=3)
    assert config.available_streams == (("text",) if text else ("audio",))
    batch = make_batch(random_dialogues(14, [4, 3], text=text, audio=audio))
    pre = TCMPForPreTraining(config)
    out = pre(**batch)
    assert out.matching_loss is None and out.fused_prediction_loss is None
    out.loss.backward()
    assert torch.isfinite(out.loss)
    clf = TCMPForEmotionPreRecognition(config)
    out = clf(**batch, labels=torch.tensor([0, 2]))
    assert out.logits.shape == (2, 3) and torch.isfinite(out.loss)
    missing = 1 if text else 0
    assert torch.equal(out.forthcoming_embeds[:, missing], torch.zeros_like(out.forthcoming_embeds[:, missing]))


def test_modality_ablation_keeps_one_prediction_loss_and_zeroes_other_streams(tokenizer, make_batch):
    config = tiny_config(len(tokenizer), modality="text2audio", num_labels=3)
    batch = make_batch(random_dialogues(15, [4, 4]))
    out = TCMPForPreTraining(config)(**batch)
    assert out.text_prediction_loss is None and out.audio_prediction_loss is None
    assert torch.allclose(out.loss, out.matching_loss + out.fused_prediction_loss)
    clf = TCMPForEmotionPreRecognition(config)(**batch)
    assert clf.forthcoming_embeds[:, :2].abs().sum() == 0 and clf.forthcoming_embeds[:, 2].abs().sum() > 0


def test_no_context_ablation_ignores_earlier_memory(tokenizer, make_batch):
    model = TCMPModel(tiny_config(len(tokenizer), no_context=True)).eval()
    dialogues = random_dialogues(16, [6])
    base = model(**make_batch(dialogues)).forthcoming_embeds[0, 6]
    assert base.abs().sum() > 0


def test_multimodal_model_without_audio_is_a_clear_error(config, make_batch):
    model = TCMPForEmotionPreRecognition(config)
    with pytest.raises(ValueError, match="has an audio encoder: pass input_values"):
        model(**make_batch(random_dialogues(17, [2], audio=False)))


def test_config_without_encoders_is_a_clear_error():
    with pytest.raises(ValueError, match="needs a text_config, an audio_config or both"):
        TCMPModel(TCMPConfig())


def test_class_weights_change_the_loss(config, make_batch):
    model = TCMPForEmotionPreRecognition(config).eval()
    batch = make_batch(random_dialogues(18, [3, 3]))
    labels = torch.tensor([0, 2])
    plain = model(**batch, labels=labels).loss
    model.set_class_weights([0.0, 0.0, 3.0])
    weighted = model(**batch, labels=labels).loss
    logits = model(**batch).logits
    assert torch.allclose(weighted, torch.nn.functional.cross_entropy(logits[1:], labels[1:]))
    assert not torch.allclose(plain, weighted)
    with pytest.raises(ValueError, match="need 3 values"):
        model.set_class_weights([1.0])


def test_logit_adjustment_shifts_the_loss_only(config, make_batch):
    model = TCMPForEmotionPreRecognition(config).eval()
    batch = make_batch(random_dialogues(18, [3, 3]))
    labels = torch.tensor([0, 2])
    plain = model(**batch, labels=labels)
    offsets = [0.0, -1.0, -3.0]
    model.set_logit_adjustment(offsets)
    adjusted = model(**batch, labels=labels)
    torch.testing.assert_close(adjusted.logits, plain.logits)  # predictions keep the raw logits
    expected = torch.nn.functional.cross_entropy(plain.logits + torch.tensor(offsets), labels)
    torch.testing.assert_close(adjusted.loss, expected)
    assert not torch.allclose(adjusted.loss, plain.loss)
    with pytest.raises(ValueError, match="needs 3 values"):
        model.set_logit_adjustment([1.0])
    with pytest.raises((ValueError, StrictDataclassFieldValidationError), match="logit_adjustment must be finite numbers"):
        TCMPConfig(**{**config.to_dict(), "logit_adjustment": [0.0, float("-inf"), 0.0]})


def test_frozen_feature_encoder_gets_no_gradients_and_the_rest_trains(tokenizer, make_batch, tmp_path):
    model = TCMPForPreTraining(tiny_config(len(tokenizer), freeze_feature_encoder=True)).train()
    front_end = model.tcmp.audio_model.feature_extractor
    model(**make_batch(random_dialogues(20, [5, 4]))).loss.backward()
    assert all(p.grad is None and not p.requires_grad for p in front_end.parameters())
    audio_layer = model.tcmp.audio_model.encoder.layers[0].attention.q_proj.weight
    assert audio_layer.grad.abs().sum() > 0 and model.tcmp.text_model.embeddings.word_embeddings.weight.grad is not None
    model.tcmp.set_encoders_frozen(True)
    model.tcmp.set_encoders_frozen(False)
    assert not any(p.requires_grad for p in front_end.parameters()) and audio_layer.requires_grad
    model.save_pretrained(tmp_path)
    reloaded = TCMPForPreTraining.from_pretrained(tmp_path)
    assert reloaded.config.freeze_feature_encoder
    assert not any(p.requires_grad for p in reloaded.tcmp.audio_model.feature_extractor.parameters())
    with pytest.raises(ValueError, match="freeze_feature_encoder needs a speech encoder.*has no audio encoder"):
        TCMPModel(tiny_config(len(tokenizer), audio=False, freeze_feature_encoder=True))


def test_frozen_encoders_stay_fixed_and_precomputed_features_give_the_same_result(tokenizer, make_batch):
    config = tiny_config(len(tokenizer), freeze_encoders=True)
    model = TCMPForPreTraining(config).train()
    assert not model.tcmp.text_model.training and not model.tcmp.audio_model.training
    batch = make_batch(random_dialogues(19, [5, 4]))
    torch.manual_seed(1)
    direct = model(**batch)
    direct.loss.backward()
    assert model.tcmp.text_model.embeddings.word_embeddings.weight.grad is None
    assert model.tcmp.text_projection.dense.weight.grad is not None
    features = {
        "text_features": model.tcmp.pooled_text_features(batch["input_ids"], batch["attention_mask"]),
        "audio_features": model.tcmp.pooled_audio_features(batch["input_values"], batch["audio_attention_mask"]),
    }
    torch.manual_seed(1)
    cached = model(utterance_mask=batch["utterance_mask"], **features)
    assert torch.allclose(direct.loss, cached.loss)
    model.tcmp.set_encoders_frozen(False)
    model.train()
    assert model.tcmp.text_model.training and model.config.freeze_encoders is False


def test_fused_is_the_paper_text2audio_stream(tokenizer):
    paper = tiny_config(len(tokenizer), modality="text2audio", num_labels=3)
    alias = tiny_config(len(tokenizer), modality="fused", num_labels=3)
    assert paper.active_streams == alias.active_streams == ("fused",)


def test_continuing_from_past_state_equals_the_whole_dialogue(tokenizer, processor):
    """The step API: a dialogue fed in pieces (1, 3, then 2 utterances) through `past_state` gives the same e_t."""
    model = TCMPModel(tiny_config(len(tokenizer), dropout=0.0, attention_window=2)).eval()
    dialogue = random_dialogues(7, [6])[0]
    with torch.no_grad():
        whole = model(**processor([dialogue])).forthcoming_embeds[0]
        state, pieces = None, []
        for start, end in ((0, 1), (1, 4), (4, 6)):
            out = model(**processor([dialogue[start:end]]), past_state=state, use_cache=True)
            pieces.append(out.forthcoming_embeds[0] if state is None else out.forthcoming_embeds[0, 1:])
            state = out.past_state
    torch.testing.assert_close(torch.cat(pieces), whole, rtol=1e-4, atol=1e-5)
    assert state.num_utterances.tolist() == [6]
    assert state.streams["text"].memory.shape[1] == 2  # the window: h_2, h_3 are what position 6 may read


def test_use_cache_refuses_padded_rows(tokenizer, processor):
    model = TCMPModel(tiny_config(len(tokenizer))).eval()
    with pytest.raises(ValueError, match="use_cache=True needs every utterance slot real"):
        model(**processor(random_dialogues(8, [3, 2])), use_cache=True)


def test_matching_loss_is_clip_symmetric_cross_entropy_within_groups():
    text, audio = torch.randn(5, 4), torch.randn(5, 4)
    groups = torch.tensor([0, 0, 0, 1, 1])
    first = torch.nn.functional.cross_entropy(text[:3] @ audio[:3].T, torch.arange(3))
    first_t = torch.nn.functional.cross_entropy(audio[:3] @ text[:3].T, torch.arange(3))
    second = torch.nn.functional.cross_entropy(text[3:] @ audio[3:].T, torch.arange(2))
    second_t = torch.nn.functional.cross_entropy(audio[3:] @ text[3:].T, torch.arange(2))
    expected = ((3 * first + 2 * second) / 5 + (3 * first_t + 2 * second_t) / 5) / 2
    torch.testing.assert_close(text_audio_matching_loss(text, audio, groups), expected)
