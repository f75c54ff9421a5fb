"""One process of a 2-process gloo group built by `openlt.engine.distributed.setup` from RANK / WORLD_SIZE /
MASTER_ADDR / MASTER_PORT (set by the test), then one scenario (argv[1]):

* ``gather``: rank 0 has 1 image's outputs, rank 1 none (a split smaller than the processes); prints the
  gathered outputs as JSON;
* ``die``: rank 1 exits at once (os._exit, as a killed process); rank 0 enters a barrier and prints the error;
* ``die-last``: the last rank exits at once (os._exit), the others enter a barrier and print the error (any number
  of processes);
* ``stuck``: rank 0 sleeps (in Python, never reaching the collective), rank 1 waits in a barrier, blocked in
  gloo's C++ code, and prints ``waiting`` first (the test then signals it).

Signals as the CLI handles them: SIGTERM raises `Terminated` (`openlt.cli._raise_terminated`)."""

import json
import os
import signal
import sys
import time

import torch

from openlt.cli import _raise_terminated
from openlt.engine import distributed

signal.signal(signal.SIGTERM, _raise_terminated(os.getpid()))
scenario = sys.argv[1]
distributed.setup(torch.device("cpu"))
me = distributed.rank()
if scenario == "gather":
    outputs = {"logits": torch.tensor([[1.0, 2.0, 3.0]]), "labels": torch.tensor([2])} if me == 0 else {}
    gathered = distributed.gather_outputs(outputs, 1)
    print(json.dumps({k: [v.tolist(), str(v.dtype)] for k, v in gathered.items()}), flush=True)
elif scenario == "die":
    if me == 1:
        os._exit(9)
    try:
        distributed.barrier()
    except distributed.PeerLost as exc:
        print(f"PeerLost: {exc}", flush=True)
elif scenario == "die-last":
    if me == distributed.world_size() - 1:
        os._exit(9)
    try:
        distributed.barrier()
    except distributed.PeerLost as exc:
        print(f"PeerLost: {exc}", flush=True)
elif scenario == "stuck":
    if me == 0:
        time.sleep(60)
    else:
        print("waiting", flush=True)
        distributed.barrier()
