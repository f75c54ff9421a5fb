"""Data-parallel training across processes (PyTorch DDP, launched by `torchrun`), in a few small helpers.

`torchrun --nproc-per-node N -m openlt train CONFIG` sets RANK / WORLD_SIZE / LOCAL_RANK in each process;
`setup` reads them and joins the process group (NCCL on CUDA, gloo on the CPU). Without them (a plain
`openlt train`) there is one process and every helper here is a no-op, so single-process code paths run
exactly as before.

Conventions used by the engine:

* rank 0 (`is_main`) alone writes run directories, checkpoints, logs and reports; the others wait at barriers;
* `train.batch_size` is the global batch: each of N processes takes batch_size / N of it;
* evaluation shards the images over the processes (`ShardSampler`, rank r takes images r, r + N, ...) and
  `gather_shards` puts every rank's outputs back in dataset order on every rank, so the numbers are those of
  one process.
"""

from __future__ import annotations

import atexit
import datetime
import math
import os
import warnings
from typing import Any, Callable, Iterator, TypeVar

import torch
import torch.distributed as dist
from torch.utils.data import Sampler

from openlt.errors import ConfigError

T = TypeVar("T")

__all__ = ["ShardSampler", "all_reduce_sum", "barrier", "broadcast_buffers", "broadcast_object", "env_world",
           "gather_shards", "is_distributed", "is_main", "main_first", "rank", "setup", "shutdown", "world_size"]


def env_world() -> tuple[int, int, int]:
    """(rank, world size, local rank) from the variables torchrun sets; (0, 1, 0) when they are absent."""
    try:
        values = tuple(int(os.environ.get(key, default)) for key, default in
                       (("RANK", "0"), ("WORLD_SIZE", "1"), ("LOCAL_RANK", "0")))
    except ValueError as exc:
        raise ConfigError(f"RANK / WORLD_SIZE / LOCAL_RANK must be integers ({exc})") from None
    return values  # type: ignore[return-value]


def is_distributed() -> bool:
    """True when a process group of more than one process is initialised (under torchrun)."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    """This process's rank in the process group; 0 with one process."""
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    """The number of processes in the process group; 1 with one process."""
    return dist.get_world_size() if is_distributed() else 1


def is_main() -> bool:
    """True on rank 0, the process that writes files; always True with one process."""
    return rank() == 0


def setup(device: torch.device) -> torch.device:
    """Join the process group when torchrun started several processes (idempotent); return this process's
    device: `cuda` becomes `cuda:LOCAL_RANK`. One process (no WORLD_SIZE, or 1): nothing happens."""
    _, world, local_rank = env_world()
    if world <= 1:
        return device
    if device.type == "cuda":
        device = torch.device("cuda", local_rank) if device.index is None else device
        torch.cuda.set_device(device)
    if dist.is_available() and dist.is_initialized():
        return device
    if not dist.is_available():
        raise ConfigError("WORLD_SIZE > 1 but this PyTorch build has no torch.distributed")
    backend = "nccl" if device.type == "cuda" else "gloo"
    dist.init_process_group(backend, init_method="env://", timeout=datetime.timedelta(minutes=30),
                            **({"device_id": device} if backend == "nccl" else {}))
    atexit.register(shutdown)
    return device


def shutdown() -> None:
    """Leave the process group (registered at exit by `setup`)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier() -> None:
    """Wait until every process gets here; a no-op with one process."""
    if is_distributed():
        dist.barrier()


def main_first(fn: Callable[[], T]) -> T:
    """Run `fn` on rank 0 first (e.g. it builds split files), then on the other ranks (which then only read)."""
    if not is_distributed():
        return fn()
    if is_main():
        result = fn()
        barrier()
    else:
        barrier()
        result = fn()
    return result


def _comm_device() -> torch.device:
    """Where collectives want their tensors: the current CUDA device for NCCL, the CPU for gloo."""
    return torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """The sum of `tensor` over all ranks (a new tensor on `tensor`'s device); the tensor itself with one process."""
    if not is_distributed():
        return tensor
    buf = tensor.detach().to(_comm_device(), copy=True)
    dist.all_reduce(buf, op=dist.ReduceOp.SUM)
    return buf.to(tensor.device)


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """`obj` as rank `src` has it, on every rank (small picklable values: a run path, a flag)."""
    if not is_distributed():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src, device=_comm_device())
    return box[0]


def broadcast_buffers(module: torch.nn.Module, src: int = 0) -> None:
    """Copy rank `src`'s buffers (batch-norm running statistics) to every rank, e.g. before evaluation:
    each rank updated its own with its last batch, and the checkpoint holds rank 0's."""
    if not is_distributed():
        return
    for buffer in module.buffers():
        buf = buffer.detach().to(_comm_device(), copy=True)
        dist.broadcast(buf, src=src)
        buffer.data.copy_(buf.to(buffer.device))


_current_rank, _current_world_size = rank, world_size  # the functions, under names the sampler's arguments keep free


class ShardSampler(Sampler[int]):
    """Evaluation sharding without padding or shuffling: rank r of N takes dataset indices r, r + N, r + 2N, ...

    `gather_shards` inverts it. Unlike DistributedSampler it never repeats an image, so gathered metrics count
    every image exactly once."""

    def __init__(self, size: int, rank: int | None = None, world_size: int | None = None) -> None:
        self.size = int(size)
        self.rank = _current_rank() if rank is None else int(rank)
        self.world_size = _current_world_size() if world_size is None else int(world_size)

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.rank, self.size, self.world_size))

    def __len__(self) -> int:
        return len(range(self.rank, self.size, self.world_size))


def gather_shards(tensor: torch.Tensor, total: int) -> torch.Tensor:
    """Every rank's rows of a `ShardSampler`-sharded pass, in dataset order, on every rank: this rank's
    (ceil or floor of total / world, ...) tensor -> (total, ...) on its device, same dtype. The tensor itself
    with one process."""
    if not is_distributed():
        return tensor
    world = world_size()
    rows = math.ceil(total / world)
    device = _comm_device()
    padded = torch.zeros((rows, *tensor.shape[1:]), dtype=tensor.dtype, device=device)
    padded[: len(tensor)] = tensor.to(device)
    parts = [torch.empty_like(padded) for _ in range(world)]
    dist.all_gather(parts, padded)
    # row j of rank r is image r + j * world: interleave the ranks row by row, then drop the padding
    return torch.stack(parts, dim=1).reshape(rows * world, *tensor.shape[1:])[:total].to(tensor.device)


def data_parallel(model: torch.nn.Module, device: torch.device,
                  find_unused_parameters: bool = False) -> torch.nn.Module:
    """`model` wrapped in DistributedDataParallel (gradients averaged over ranks after each backward, rank 0's
    buffers broadcast before each forward); `model` itself with one process. Save and evaluate `model`, not the
    wrapper. `find_unused_parameters` for models where a parameter may get no gradient by design (the
    meta-embedding centroids, trained by the centroid loss only: a loss without that term leaves them unused)."""
    if not is_distributed():
        return model
    from torch.nn.parallel import DistributedDataParallel

    # a 1x1 convolution applied as a matrix product gets contiguous gradients for a channels-last weight (the
    # attention's): DDP says so once per process; it costs a copy of a few hundred numbers per step
    warnings.filterwarnings("ignore", message="Grad strides do not match bucket view strides")
    return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None,
                                   find_unused_parameters=find_unused_parameters)
