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

The environment is checked once, where it enters (`dist_env.check_env`, called by `setup`). Joining the group
waits at most ``OPENLT_DIST_INIT_TIMEOUT`` seconds (default 600) for every rank, then names the ranks that did
not come; collectives time out after ``OPENLT_DIST_TIMEOUT`` seconds (default 1800). A SIGTERM or SIGINT while
a process waits for its peers inside PyTorch's C++ code is handled by the watchdog of `dist_signals`. A peer
that dies during a collective (gloo's "Connection reset by peer") becomes a `PeerLost` error naming the rank
when it is known.
"""

from __future__ import annotations

import atexit
import datetime
import math
import os
import socket
import time
import warnings
from contextlib import AbstractContextManager, ExitStack, contextmanager
from typing import Any, Callable, Iterator, TypeVar

import torch
import torch.distributed as dist
from torch.utils.data import Sampler

from openlt.engine.dist_env import INIT_TIMEOUT_ENV, TIMEOUT_ENV, World, check_env, env_world
from openlt.engine.dist_signals import interrupt_note, waiting_for_peers, watch_signals
from openlt.errors import ConfigError, OpenLTError

T = TypeVar("T")

# INIT_TIMEOUT_ENV, TIMEOUT_ENV, World, check_env, env_world (dist_env) and interrupt_note (dist_signals) are
# re-exported: `distributed.check_env` and the others keep working
__all__ = ["INIT_TIMEOUT_ENV", "PeerLost", "ShardSampler", "TIMEOUT_ENV", "World", "all_reduce_sum", "barrier",
           "broadcast_buffers", "broadcast_object", "check_env", "env_world", "gather_outputs", "gather_shards",
           "held_by_main", "interrupt_note", "is_distributed", "is_main", "joins_group", "main_first", "peer_lost",
           "rank", "said_by_rank0", "setup", "shutdown", "world_size"]


class PeerLost(OpenLTError):
    """Another process of the job ended or stopped answering during a collective (a torchrun peer killed, a
    lost machine): not a bug of this process; the message names the rank when it is known."""


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
    env = check_env()
    if env.world_size <= 1:
        return device
    if device.type == "cuda":
        device = torch.device("cuda", env.local_rank) if device.index is None else device
        torch.cuda.set_device(device)
    if dist.is_available() and dist.is_initialized():
        return device
    if not dist.is_available():
        raise ConfigError("WORLD_SIZE > 1 but this PyTorch build has no torch.distributed")
    backend = "nccl" if device.type == "cuda" else "gloo"
    watch_signals()
    with waiting_for_peers():
        store = _rendezvous(env)
        dist.init_process_group(backend, store=store, rank=env.rank, world_size=env.world_size,
                                timeout=datetime.timedelta(seconds=env.timeout),
                                **({"device_id": device} if backend == "nccl" else {}))
    atexit.register(shutdown)
    return device


def _rendezvous(env: World) -> "dist.Store":
    """The job's key-value store (rank 0's TCPStore at MASTER_ADDR:MASTER_PORT, or torchrun's agent store),
    once every rank has joined it; waits in Python (signals are handled) at most `env.init_timeout` seconds,
    then a PeerLost naming the ranks that did not come."""
    assert env.master_addr is not None and env.master_port is not None
    deadline = time.monotonic() + env.init_timeout
    where = f"MASTER_ADDR:MASTER_PORT={env.master_addr}:{env.master_port}"
    waited = f"within {env.init_timeout:g} s ({INIT_TIMEOUT_ENV})"
    agent = os.environ.get("TORCHELASTIC_USE_AGENT_STORE", "").lower() == "true"  # torchrun's agent hosts it
    hosts = env.rank == 0 and not agent
    if not hosts:  # poll for the server in Python: TCPStore's own retry loop ignores signals
        while True:
            try:
                socket.create_connection((env.master_addr, env.master_port), timeout=1.0).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise PeerLost(f"rank {env.rank} of {env.world_size}: nothing answered at {where} {waited}: "
                                   f"rank 0 did not start, or MASTER_ADDR / MASTER_PORT do not point to it") from None
                time.sleep(0.2)
    try:
        store = dist.TCPStore(env.master_addr, env.master_port, env.world_size, is_master=hosts,
                              timeout=datetime.timedelta(seconds=max(1.0, deadline - time.monotonic())),
                              wait_for_workers=False, multi_tenant=hosts)
    except (RuntimeError, ValueError) as exc:
        if hosts:
            raise ConfigError(f"rank 0 cannot listen at {where} ({_first_line(exc)}): choose another "
                              f"MASTER_PORT, or the address of this machine as MASTER_ADDR") from None
        raise PeerLost(f"rank {env.rank} of {env.world_size}: cannot join the store at {where}: "
                       f"{_first_line(exc)}") from None
    prefix = f"openlt/{os.environ.get('TORCHELASTIC_RUN_ID', '')}/{os.environ.get('TORCHELASTIC_RESTART_COUNT', 0)}/"
    store.set(f"{prefix}rank{env.rank}", socket.gethostname())
    store.set(f"{prefix}pid{env.rank}", str(os.getpid()))
    store.add(f"{prefix}joined", 1)
    while store.add(f"{prefix}joined", 0) < env.world_size:
        if time.monotonic() > deadline:
            missing = [r for r in range(env.world_size) if not store.check([f"{prefix}rank{r}"])]
            raise PeerLost(f"rank {env.rank} of {env.world_size}: {_ranks(missing)} did not join {waited} at "
                           f"{where}: a process that failed to start, or RANK / WORLD_SIZE / MASTER_PORT that "
                           f"do not match the other processes'")
        time.sleep(0.05)
    _remember_peers(store, prefix, env.world_size)
    store.set_timeout(datetime.timedelta(seconds=check_env().timeout))
    return dist.PrefixStore("default_pg", store)


_PEERS: dict[int, tuple[str, int]] = {}  # rank -> (host, process id) of every process of the job, read at the join


def _remember_peers(store: "dist.Store", prefix: str, world_size: int) -> None:
    """Keep each rank's host and process id (each set them before it joined) to name a lost peer (:func:`peer_lost`)."""
    _PEERS.clear()
    for r in range(world_size):
        try:
            _PEERS[r] = (store.get(f"{prefix}rank{r}").decode(), int(store.get(f"{prefix}pid{r}")))
        except (RuntimeError, ValueError):  # (not recorded: that rank is not named)
            continue


def _ranks(ranks: list[int]) -> str:
    if len(ranks) > 8:
        return f"{len(ranks)} ranks ({', '.join(map(str, ranks[:8]))}, ...)"
    return ("rank " if len(ranks) == 1 else "ranks ") + ", ".join(map(str, ranks))


def _first_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__


# ------------------------------------------------------------------------------------------- a peer that went away

_PEER_SIGNS = ("connection reset by peer", "connection closed by peer", "broken pipe", "timed out",
               "socket closed", "end of file", "read error", "write error", "connection refused")


def peer_lost(exc: BaseException) -> PeerLost | None:
    """`exc` (raised by a collective) as a PeerLost with one line naming the rank that went away when it is
    known (a process of the job on this host that has ended, for any number of processes; with 2 processes: the
    other one), or None when `exc` is not a lost peer."""
    if isinstance(exc, PeerLost):
        return exc
    if not isinstance(exc, RuntimeError) or not (dist.is_available() and dist.is_initialized()):
        return None
    text = str(exc)
    low = text.lower()
    is_dist = isinstance(exc, getattr(dist, "DistError", ())) or "gloo" in low or "nccl" in low
    if not (is_dist and any(sign in low for sign in _PEER_SIGNS)):
        return None
    me, world = dist.get_rank(), dist.get_world_size()
    who = _lost_ranks(me, world)
    cause = next((s for s in _PEER_SIGNS if s in low), "")
    how = "timed out" if cause == "timed out" else f"went away ({cause})"
    return PeerLost(f"rank {me} of {world}: {who} of the job {how} during a collective (a process killed, "
                    f"out of memory or a lost machine: see its own output or torchrun's)")


LOST_WAIT_S = 3.0  # how long a lost peer on this host is waited for to end (its sockets close just before it ends)


def _lost_ranks(me: int, world: int) -> str:
    """The rank(s) that went away, in words: the processes of the job on this host that have ended (their ids,
    :data:`_PEERS`, looked at for up to :data:`LOST_WAIT_S`), else, with 2 processes, the other one; else
    "another process" (a peer on another host, or one that is alive but stopped answering)."""
    host = socket.gethostname()
    local = {r: pid for r, (h, pid) in _PEERS.items() if r != me and h == host}
    deadline = time.monotonic() + LOST_WAIT_S
    gone: list[int] = []
    while local and not gone:
        gone = [r for r, pid in sorted(local.items()) if not _alive(pid)]
        if gone or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    if gone:
        return _ranks(gone)
    return f"rank {1 - me}" if world == 2 else "another process"


def _alive(pid: int) -> bool:
    """Whether process `pid` is running (not ended, not a zombie its parent has not reaped yet)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # (someone else's process: taken as running)
        return True
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            state = f.read().rsplit(")", 1)[-1].split()[0]
    except FileNotFoundError:
        return False
    except (OSError, IndexError):  # (no /proc: the signal answered, taken as running)
        return True
    return state not in ("Z", "X")


@contextmanager
def _peer_errors() -> Iterator[None]:
    try:
        with waiting_for_peers():
            yield
    except RuntimeError as exc:
        lost = peer_lost(exc)
        if lost is None:
            raise
        raise lost from None


def shutdown() -> None:
    """Leave the process group (registered at exit by `setup`)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier() -> None:
    """Wait until every process gets here; a no-op with one process."""
    if is_distributed():
        with _peer_errors():
            dist.barrier()


def joins_group() -> bool:
    """True when torchrun's variables ask for more than one process (checked: `check_env`), whether or not
    `setup` has joined the group yet: a command then joins it before rank 0 takes a run's lock (`held_by_main`)."""
    return check_env().world_size > 1


@contextmanager
def held_by_main(hold: Callable[[], AbstractContextManager[Any]]) -> Iterator[None]:
    """Rank 0 alone enters `hold()` (a run's lock: ``Run.eval_lock``, ``Run.lock``) for the block; the other
    processes wait for its decision. When rank 0 is refused (an OpenLTError, e.g. "RUN is being trained by process
    N"), every rank raises the same error with the same one line (the CLI prints it on rank 0 alone:
    `said_by_rank0`), instead of the others going on into a
    collective that rank 0 never reaches; another failure of rank 0 ends the others with a PeerLost line naming
    it. Call it after `setup` joined the group (before, every process is rank 0 and would take the lock itself:
    the job's ranks then refuse each other). One process: `hold()` itself."""
    if not is_distributed():
        with hold():
            yield
        return
    with ExitStack() as stack:
        decision: tuple[type, str] | None = None
        if is_main():
            try:
                stack.enter_context(hold())
            except OpenLTError as exc:
                broadcast_object((type(exc), str(exc)))
                raise
            except Exception as exc:
                broadcast_object((PeerLost, f"rank 0 of {world_size()} stopped: {type(exc).__name__}: "
                                            f"{_first_line(exc)}"))
                raise
            broadcast_object(None)
        else:
            decision = broadcast_object(None)
        if decision is not None:
            kind, text = decision
            try:
                error = kind(text)
            except TypeError:  # an error class with other arguments: its line still
                error = OpenLTError(text)
            if not issubclass(kind, PeerLost):
                error.said_by_rank0 = True  # rank 0 prints this line; the CLI ends this rank silently
            raise error from None
        yield


def said_by_rank0(exc: BaseException) -> bool:
    """True when this process is a rank other than 0 of a torchrun job and `exc` is an error that rank 0 meets
    alike and prints, so that this rank ends with the same exit status without a line of its own (the job's
    output then says it once): rank 0's refusal passed on by `held_by_main`, and a ConfigError raised before
    this process joined the group (the command line and the config: every rank checks the same; a command that
    does not run under torchrun). The environment's own errors (`check_env`: RANK=5 of WORLD_SIZE=2 is that
    process's alone) and a lost peer (`PeerLost`, also rank 0's failure passed on) are always printed."""
    if isinstance(exc, PeerLost):
        return False
    try:
        env = check_env()
    except ConfigError:
        return False
    if env.world_size <= 1 or env.rank == 0:
        return False
    if getattr(exc, "said_by_rank0", False):
        return True
    return isinstance(exc, ConfigError) and not (dist.is_available() and dist.is_initialized())


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
    with _peer_errors():
        dist.all_reduce(buf, op=dist.ReduceOp.SUM)
    return buf.to(tensor.device)


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """`obj` as rank `src` has it, on every rank (small picklable values: a run path, a flag)."""
    if not is_distributed():
        return obj
    box = [obj]
    with _peer_errors():
        dist.broadcast_object_list(box, src=src, device=_comm_device())
    return box[0]


def broadcast_buffers(module: torch.nn.Module, src: int = 0) -> None:
    """Copy rank `src`'s buffers (batch-norm running statistics) to every rank, e.g. before evaluation:
    each rank updated its own with its last batch, and the checkpoint holds rank 0's."""
    if not is_distributed():
        return
    for buffer in module.buffers():
        buf = buffer.detach().to(_comm_device(), copy=True)
        with _peer_errors():
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
    with _peer_errors():
        dist.all_gather(parts, padded)
    # row j of rank r is image r + j * world: interleave the ranks row by row, then drop the padding
    return torch.stack(parts, dim=1).reshape(rows * world, *tensor.shape[1:])[:total].to(tensor.device)


def gather_outputs(outputs: dict[str, torch.Tensor], total: int) -> dict[str, torch.Tensor]:
    """`gather_shards` of each output of a sharded pass, also for a rank whose share is empty (a split with
    fewer images than processes: that rank has no batch, so no outputs): the names, trailing shapes and dtypes
    come from the ranks that have them, the empty rank contributes 0 rows. `outputs` itself with one process."""
    if not is_distributed():
        return outputs
    layout = {key: (tuple(value.shape[1:]), value.dtype) for key, value in outputs.items()}
    layouts: list[Any] = [None] * world_size()
    with _peer_errors():
        dist.all_gather_object(layouts, layout)
    merged: dict[str, tuple[tuple[int, ...], torch.dtype]] = {}
    for each in layouts:  # the same order on every rank: rank 0's names first, then any others
        for key, spec in each.items():
            merged.setdefault(key, spec)
    return {key: gather_shards(outputs[key] if key in outputs else torch.empty((0, *shape), dtype=dtype), total)
            for key, (shape, dtype) in merged.items()}


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
