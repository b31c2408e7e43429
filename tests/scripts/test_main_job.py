"""The main job end to end in its text-only `--tiny` form (the README's command runs the multimodal one)."""

import json

import pytest

import run_main_job
from tcmp.errors import ArgumentsError


def test_tiny_main_job_prints_the_table_and_pretraining_helps(tmp_path, capsys):
    summary = run_main_job.main(["--tiny", "--output_dir", str(tmp_path)])
    printed = capsys.readouterr().out
    for row in ("majority-class baseline", "TCMP fine-tuned from scratch", "TCMP pre-trained, then fine-tuned"):
        assert f"| {row}" in printed
    assert json.loads((tmp_path / "main_job_results.json").read_text()) == summary
    majority, scratch, pretrained = summary["majority"], summary["from_scratch"], summary["pretrained"]
    assert pretrained["test_wa"] > majority["test_wa"] + 0.1
    assert pretrained["test_f1"] > scratch["test_f1"] + 0.1
    assert {"pretrain", "finetune", "finetune_from_scratch"} <= {path.name for path in tmp_path.iterdir()}


def test_a_missing_audio_encoder_folder_is_named(tmp_path, monkeypatch):
    monkeypatch.setattr(run_main_job, "minilm_path", lambda: str(tmp_path))  # the multimodal run, MiniLM or not
    with pytest.raises(ArgumentsError, match=f"--audio_encoder {tmp_path / 'no_hubert'}: no such folder"):
        run_main_job.main(["--audio_encoder", str(tmp_path / "no_hubert"), "--output_dir", str(tmp_path)])
