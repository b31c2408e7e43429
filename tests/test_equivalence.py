"""
One encoding path: every way of running a model gives the same numbers (1e-5), for every text pooling × speech front
end (layer norm, group norm) × head — plain forward, with hidden states and attentions, `return_dict=False`, each
dialogue alone, precomputed (cached) encoder features, `get_*_features`, `torch.export`, the streaming predictor and
the exported streaming step, with utterances of very different lengths.
"""

import numpy as np
import pytest
import torch

from tcmp import StreamingPreRecognizer, TCMPForEmotionPreRecognition, TCMPForPreTraining, TCMPModel
from tcmp.configuration_tcmp import TEXT_POOLINGS
from tcmp.export import TCMPStreamingStep
from tcmp.presets import tiny_config

from .conftest import FRONT_ENDS, random_dialogues

HEADS = (TCMPModel, TCMPForPreTraining, TCMPForEmotionPreRecognition)
SETTINGS = [(pooling, front_end) for pooling in TEXT_POOLINGS for front_end in FRONT_ENDS]


def close(got, expected, what):
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5, msg=lambda m: f"{what}: {m}")


def dialogues():
    """Three dialogues whose audio runs from 0.05 s to 1.5 s: very different lengths in one batch."""
    found = random_dialogues(3, [4, 2, 3])
    found[0][1]["audio"] = np.random.default_rng(1).standard_normal(24000).astype(np.float32)
    found[2][0]["audio"] = found[2][0]["audio"][:800].copy()
    found[1][1]["text"] = " ".join(["hello"] * 30)
    return found


@pytest.fixture(scope="module", params=SETTINGS, ids=lambda s: "-".join(s))
def models(request, tokenizer):
    """The three heads sharing one set of weights, for one text pooling and speech front end."""
    pooling, front_end = request.param
    torch.manual_seed(0)
    config = tiny_config(
        len(tokenizer), num_labels=3, dropout=0.0, attention_window=2, text_pooling=pooling, feat_extract_norm=front_end
    )
    recognizer = TCMPForEmotionPreRecognition(config).eval()
    pretraining = TCMPForPreTraining(config).eval()
    pretraining.tcmp.load_state_dict(recognizer.tcmp.state_dict())
    return {TCMPModel: recognizer.tcmp, TCMPForPreTraining: pretraining, TCMPForEmotionPreRecognition: recognizer}


def compared(output) -> dict:
    """The outputs that must agree, by name."""
    names = ("logits", "loss", "prediction_scores", "predicted_embeds", "target_embeds", "forthcoming_embeds",
             "text_embeds", "audio_embeds", "fused_embeds")
    return {name: getattr(output, name) for name in names if getattr(output, name, None) is not None}


def per_dialogue(head, output, row, length) -> dict:
    """One dialogue's share of a batched output: its row, or its predictions (pre-training)."""
    if head is TCMPForPreTraining:
        rows = output.prediction_dialogue_ids == row
        return {"predicted_embeds": output.predicted_embeds[rows], "target_embeds": output.target_embeds[rows]}
    if head is TCMPModel:
        return {"forthcoming_embeds": output.forthcoming_embeds[row, : length + 1],
                "audio_embeds": output.audio_embeds[row, :length], "text_embeds": output.text_embeds[row, :length]}
    return {"logits": output.logits[row]}


@pytest.mark.parametrize("head", HEADS, ids=lambda h: h.__name__)
def test_every_eager_path_gives_the_same_numbers(head, models, processor):
    model, base = models[head], models[TCMPModel]
    batch = dict(processor(dialogues()))
    with torch.no_grad():
        expected = model(**batch)
        for what, output in {
            "output_hidden_states": model(**batch, output_hidden_states=True),
            "output_attentions": model(**batch, output_attentions=True),
        }.items():
            assert output.text_model_output.pooler_output is not None, what
            for name, value in compared(output).items():
                close(value, compared(expected)[name], f"{what}: {name}")
        as_tuple = model(**batch, return_dict=False)
        for got, value in zip(as_tuple, expected.to_tuple()):
            close(got, value, "return_dict=False")
        for row, dialogue in enumerate(dialogues()):
            alone = model(**processor([dialogue]))
            for name, value in per_dialogue(head, alone, 0, len(dialogue)).items():
                close(per_dialogue(head, expected, row, len(dialogue))[name], value, f"dialogue {row} alone: {name}")
        flat = [u for dialogue in dialogues() for u in dialogue]  # what the feature cache stores: each utterance alone
        singles = [processor([[u]]) for u in flat]
        cached = {
            "text_features": torch.cat([base.pooled_text_features(s["input_ids"], s["attention_mask"]) for s in singles]),
            "audio_features": torch.cat(
                [base.pooled_audio_features(s["input_values"], s["audio_attention_mask"]) for s in singles]
            ),
        }
        for name, value in compared(model(utterance_mask=batch["utterance_mask"], **cached)).items():
            close(value, compared(expected)[name], f"cached features: {name}")
        if head is TCMPModel:
            mask = batch["utterance_mask"]
            text = base.get_text_features(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])
            audio = base.get_audio_features(batch["input_values"], batch["audio_attention_mask"])
            close(text.pooler_output, expected.text_embeds[mask], "get_text_features")
            close(audio.pooler_output, expected.audio_embeds[mask], "get_audio_features")


def test_the_exported_model_gives_the_eager_numbers(models, processor):
    """The deployed head (`TCMPForPreTraining` has a data-dependent number of predictions: not exported)."""
    model = models[TCMPForEmotionPreRecognition]
    batch = dict(processor(dialogues()))
    program = torch.export.export(model, (), kwargs=batch)
    with torch.no_grad():
        expected = compared(model(**batch))
        for name, value in compared(program.module()(**batch)).items():
            close(value, expected[name], f"exported: {name}")


@pytest.mark.slow
def test_streaming_and_the_exported_step_give_the_whole_dialogue_numbers(models, processor):
    """Two sessions turn by turn (one batch a turn), eager and exported, against each dialogue's whole-context logits."""
    model = models[TCMPForEmotionPreRecognition]
    sessions = [dialogues()[0], dialogues()[2]]
    turns = min(len(d) for d in sessions)
    step = TCMPStreamingStep(model)
    first = step.inputs(processor([[d[0]] for d in sessions]), step.initial_state(2))
    run = torch.export.export(step, first, dynamic_shapes=step.dynamic_shapes()).module()
    recognizer = StreamingPreRecognizer(model, processor)
    state = step.initial_state(2)
    with torch.no_grad():
        for turn in range(turns):
            utterances = {f"s{i}": d[turn] for i, d in enumerate(sessions)}
            streamed = recognizer.add_utterances(utterances)
            logits, *state = run(*step.inputs(processor([[u] for u in utterances.values()]), tuple(state)))
            for i, dialogue in enumerate(sessions):
                whole = model(**processor([dialogue[: turn + 1]])).logits[0]
                close(streamed[f"s{i}"].logits, whole, f"streaming, session {i}, turn {turn}")
                close(logits[i], whole, f"exported step, session {i}, turn {turn}")
