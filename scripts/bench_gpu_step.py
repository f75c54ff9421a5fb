"""Training-step throughput at ImageNet-LT's shape (ResNet-10, 224 px, 1,000 classes): plain and OLTR stage 2, fp32 /
bf16 / fp16 autocast, channels-last on and off; openlt's own step (model with loss, optimizer_step). A benchmark for a
GPU machine: `python scripts/bench_gpu_step.py` (DEV=cpu BATCH=2 N=1 W=0 to try it on a CPU; SIZE=64 for a smaller
input than 224 px, as the test does), run alone."""
import os, statistics, sys, time, torch
DEV = os.environ.get("DEV", "cuda")
SIZE = int(os.environ.get("SIZE", 224))
sys.path.insert(0, "scripts")
from openlt.config import build_config
from openlt.engine.precision import autocast, grad_scaler
from openlt.engine.runtime import batch_to, to_device
from openlt.engine.train import wrap_for_training
from openlt.losses import build_loss
from openlt.models.model import build_model
from openlt.optim import build_optimizer, build_scheduler, lr_schedule, optimizer_step
CFG = {"plain": "configs/imagenet_lt/plain_resnet10.yaml", "oltr": "configs/imagenet_lt/oltr_stage2_resnet10.yaml"}
def step_setup(kind, device, amp, cl, batch, size, K=1000):
    """openlt's training pieces for `kind` (plain / oltr) at ImageNet-LT's shape: (cfg, model, criterion, optimizer,
    images, targets), seeded; scripts/count_step_ops.py counts the same step."""
    overrides = [f"train.device={device}", f"train.amp={amp}", f"train.channels_last={str(cl).lower()}"]
    cfg = build_config(CFG[kind], overrides + (["train.init_from=null"] if kind == "oltr" else []))
    dev = torch.device(device); torch.manual_seed(0)
    counts = [max(5, int(1280 * 0.994 ** i)) for i in range(K)]
    model = to_device(build_model(cfg, K, 3, size), dev, cl)
    model.init_head_from_stage1({}, lambda: torch.randn(K, model.backbone.out_dim, device=dev))
    crit = build_loss(cfg.train.loss, counts, model.backbone.out_dim, **cfg.train.loss_args).to(dev)
    opt = build_optimizer(model.param_groups(), cfg.train)
    x = batch_to(torch.randn(batch, 3, size, size), dev, cl); y = torch.randint(0, K, (batch,)).to(dev)
    return cfg, model, crit, opt, x, y
def make(kind, amp, cl, batch):
    cfg, model, crit, opt, x, y = step_setup(kind, DEV, amp, cl, batch, SIZE)
    dev = torch.device(DEV)
    sch = build_scheduler(opt, lr_schedule(cfg.train, steps_per_epoch=1000))
    net = wrap_for_training(model, crit, dev); net.train(); scaler = grad_scaler(amp, dev)
    def step():
        with autocast(amp, dev):
            loss, _ = net(x, y)
        optimizer_step(loss, opt, sch, scaler); (torch.cuda.synchronize() if DEV == "cuda" else None)
    return step
def med(fn, n=int(os.environ.get("N", 15)), w=int(os.environ.get("W", 5))):
    for _ in range(w): fn()
    t = []
    for _ in range(n):
        s = time.perf_counter(); fn(); t.append(time.perf_counter() - s)
    return statistics.median(t)
def main():
    batch = int(os.environ.get("BATCH", 256))
    res = {}
    for kind in ("plain", "oltr"):
        for amp in ("none", "bf16", "fp16"):
            for cl in (True, False):
                try:
                    s = med(make(kind, amp, cl, batch)); res[(kind, amp, cl)] = s
                    print(f"{kind:5s} amp={amp:4s} channels_last={cl!s:5s} {1000*s:7.1f} ms/step {batch/s:8.0f} img/s", flush=True)
                except Exception as e:
                    print(kind, amp, cl, "FAILED", repr(e)[:300], flush=True)
                (torch.cuda.empty_cache() if DEV == "cuda" else None)
    for kind in ("plain", "oltr"):
        base = res.get((kind, "none", False))
        for amp in ("none", "bf16", "fp16"):
            for cl in (True,):
                if base and (kind, amp, cl) in res: print(f"{kind} {amp} channels-last speed-up over fp32 NCHW: {base/res[(kind,amp,cl)]:.2f}x")
    if ("oltr","bf16",True) in res: print(f"OLTR / plain step time, bf16 channels-last: {res[('oltr','bf16',True)]/res[('plain','bf16',True)]:.2f}; fp32 NCHW: {res[('oltr','none',False)]/res[('plain','none',False)]:.2f}")
if __name__ == "__main__":
    main()
