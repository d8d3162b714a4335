"""Data-parallel evaluation: rank detection, sharding and a barrier, nothing model-specific.

The same ``egg-interp evaluate`` command runs alone or under ``torchrun --nproc_per_node N``
/ ``accelerate launch --num_processes N``; both launchers set ``RANK``, ``WORLD_SIZE`` and
``LOCAL_RANK`` (plus ``MASTER_ADDR``/``MASTER_PORT``). Each rank evaluates every
``world_size``-th sample (rank-strided, as VLMEvalKit does), writes its own part file, and
rank 0 merges the parts after a barrier. The process group (gloo on CPU, nccl on CUDA) is
used for that barrier only; nothing is gathered through it.
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeVar

import torch

from egg_interp.errors import InputError

T = TypeVar("T")

BARRIER_TIMEOUT = datetime.timedelta(hours=48)
"""How long a finished rank waits for the others at the final barrier (ranks may finish
hours apart on unequal shards; the default of torch.distributed, 30 minutes, is too short)."""


@dataclass(frozen=True)
class DistInfo:
    """Where this process stands in a data-parallel run.

    Attributes
    ----------
    rank, world_size, local_rank : int
        Global rank, number of processes, and rank on this machine (the GPU index).
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def distributed(self) -> bool:
        """True when more than one process takes part."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """True on rank 0 (the one that merges and reports)."""
        return self.rank == 0


def dist_info() -> DistInfo:
    """Read ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK`` from the environment (defaults 0, 1, 0)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", str(rank)))
    if world < 1 or not 0 <= rank < world:
        raise InputError(f"inconsistent RANK={rank} / WORLD_SIZE={world}")
    return DistInfo(rank, world, local)


def rank_device(device: str | None, info: DistInfo) -> str:
    """The device this rank should use.

    With CUDA available and ``device`` unset or a bare ``"cuda"``, a distributed run puts
    rank ``r`` on ``cuda:LOCAL_RANK`` (one GPU per process); an explicit ``"cuda:i"`` or
    ``"cpu"`` is kept.
    """
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and info.distributed:
        return f"cuda:{info.local_rank}"
    return device


def init_process_group(info: DistInfo, device: str) -> bool:
    """Join the process group (gloo on CPU, nccl on CUDA) when distributed and not yet joined.

    Returns True when this call created the group (the caller then destroys it with
    :func:`shutdown`).
    """
    import torch.distributed as dist

    if not info.distributed or not dist.is_available() or dist.is_initialized():
        return False
    cuda = torch.device(device).type == "cuda"
    if cuda:
        torch.cuda.set_device(torch.device(device))
    dist.init_process_group(
        backend="nccl" if cuda else "gloo",
        rank=info.rank,
        world_size=info.world_size,
        timeout=BARRIER_TIMEOUT,
    )
    return True


def barrier(device: str | None = None) -> None:
    """Wait for every rank (no-op when no process group is initialised)."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return
    if dist.get_backend() == "nccl" and device is not None and torch.device(device).type == "cuda":
        dist.barrier(device_ids=[torch.device(device).index or 0])
    else:
        dist.barrier()


def shutdown() -> None:
    """Destroy the process group if one is initialised."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def shard(items: Sequence[T], rank: int, world_size: int) -> list[tuple[int, T]]:
    """Rank-strided share of ``items`` with each item's position in the full list.

    >>> shard(["a", "b", "c", "d", "e"], 1, 2)
    [(1, 'b'), (3, 'd')]
    """
    return [(i, items[i]) for i in range(rank, len(items), world_size)]
