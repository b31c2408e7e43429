"""run_pretrain.py --streaming: trains from manifest shards, and a killed run resumes mid-stream to the same end."""

import json
import random

import pytest
import torch
from transformers import AutoModelForPreTraining

import run_pretrain
from tcmp.data.iterable_windows import stream_pretraining_windows
from tcmp.errors import ArgumentsError

from .conftest import tiny_flags
from .test_distributed_and_resume import KillAfterFirstCheckpoint, Killed, final_metrics


WORDS = "hello how are you fine thanks i am sad happy great terrible okay really what why no yes good bad".split()


def write_dialogues(path, prefix, count, rng):
    with open(path, "w") as handle:
        for k in range(count):
            utterances = [{"text": " ".join(rng.choices(WORDS, k=rng.randint(2, 8))), "speaker": "AB"[i % 2]}
                          for i in range(rng.randint(8, 20))]
            handle.write(json.dumps({"dialogue_id": f"{prefix}{k}", "utterances": utterances}) + "\n")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    folder = tmp_path_factory.mktemp("shards")
    rng = random.Random(0)
    (folder / "train").mkdir()
    for shard in range(4):
        write_dialogues(folder / "train" / f"part{shard}.jsonl", f"t{shard}-", 6, rng)
    for split in ("validation", "test"):
        write_dialogues(folder / f"{split}.jsonl", split, 6, rng)
    options = {"validation": str(folder / "validation.jsonl"), "test": str(folder / "test.jsonl"), "shuffle_buffer": 16}
    return str(folder / "train"), options


def streaming_flags(corpus, output_dir, *extra):
    train, options = corpus
    return tiny_flags(output_dir, "--streaming", "--text_only", "--learning_rate", "1e-3", *extra,
                      dataset=train, dataset_options=options)


def test_streaming_needs_max_steps(corpus, tmp_path):
    with pytest.raises(ArgumentsError, match="--streaming needs --max_steps"):
        run_pretrain.main(streaming_flags(corpus, tmp_path))


@pytest.mark.slow
def test_streaming_run_resumes_mid_stream_to_the_same_end(corpus, tmp_path):
    flags = ["--max_steps", "4", "--save_strategy", "steps", "--save_steps", "2", "--eval_strategy", "steps",
             "--eval_steps", "2", "--save_total_limit", "5"]
    whole = run_pretrain.main(streaming_flags(corpus, tmp_path / "whole", *flags))
    assert "test_text_r1@11" in whole
    assert len(list(stream_pretraining_windows(corpus[0])[0])) > 4 * 4  # the four steps stay within the first pass
    with pytest.raises(Killed):
        run_pretrain.main(streaming_flags(corpus, tmp_path / "killed", *flags), callbacks=[KillAfterFirstCheckpoint()])
    (checkpoint,) = (tmp_path / "killed").glob("checkpoint-*")
    resumed = run_pretrain.main(
        streaming_flags(corpus, tmp_path / "killed", *flags, "--resume_from_checkpoint", str(checkpoint))
    )
    assert final_metrics(resumed) == final_metrics(whole)
    expected = AutoModelForPreTraining.from_pretrained(tmp_path / "whole").state_dict()
    again = AutoModelForPreTraining.from_pretrained(tmp_path / "killed").state_dict()
    for name, tensor in expected.items():
        torch.testing.assert_close(again[name], tensor, rtol=0, atol=0)


def test_streaming_with_evaluation_needs_a_validation_manifest_before_any_work(corpus, tmp_path):
    train, options = corpus
    flags = tiny_flags(tmp_path, "--streaming", "--text_only", "--max_steps", "2", dataset=train,
                       dataset_options={"test": options["test"]})
    with pytest.raises(ArgumentsError, match="--streaming with evaluation needs a validation manifest"):
        run_pretrain.main(flags)
