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

The environment is checked once, where it enters (`check_env`, called by `setup`): RANK / WORLD_SIZE /
LOCAL_RANK integers with 0 <= RANK < WORLD_SIZE, and with WORLD_SIZE > 1 MASTER_ADDR and MASTER_PORT set; a
problem is one ConfigError line naming the variable. Joining the group waits at most
``OPENLT_DIST_INIT_TIMEOUT`` seconds (default 600) for every rank, then names the ranks that did not come;
collectives time out after ``OPENLT_DIST_TIMEOUT`` seconds (default 1800). While a process waits for its peers
inside PyTorch's C++ code, Python's signal handlers cannot run: a watchdog thread (`_watch_signals`) ends it
with the usual ``openlt CMD: interrupted (SIGTERM | Ctrl-C)`` line (and the run's `--resume` hint) when the main
thread does not come back to Python soon after a SIGTERM or SIGINT. A peer that dies during a collective
(gloo's "Connection reset by peer") becomes a `PeerLost` error naming the rank when it is known.
"""

from __future__ import annotations

import atexit
import datetime
import math
import os
import signal
import socket
import sys
import threading
import time
import warnings
from contextlib import AbstractContextManager, ExitStack, contextmanager
from typing import Any, Callable, Iterator, NamedTuple, TypeVar

import torch
import torch.distributed as dist
from torch.utils.data import Sampler

from openlt.errors import ConfigError, OpenLTError

T = TypeVar("T")

__all__ = ["INIT_TIMEOUT_ENV", "PeerLost", "ShardSampler", "TIMEOUT_ENV", "World", "all_reduce_sum", "barrier",
           "broadcast_buffers", "broadcast_object", "check_env", "env_world", "gather_outputs", "gather_shards",
           "held_by_main", "interrupt_note", "is_distributed", "is_main", "joins_group", "main_first", "peer_lost", "rank", "setup", "shutdown",
           "world_size"]

INIT_TIMEOUT_ENV, INIT_TIMEOUT_S = "OPENLT_DIST_INIT_TIMEOUT", 600.0  # joining: every rank must come within it
TIMEOUT_ENV, TIMEOUT_S = "OPENLT_DIST_TIMEOUT", 1800.0  # one collective (rank 0 may build splits while others wait)


class PeerLost(OpenLTError):
    """Another process of the job ended or stopped answering during a collective (a torchrun peer killed, a
    lost machine): not a bug of this process; the message names the rank when it is known."""


class World(NamedTuple):
    """The distributed environment of this process, as checked by `check_env`."""
    rank: int
    world_size: int
    local_rank: int
    master_addr: str | None
    master_port: int | None
    init_timeout: float
    timeout: float


def _int_env(key: str, default: int | None) -> int | None:
    raw = os.environ.get(key)
    if raw is None:
        return default
    try:
        return int(raw.strip())
    except ValueError:
        raise ConfigError(f"environment variable {key} must be an integer, got {raw!r} (torchrun sets RANK, "
                          f"WORLD_SIZE and LOCAL_RANK; unset them for one process)") from None


def _seconds_env(key: str, default: float) -> float:
    raw = os.environ.get(key)
    if raw is None or not raw.strip():
        return default
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if not (math.isfinite(value) and value > 0):
        raise ConfigError(f"environment variable {key} must be a number of seconds > 0, got {raw!r} "
                          f"(default {default:g})")
    return value


def check_env() -> World:
    """The torchrun variables of this process, checked once where they enter (`setup`): ConfigError, one line
    naming the variable, for a non-integer, RANK outside 0 .. WORLD_SIZE - 1, WORLD_SIZE < 1, a WORLD_SIZE > 1
    without RANK or without MASTER_ADDR / MASTER_PORT, a LOCAL_RANK outside 0 .. LOCAL_WORLD_SIZE - 1, or a
    timeout that is not a positive number of seconds."""
    world = _int_env("WORLD_SIZE", 1)
    rank_ = _int_env("RANK", None)
    local_rank = _int_env("LOCAL_RANK", 0)
    local_world = _int_env("LOCAL_WORLD_SIZE", None)
    assert world is not None and local_rank is not None
    if world < 1:
        raise ConfigError(f"environment variable WORLD_SIZE must be at least 1, got {world}")
    if rank_ is None:
        if world > 1:
            raise ConfigError(f"environment variable WORLD_SIZE={world} is set but RANK is not: launch with "
                              f"torchrun (it sets both), or set RANK (0 .. {world - 1}) in each process")
        rank_ = 0
    if not 0 <= rank_ < world:
        raise ConfigError(f"environment variable RANK={rank_} is not a rank of WORLD_SIZE={world} (ranks are "
                          f"0 .. {world - 1})")
    if local_rank < 0 or (local_world is not None and local_rank >= local_world):
        raise ConfigError(f"environment variable LOCAL_RANK={local_rank} is not below LOCAL_WORLD_SIZE="
                          f"{local_world}" if local_world is not None and local_rank >= 0 else
                          f"environment variable LOCAL_RANK must not be negative, got {local_rank}")
    addr = port = None
    if world > 1:
        addr = (os.environ.get("MASTER_ADDR") or "").strip()
        raw_port = (os.environ.get("MASTER_PORT") or "").strip()
        for key, value in (("MASTER_ADDR", addr), ("MASTER_PORT", raw_port)):
            if not value:
                raise ConfigError(f"RANK / WORLD_SIZE are set (RANK={rank_}, WORLD_SIZE={world}) but environment "
                                  f"variable {key} is not: launch with torchrun, or set MASTER_ADDR and "
                                  f"MASTER_PORT (rank 0's address and a free port) in every process")
        try:
            port = int(raw_port)
        except ValueError:
            port = -1
        if not 1 <= port <= 65535:
            raise ConfigError(f"environment variable MASTER_PORT must be a port number 1 .. 65535, got {raw_port!r}")
    return World(rank_, world, local_rank, addr, port, _seconds_env(INIT_TIMEOUT_ENV, INIT_TIMEOUT_S),
                 _seconds_env(TIMEOUT_ENV, TIMEOUT_S))


def env_world() -> tuple[int, int, int]:
    """(rank, world size, local rank) from the variables torchrun sets (checked: `check_env`); (0, 1, 0) when
    they are absent."""
    world = check_env()
    return world.rank, world.world_size, world.local_rank


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
    _watch_signals()
    with _waiting():
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
    store.add(f"{prefix}joined", 1)
    while store.add(f"{prefix}joined", 0) < env.world_size:
        if time.monotonic() > deadline:
            missing = [r for r in range(env.world_size) if not store.check([f"{prefix}rank{r}"])]
            raise PeerLost(f"rank {env.rank} of {env.world_size}: {_ranks(missing)} did not join {waited} at "
                           f"{where}: a process that failed to start, or RANK / WORLD_SIZE / MASTER_PORT that "
                           f"do not match the other processes'")
        time.sleep(0.05)
    store.set_timeout(datetime.timedelta(seconds=check_env().timeout))
    return dist.PrefixStore("default_pg", store)


def _ranks(ranks: list[int]) -> str:
    if len(ranks) > 8:
        return f"{len(ranks)} ranks ({', '.join(map(str, ranks[:8]))}, ...)"
    return ("rank " if len(ranks) == 1 else "ranks ") + ", ".join(map(str, ranks))


def _first_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__


# --------------------------------------------------------------------- signals while PyTorch waits in C++ for peers

_GRACE_WAITING_S = 1.0  # inside `_waiting` (a collective or the join): the main thread gets this long to react
_GRACE_STUCK_S = 10.0  # elsewhere (DDP's gradient all-reduce inside backward): this long without any Python progress
_state: dict[str, Any] = {"waiting": 0, "notes": [], "watching": False}


@contextmanager
def _waiting() -> Iterator[None]:
    """Marks a blocking wait for the other processes (a collective, the join): a SIGTERM / SIGINT arriving
    meanwhile ends the process from the watchdog when the main thread does not leave the wait at once."""
    _state["waiting"] += 1
    try:
        yield
    finally:
        _state["waiting"] -= 1


@contextmanager
def interrupt_note(note: Callable[[], str]) -> Iterator[None]:
    """Inside the block, the line the watchdog prints on a signal it has to act on ends with `note()` (a run's
    `--resume` hint), as the main thread's own interrupt message would."""
    _state["notes"].append(note)
    try:
        yield
    finally:
        _state["notes"].remove(note)


def _command() -> str:
    """`openlt CMD` as the CLI names itself in its messages (from sys.argv: the first non-option argument)."""
    words = [a for a in sys.argv[1:] if not a.startswith("-")]
    return f"openlt {words[0]}" if words else "openlt"


def _watch_signals() -> None:
    """Start (once, from the main thread) the watchdog that sees SIGTERM / SIGINT through Python's wakeup file
    descriptor (written by the C-level handler even while the main thread is blocked in C++)."""
    if _state["watching"] or threading.current_thread() is not threading.main_thread():
        return
    read_fd, write_fd = os.pipe()
    os.set_blocking(write_fd, False)
    try:
        previous = signal.set_wakeup_fd(write_fd, warn_on_full_buffer=False)
    except ValueError:
        previous = None
    if previous != -1:  # someone else uses it (or it cannot be set): leave it alone
        if previous is not None:
            signal.set_wakeup_fd(previous)
        os.close(read_fd), os.close(write_fd)
        return
    os.register_at_fork(after_in_child=_unwatch_in_child)  # a DataLoader worker's signals are its own
    _state["watching"] = True
    threading.Thread(target=_watchdog, args=(read_fd, threading.main_thread().ident), daemon=True,
                     name="openlt-signal-watchdog").start()


def _unwatch_in_child() -> None:
    _state["watching"] = False
    try:
        signal.set_wakeup_fd(-1)
    except ValueError:
        pass


def _watchdog(read_fd: int, main_ident: int | None) -> None:
    watched = {int(signal.SIGINT), int(signal.SIGTERM)}
    while True:
        try:
            data = os.read(read_fd, 64)
        except OSError:
            return
        if not data:
            return
        for signum in data:
            if signum in watched:
                _on_signal(signum, main_ident)


def _main_position(main_ident: int | None) -> tuple[int, int] | None:
    frame = sys._current_frames().get(main_ident) if main_ident is not None else None
    return None if frame is None else (id(frame), frame.f_lasti)


def _on_signal(signum: int, main_ident: int | None) -> None:
    """A SIGTERM / SIGINT reached the process: leave it to the main thread's handler when the main thread runs
    Python (it leaves the wait, or makes progress); else print the usual line and exit 130 / 143."""
    waiting = _state["waiting"] > 0
    position = _main_position(main_ident)
    end = time.monotonic() + (_GRACE_WAITING_S if waiting else _GRACE_STUCK_S)
    while time.monotonic() < end:
        time.sleep(0.05)
        if waiting and _state["waiting"] == 0:
            return
        if not waiting and _main_position(main_ident) != position:
            return
    how = "SIGTERM" if signum == signal.SIGTERM else "Ctrl-C"
    note = ""
    if _state["notes"]:
        try:
            note = f": {_state['notes'][-1]()}"
        except Exception:  # noqa: BLE001  (the note is a courtesy; the exit is what matters)
            note = ""
    try:
        sys.stdout.flush()
    except Exception:  # noqa: BLE001
        pass
    os.write(2, f"{_command()}: interrupted ({how}) while waiting for the other processes{note}\n".encode())
    os._exit(128 + int(signal.SIGTERM) if signum == signal.SIGTERM else 130)


# ------------------------------------------------------------------------------------------- a peer that went away

_PEER_SIGNS = ("connection reset by peer", "connection closed by peer", "broken pipe", "timed out",
               "socket closed", "end of file", "read error", "write error", "connection refused")


def peer_lost(exc: BaseException) -> PeerLost | None:
    """`exc` (raised by a collective) as a PeerLost with one line naming the rank that went away when it is
    known (with 2 processes: the other one), or None when `exc` is not a lost peer."""
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
    who = f"rank {1 - me}" if world == 2 else "another process"
    cause = next((s for s in _PEER_SIGNS if s in low), "")
    how = "timed out" if cause == "timed out" else f"went away ({cause})"
    return PeerLost(f"rank {me} of {world}: {who} of the job {how} during a collective (a process killed, "
                    f"out of memory or a lost machine: see its own output or torchrun's)")


@contextmanager
def _peer_errors() -> Iterator[None]:
    try:
        with _waiting():
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
    N"), every rank raises the same error with the same one line, instead of the others going on into a
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
            raise error from None
        yield


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
