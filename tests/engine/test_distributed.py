"""The process-group helpers with one process (no-ops), the evaluation shards, and the global batch rule.
Two real processes: tests/engine/test_ddp.py."""

from __future__ import annotations

import pytest
import torch

from openlt.engine import dist_env, distributed
from openlt.engine.runtime import make_loader
from openlt.engine.train import per_process_batch
from openlt.errors import ConfigError


def test_one_process_without_torchrun_variables(monkeypatch):
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(key, raising=False)
    assert dist_env.env_world() == (0, 1, 0)
    assert distributed.setup(torch.device("cpu")) == torch.device("cpu")
    assert not distributed.is_distributed() and distributed.is_main()
    assert distributed.rank() == 0 and distributed.world_size() == 1


def test_helpers_are_no_ops_with_one_process():
    t = torch.arange(6.0).reshape(3, 2)
    assert distributed.all_reduce_sum(t) is t
    assert distributed.gather_shards(t, 3) is t
    assert distributed.broadcast_object({"a": 1}) == {"a": 1}
    assert distributed.main_first(lambda: 7) == 7
    distributed.barrier()
    model = torch.nn.BatchNorm1d(2)
    distributed.broadcast_buffers(model)
    assert distributed.data_parallel(model, torch.device("cpu")) is model


@pytest.mark.parametrize("size,world", [(10, 2), (11, 2), (7, 3), (2, 4)])
def test_shards_cover_every_image_once_and_interleave_back(size, world):
    shards = [list(distributed.ShardSampler(size, rank=r, world_size=world)) for r in range(world)]
    assert sorted(i for s in shards for i in s) == list(range(size))
    assert [len(s) for s in shards] == [len(distributed.ShardSampler(size, r, world)) for r in range(world)]
    # what gather_shards does with the gathered, padded shards: interleave rank by rank, cut the padding
    rows = -(-size // world)
    padded = [torch.tensor(s + [-1] * (rows - len(s))) for s in shards]
    assert torch.stack(padded, dim=1).reshape(-1)[:size].tolist() == list(range(size))


def test_an_unsharded_loader_with_one_process():
    loader = make_loader(list(range(5)), 2, 0, torch.device("cpu"), shard=True)
    assert not isinstance(loader.sampler, distributed.ShardSampler)
    assert not loader.pin_memory  # pinned memory only with CUDA
    assert not make_loader(list(range(5)), 2, 0, torch.device("cpu"), pin_memory=True).pin_memory or torch.cuda.is_available()


def test_the_global_batch_splits_evenly_over_processes():
    assert per_process_batch(128, 1) == 128 and per_process_batch(128, 4) == 32
    with pytest.raises(ConfigError, match="global batch.*multiple of 3"):
        per_process_batch(128, 3)
