"""One process of a 2-process gloo group (RANK / WORLD_SIZE / MASTER_ADDR / MASTER_PORT set by the test) that
enters `openlt.engine.distributed.held_by_main` with a `hold` that records who entered it, then one scenario
(argv[1]):

* ``held``: the hold succeeds; each rank prints JSON {"entered": [...ranks that entered hold...], "inside": true};
* ``refused``: rank 0's hold raises RunDirError("RUN is being trained by process 1 on h; ..."); each rank prints
  ``TYPE: message`` of what it raised (the others must raise the same, not go on);
* ``failed``: rank 0's hold raises an ordinary ValueError; each rank prints ``TYPE: message``."""

import json
import sys
from contextlib import contextmanager

import torch

from openlt.engine import distributed
from openlt.errors import RunDirError

scenario = sys.argv[1]
distributed.setup(torch.device("cpu"))
me = distributed.rank()
entered = []


@contextmanager
def hold():
    entered.append(me)
    if scenario == "refused":
        raise RunDirError("runs/x is being trained by process 1 on h; evaluate it once training has ended")
    if scenario == "failed":
        raise ValueError("a bug\nsecond line")
    yield


try:
    with distributed.held_by_main(hold):
        print(json.dumps({"entered": entered, "inside": True}), flush=True)
    distributed.barrier()
except Exception as exc:  # noqa: BLE001
    print(f"{type(exc).__name__}: {exc}", flush=True)
