"""Hostile configs, in one table: every bad value, relation, YAML file or `base:` chain goes through the CLI
(`openlt config` and `openlt train`) and must give exit status 2 and ONE line on stderr naming the culprit
(the config key, and the file and line when it came from a file), no traceback, and no run directory.

Add a case by adding a row to a table below: CLI overrides (OVERRIDES) or a YAML file's text (FILES), and
the texts the error line must contain. docs/robustness.md lists the kinds and how many rows each has.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pytest

from openlt.cli import main
from openlt.config import INACTIVE_RULES, Config, build_config
from openlt.errors import ConfigError

REPORT_FIGURES = "unrasterized"  # tests/conftest.py: report.html figures built, not rendered (none is looked at)


@dataclass
class Case:
    kind: str
    id: str
    given: tuple[str, ...] | str  # overrides (key=value ...) or the text of a YAML file (FILES)
    needles: tuple[str, ...]  # what the one error line must contain


def O(kind: str, id: str, overrides: str | tuple[str, ...], *needles: str) -> Case:  # noqa: E743
    return Case(kind, id, (overrides,) if isinstance(overrides, str) else overrides, needles)


# the head each decoupling method fills (model.classifier), with its article
STAGE2_HEADS = {"crt": "a linear", "lws": "a linear", "tau_norm": "a linear", "logit_adjust": "a linear",
                "ncm": "an ncm", "fslwf": "a cosine"}

OVERRIDES = [
    # --- numbers that are not finite (YAML .inf / .nan, or text that parses as one)
    O("non-finite", "lr-inf", "train.lr=.inf", "'train.lr'", "finite", "inf"),
    O("non-finite", "lr-nan", "train.lr=.nan", "'train.lr'", "finite"),
    O("non-finite", "lr-inf-text", "train.lr=inf", "'train.lr'", "finite"),
    O("non-finite", "momentum-minus-inf", "train.momentum=-.inf", "'train.momentum'", "finite"),
    O("non-finite", "threshold-nan", "eval.open_threshold=.nan", "'eval.open_threshold'", "'auto' or a finite number"),
    O("non-finite", "imbalance-factor-inf", "data.split.imbalance_factor=.inf", "'data.split.imbalance_factor'", "finite"),
    O("non-finite", "loss-arg-nan", "train.loss_args={weight: .nan}", "'train.loss_args'", "finite"),
    O("non-finite", "tau-inf", "decouple.taus=[1.0, .inf]", "'decouple.taus'", "finite", "item 1"),
    O("non-finite", "milestone-nan", "train.milestones=[.nan]", "'train.milestones'", "finite"),
    O("non-finite", "head-scale-inf", "model.head.scale=.inf", "'model.head.scale'", "finite"),
    # --- negative or zero where it means nothing
    O("out-of-range", "lr-negative", "train.lr=-1", "'train.lr'", "> 0", "-1"),
    O("out-of-range", "lr-zero", "train.lr=0", "'train.lr'", "> 0"),
    O("out-of-range", "workers-negative", "data.workers=-1", "'data.workers'", ">= 0"),
    O("out-of-range", "eval-batch-zero", "eval.batch_size=0", "'eval.batch_size'", ">= 1"),
    O("out-of-range", "train-batch-zero", "train.batch_size=0", "'train.batch_size'", ">= 1"),
    O("out-of-range", "keep-known-2", "eval.keep_known=2", "'eval.keep_known'", "<= 1"),
    O("out-of-range", "keep-known-0", "eval.keep_known=0", "'eval.keep_known'", "> 0"),
    O("out-of-range", "image-size-negative", "data.image_size=-8", "'data.image_size'", ">= 8", "-8"),
    O("out-of-range", "image-size-one-pixel", "data.image_size=1", "'data.image_size'", ">= 8", "1"),
    O("out-of-range", "epochs-zero", "train.epochs=0", "'train.epochs'", ">= 1"),
    O("out-of-range", "eval-every-zero", "train.eval_every=0", "'train.eval_every'", ">= 1"),
    O("out-of-range", "weight-decay-negative", "train.weight_decay=-1e-4", "'train.weight_decay'", ">= 0"),
    O("out-of-range", "warmup-negative", "train.warmup_epochs=-1", "'train.warmup_epochs'", ">= 0"),
    O("out-of-range", "momentum-above-1", "train.momentum=1.5", "'train.momentum'", "< 1"),
    O("out-of-range", "step-gamma-zero", "train.step_gamma=0", "'train.step_gamma'", "> 0"),
    O("out-of-range", "seed-negative", "seed=-1", "'seed'", ">= 0"),
    O("out-of-range", "split-seed-negative", "data.split.seed=-5", "'data.split.seed'", ">= 0"),
    O("out-of-range", "val-per-class-negative", "data.split.val_per_class=-1", "'data.split.val_per_class'", ">= 0"),
    O("out-of-range", "test-per-class-zero", "data.split.test_per_class=0", "'data.split.test_per_class'", ">= 1"),
    O("out-of-range", "n-max-zero", "data.split.n_max=0", "'data.split.n_max'", ">= 1"),
    O("out-of-range", "openmax-tail-zero", "eval.openmax_tail=0", "'eval.openmax_tail'", ">= 2"),
    O("out-of-range", "openmax-tail-one", "eval.openmax_tail=1", "'eval.openmax_tail'", ">= 2"),
    O("bad-name", "override-line-break", "name=x\ny", "name=x", "line break"),
    # every other line break YAML folds or str.splitlines() splits at, one row each (U+0085 became "x y")
    *(O("bad-name", f"override-line-break-{ord(ch):04x}", f"name=x{ch}y", "name=x", f"line break ({ch!r})")
      for ch in "\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"),
    O("out-of-range", "milestone-negative", "train.milestones=[-3]", "'train.milestones'", ">= 0"),
    O("out-of-range", "taus-empty", "decouple.taus=[]", "'decouple.taus'", "not be empty"),
    # --- values that contradict each other
    # a decoupled stage 2 builds the head its method fills: any other model.classifier, set explicitly, is refused
    # by the config check (was: `openlt config` exit 0, and only `openlt train` refused it), "an ncm head"
    *(O("relation", f"stage2-{method}-head-{head}", (f"decouple.method={method}", f"model.classifier={head}"),
        f"override 'model.classifier={head}'", f"'model.classifier' is '{head}', but decouple.method={method} fills "
        f"{fills} head; drop model.classifier")
      for method, fills in STAGE2_HEADS.items()
      for head in ("linear", "cosine", "normed_linear", "meta_embedding") if not fills.endswith(f" {head}")),
    *(O("relation", f"stage2-{method}-head-ncm", (f"decouple.method={method}", "model.classifier=ncm"),
        "'model.classifier' is 'ncm', a head only decouple.method=ncm fills", f"decouple.method={method}, which "
        "builds its own head") for method in STAGE2_HEADS if method != "ncm"),
    O("relation", "few-below-above-many", "eval.few_below=200", "'eval.few_below'", "eval.many_above (100)"),
    O("relation", "bands-crossed", ("eval.many_above=10", "eval.few_below=30"), "'eval.few_below'", "overlap"),
    O("relation", "inclusive-bands-sharing-an-edge", ("eval.many_above=44", "eval.few_below=44",
                                                      "eval.inclusive_bands=true"), "'eval.few_below'",
      "must be < eval.many_above (44) with eval.inclusive_bands=true"),
    O("relation", "nesterov-without-momentum", ("train.nesterov=true", "train.momentum=0"), "'train.nesterov'",
      "momentum > 0"),
    O("relation", "in-chans-2", "data.in_chans=2", "'data.in_chans'", "1, 3", "got 2"),
    O("relation", "in-chans-0", "data.in_chans=0", "'data.in_chans'", "1, 3"),
    O("relation", "label-smoothing-5", "train.loss_args={label_smoothing: 5}", "'train.loss_args'", "label_smoothing",
      "< 1"),
    O("relation", "label-smoothing-1", "train.loss_args={label_smoothing: 1.0}", "label_smoothing", "< 1"),
    O("relation", "label-smoothing-negative", "train.loss_args={label_smoothing: -0.1}", "label_smoothing", ">= 0"),
    O("relation", "n-min-above-n-max", ("data.split.n_min=50", "data.split.n_max=10"), "'data.split.n_min'",
      "n_max (10)"),
    O("relation", "min-lr-above-lr", "train.min_lr=1", "'train.min_lr'", "train.lr (0.1)"),
    # trial 14b D2: an NCM head in a stage-1 run trained nothing (chance accuracy, exit 0)
    O("relation", "ncm-head-in-stage-1", "model.classifier=ncm", "override 'model.classifier=ncm': config key "
      "'model.classifier' is 'ncm', a head only decouple.method=ncm fills", "stage-1 run (decouple.method=none)",
      "decouple.method=ncm train.init_from=RUN"),
    O("relation", "ncm-head-in-crt", ("model.classifier=ncm", "decouple.method=crt", "train.init_from=x"),
      "'model.classifier' is 'ncm'", "decouple.method=crt, which builds its own head: drop it"),
    # --- names that are not one of the choices or registered
    O("unknown-name", "dataset", "data.dataset=imagenet", "unknown data.dataset 'imagenet'", "image-folder"),
    O("unknown-name", "transform", "data.transform=big", "unknown data.transform 'big'", "imagenet"),
    O("unknown-name", "schedule", "train.schedule=linear", "unknown train.schedule 'linear'", "cosine"),
    O("unknown-name", "amp", "train.amp=fp8", "unknown train.amp 'fp8'", "bf16"),
    O("unknown-name", "profile", "data.split.profile=zipf", "unknown data.split.profile 'zipf'", "pareto"),
    O("unknown-name", "backbone", "model.backbone=resnet11", "unknown backbone 'resnet11'", "model.backbone"),
    O("unknown-name", "classifier", "model.classifier=mlp", "unknown classifier 'mlp'", "model.classifier"),
    O("unknown-name", "loss", "train.loss=cross_entropy", "unknown loss 'cross_entropy'", "train.loss"),
    O("unknown-name", "sampler", "train.sampler=balanced", "unknown sampler 'balanced'", "class_balanced"),
    O("unknown-name", "open-score", "eval.open_score=energyy", "unknown open-set score 'energyy'", "eval.open_score"),
    O("unknown-name", "device", "train.device=bogus", "'train.device'", "cuda:N", "'bogus'"),
    O("unknown-name", "unknown-key", "train.epoch=3", "unknown config key 'train.epoch'", "did you mean 'train.epochs'"),
    # --- values of the wrong type
    O("wrong-type", "epochs-text", "train.epochs=abc", "'train.epochs'", "integer", "'abc'"),
    O("wrong-type", "epochs-fraction", "train.epochs=2.5", "'train.epochs'", "integer"),
    O("wrong-type", "bool-number", "train.nesterov=3", "'train.nesterov'", "true or false"),
    O("wrong-type", "section-value", "train=3", "'train' is a section"),
    O("wrong-type", "open-classes-fraction", "data.split.open_classes=1.5", "'data.split.open_classes'", "whole number"),
    O("wrong-type", "open-classes-negative", "data.split.open_classes=-2", "'data.split.open_classes'", ">= 0"),
    O("wrong-type", "threshold-text", "eval.open_threshold=abc", "'eval.open_threshold'", "'auto' or a finite number"),
    O("wrong-type", "threshold-bool", "eval.open_threshold=true", "'eval.open_threshold'", "'auto' or a finite number"),
    O("wrong-type", "milestones-text", "train.milestones=[a]", "'train.milestones'", "item 0", "number"),
    O("wrong-type", "loss-args-number", "train.loss_args=3", "'train.loss_args'", "mapping"),
    O("wrong-type", "optional-int-text", "data.image_size=abc", "'data.image_size'", "integer", "(or null)"),
    O("wrong-type", "optional-float-text", "train.backbone_lr=abc", "'train.backbone_lr'", "number", "(or null)"),
    O("wrong-type", "choice-bool", "train.amp=false", "'train.amp'", "must be a string, got False",
      "one of auto, none, bf16, fp16"),  # the allowed values beside a type error (trial 5)
    O("wrong-type", "choice-yaml11-bool", "train.amp=off", "'off' is a boolean in YAML 1.1",
      "for a yes / no key write true or false, else quote it"),
    # --- names and file names that would leave their folder
    O("bad-name", "run-name-parent", "name=../../x", "'name'", "plain name", "'../../x'"),
    O("bad-name", "run-name-absolute", "name=/abs/x", "'name'", "plain name"),
    O("bad-name", "run-name-slash", "name=a/b", "'name'", "plain name"),
    O("bad-name", "run-name-dot", "name=.", "'name'", "plain name"),
    # trial 14b D6: a run name with a control character broke the "run directory:" line (class names were refused)
    O("bad-name", "run-name-newline", 'name="x\\ny"', "'name' must not contain the control character '\\n'"),
    O("bad-name", "run-name-tab", 'name="x\\ty"', "control character '\\t'"),
    O("bad-name", "run-name-carriage-return", 'name="x\\ry"', "control character '\\r'"),
    O("bad-name", "run-name-escape", 'name="x\\ey"', "control character '\\x1b'"),
    O("bad-name", "run-name-del", 'name="x\\x7fy"', "control character '\\x7f'"),
    O("bad-name", "run-name-raw-tab", "name=x\ty", "control character '\\t'"),
    O("bad-name", "run-name-c1", 'name="x\\x85y"', "control character '\\x85'"),
    O("bad-name", "split-file-parent", "data.train_split=../x.txt", "'data.train_split'", "inside data.split_dir"),
    O("bad-name", "split-file-absolute", "data.test_split=/etc/passwd", "'data.test_split'", "inside data.split_dir"),
    O("bad-name", "nul-in-root", 'data.root="/data/a\\0b"', "'data.root'", "NUL byte"),
    # --- numbers in YAML 1.1's other forms: refused, naming the override (never 1:30 read as 90)
    O("number-form", "sexagesimal", "train.epochs=1:30", "override 'train.epochs=1:30'", "sexagesimal", "90"),
    O("number-form", "sexagesimal-float", "train.lr=1:30.5", "override 'train.lr=1:30.5'", "sexagesimal"),
    O("number-form", "hex", "train.epochs=0x10", "override 'train.epochs=0x10'", "hexadecimal", "16"),
    O("number-form", "binary", "seed=0b11", "override 'seed=0b11'", "binary"),
    O("number-form", "octal-leading-zero", "train.epochs=010", "override 'train.epochs=010'", "octal", "8"),
    O("number-form", "underscore-int", "train.epochs=1_0", "override 'train.epochs=1_0'", "_ separators"),
    O("number-form", "underscore-float", "train.lr=1_0.5", "override 'train.lr=1_0.5'", "_ separators"),
    O("number-form", "in-a-list", "decouple.taus=[1.0, 0x2]", "'decouple.taus=[1.0, 0x2]'", "item 1", "hexadecimal"),
    O("number-form", "in-loss-args", "train.loss_args={weight: 1_0}", "key 'weight'", "_ separators"),
    O("number-form", "quoted-underscore", 'train.lr="1_0"', "'train.lr'", "plain decimal number"),
    O("number-form", "quoted-spaces", 'eval.open_threshold=" 0.5"', "'eval.open_threshold'", "finite number"),
    O("number-form", "bool-yes", "model.attention=yes", "override 'model.attention=yes'", "YAML 1.1", "True"),
    O("number-form", "bool-off", "train.nesterov=off", "override 'train.nesterov=off'", "YAML 1.1", "False"),
    O("number-form", "bool-as-name", "name=no", "override 'name=no'", "quote it to mean text"),
    # --- integers past their declared upper bound (they crashed inside numpy / torch, or forked hundreds)
    O("too-large", "seed-1e30", "seed=1000000000000000000000000000000", "'seed'", "< 4294967296"),
    O("too-large", "seed-2-32", "seed=4294967296", "'seed'", "< 4294967296"),
    O("too-large", "split-seed", "data.split.seed=4294967296", "'data.split.seed'", "< 4294967296"),
    O("too-large", "train-batch", "train.batch_size=1000000000000", "'train.batch_size'", "<= 1048576"),
    O("too-large", "eval-batch", "eval.batch_size=2000000", "'eval.batch_size'", "<= 1048576"),
    O("too-large", "image-size", "data.image_size=100000", "'data.image_size'", "<= 4096"),
    O("too-large", "epochs", "train.epochs=1.0e+30", "'train.epochs'", "<= 100000"),
    O("too-large", "workers", "data.workers=500", "'data.workers'", "<= 64", "fixed cap"),
    O("too-large", "open-classes", "data.split.open_classes=10000000000", "'data.split.open_classes'", "<= 1000000000"),
    # --- floats past their declared upper bound (they passed, then training stopped on a non-finite loss)
    O("too-large", "lr-1e300", "train.lr=1e300", "'train.lr'", "<= 100", "1e+300"),
    O("too-large", "weight-decay", "train.weight_decay=5", "'train.weight_decay'", "<= 1"),
    O("too-large", "odin-temperature", "eval.odin_temperature=1e300", "'eval.odin_temperature'", "<= 1000000"),
    O("too-large", "tau-item", "decouple.taus=[1.0, 1e300]", "'decouple.taus'", "items must be >= 0 and <= 10"),
    O("too-large", "loss-weight", "train.loss_args={weight: 1e300}", "'train.loss_args'", "weight must be >= 0 and "
      "<= 1000", "a loss term's weight"),
    O("too-large", "loss-margin", "train.loss_args={margin_repel: 1e9}", "margin_repel must be >= 0 and <= 1000"),
    O("too-large", "loss-scale", "train.loss_args={s: 1e300}", "s must be > 0 and <= 1000", "a logit scale"),
    O("too-large", "loss-temperature", "train.loss_args={tau: 1e300}", "tau must be >= 0 and <= 10"),
    O("too-large", "loss-other-number", "train.loss_args={alpha: [1, 1e300]}", "alpha[1] must be between -1000000 and "
      "1000000"),
    # --- loss options the loss does not take: `openlt config` refuses them as `openlt train` does (one check)
    O("loss-args", "ce-bogus", "train.loss_args.bogus=3", "override 'train.loss_args.bogus=3': bad arguments for "
      "loss 'ce' (train.loss_args.bogus): it takes no argument 'bogus'; its arguments: label_smoothing (default 0.0)"),
    # trial 14b D7a: the loss's own arguments named, no Python internals ("CrossEntropy.__init__() got ...",
    # "float() argument must be ... 'NoneType'")
    O("loss-args", "focal-gamma-empty", ("train.loss=focal", "train.loss_args.gamma="), "override "
      "'train.loss_args.gamma=': bad arguments for loss 'focal' (train.loss_args.gamma): gamma is empty (null); give "
      "it a value or leave it out (default 2.0); its arguments: gamma (default 2.0), alpha (default None)"),
    O("loss-args", "ce-label-smoothing-empty", "train.loss_args.label_smoothing=", "label_smoothing is empty (null)"),
    O("loss-args", "balanced-softmax-any", ("train.loss=balanced_softmax", "train.loss_args.tau=1"),
      "(train.loss_args.tau): it takes no argument 'tau'; it takes no arguments (leave train.loss_args empty)"),
    O("loss-args", "oltr-flag-number", ("train.loss=oltr", "train.loss_args.public_code_centroid_grad=3"),
      "public_code_centroid_grad must be true or false, got 3"),
    O("loss-args", "focal-typo", ("train.loss=focal", "train.loss_args.gama=2"), "bad arguments for loss 'focal'",
      "'gama'"),
    O("loss-args", "ldam-margin", ("train.loss=ldam", "train.loss_args.margin=0.5"), "bad arguments for loss 'ldam'",
      "'margin'"),
    O("loss-args", "oltr-tau", ("train.loss=oltr", "train.loss_args.tau=1"), "bad arguments for loss 'oltr'", "'tau'"),
    O("loss-args", "logit-adjusted-taus", ("train.loss=logit_adjusted", "train.loss_args.taus=1"),
      "bad arguments for loss 'logit_adjusted'", "'taus'"),
    # --- a data folder left empty (a shell variable that expanded to nothing): was null without a word (a new split
    #     built into the run instead of data.split_dir's, the open images read under data.root)
    O("empty-folder", "split-dir-empty", "data.split_dir=", "override 'data.split_dir=': config key "
      "'data.split_dir' is empty: give the folder, data.split_dir=FOLDER, or leave the override out"),
    O("empty-folder", "open-root-empty", "data.open_root=", "override 'data.open_root=': config key "
      "'data.open_root' is empty"),
    O("empty-folder", "root-empty", "data.root=", "override 'data.root=': config key 'data.root' is empty"),
    O("empty-folder", "split-dir-spaces", "data.split_dir=  ", "override 'data.split_dir=  ': config key "
      "'data.split_dir' is empty"),
    O("empty-folder", "open-root-tab", "data.open_root=\t", "'data.open_root' is empty"),
    O("empty-folder", "split-dir-quoted-blank", 'data.split_dir=" "', "'data.split_dir' must name a file or "
      "folder, got blank ' '"),
]

DUP = "name: a\ntrain:\n  lr: 0.1\nname: b\n"
LAUGHS = "".join([
    'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n',
    *(f"{c}: &{c} [{', '.join([f'*{p}'] * 9)}]\n" for p, c in zip("abcdefgh", "bcdefghi")),
])


def F(kind: str, id: str, text: str | bytes, *needles: str) -> Case:  # noqa: E743
    return Case(kind, id, text, needles)  # type: ignore[arg-type]


FILES = [
    F("yaml", "duplicate-top-key", DUP, "c.yaml, line 4", "'name' appears twice", "first on line 1"),
    F("yaml", "duplicate-nested-key", "train:\n  lr: 0.1\n  epochs: 2\n  lr: 0.2\n", "line 4", "'train.lr' appears twice"),
    F("yaml", "duplicate-in-flow-mapping", "train:\n  loss_args: {weight: 1, weight: 2}\n", "line 2",
      "'train.loss_args.weight' appears twice"),
    F("yaml", "duplicate-section", "train:\n  lr: 0.1\ntrain:\n  epochs: 2\n", "line 3", "'train' appears twice"),
    F("yaml", "billion-laughs", LAUGHS, "c.yaml, line 1", "anchors and aliases"),
    F("yaml", "alias", "train:\n  lr: &lr 0.1\n  min_lr: *lr\n", "line 2", "anchors and aliases"),
    F("yaml", "merge-key", "train:\n  lr: 0.1\n  <<: {epochs: 2}\n", "line 3", "merge keys"),
    F("yaml", "latin-1", "name: café\n".encode("latin-1"), "c.yaml", "not UTF-8", "line 1", "0xe9"),
    F("yaml", "utf-16", "name: x\n".encode("utf-16"), "c.yaml", "not UTF-8"),
    F("yaml", "nested-too-deeply", "a: " + "[" * 3000 + "]" * 3000 + "\n", "c.yaml", "nested too deeply"),
    F("yaml", "syntax-error", "name: x\ntrain:\n  epochs: 2\n lr: [0.1\n", "c.yaml", "not valid YAML", "line 4"),
    F("yaml", "not-a-mapping", "- a\n- b\n", "c.yaml", "must hold a mapping"),
    F("yaml", "nul-in-value", 'name: "a\\0b"\n', "c.yaml, line 1", "'name'"),
    F("bad-name", "file-run-name-tab", 'name: "x\\ty"\n', "c.yaml, line 1", "'name' must not contain the control "
      "character '\\t'"),
    F("relation", "file-ncm-head", "model:\n  classifier: ncm\n", "c.yaml, line 2", "'model.classifier' is 'ncm'"),
    F("yaml", "value-names-its-line", "name: x\ntrain:\n  epochs: 3\n  lr: -0.5\n", "c.yaml, line 4", "'train.lr'", "> 0"),
    F("base", "cycle-self", "base: c.yaml\n", "c.yaml, line 1", "cycle"),
    F("base", "cycle-two-files", "base: other.yaml\n", "other.yaml, line 1", "cycle", "c.yaml -> "),
    F("base", "number", "base: 3\n", "c.yaml, line 1", "must name a config file", "3"),
    F("base", "list", "base: [a.yaml]\n", "c.yaml, line 1", "must name a config file"),
    F("base", "null", "base:\n", "c.yaml, line 1", "must name a config file", "None"),
    F("base", "empty-text", "base: ''\n", "c.yaml, line 1", "must name a config file"),
    F("base", "missing-file", "base: nope.yaml\n", "c.yaml, line 1", "'nope.yaml'", "not found"),
    F("base", "a-folder", "base: .\n", "c.yaml, line 1", "is not a file"),
    F("base", "packaged-name-misspelt", "base: fmnist_lt/plian\n", "c.yaml, line 1", "closest: fmnist_lt/plain"),
    F("number-form", "file-sexagesimal", "train:\n  epochs: 1:30\n", "c.yaml, line 2", "key 'train.epochs'",
      "sexagesimal"),
    F("number-form", "file-hex-in-list", "train:\n  milestones: [2, 0x4]\n", "c.yaml, line 2",
      "key 'train.milestones', item 1", "hexadecimal"),
    F("number-form", "file-bool-on", "model:\n  attention: on\n", "c.yaml, line 2", "key 'model.attention'",
      "'on' is a boolean in YAML 1.1"),
    F("empty-folder", "file-open-root-blank", "data:\n  open_root: '  '\n", "c.yaml, line 2", "'data.open_root' must "
      "name a file or folder, got blank '  '"),
    F("relation", "file-stage2-head", "decouple:\n  method: crt\nmodel:\n  classifier: cosine\n", "c.yaml, line 4",
      "'model.classifier' is 'cosine', but decouple.method=crt fills a linear head; drop model.classifier"),
    F("too-large", "file-knn-k", "eval:\n  knn_k: 10000000000\n", "c.yaml, line 2", "'eval.knn_k'", "<= 1000000000"),
]
CASES = OVERRIDES + FILES


def _arguments(case: Case, tmp: Path, command: str) -> list[str]:
    config = tmp / "c.yaml"
    if isinstance(case.given, tuple):
        config.write_text("name: ok\n")
        overrides = list(case.given)
    else:
        (tmp / "other.yaml").write_text("base: c.yaml\n")  # for the two-file cycle
        data = case.given if isinstance(case.given, bytes) else case.given.encode("utf-8")
        config.write_bytes(data)
        overrides = []
    extra = [f"out_dir={tmp / 'runs'}", "--quiet"] if command == "train" else []
    return [command, str(config), *overrides, *extra]


def test_the_tables_cover_every_kind_with_several_instances():
    ids = [f"{c.kind}/{c.id}" for c in CASES]
    assert len(ids) == len(set(ids))
    kinds = {c.kind for c in CASES}
    assert kinds == {"non-finite", "out-of-range", "relation", "unknown-name", "wrong-type", "bad-name", "yaml", "base",
                     "number-form", "too-large", "loss-args", "empty-folder"}
    for kind in kinds:
        assert sum(c.kind == kind for c in CASES) >= 5, kind


@pytest.mark.parametrize("command", ["config", "train"])
@pytest.mark.parametrize("case", CASES, ids=[f"{c.kind}/{c.id}" for c in CASES])
def test_a_hostile_config_is_one_line_naming_the_culprit(case: Case, command: str, tmp_path, capsys):
    args = _arguments(case, tmp_path, command)
    capsys.readouterr()
    code = main(args)
    out, err = capsys.readouterr()
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, f"exit {code}\nstdout: {out[-2000:]}\nstderr: {err}"
    assert len(lines) == 1, f"expected one line on stderr, got:\n{err}"
    assert lines[0].startswith(f"openlt {command}: error: "), lines[0]
    assert "Traceback" not in out + err
    for needle in case.needles:
        assert needle in lines[0], f"{needle!r} not in: {lines[0]}"
    assert not (tmp_path / "runs").exists(), "a run directory was created for a config refused before training"


def test_billion_laughs_is_refused_at_once(tmp_path):
    import time

    path = tmp_path / "c.yaml"
    path.write_text(LAUGHS)
    start = time.perf_counter()
    with pytest.raises(ConfigError, match="anchors and aliases"):
        build_config(path)
    assert time.perf_counter() - start < 1.0


def test_every_problem_is_reported_at_once_each_naming_its_key_and_line(tmp_path):
    (tmp_path / "base.yaml").write_text("train:\n  epochs: 0\n  lr: 0.1\n")
    (tmp_path / "c.yaml").write_text("base: base.yaml\ndata:\n  workers: -1\neval:\n  batch_size: 0\n")
    with pytest.raises(ConfigError) as info:
        build_config(tmp_path / "c.yaml", ["train.lr=.inf", "eval.keep_known=2", "model.backbone=resnet11"])
    lines = str(info.value).splitlines()
    assert len(lines) == 6, lines
    by_key = {key: line for line in lines for key in ("data.workers", "eval.batch_size", "train.epochs",
                                                       "train.lr", "eval.keep_known", "model.backbone") if key in line}
    assert by_key["data.workers"].startswith(f"{tmp_path / 'c.yaml'}, line 3: ")
    assert by_key["eval.batch_size"].startswith(f"{tmp_path / 'c.yaml'}, line 5: ")
    assert by_key["train.epochs"].startswith(f"{tmp_path / 'base.yaml'}, line 2: ")  # the base file's line
    assert by_key["train.lr"].startswith("override 'train.lr=.inf': config key 'train.lr'")  # an override, named
    assert "unknown backbone 'resnet11'" in by_key["model.backbone"]


def _int_fields(section=None, prefix=""):
    """(dotted key, field) of every integer-valued key of the config (int, or int | None)."""
    import dataclasses
    from typing import get_type_hints

    section = section or Config()
    hints = get_type_hints(type(section))
    for f in dataclasses.fields(section):
        value = getattr(section, f.name)
        if dataclasses.is_dataclass(value):
            yield from _int_fields(value, f"{prefix}{f.name}.")
        elif hints[f.name] in (int, int | None) and "rule" in f.metadata and not f.metadata["rule"].allowed():
            yield f"{prefix}{f.name}", f


INT_KEYS = [key for key, _ in _int_fields()]


def test_every_integer_key_declares_an_upper_bound():
    assert len(INT_KEYS) >= 25 and {"seed", "data.workers", "data.image_size", "train.batch_size"} <= set(INT_KEYS)
    for key, f in _int_fields():
        rule = f.metadata["rule"]
        assert rule.le is not None or rule.lt is not None or rule.check is not None, f"{key} has no upper bound"


@pytest.mark.parametrize("key", INT_KEYS)
def test_a_huge_integer_is_refused_naming_its_key(key):
    for value in ("10" + "0" * 30, "1.0e+30", "5000000000"):  # 1.0e+30: a float, an integer once whole
        with pytest.raises(ConfigError, match=re.escape(f"override '{key}={value}': config key '{key}' must be")):
            build_config(None, [f"{key}={value}"])


def _enabling(key: str) -> list[str]:
    """The override that makes a key only one choice uses take effect (config.INACTIVE_RULES: a non-default value
    under another choice is refused), e.g. train.schedule=step for train.step_epochs; [] for any other key."""
    for k, choice, _, needs in INACTIVE_RULES:
        if k == key:
            return [f"{choice}={needs.split('=', 1)[1].split()[0] if '=' in needs else 'crt'}"]
    return []


@pytest.mark.parametrize("key", INT_KEYS)
def test_an_integer_key_accepts_values_up_to_its_bound(key):
    import dataclasses

    rule = dict((k, f) for k, f in _int_fields())[key].metadata["rule"]
    top = 64 if key == "data.workers" else int(rule.le if rule.le is not None else rule.lt - 1)
    overrides = [f"{key}={top}"]
    if key in ("eval.few_below", "data.split.n_min"):  # relations: few_below <= many_above, n_min <= n_max
        overrides.append(f"{'eval.many_above' if key == 'eval.few_below' else 'data.split.n_max'}={top}")
    overrides += _enabling(key)
    cfg = build_config(None, overrides)
    section = cfg
    for part in key.split(".")[:-1]:
        section = getattr(section, part)
    assert getattr(section, key.rsplit(".", 1)[-1]) == top and dataclasses.is_dataclass(cfg)


def test_an_overrides_problem_names_the_override_not_the_files_line(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("name: x\neval:\n  few_below: 20\ntrain:\n  loss_args: {weight: 1}\n  epochs: 4\n")
    with pytest.raises(ConfigError) as info:
        build_config(config, ["eval.many_above=5", "train.loss_args.weight=.nan", "train.epochs=1e30"])
    lines = sorted(str(info.value).splitlines())
    assert len(lines) == 3, lines
    epochs, loss_args, bands = (next(line for line in lines if key in line)
                                for key in ("'train.epochs'", "'train.loss_args'", "'eval.few_below'"))
    # the relation: the file's value and the override that made it wrong, both named
    assert bands.startswith(f"{config}, line 3 and override 'eval.many_above=5': "), bands
    # the file's only entry of a mapping, set by an override: the override alone (its other entries would be merged)
    assert loss_args.startswith("override 'train.loss_args.weight=.nan': ") and "line 5" not in loss_args, loss_args
    # a key the file sets too: the override alone (the file's line 6 is not the culprit)
    assert epochs.startswith("override 'train.epochs=1e30': ") and "line 6" not in epochs, epochs


def test_plain_number_forms_are_still_numbers():
    cfg = build_config(None, ["train.epochs=+5", "train.lr=1e-4", "train.momentum=.5", "train.weight_decay=5.0e-4",
                              "seed=0", "eval.open_threshold=-1.5", "train.warmup_epochs=0.", 'name="0x10"'])
    assert (cfg.train.epochs, cfg.train.lr, cfg.train.momentum, cfg.eval.open_threshold) == (5, 1e-4, 0.5, -1.5)
    assert cfg.name == "0x10" and cfg.train.warmup_epochs == 0.0  # quoted: text, as written
    assert build_config(None, ["model.attention=True", "train.nesterov=FALSE", "name='no'"]).name == "no"


def test_base_may_name_a_packaged_config(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("base: fmnist_lt/plain\ntrain:\n  epochs: 3\n")
    cfg = build_config(config)
    packaged = build_config("fmnist_lt/plain")
    assert cfg.train.epochs == 3 and cfg.name == packaged.name and cfg.train.lr == packaged.train.lr
    (tmp_path / "fmnist_lt").mkdir()  # a file of that name beside the config wins, as on the command line
    (tmp_path / "fmnist_lt" / "plain").write_text("name: local\n")
    assert build_config(config).name == "local"
    (tmp_path / "fmnist_lt" / "plain").write_text("base: ../c.yaml\n")  # and a cycle through it is still one
    with pytest.raises(ConfigError, match="makes a cycle"):
        build_config(config)


def test_a_value_fixed_by_an_override_is_not_a_problem(tmp_path):
    (tmp_path / "c.yaml").write_text("train:\n  lr: -1\n")
    assert build_config(tmp_path / "c.yaml", ["train.lr=0.05"]).train.lr == 0.05


def test_valid_unusual_input_is_accepted(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_bytes(b"\xef\xbb\xbfname: bom\r\ntrain:\r\n  lr: 1e-4\r\n  loss_args: {label_smoothing: 0.1}\r\n")
    cfg = build_config(path, ["eval.open_threshold=1e-3", "data.split.open_classes=2.0", "train.device=cuda:1",
                              "model.backbone=timm/vit_tiny_patch16_224"])
    assert (cfg.name, cfg.train.lr, cfg.eval.open_threshold, cfg.data.split.open_classes) == ("bom", 1e-4, 1e-3, 2)
    assert build_config(None, ["eval.open_threshold=auto", "data.split.open_classes=[bag, 3]"]).eval.open_threshold == "auto"
    empty = tmp_path / "empty.yaml"
    empty.write_text("# nothing but a comment\n")
    assert build_config(empty) == Config()


def test_ldam_without_its_reweighting_is_a_one_line_warning():
    config = Path(__file__).parent.parent / "configs" / "fmnist_lt" / "loss_ldam_drw.yaml"  # drw_epoch 320
    with pytest.warns(UserWarning, match=r"drw_epoch=320, but train.epochs=5: this run trains LDAM without"):
        build_config(config, ["train.epochs=5"])
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        build_config(config, ["train.epochs=321"])  # re-weights from epoch 321 of 321: no warning
        build_config(config, ["train.epochs=5", "train.loss_args.drw_epoch=null"])  # said on purpose
        build_config(base={"train": {"loss": "ldam", "epochs": 2}})  # a saved run's config: said when it began
    # what a user sees (pytest records warnings itself, so the command runs in its own process)
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "openlt", "config", str(config), "train.epochs=3"],
                          capture_output=True, text=True, timeout=300)
    err = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode == 0 and len(err) == 1 and err[0].startswith("openlt: warning: train.loss=ldam"), err


def test_overrides_refuse_aliases_and_duplicates_too():
    with pytest.raises(ConfigError, match="anchors and aliases"):
        build_config(None, ["train.milestones=[&a 1, *a]"])
    with pytest.raises(ConfigError, match="appears twice"):
        build_config(None, ["train.loss_args={weight: 1, weight: 2}"])


def test_the_reference_shows_what_each_key_allows():
    from openlt.config_docs import allowed_values

    allowed = allowed_values()
    assert allowed["train.lr"] == "> 0 and <= 100" and allowed["eval.keep_known"] == "> 0 and <= 1"
    assert allowed["data.in_chans"] == "one of 1, 3" and allowed["model.backbone"] == "a registered name"


def _float_fields(section=None, prefix=""):
    """(dotted key, field) of every float-valued key of the config (float, float | None, or a list of floats)."""
    import dataclasses
    from typing import get_type_hints

    section = section or Config()
    hints = get_type_hints(type(section))
    for f in dataclasses.fields(section):
        value = getattr(section, f.name)
        if dataclasses.is_dataclass(value):
            yield from _float_fields(value, f"{prefix}{f.name}.")
        elif "rule" in f.metadata and (hints[f.name] in (float, float | None) or f.metadata["rule"].items is float):
            yield f"{prefix}{f.name}", f


FLOAT_KEYS = [key for key, _ in _float_fields()]


def test_every_float_key_declares_an_upper_bound():
    assert len(FLOAT_KEYS) >= 20 and {"train.lr", "train.weight_decay", "train.momentum", "model.head.scale",
                                      "eval.odin_temperature", "decouple.taus"} <= set(FLOAT_KEYS)
    for key, f in _float_fields():
        rule = f.metadata["rule"]
        assert rule.le is not None or rule.lt is not None, f"{key} has no upper bound"


def _float_override(key: str, value: str) -> str:
    f = dict(_float_fields())[key]
    return f"{key}=[{value}]" if f.metadata["rule"].items is float else f"{key}={value}"


@pytest.mark.parametrize("key", FLOAT_KEYS)
def test_a_huge_float_is_refused_naming_its_key_and_bound(key):
    rule = dict(_float_fields())[key].metadata["rule"]
    for value in ("1e300", "1.0e+30"):
        with pytest.raises(ConfigError) as info:
            build_config(None, [_float_override(key, value)])
        assert f"config key '{key}' " in str(info.value) and rule.bounds() in str(info.value), str(info.value)


@pytest.mark.parametrize("key", FLOAT_KEYS)
def test_a_float_key_accepts_values_up_to_its_bound(key):
    rule = dict(_float_fields())[key].metadata["rule"]
    top = rule.le if rule.le is not None else rule.lt * (1 - 1e-9)
    overrides = [_float_override(key, repr(float(top)))]
    if key == "train.min_lr":  # relation: min_lr <= lr
        overrides.append(f"train.lr={top!r}")
    if key == "data.split.imbalance_factor":  # relation: a profile with n_max
        overrides.append("data.split.n_max=1000000000")
    overrides += _enabling(key)
    cfg = build_config(None, overrides)
    section = cfg
    for part in key.split(".")[:-1]:
        section = getattr(section, part)
    value = getattr(section, key.rsplit(".", 1)[-1])
    assert (value[-1] if isinstance(value, list) else value) == pytest.approx(top)


@pytest.mark.parametrize("loss_args", ["{weight: 0.01}", "{weight: 1e-4}", "{max_m: 0.5, s: 30.0, drw_epoch: 160, "
                                       "drw_beta: 0.9999}", "{gamma: 2.0}", "{tau: 1.0}", "{label_smoothing: 0.1}",
                                       "{beta: 0.9999, base: ce}", "{weight: 1000, margin_repel: 1000}"])
def test_loss_args_within_their_bounds_are_accepted(loss_args):
    assert build_config(None, [f"train.loss_args={loss_args}"]).train.loss_args


def test_openlt_config_runs_trains_loss_args_check(tmp_path, capsys):
    """One check (openlt.losses.check_loss_args through losses.check_train_loss) for both commands; a decoupled
    stage 2 trains no loss of train.loss, so neither checks it there."""
    (tmp_path / "c.yaml").write_text("name: ok\ntrain:\n  loss: oltr\n  loss_args: {weight: 0.01}\n")
    assert main(["config", str(tmp_path / "c.yaml")]) == 0
    assert "weight: 0.01" in capsys.readouterr().out
    assert main(["config", str(tmp_path / "c.yaml"), "train.loss_args.bogus=1", "decouple.method=crt"]) == 0
