"""Cached frozen-encoder features give the same training and evaluation as encoding every batch."""

import copy

import pytest
import torch
from datasets import Dataset, DatasetDict

import tcmp
from tcmp.collator import TCMPDataCollator
from tcmp.feature_cache import cached_feature_dataset
from tcmp.presets import make_processor, tiny_config
from tests.conftest import FRONT_ENDS, random_dialogues


def prerecognition_rows(seed, count, audio_folder=None):
    """
    Rows shaped like the pre-recognition datasets, sharing utterances across rows: text-only (no audio paths), or
    with each utterance's audio in a WAV file of `audio_folder`.
    """
    dialogue = random_dialogues(seed, [count + 3], audio=audio_folder is not None)[0]
    paths = [None] * len(dialogue)
    if audio_folder is not None:
        import soundfile

        for i, utterance in enumerate(dialogue):
            paths[i] = str(audio_folder / f"d{seed}_{i}.wav")
            soundfile.write(paths[i], utterance["audio"], utterance["sampling_rate"], subtype="FLOAT")
    rows = {k: [] for k in ("sample_id", "dialogue_id", "utterance_id", "text", "speaker", "audio_path", "label")}
    for end in range(1, count + 1):
        context = slice(max(0, end - 4), end)
        rows["sample_id"].append(f"d{seed}_{end}")
        rows["dialogue_id"].append(f"d{seed}")
        rows["utterance_id"].append(list(range(max(0, end - 4), end)))
        rows["text"].append([u["text"] for u in dialogue[context]])
        rows["speaker"].append([u["speaker"] for u in dialogue[context]])
        rows["audio_path"].append(paths[context])
        rows["label"].append(end % 3)
    if audio_folder is not None:
        rows["audio_start"] = rows["audio_end"] = [[None] * len(p) for p in rows["audio_path"]]
    return Dataset.from_dict(rows)


def frozen_model(tokenizer, head=tcmp.TCMPForEmotionPreRecognition, audio=False, **kwargs):
    torch.manual_seed(1)
    return head(tiny_config(len(tokenizer), audio=audio, num_labels=3, freeze_encoders=True, dropout=0.1, **kwargs))


def train(model, rows, collate, steps=4, batch_size=3):
    """A few AdamW steps with a fixed seed (dropout on); returns the losses."""
    torch.manual_seed(7)
    model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    losses = []
    for step in range(steps):
        batch = collate([rows[(step * batch_size + i) % len(rows)] for i in range(batch_size)])
        loss = model(**batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    return losses


def test_fine_tuning_and_eval_equal_the_uncached_run(tokenizer, processor, tmp_path):
    data = DatasetDict(train=prerecognition_rows(0, 9), validation=prerecognition_rows(1, 4))
    cached_model = frozen_model(tokenizer)
    plain_model = copy.deepcopy(cached_model)
    cached, feature_collator = cached_feature_dataset(data, cached_model, processor, cache_dir=str(tmp_path))
    assert cached["train"].num_rows == 9 and "feature_index" in cached["validation"].column_names
    assert feature_collator.text_features.shape[0] == 9 + 3 + 4 + 3 - 6  # distinct utterances of both splits

    plain_collator = TCMPDataCollator.for_model(processor, plain_model.config)
    plain_losses = train(plain_model, list(data["train"]), plain_collator)
    cached_losses = train(cached_model, list(cached["train"]), feature_collator)
    assert cached_losses == pytest.approx(plain_losses, rel=1e-4)

    cached_model.eval(), plain_model.eval()
    with torch.no_grad():
        plain_logits = plain_model(**plain_collator(list(data["validation"]))).logits
        cached_logits = cached_model(**feature_collator(list(cached["validation"]))).logits
    torch.testing.assert_close(cached_logits, plain_logits, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("front_end", FRONT_ENDS)
def test_cached_audio_features_equal_the_uncached_run(tokenizer, processor, tmp_path, front_end):
    data = DatasetDict(train=prerecognition_rows(4, 5, tmp_path), validation=prerecognition_rows(5, 6, tmp_path))
    model = frozen_model(tokenizer, audio=True, feat_extract_norm=front_end).eval()
    cached, feature_collator = cached_feature_dataset(data, model, processor, cache_dir=str(tmp_path), batch_size=4)
    assert feature_collator.audio_features.shape[0] == 5 + 6  # distinct utterances of both splits
    plain_collator = TCMPDataCollator.for_model(processor, model.config)
    with torch.no_grad():
        for split in ("train", "validation"):
            plain = model(**plain_collator(list(data[split]))).logits
            fast = model(**feature_collator(list(cached[split]))).logits
            torch.testing.assert_close(fast, plain, rtol=0, atol=1e-5)


def test_pretraining_batches_equal_the_uncached_run(tokenizer, processor, tmp_path):
    windows = prerecognition_rows(2, 6).remove_columns("label").add_column("dialogue_index", list(range(6)))
    model = frozen_model(tokenizer, head=tcmp.TCMPForPreTraining).eval()
    cached, feature_collator = cached_feature_dataset(windows, model, processor, cache_dir=str(tmp_path))
    batch = feature_collator(list(cached))
    assert batch["dialogue_ids"].tolist() == list(range(6)) and "input_ids" not in batch
    with torch.no_grad():
        plain = model(**TCMPDataCollator.for_model(processor, model.config)(list(windows)))
        fast = model(**batch)
    torch.testing.assert_close(fast.loss, plain.loss, rtol=1e-4, atol=1e-5)


def test_cache_is_reused_and_invalidated_by_another_encoder_or_processor(tokenizer, processor, tmp_path):
    data = prerecognition_rows(3, 6)
    calls = []

    def run(model, proc=processor):
        calls.clear()
        handle = model.tcmp.text_model.register_forward_hook(lambda *args: calls.append(1))
        _, collator = cached_feature_dataset(data, model, proc, cache_dir=str(tmp_path))
        handle.remove()
        return len(calls), collator.text_features

    model = frozen_model(tokenizer)
    first_calls, first = run(model)
    assert first_calls > 0 and len(list(tmp_path.glob("tcmp-features-*.arrow"))) == 1
    again_calls, again = run(copy.deepcopy(model))
    assert again_calls == 0 and torch.equal(again, first)

    other = copy.deepcopy(model)
    with torch.no_grad():
        other.tcmp.text_model.embeddings.word_embeddings.weight.add_(0.5)
    other_calls, other_features = run(other)
    assert other_calls > 0 and not torch.allclose(other_features, first)
    shorter_calls, _ = run(model, make_processor(tokenizer, max_text_length=3))
    assert shorter_calls > 0 and len(list(tmp_path.glob("tcmp-features-*.arrow"))) == 3
    mean_pooled = copy.deepcopy(model)
    mean_pooled.config.text_pooling = "normalized_mean"
    pooled_calls, pooled = run(mean_pooled)
    assert pooled_calls > 0 and not torch.allclose(pooled, first)
    torch.testing.assert_close(pooled.norm(dim=-1), torch.ones(len(pooled)))


def test_the_same_utterances_in_other_rows_or_splits_reuse_the_cache(tokenizer, processor, tmp_path):
    data = prerecognition_rows(4, 8)
    model = frozen_model(tokenizer)
    cached, collator = cached_feature_dataset(data, model, processor, cache_dir=str(tmp_path))
    calls = []
    handle = model.tcmp.text_model.register_forward_hook(lambda *args: calls.append(1))
    folds = DatasetDict({"train": data.select([7, 5, 3, 1, 0]), "validation": data.select([2, 4, 6])})  # as a CV fold cuts it
    refolded, fold_collator = cached_feature_dataset(folds, model, processor, cache_dir=str(tmp_path))
    handle.remove()
    assert calls == [] and len(list(tmp_path.glob("tcmp-features-*.arrow"))) == 1
    for split, rows in (("train", [7, 5, 3, 1, 0]), ("validation", [2, 4, 6])):
        for row, original in zip(refolded[split], rows):  # each row's utterances get the features they had
            assert torch.equal(fold_collator.text_features[row["feature_index"]],
                               collator.text_features[cached[original]["feature_index"]])


def test_needs_frozen_encoders(tokenizer, processor, tmp_path):
    model = tcmp.TCMPForEmotionPreRecognition(tiny_config(len(tokenizer), audio=False, num_labels=3))
    with pytest.raises(ValueError, match="freeze_encoders=True"):
        cached_feature_dataset(prerecognition_rows(0, 2), model, processor, cache_dir=str(tmp_path))


def test_builds_of_one_cache_at_once_encode_it_once(tokenizer, processor, tmp_path):
    """Cross-validation folds started together need the same cache: the second waits for the first's file."""
    import threading
    import time

    data = prerecognition_rows(5, 8)
    model = frozen_model(tokenizer)
    calls = []

    def slow_encoder(*args):
        calls.append(1)
        time.sleep(0.05)  # long enough that the two builds overlap

    model.tcmp.text_model.register_forward_hook(slow_encoder)
    _, alone = cached_feature_dataset(data, copy.deepcopy(model), processor, cache_dir=str(tmp_path / "alone"), batch_size=2)
    one_build = len(calls)
    assert one_build > 2
    calls.clear()
    start, results = threading.Barrier(2), []

    def build():
        start.wait()
        results.append(cached_feature_dataset(data, copy.deepcopy(model), processor, cache_dir=str(tmp_path / "together"),
                                              batch_size=2)[1])

    threads = [threading.Thread(target=build) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(calls) == one_build and len(results) == 2
    for collator in results:
        assert torch.equal(collator.text_features, alone.text_features)
