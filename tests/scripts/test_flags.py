"""A model flag is declared once (`config_flag` / `shape_flag` in ModelArguments): the parser, the config's doc and
checks, the model built, the model card and the checkpoint checks all follow from that line."""

import dataclasses

import pytest
from transformers import HfArgumentParser

from tcmp import TCMPConfig, TCMPForEmotionPreRecognition
from tcmp.errors import ArgumentsError
from tcmp.presets import make_processor, tiny_config, word_tokenizer
from tcmp.training import FINETUNED, FinetuningArguments, ModelArguments, build_model_and_processor, model_card
from tcmp.training.arguments import CONFIG_FLAGS, SHAPE_FLAGS, model_settings, parse_arguments


def flag_help(name: str) -> str:
    parser = HfArgumentParser(ModelArguments)
    return " ".join(next(a.help for a in parser._actions if f"--{name}" in a.option_strings).split())


def test_every_config_flag_names_a_config_field_and_shows_its_doc_as_help():
    config_fields = {field.name for field in dataclasses.fields(TCMPConfig)}
    assert set(CONFIG_FLAGS) >= {"dropout", "modality", "text_pooling", "encoder_chunk_size", "gather_negatives"}
    for name in CONFIG_FLAGS:
        assert name in config_fields
        assert TCMPConfig.field_doc(name) in flag_help(name)
    assert set(SHAPE_FLAGS) == {"hidden_size", "max_text_length", "max_audio_length"}
    with pytest.raises(KeyError, match="does not describe 'no_such_field'"):
        TCMPConfig.field_doc("no_such_field")


def test_the_flags_given_reach_the_model_and_every_config_flag_reaches_the_card(tmp_path):
    flags = ["--text_only", "--hidden_size", "16", "--max_text_length", "12", "--text_pooling", "normalized_mean",
             "--dropout", "0.3", "--num_negatives", "3", "--encoder_chunk_size", "0", "--no_context", "--no_gather_negatives"]
    model_args = parse_arguments((ModelArguments,), flags)[0]
    model, processor = build_model_and_processor(model_args, TCMPForEmotionPreRecognition, ["a b c"], num_labels=2)
    config = model.config
    assert (config.hidden_size, config.text_pooling, config.dropout, config.num_negatives) == (16, "normalized_mean", 0.3, 3)
    assert config.encoder_chunk_size is None and config.no_context and not config.gather_negatives
    assert processor.max_text_length == 12
    args = FinetuningArguments(output_dir=str(tmp_path), report_to="none")
    card = model_card("title", FINETUNED, {}, "start", model, args, {})
    assert model_settings(config) == {name: getattr(config, name) for name in ["hidden_size", *CONFIG_FLAGS]}
    for row in ("| hidden_size | 16 |", "| text_pooling | normalized_mean |", "| dropout | 0.3 |",
                "| num_negatives | 3 |", "| encoder_chunk_size | None |", "| gather_negatives | False |"):
        assert row in card


def test_a_flag_spelling_the_config_cannot_take_fails_at_parse_time():
    with pytest.raises(ArgumentsError, match="--encoder_chunk_size must be 'auto' or a whole number, got 'two'"):
        ModelArguments(encoder_chunk_size="two")


def test_the_feature_cache_rule_applies_once_a_checkpoints_own_encoders_are_known(tmp_path):
    tokenizer = word_tokenizer(["a b c"])
    TCMPForEmotionPreRecognition(tiny_config(len(tokenizer), num_labels=2, audio=False)).save_pretrained(tmp_path)
    make_processor(tokenizer).save_pretrained(tmp_path)
    model_args = parse_arguments((ModelArguments,), ["--model_name_or_path", str(tmp_path), "--use_feature_cache"])[0]
    with pytest.raises(ArgumentsError, match=f"--use_feature_cache needs --freeze_encoders: --model_name_or_path "
                                             f"{tmp_path} was trained with trainable encoders"):
        build_model_and_processor(model_args, TCMPForEmotionPreRecognition, ["a b c"], num_labels=2)
