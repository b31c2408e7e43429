"""
Negatives gathered across processes: two CPU processes (gloo), each with half of the batch, give the loss and the
(averaged, as DDP averages them) gradients of one process given the union of both halves.
"""

import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from tcmp import TCMPForPreTraining
from tcmp.presets import make_processor, tiny_config, word_tokenizer

from ..conftest import WORDS, random_dialogues


LENGTHS = [[5, 3], [4, 6]]  # rank 0's dialogues, rank 1's dialogues


def _setup(extra_negatives: bool):
    tokenizer = word_tokenizer([" ".join(WORDS)])
    processor = make_processor(tokenizer)
    torch.manual_seed(0)
    model = TCMPForPreTraining(tiny_config(len(tokenizer), dropout=0.0)).eval()  # no dropout: deterministic
    halves = [random_dialogues(seed, lengths) for seed, lengths in enumerate(LENGTHS)]
    negatives = [random_dialogues(10 + seed, [2])[0] if extra_negatives else None for seed in range(2)]
    return model, processor, halves, negatives


def _inputs(processor, dialogues, negatives, first_id):
    batch = dict(processor(dialogues))
    batch["dialogue_ids"] = torch.arange(first_id, first_id + len(dialogues))
    if negatives is not None:
        extra = processor([negatives])
        batch.update({f"negative_{k}": v for k, v in extra.items() if k != "utterance_mask"})
    return batch


def _loss_and_gradient(model, batch):
    out = model(**batch)
    model.zero_grad()
    out.loss.backward()
    gradient = torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])
    parts = torch.stack([out.matching_loss, out.text_prediction_loss, out.audio_prediction_loss, out.fused_prediction_loss])
    return out.loss.detach(), parts.detach(), gradient


def _worker(rank: int, port: int, results: dict):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), OMP_NUM_THREADS="1")
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=2)
    try:
        for extra_negatives in (False, True):
            model, processor, halves, negatives = _setup(extra_negatives)
            first_id = sum(len(half) for half in halves[:rank])
            batch = _inputs(processor, halves[rank], negatives[rank], first_id)
            loss, parts, gradient = _loss_and_gradient(model, batch)
            for tensor in (loss, parts, gradient):
                dist.all_reduce(tensor)
                tensor /= 2  # what DDP does with the gradients, and the Trainer with the logged loss
            results[(rank, extra_negatives)] = (loss, parts, gradient)
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def two_processes():
    results = mp.Manager().dict()
    mp.spawn(_worker, args=(_free_port(), results), nprocs=2, join=True)
    return dict(results)


@pytest.mark.parametrize("extra_negatives", [False, True])
def test_two_processes_equal_one_process_with_the_union(two_processes, extra_negatives):
    model, processor, halves, negatives = _setup(extra_negatives)
    union_negatives = None if not extra_negatives else negatives[0] + negatives[1]
    loss, parts, gradient = _loss_and_gradient(model, _inputs(processor, halves[0] + halves[1], union_negatives, 0))
    for rank in (0, 1):
        gathered_loss, gathered_parts, gathered_gradient = two_processes[(rank, extra_negatives)]
        torch.testing.assert_close(gathered_loss, loss, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(gathered_parts, parts, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(gathered_gradient, gradient, rtol=1e-4, atol=1e-6)


def test_without_gathering_each_process_contrasts_its_own_batch_only():
    model, processor, halves, _ = _setup(False)
    alone = model(**_inputs(processor, halves[0], None, 0))
    assert alone.prediction_scores.shape[-1] == sum(LENGTHS[0])  # the candidates are this batch's utterances
