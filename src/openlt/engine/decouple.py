"""Stage 2 of decoupled classifier learning (Kang et al., ICLR 2020) as an ordinary run.

`openlt train CONFIG train.init_from=STAGE1_RUN` with `decouple.method` = crt | ncm | tau_norm | lws keeps the
stage-1 representation (backbone, attention, extra fc: copied exactly) and replaces only the classifier head:

* crt       a freshly initialised linear classifier trained on the cached training features with
            `train.sampler` (class-balanced in the paper's configs), `train.epochs`, `lr`, `batch_size`;
            `decouple.features=augmented` re-extracts augmented features every epoch, as the paper does;
* lws       per-class scales f on the stage-1 classifier (logits = f * (W x + b)), trained the same way;
            both keep the last epoch, or with `decouple.keep=best` the epoch of best validation top-1;
* tau_norm  W / ||W||^tau without bias, tau chosen on the *validation* features (curve saved and plotted);
* ncm       class means of the L2-normalised training features, cosine or Euclidean (`model.head.ncm_metric`),
            optionally centred first (`model.head.ncm_center`, the public code's cl2n);
* logit_adjust  post-hoc logit adjustment (Menon et al. 2021): b - tau * log(prior), the stage-1 weights kept,
            tau chosen on the validation features from the same grid as tau_norm.

Features come from the stage-1 run's cache (`openlt.engine.features`), so no image passes through the
backbone while the classifier learns. The result is a run like any other (checkpoint = stage-1 weights + the
new head), so `openlt eval`, `predict`, `summary` and benches treat it alike.
"""

from __future__ import annotations

import copy
import time
from typing import Callable

import torch
from torch import nn

from openlt.config import Config
from openlt.data.build import DataBundle, prepare_data
from openlt.decoupling.classifiers import (LWSClassifier, NCMClassifier, new_linear, search_grid, search_tau,
                                           tau_normalize, train_on_features)
from openlt.engine.checkpoint import read_checkpoint, save_checkpoint
from openlt.engine.evaluate import closed_metrics
from openlt.engine.runtime import make_loader, to_device
from openlt.engine.features import extract_features, load_features
from openlt.engine.run import Run, open_run
from openlt.errors import ConfigError
from openlt.io import append_jsonl, write_json
from openlt.losses.rebalance import logit_adjust
from openlt.metrics import ShotBands
from openlt.models.model import OpenLTModel, build_model

METHODS = ("crt", "ncm", "tau_norm", "lws", "logit_adjust")
FEATURE_MODES = ("cache", "augmented")
KEEP = ("last", "best")
HEAD_PREFIX = "classifier."


def adopt_representation(cfg: Config, source: Run, log: Callable[[str], None]) -> Config:
    """The stage-2 config gets the stage-1 run's data and model (the representation is that run's); only the
    classifier changes. Returns the source config."""
    src = source.config()
    if src.decouple.method != "none":
        raise ConfigError(f"train.init_from must be a jointly trained (stage-1) run; {source.path} is itself a "
                          f"decoupled run (decouple.method={src.decouple.method})")
    if src.data.split_dir is None:  # the stage-1 run built its splits into its own directory
        src.data.split_dir = str(source.splits_dir)
    if cfg.data != src.data:
        log(f"note: data and model settings are taken from the stage-1 run {source.path}")
    cfg.data = copy.deepcopy(src.data)
    cfg.eval.many_above, cfg.eval.few_below = src.eval.many_above, src.eval.few_below
    cfg.eval.inclusive_bands = src.eval.inclusive_bands
    head = cfg.model.head
    cfg.model = copy.deepcopy(src.model)
    for option in ("ncm_metric", "ncm_center", "scale"):  # the stage-2 head's own options stay the stage-2 config's
        setattr(cfg.model.head, option, getattr(head, option))
    cfg.model.classifier = "ncm" if cfg.decouple.method == "ncm" else "linear"
    return src


def _source_linear(tensors: dict[str, torch.Tensor], source: Run, method: str) -> tuple[torch.Tensor, torch.Tensor | None]:
    weight = tensors.get("model.classifier.fc.weight")
    if weight is None:
        raise ConfigError(f"decouple.method={method} re-uses the stage-1 linear classifier, but {source.path} has "
                          f"another head; use crt or ncm, or a stage-1 run with model.classifier=linear")
    return weight.float(), tensors.get("model.classifier.fc.bias")


def build_stage2_model(cfg: Config, data: DataBundle, tensors: dict[str, torch.Tensor]) -> OpenLTModel:
    """The stage-2 network: stage-1 weights everywhere but the head, loaded exactly."""
    model = build_model(cfg, data.num_classes, data.in_chans, data.image_size)
    body = {k[len("model."):]: v for k, v in tensors.items()
            if k.startswith("model.") and not k.startswith("model." + HEAD_PREFIX)}
    missing, unexpected = model.load_state_dict(body, strict=False)
    missing = [k for k in missing if not k.startswith(HEAD_PREFIX)]
    if missing or unexpected:
        raise ConfigError(f"the stage-1 checkpoint does not match the model: missing {missing[:5]}, "
                          f"unexpected {unexpected[:5]}")
    return model


def stage1_features(cfg: Config, device: torch.device, quiet: bool) -> dict[str, dict[str, torch.Tensor]]:
    """The checked decoupling settings' stage-1 training and validation features (from its cache, or extracted
    into it). Under torchrun every process calls this (the extraction is sharded), then rank 0 alone trains."""
    method, mode = cfg.decouple.method, cfg.decouple.features
    if method not in METHODS:
        raise ConfigError(f"unknown decouple.method {method!r}; known: none, {', '.join(METHODS)}")
    if mode not in FEATURE_MODES:
        raise ConfigError(f"unknown decouple.features {mode!r}; known: {', '.join(FEATURE_MODES)}")
    if not cfg.train.init_from:
        raise ConfigError(f"decouple.method={method} needs train.init_from=STAGE1_RUN (the representation to keep)")
    if cfg.decouple.keep not in KEEP:
        raise ConfigError(f"unknown decouple.keep {cfg.decouple.keep!r}; known: {', '.join(KEEP)}")
    return load_features(open_run(cfg.train.init_from), ("train", "val"), dtype=cfg.decouple.cache_dtype,
                         device=str(device), quiet=quiet)


def train_decoupled(cfg: Config, run: Run, quiet: bool, log: Callable[[str], None], device: torch.device,
                    feats: dict[str, dict[str, torch.Tensor]] | None = None) -> Run:
    """Stage 2 on the frozen stage-1 representation (`feats`: `stage1_features(cfg, ...)`, computed when None).
    Uses no collective: under torchrun rank 0 alone runs it."""
    started = time.time()
    if feats is None:
        feats = stage1_features(cfg, device, quiet)
    method, mode = cfg.decouple.method, cfg.decouple.features
    source = open_run(cfg.train.init_from)
    adopt_representation(cfg, source, log)
    data = prepare_data(cfg, default_split_dir=run.splits_dir)
    run.write_config(cfg)
    run.write_manifest(data.manifest)

    train_x, train_y = feats["train"]["features"], feats["train"]["labels"]
    val = feats.get("val")
    tensors, _ = read_checkpoint(source.checkpoint("best"))
    model = build_stage2_model(cfg, data, tensors)
    fc = model.classifier.fc if method != "ncm" else None
    bands = ShotBands.from_config(cfg.eval)
    details: dict = {"method": method, "source_run": str(source.path), "features": mode,
                     "cache_dtype": cfg.decouple.cache_dtype, "train_features": list(train_x.shape)}

    if cfg.decouple.keep == "best" and method in ("crt", "lws") and val is None:
        raise ConfigError("decouple.keep=best chooses the stage-2 epoch on the validation split, and this run has "
                          "none (data.val_split); use decouple.keep=last")

    def val_accuracy(head: nn.Module) -> dict | None:
        if val is None:
            return None
        with torch.no_grad():
            logits = head(val["features"].to(_device_of(head))).float().cpu()
        return closed_metrics({"logits": logits, "labels": val["labels"]}, data.train_counts, bands)

    def fit(module: nn.Module) -> nn.Module:
        """cRT / LWS: SGD over the cached (or freshly augmented) features with the configured sampler, on the
        run's device (a GPU fits iNaturalist's 8,142-class head in seconds, a CPU in hours); returned on the CPU."""
        module.to(device)
        epoch_features = None
        if mode == "augmented":
            aug_model = to_device(build_stage2_model(cfg, data, tensors), device, cfg.train.channels_last)
            loader = make_loader(data.dataset("train", train=True), cfg.eval.batch_size, cfg.data.workers, device)

            def epoch_features(epoch: int) -> torch.Tensor:
                torch.manual_seed(cfg.seed * 1_000_003 + epoch)  # augmentation draws depend on (seed, epoch)
                return extract_features(aug_model, loader, device, f"augmented features {epoch + 1}", quiet,
                                        cfg.train.channels_last)[0]

        best: dict = {}  # decouple.keep=best: the head's state at the best validation top-1 so far

        def on_epoch(epoch: int, loss: float, lr: float) -> None:
            record = {"epoch": epoch + 1, "train_loss": loss, "lr": lr}
            if (acc := val_accuracy(module)) is not None:
                record["val"] = acc
                if cfg.decouple.keep == "best" and ("overall" not in best or acc["overall"] > best["overall"]):
                    best.update(overall=acc["overall"], epoch=epoch, state=copy.deepcopy(module.state_dict()))
            append_jsonl(run.log_file, record)
            log(f"epoch {epoch + 1:3d}/{cfg.train.epochs}  loss {loss:.3f}" +
                ("" if acc is None else "  val " + " ".join(f"{b} {_pct(acc[b])}" for b in ("many", "medium", "few", "overall"))))

        t = cfg.train
        train_on_features(module, train_x, train_y, epochs=t.epochs, batch_size=t.batch_size, lr=t.lr,
                          momentum=t.momentum, weight_decay=t.weight_decay, sampler=t.sampler, seed=cfg.seed,
                          epoch_features=epoch_features, on_epoch=on_epoch)
        if best:  # ties go to the earlier epoch, as in the public code (a strict >)
            module.load_state_dict(best["state"])
            details["kept_epoch"] = best["epoch"] + 1
            log(f"keeping epoch {best['epoch'] + 1} (best validation top-1 {100 * best['overall']:.1f})")
        return module.cpu()

    log(f"decoupled stage 2: {method} on the {tuple(train_x.shape)} training features of {source.path}")
    with torch.no_grad():
        if method == "crt":
            new = new_linear(train_x.shape[1], data.num_classes, seed=cfg.seed)
            with torch.enable_grad():
                new = fit(new)
            fc.weight.copy_(new.weight), fc.bias.copy_(new.bias)
        elif method == "lws":
            weight, bias = _source_linear(tensors, source, method)
            lws = LWSClassifier(weight, bias if cfg.decouple.lws_bias else None)
            with torch.enable_grad():
                lws = fit(lws)
            fitted = lws.to_linear()
            fc.weight.copy_(fitted.weight)
            fc.bias.copy_(fitted.bias if fitted.bias is not None else torch.zeros_like(fc.bias))
            details["scales"] = lws.scales.detach().tolist()
        elif method == "tau_norm":
            if val is None:
                raise ConfigError("decouple.method=tau_norm chooses tau on the validation split, and this run has "
                                  "none (data.val_split); tau is never chosen on test")
            weight, _ = _source_linear(tensors, source, method)
            tau, curve = search_tau(weight, val["features"], val["labels"], data.train_counts, cfg.decouple.taus, bands)
            fc.weight.copy_(tau_normalize(weight, None, tau)[0])
            fc.bias.zero_()
            details.update(tau=tau, tau_curve=curve)
            log(f"tau = {tau:g} (best validation top-1 over {len(curve)} values; curve in {run.tau_curve_file})")
            _plot_tau_curve(curve, tau, run, log)
        elif method == "logit_adjust":
            if val is None:
                raise ConfigError("decouple.method=logit_adjust chooses tau on the validation split, and this run "
                                  "has none (data.val_split); tau is never chosen on test")
            weight, bias = _source_linear(tensors, source, method)
            bias = torch.zeros(weight.shape[0]) if bias is None else bias.float()
            tau, curve = search_logit_adjust_tau(weight, bias, val["features"], val["labels"], data.train_counts,
                                                 cfg.decouple.taus, bands)
            fc.weight.copy_(weight)
            fc.bias.copy_(logit_adjust(bias.unsqueeze(0), data.train_counts, tau)[0])
            details.update(tau=tau, tau_curve=curve)
            log(f"logit adjustment tau = {tau:g} (best validation top-1 over {len(curve)} values)")
        else:  # ncm
            ncm = NCMClassifier(metric=cfg.model.head.ncm_metric, center=cfg.model.head.ncm_center)
            ncm.fit(train_x, train_y, data.num_classes)
            model.classifier.means.copy_(ncm.means_)
            if ncm.feature_mean_ is not None:
                model.classifier.feature_mean.copy_(ncm.feature_mean_)
    final_val = val_accuracy(model.classifier)
    if method in ("tau_norm", "ncm", "logit_adjust"):  # nothing trained epoch by epoch: one record for the log
        append_jsonl(run.log_file, {"epoch": 1, **({"val": final_val} if final_val else {})})
    details["seconds"] = round(time.time() - started, 2)
    write_json(run.decouple_file, details)
    state = {"epoch": details.get("kept_epoch", cfg.train.epochs) - 1 if method in ("crt", "lws") else 0,
             "val_overall": None if final_val is None else final_val["overall"]}
    save_checkpoint(run.checkpoint("best"), model, None, state)
    save_checkpoint(run.checkpoint("last"), model, None, state)
    log(f"stage 2 ({method}) done in {details['seconds']:.1f}s")
    return run


def search_logit_adjust_tau(weight: torch.Tensor, bias: torch.Tensor, val_x: torch.Tensor, val_y: torch.Tensor,
                            train_counts: list[int], taus: list[float], bands) -> tuple[float, list[dict]]:
    """tau of post-hoc logit adjustment by validation top-1 (ties to the smaller tau), with the per-band curve."""
    base = val_x @ weight.t() + bias
    return search_grid(lambda tau: logit_adjust(base, train_counts, tau), val_y, train_counts, taus, bands,
                       "decouple.method=logit_adjust")


def _device_of(module: nn.Module) -> torch.device:
    """Where a head's parameters (or, for NCM, its buffers) live."""
    for tensor in (*module.parameters(), *module.buffers()):
        return tensor.device
    return torch.device("cpu")


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f}"


def _plot_tau_curve(curve: list[dict], tau: float, run: Run, log: Callable[[str], None]) -> None:
    """Validation top-1 per band against tau (the paper's Fig. 3-style trade-off), saved as tau_curve.png."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log("note: matplotlib is not installed; the tau curve is in decouple.json only")
        return
    taus = [p["tau"] for p in curve]
    fig, ax = plt.subplots(figsize=(5, 3.5), dpi=120)
    for band, style in (("many", "-o"), ("medium", "-s"), ("few", "-^"), ("overall", "-k")):
        values = [None if p[band] is None else 100 * p[band] for p in curve]
        if any(v is not None for v in values):
            ax.plot(taus, [float("nan") if v is None else v for v in values], style, label=band, markersize=3)
    ax.axvline(tau, color="grey", linestyle="--", linewidth=1, label=f"chosen tau = {tau:g}")
    ax.set_xlabel("tau")
    ax.set_ylabel("validation top-1 (%)")
    ax.set_title("tau-normalisation: accuracy per shot band")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(run.tau_curve_file)
    plt.close(fig)
