"""Gradient checkpointing of the encoders and bf16 autocast on CPU work with both TCMP heads."""

import copy

import pytest
import torch

import tcmp
from tcmp.presets import tiny_config
from tests.conftest import random_dialogues


@pytest.mark.filterwarnings("ignore:`gradient_checkpointing_enable` is deprecated:FutureWarning")
@pytest.mark.parametrize("enable", ["gradient_checkpointing_enable", "activation_checkpointing_enable"])
def test_gradient_checkpointing_gives_the_same_loss_and_gradients(tokenizer, make_batch, enable):
    plain = tcmp.TCMPForPreTraining(tiny_config(len(tokenizer), dropout=0.0)).train()
    checkpointed = copy.deepcopy(plain)
    getattr(checkpointed, enable)()
    batch = make_batch(random_dialogues(0, [5, 4]))
    plain_calls, layer_calls = [], []
    plain.tcmp.text_model.encoder.layer[0].attention.register_forward_hook(lambda *args: plain_calls.append(1))
    checkpointed.tcmp.text_model.encoder.layer[0].attention.register_forward_hook(lambda *args: layer_calls.append(1))

    torch.manual_seed(3)  # the encoders' dropout is on: the recomputation must replay the same masks
    plain_loss = plain(**batch).loss
    plain_loss.backward()
    torch.manual_seed(3)
    checkpointed_loss = checkpointed(**batch).loss
    checkpointed_loss.backward()

    assert len(plain_calls) >= 1 and len(layer_calls) == 2 * len(plain_calls)  # each forward is recomputed in backward
    torch.testing.assert_close(checkpointed_loss, plain_loss)
    for (name, p), q in zip(plain.named_parameters(), checkpointed.parameters()):
        assert (p.grad is None) == (q.grad is None), name
        if p.grad is not None:
            torch.testing.assert_close(q.grad, p.grad, rtol=1e-4, atol=1e-6, msg=name)


@pytest.mark.parametrize("head", [tcmp.TCMPForPreTraining, tcmp.TCMPForEmotionPreRecognition])
def test_bf16_autocast_on_cpu(tokenizer, make_batch, head):
    model = head(tiny_config(len(tokenizer), num_labels=3, dropout=0.0)).train()
    batch = make_batch(random_dialogues(1, [6, 3]))
    if head is tcmp.TCMPForEmotionPreRecognition:
        batch["labels"] = torch.tensor([0, 2])
    reference = model(**batch).loss
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = model(**batch).loss
    loss.backward()
    assert torch.isfinite(loss) and loss.item() == pytest.approx(reference.item(), rel=0.1)
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
