"""Batches by tensor indexing: the whole split lives in memory as tensors.

The classic ``Dataset`` + ``DataLoader`` path builds every sample in Python and collates
it again; for MNIST-sized data that costs more than the model. ``TensorBatches`` instead
draws one seeded permutation per epoch and slices the tensors.

Under DDP every rank takes a disjoint, equally sized shard of that permutation (padded by
wrap-around only when the size does not divide evenly), so the union of the shards is the
whole split. Lightning only injects a ``DistributedSampler`` into ``DataLoader``; this
iterable does the sharding itself and exposes ``sampler.set_epoch`` so Lightning's fit
loop tells it the epoch (which also keeps the shuffle right after a resume).
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
import torch.distributed as dist


def _rank_and_world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


class EpochShuffle:
    """Seeded per-epoch permutation of ``n`` indices, sharded by rank."""

    def __init__(self, n: int, shuffle: bool, seed: int) -> None:
        self.n, self.shuffle, self.seed, self.epoch = n, shuffle, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def indices(self, rank: int = 0, world_size: int = 1) -> torch.Tensor:
        if self.shuffle:
            gen = torch.Generator().manual_seed(self.seed + self.epoch)
            order = torch.randperm(self.n, generator=gen)
        else:
            order = torch.arange(self.n)
        if world_size == 1:
            return order
        per_rank = -(-self.n // world_size)  # ceil
        padded = torch.cat([order, order[: per_rank * world_size - self.n]])
        return padded[rank::world_size]


class TensorBatches:
    """An iterable of ``(inputs, targets)`` batches cut from in-memory tensors."""

    def __init__(
        self,
        inputs: torch.Tensor,
        targets: torch.Tensor,
        batch_size: int,
        shuffle: bool = False,
        seed: int = 0,
        drop_last: bool = False,
    ) -> None:
        assert len(inputs) == len(targets), "inputs and targets differ in length"
        self.inputs, self.targets = inputs, targets
        self.batch_size, self.drop_last = batch_size, drop_last
        self.sampler = EpochShuffle(len(inputs), shuffle, seed)
        self.batch_sampler = None  # Lightning's DataLoader introspection reads both attributes

    def __len__(self) -> int:
        _, world = _rank_and_world()
        n = -(-len(self.inputs) // world)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        order = self.sampler.indices(*_rank_and_world()).to(self.inputs.device)  # one copy an epoch
        for start in range(0, len(order), self.batch_size):
            idx = order[start : start + self.batch_size]
            if self.drop_last and len(idx) < self.batch_size:
                break
            yield self.inputs[idx], self.targets[idx]
