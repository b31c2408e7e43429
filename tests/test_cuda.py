"""
The model on a CUDA device: both heads equal the CPU (forward and backward), bf16 autocast, the encoder chunking
choices, a Trainer step and save/load. Every test needs CUDA, so without a GPU they are skipped (the only place in
the suite where a skip is the honest outcome); `benchmarks/gpu_check.sh` runs them on a GPU.
"""

import copy

import pytest
import torch
from transformers import Trainer, TrainingArguments

from tcmp import TCMPForEmotionPreRecognition, TCMPForPreTraining
from tcmp.presets import tiny_config

from .conftest import random_dialogues


pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
TOLERANCE = {"rtol": 1e-3, "atol": 1e-4}
"""CPU vs CUDA in fp32 with TF32 off: the same maths, summed in another order."""


@pytest.fixture(autouse=True)
def _no_tf32():
    matmul, cudnn = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = matmul, cudnn


def pretraining_batch(make_batch, seed=0):
    batch = make_batch(random_dialogues(seed, [7, 5, 9]))
    batch["dialogue_ids"] = torch.arange(3)
    return batch


def on(device, batch):
    return {key: value.to(device) if torch.is_tensor(value) else value for key, value in batch.items()}


def forward_backward(model, batch):
    """Forward and backward in eval mode (no dropout, so CPU and CUDA compare): cuDNN's GRU refuses a backward pass
    in eval mode, so cuDNN is off for it (training mode, as in the Trainer step below, uses cuDNN)."""
    model.zero_grad(set_to_none=True)
    with torch.backends.cudnn.flags(enabled=False):
        outputs = model(**batch)
        outputs.loss.backward()
    grads = {name: p.grad.detach().cpu() for name, p in model.named_parameters() if p.grad is not None}
    return outputs, grads


@pytest.mark.parametrize("head", ["pretraining", "prerecognition"])
def test_forward_and_backward_on_cuda_equal_the_cpu(config, make_batch, head):
    if head == "pretraining":
        model, batch = TCMPForPreTraining(config).eval(), pretraining_batch(make_batch)
        outputs_of = lambda out: (out.loss, out.predicted_embeds, out.target_embeds)  # noqa: E731
    else:
        model = TCMPForEmotionPreRecognition(config).eval()
        batch = make_batch(random_dialogues(1, [4, 6, 3]))
        batch["labels"] = torch.tensor([0, 2, 1])
        outputs_of = lambda out: (out.loss, out.logits)  # noqa: E731
    cuda_model = copy.deepcopy(model).cuda()
    cpu_out, cpu_grads = forward_backward(model, batch)
    cuda_out, cuda_grads = forward_backward(cuda_model, on("cuda", batch))
    for expected, actual in zip(outputs_of(cpu_out), outputs_of(cuda_out)):
        torch.testing.assert_close(actual.detach().cpu(), expected.detach(), **TOLERANCE)
    assert cuda_grads.keys() == cpu_grads.keys() and cpu_grads
    for name, grad in cpu_grads.items():
        torch.testing.assert_close(cuda_grads[name], grad, **TOLERANCE, msg=name)


def test_bf16_autocast_runs_close_to_fp32(config, make_batch):
    model = TCMPForPreTraining(config).eval().cuda()
    batch = on("cuda", pretraining_batch(make_batch))
    fp32 = model(**batch).loss
    with torch.backends.cudnn.flags(enabled=False), torch.autocast("cuda", dtype=torch.bfloat16):
        bf16 = model(**batch)
        bf16.loss.backward()
    assert torch.isfinite(bf16.loss) and bf16.predicted_embeds.dtype == torch.bfloat16
    assert abs(bf16.loss.item() - fp32.item()) < 0.05 * abs(fp32.item()) + 0.05
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


@pytest.mark.parametrize("chunk_size", [2, "auto"])
def test_encoder_chunks_equal_one_pass_on_cuda(tokenizer, make_batch, chunk_size):
    one_pass = TCMPForPreTraining(tiny_config(len(tokenizer), dropout=0.0, encoder_chunk_size=None)).eval().cuda()
    chunked = copy.deepcopy(one_pass)
    chunked.config.encoder_chunk_size = chunk_size
    batch = on("cuda", pretraining_batch(make_batch, seed=3))
    with torch.no_grad():
        expected, actual = one_pass(**batch), chunked(**batch)
    torch.testing.assert_close(actual.loss, expected.loss, **TOLERANCE)
    torch.testing.assert_close(actual.predicted_embeds, expected.predicted_embeds, **TOLERANCE)


class Dialogues(torch.utils.data.Dataset):
    def __init__(self, dialogues):
        self.dialogues = dialogues

    def __len__(self):
        return len(self.dialogues)

    def __getitem__(self, i):
        return {"dialogue": self.dialogues[i], "index": i}


def test_trainer_steps_on_cuda_then_save_and_load(config, make_batch, tmp_path):
    model = TCMPForPreTraining(config)
    before = {name: p.detach().clone() for name, p in model.named_parameters()}

    def collate(items):
        batch = make_batch([item["dialogue"] for item in items])
        batch["dialogue_ids"] = torch.tensor([item["index"] for item in items])
        return batch

    args = TrainingArguments(str(tmp_path / "run"), max_steps=2, per_device_train_batch_size=4, learning_rate=1e-3,
                             report_to="none", save_strategy="no", remove_unused_columns=False, disable_tqdm=True)
    trainer = Trainer(model=model, args=args, train_dataset=Dialogues(random_dialogues(5, [6, 7, 5, 8, 6, 7, 5, 6])), data_collator=collate)
    assert trainer.args.device.type == "cuda"
    result = trainer.train()
    assert result.global_step == 2 and result.training_loss == result.training_loss  # finite, not NaN
    assert next(model.parameters()).device.type == "cuda"
    assert any(not torch.equal(p.detach().cpu(), before[name].cpu()) for name, p in model.named_parameters())

    model.save_pretrained(tmp_path / "saved")
    loaded = TCMPForPreTraining.from_pretrained(tmp_path / "saved").cuda().eval()
    for name, tensor in model.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[name], tensor, rtol=0, atol=0)
    batch = on("cuda", pretraining_batch(make_batch))
    with torch.no_grad():
        torch.testing.assert_close(loaded(**batch).loss, model.eval()(**batch).loss, rtol=0, atol=0)
