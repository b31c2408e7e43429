"""
Pre-training across processes (DDP, FSDP): every process's utterances as candidates, gathered with their gradients
(open_clip's design), and the counts that normalise the losses over all processes.
"""

import torch
import torch.distributed as dist


def gathering_world_size(gather_negatives: bool) -> int:
    """Processes whose utterances serve as candidates: all of them with `gather_negatives` under torch.distributed."""
    if gather_negatives and dist.is_available() and dist.is_initialized():
        return dist.get_world_size()
    return 1


def global_count(count: int, world_size: int, device) -> int:
    """`count` summed over the processes (the normaliser of a loss averaged over all of them)."""
    if world_size == 1:
        return count
    total = torch.tensor([count], device=device)
    dist.all_reduce(total)
    return int(total)


def gather_rows(tensor: torch.Tensor, world_size: int, fill: float = 0) -> torch.Tensor:
    """Every process's rows, each process's block padded to the longest with `fill`; gradients flow back."""
    size = torch.tensor([tensor.shape[0]], device=tensor.device)
    sizes = [torch.zeros_like(size) for _ in range(world_size)]
    dist.all_gather(sizes, size)
    longest = int(max(sizes))
    padded = torch.cat([tensor, tensor.new_full((longest - tensor.shape[0], *tensor.shape[1:]), fill)])
    return AllGather.apply(padded)


class AllGather(torch.autograd.Function):
    """All processes' equal-sized blocks, concatenated; each block's gradient is summed over the processes' losses."""

    @staticmethod
    def forward(ctx, block: torch.Tensor) -> torch.Tensor:
        blocks = [torch.empty_like(block) for _ in range(dist.get_world_size())]
        dist.all_gather(blocks, block.contiguous())
        return torch.cat(blocks)

    @staticmethod
    def backward(ctx, gradient: torch.Tensor) -> torch.Tensor:
        gradient = gradient.contiguous()
        dist.all_reduce(gradient)
        return gradient.chunk(dist.get_world_size())[dist.get_rank()]


def candidate_pool(flat: dict, negatives: dict, utterance_dialogue: torch.Tensor, world_size: int):
    """
    The forthcoming-prediction candidates per stream: the batch's utterances, then the extra negatives — every
    process's when `world_size` > 1 (open_clip's gather design: each process scores its own predictions against
    all). Returns them, their dialogue ids (-1: extra negative, -2: padding) and where this process's utterances start.
    """
    extra_dialogue = torch.full(
        (next(iter(negatives.values())).shape[0] if negatives else 0,), -1, device=utterance_dialogue.device
    )
    if world_size == 1:
        candidates = {s: torch.cat([v, negatives[s]]) if s in negatives else v for s, v in flat.items()}
        return candidates, torch.cat([utterance_dialogue, extra_dialogue]), 0
    dialogue = gather_rows(utterance_dialogue, world_size, fill=-2)
    label_offset = dist.get_rank() * (dialogue.shape[0] // world_size)
    candidates = {s: gather_rows(v, world_size) for s, v in flat.items()}
    if negatives:
        extra_dialogue = gather_rows(extra_dialogue, world_size, fill=-2)
        candidates = {s: torch.cat([v, gather_rows(negatives[s], world_size)]) for s, v in candidates.items()}
    return candidates, torch.cat([dialogue, extra_dialogue]), label_offset


__all__ = ["gathering_world_size", "global_count", "gather_rows", "AllGather", "candidate_pool"]
