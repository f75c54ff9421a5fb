"""One process of the 2-process test run (tests/engine/test_ddp.py), started by `python -m torch.distributed.run`.

    python -m torch.distributed.run --standalone --nproc_per_node 2 tests/helpers/ddp_worker.py SPEC.json

SPEC.json holds the config file, the overrides and the output folders. Every process runs, in order:

1. `openlt train CONFIG OVERRIDES` through the CLI (train with augmentation, then the sharded evaluation)
   into spec["cli_out"];
2. OLTR stage 2 from that run with the backbone frozen and no augmentation (the training transform replaced by
   the evaluation one) into spec["strict_out"]: the run that must match one process closely;
3. the run of step 1 again into spec["cut_out"], interrupted on every rank at the start of epoch 2, then resumed;
4. `openlt train` of decoupled cRT from the run of step 1 into spec["decouple_out"]: the stage-1 feature cache
   of every split is extracted by both processes (a share each), then rank 0 alone fits the classifier.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from openlt.cli import main
from openlt.config import build_config
from openlt.data.build import DataBundle
from openlt.engine import distributed, features
from openlt.engine import train as training
from openlt.engine.run import open_run


def quiet_log(line: str) -> None:
    pass


def no_augmentation(self: DataBundle, train: bool):
    return EVAL_TRANSFORM(self, False)


EVAL_TRANSFORM = DataBundle.transform


def run(spec: dict) -> None:
    code = main(["train", spec["config"], *spec["overrides"], f"out_dir={spec['cli_out']}", "--quiet"])
    if code != 0:
        raise SystemExit(code)
    stage1 = next(Path(spec["cli_out"]).iterdir())  # exactly one run directory: rank 0's

    # how many images this process extracts into the stage-1 run's feature cache, per split: the training split
    # at the OLTR stage 2's start (its centroids), the others for the decoupled stage 2 below
    extract, shares = features.extract_features, []

    def recording_extract(model, loader, *args, **kwargs):
        shares.append([kwargs.get("desc", args[1] if len(args) > 1 else ""), len(loader.sampler)])
        return extract(model, loader, *args, **kwargs)

    features.extract_features = recording_extract
    DataBundle.transform = no_augmentation
    try:
        strict = build_config(spec["stage2_config"], [*spec["stage2_overrides"], f"train.init_from={stage1}",
                                                      f"data.split_dir={stage1 / 'splits'}",
                                                      f"out_dir={spec['strict_out']}"])
        training.train(strict, name="strict", quiet=True, log=quiet_log)
    finally:
        DataBundle.transform = EVAL_TRANSFORM

    cfg = build_config(spec["config"], [*spec["overrides"], f"out_dir={spec['cut_out']}"])
    seed_of = training._epoch_seed

    def stop_at_epoch_2(seed: int, epoch: int, rank: int = 0) -> int:
        if epoch == 1:  # every rank stops here, after rank 0 saved epoch 1
            raise KeyboardInterrupt
        return seed_of(seed, epoch, rank)

    training._epoch_seed = stop_at_epoch_2
    try:
        training.train(cfg, name="cut", quiet=True, log=quiet_log)
    except KeyboardInterrupt:
        pass
    finally:
        training._epoch_seed = seed_of
    distributed.barrier()
    cut = open_run(next(Path(spec["cut_out"]).glob("cut-*")))
    training.train(cut.config(), run=cut, resume=True, quiet=True, log=quiet_log)

    code = main(["train", spec["decouple_config"], *spec["decouple_overrides"], f"train.init_from={stage1}",
                 f"out_dir={spec['decouple_out']}", "--quiet"])
    if code != 0:
        raise SystemExit(code)
    Path(spec["decouple_out"], f"shares-rank{distributed.rank()}.json").write_text(json.dumps(shares))


if __name__ == "__main__":
    run(json.loads(Path(sys.argv[1]).read_text()))
