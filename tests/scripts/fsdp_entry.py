"""
Entry point of the FSDP2 test (`torchrun --nproc_per_node 2`, gloo on CPUs): one SGD step of a tiny TCMP model (eval mode: no dropout)
sharded with `fully_shard` at its `_no_split_modules`, next to the same step of an unsharded copy on both processes'
batches; rank 0 saves both models (the sharded one's full state dict gathered) and the largest gradient difference.
"""

import copy
import json
import os
import sys

import torch
import torch.distributed as dist
from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict
from torch.distributed.fsdp import fully_shard


REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, REPO)

from tcmp import TCMPForPreTraining  # noqa: E402
from tcmp.presets import make_processor, tiny_config, word_tokenizer  # noqa: E402
from tests.conftest import WORDS, random_dialogues  # noqa: E402


def batch_of(processor, rank: int) -> dict:
    batch = dict(processor(random_dialogues(rank, [6, 7, 5])))
    batch["dialogue_ids"] = torch.arange(3) + 3 * rank
    return batch


def main(output_dir: str):
    dist.init_process_group("gloo")
    rank, world_size = dist.get_rank(), dist.get_world_size()
    torch.manual_seed(0)
    processor = make_processor(word_tokenizer([" ".join(WORDS)]))
    # no dropout (eval), so the two runs must agree; each process contrasts its own batch (gathered negatives are
    # tested in tests/distributed), as the reference, which steps on the two batches one after the other, does
    config = tiny_config(len(processor.tokenizer), gather_negatives=False)
    model = TCMPForPreTraining(config).eval()
    reference = copy.deepcopy(model)

    units = [m for m in model.modules() if type(m).__name__ in model._no_split_modules]
    unit_names = sorted({type(m).__name__ for m in units})
    for module in units:
        fully_shard(module)
    fully_shard(model)
    sharded = sum(1 for p in model.parameters() if p.to_local().numel() < p.numel())

    model(**batch_of(processor, rank)).loss.backward()
    reference_loss = sum(reference(**batch_of(processor, r)).loss for r in range(world_size)) / world_size
    reference_loss.backward()
    expected = dict(reference.named_parameters())
    gradient_difference = max(
        (p.grad.full_tensor() - expected[name].grad).abs().max().item() for name, p in model.named_parameters()
    )
    for module in (model, reference):
        torch.optim.SGD(module.parameters(), lr=0.5).step()

    state = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    if rank == 0:
        reference.save_pretrained(os.path.join(output_dir, "reference"))
        model.save_pretrained(os.path.join(output_dir, "fsdp"), state_dict=state)
        with open(os.path.join(output_dir, "fsdp.json"), "w") as handle:
            json.dump({"units": unit_names, "sharded_parameters": sharded,
                       "parameters": len(expected), "gradient_difference": gradient_difference}, handle)
    dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1])
