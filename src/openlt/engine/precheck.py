"""Open-set settings checked before any work: `eval.open_score` against the model's head type, feature width,
class count and training-image count (:func:`openlt.openset.check_score_setting`, the scores' own conditions).

Three callers, one check: `train` (before the run directory exists: :func:`check_open_score_before_training`,
from the config and the split files), `openlt eval` (:func:`check_open_score_on_model`, once the model is
loaded, before any image is read) and `openlt bench` (at load time, for every method: :func:`config_setting`
without a trained model). What a setting cannot know yet is None and not checked there.

A fact is computed only when the score asks for it (:class:`Setting` is lazy): the default score (msp) reads
no split file and builds no network here."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from openlt.config import Config
from openlt.data.build import DataBundle, prepare_data
from openlt.decoupling import STAGE2_METHODS, build_method
from openlt.engine.manifest import check_open_decision
from openlt.engine.run import open_run
from openlt.engine.runtime import linear_head
from openlt.errors import ConfigError, OpenLTError
from openlt.losses import CLASS_WEIGHT_ARGS, check_class_weights
from openlt.models.backbones import build_backbone
from openlt.models.meta_embedding import MetaEmbeddingHead
from openlt.models.model import OpenLTModel
from openlt.openset import OpenSetScore, build_score, check_score_setting, parse_threshold

KEYS = ("head", "feature_dim", "num_classes", "num_train")


class Setting(Mapping[str, Any]):
    """The facts of :data:`KEYS`, each computed on first access by its function (None: not known here)."""

    def __init__(self, **facts: Callable[[], Any]) -> None:
        self._facts, self._known = facts, {}

    def __getitem__(self, key: str) -> Any:
        if key not in self._known:
            fact = self._facts.get(key)
            self._known[key] = None if fact is None else fact()
        return self._known[key]

    def __iter__(self) -> Iterator[str]:
        return iter(KEYS)

    def __len__(self) -> int:
        return len(KEYS)


def head_of_config(cfg: Config) -> str:
    """The head a config's model ends with: a decoupled stage 2's is its method's (cRT, LWS, τ-norm, logit
    adjustment: linear; NCM: ncm), any other the `model.classifier`."""
    if cfg.decouple.method != "none":
        return STAGE2_METHODS.get(cfg.decouple.method).head
    return cfg.model.classifier


def head_of_model(model: OpenLTModel) -> str:
    """"linear" for a head whose logits are W f + b (`runtime.linear_head`, what ViM / ReAct are fitted with),
    "meta_embedding" for OLTR's head, else the head's class name."""
    if linear_head(model) is not None:
        return "linear"
    return "meta_embedding" if isinstance(model.classifier, MetaEmbeddingHead) else type(model.classifier).__name__


def feature_width(cfg: Config) -> int:
    """D of the penultimate features of `cfg.model` (the backbone's channels; `model.feature_fc` keeps them),
    from a backbone built without weights."""
    return build_backbone(cfg.model.backbone, small_input=True, in_chans=3, pretrained=None).out_dim


def config_setting(cfg: Config, counts: Callable[[], tuple[int, int] | None] | None = None,
                   body: Callable[[], Config] | None = None) -> Setting:
    """The setting a config describes before training: head from the config, feature width from `body()`'s
    backbone (default: the config's own; a decoupled stage 2's is its stage-1 run's), (class count, training
    images) from `counts` (None: unknown), by default from `data.split_dir`'s files when the config names one
    (:func:`split_counts`)."""
    counted: dict = {}

    def count(i: int) -> int | None:
        if "value" not in counted:
            counted["value"] = (counts or (lambda: split_counts(cfg)))()
        return None if counted["value"] is None else counted["value"][i]

    return Setting(head=lambda: head_of_config(cfg), feature_dim=lambda: feature_width(body() if body else cfg),
                   num_classes=lambda: count(0), num_train=lambda: count(1))


def split_data(cfg: Config) -> DataBundle | None:
    """`data.split_dir`'s split files, parsed (images not decoded), or None without a split folder (a run builds
    its own) or when they cannot be read here (refused with its own message where the data is prepared)."""
    if cfg.data.split_dir is None:
        return None
    try:
        return prepare_data(cfg, decode=False)
    except OpenLTError:
        return None


def split_counts(cfg: Config) -> tuple[int, int] | None:
    """(classes, training images) of `data.split_dir`'s split files (:func:`split_data`), or None when unknown."""
    return counts_of(split_data(cfg))


def counts_of(data: DataBundle | None) -> tuple[int, int] | None:
    """(classes, training images) of parsed split files, None for none."""
    return None if data is None else (data.num_classes, sum(data.train_counts))


def check_validation_needs(cfg: Config, data_cfg: Config, data: Callable[[], DataBundle | None],
                           fits: bool = True) -> None:
    """What a run checks of its validation split before any work, for a config whose run does not exist yet
    (`openlt bench` at load time): a decoupled stage 2's method (`Stage2Method.check`: a τ search,
    decouple.keep=best; `fits` False for an evaluation, which fits nothing) and, with an open split,
    eval.open_threshold=auto (`manifest.check_open_decision`), on the split files `data()` reads (those of
    `data_cfg`: a decoupled stage 2's are its stage-1 run's). A run that builds its own splits (`data()` None):
    only data.val_split=null is known, and means no validation split. ConfigError, the single run's."""
    method = build_method(cfg) if fits and cfg.decouple.method != "none" else None
    if method is not None and data_cfg.data.val_split is None:
        method.check(has_val=False)
    if method is None and parse_threshold(cfg.eval.open_threshold) is not None:
        return  # (nothing to check: reads no split file)
    bundle = data()
    if bundle is None:
        return
    if method is not None:
        method.check(has_val=bundle.has("val"))
    check_open_decision(cfg.eval, bundle)


def stage1_counts(path: str) -> tuple[int, int] | None:
    """(classes, training images) of a stage-1 run's split_manifest.json (what a decoupled stage 2 fits on), or
    None when it does not record them."""
    try:
        manifest = json.loads(open_run(path).manifest_file.read_text())
        counts = manifest["train_counts"]
        return len(counts), sum(int(c) for c in counts)
    except (OpenLTError, OSError, ValueError, KeyError, TypeError):
        return None


def check_open_score(scorer: OpenSetScore, setting: Mapping[str, Any], when: str = "") -> None:
    """:func:`openlt.openset.check_score_setting` with `when` (e.g. "before training") added to its message."""
    try:
        check_score_setting(scorer, setting)
    except ConfigError as exc:
        raise ConfigError(f"{exc}{when}") from None


def check_open_score_before_training(cfg: Config) -> None:
    """`train`'s check, before the run directory exists: the run is evaluated with `eval.open_score` once it
    is trained, so a score that cannot work with this model and data is refused now (a decoupled stage 2's
    classes and images are its stage-1 run's). ConfigError naming the key and why."""
    scorer = build_score(cfg.eval.open_score, cfg.eval)
    counts = body = None
    if cfg.decouple.method != "none" and cfg.train.init_from:
        counts = lambda: stage1_counts(cfg.train.init_from)  # noqa: E731
        body = lambda: open_run(cfg.train.init_from).config()  # noqa: E731
    check_open_score(scorer, config_setting(cfg, counts, body),
                     " (refused before training: the run's final evaluation uses it)")


def check_open_score_on_model(scorer: OpenSetScore, model: OpenLTModel, data: DataBundle) -> None:
    """An evaluation's check, once the model is built and before any image is read."""
    check_open_score(scorer, Setting(head=lambda: head_of_model(model), feature_dim=lambda: model.backbone.out_dim,
                                     num_classes=lambda: data.num_classes, num_train=lambda: sum(data.train_counts)))


def check_loss_weights(cfg: Config, counts: Callable[[], tuple[int, int] | None] | None = None) -> None:
    """The per-class weights of `train.loss_args` (focal's alpha) against the class count, for a config that trains
    its loss (a decoupled stage 2 trains none): `counts` (default: :func:`split_counts`, from `data.split_dir`'s
    files) gives (classes, training images) or None (unknown: not checked here; the loss says so at its build).
    `train` calls it before the run directory exists, `bench` at load time for every method. ConfigError naming
    the key, its length and the class count."""
    if cfg.decouple.method != "none" or not set(CLASS_WEIGHT_ARGS.get(cfg.train.loss, ())) & set(cfg.train.loss_args):
        return
    known = (counts or (lambda: split_counts(cfg)))()
    if known is not None:
        check_class_weights(cfg.train.loss, cfg.train.loss_args, known[0])
