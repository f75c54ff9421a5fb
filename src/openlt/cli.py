"""The `openlt` command: split, train, eval, predict, config, ... Thin: parse arguments, call the engine, print.

Errors the user can fix (OpenLTError) print one line and exit with status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import logging
import math
import os
import re
import signal
import sys
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from openlt import __version__
from openlt.errors import OpenLTError


def _split_config(args: argparse.Namespace):
    """The SplitConfig of `openlt split`'s options, each checked against data.split's rules and named as typed;
    an option that would have no effect in its combination is refused (never silently ignored)."""
    from openlt.config import SplitConfig, _apply, parse_overrides
    from openlt.errors import ConfigError

    cifar = args.dataset in ("cifar10", "cifar100")
    if args.open_root and not cifar:
        raise ConfigError("--open-root is for --dataset cifar10 | cifar100 (an image folder as the open set)")
    if args.open_classes is not None and not args.open_classes.replace(",", "").strip():
        raise ConfigError(f"--open-classes {args.open_classes!r} names nothing: give a number of held-out classes "
                          f"(0 for none) or class names / ids (8,9 or 'bag,sandal')")
    if cifar:  # CIFAR-LT starts from the literature's split (n_max 5000 / 500, IF 100, label order)
        from openlt.data.cifar_lt import default_split_config

        cfg = default_split_config(args.dataset)
    else:
        cfg = SplitConfig()
    profile = args.profile or cfg.profile
    ignored = [f"--{name} has no effect with --profile none (every image of a class is kept); drop it or choose "
               f"--profile exp | pareto" for name, value in (("n-max", args.n_max), ("n-min", args.n_min),
                                                            ("imbalance-factor", args.imbalance_factor),
                                                            ("alpha", args.alpha))
               if profile == "none" and value is not None]
    if profile == "exp" and args.alpha is not None:
        ignored.append("--alpha is the pareto profile's shape; it has no effect with --profile exp")
    if cifar and args.n_min is not None:
        ignored.append(f"--n-min does not apply to --dataset {args.dataset}: CIFAR-LT's smallest class is n_max / "
                       f"--imbalance-factor (default 100); give --imbalance-factor N_MAX/N_MIN instead")
    elif args.n_min is not None and args.imbalance_factor is not None:
        ignored.append("--n-min and --imbalance-factor both set the smallest class (n_min = n_max / imbalance "
                       "factor); give one of them")
    if ignored:
        raise ConfigError(ignored[0])
    values = {"profile": args.profile, "n_max": args.n_max, "n_min": args.n_min, "imbalance_factor": args.imbalance_factor,
              "alpha": args.alpha, "val_per_class": args.val_per_class, "test_per_class": args.test_per_class,
              "order": args.order, "seed": args.seed}
    if args.open_classes is not None:
        from openlt.data.splits import open_class_count

        count = open_class_count(args.open_classes)  # count:N, a number whatever the class names
        values["open_classes"] = count if count is not None else parse_overrides([f"x={args.open_classes}"])["x"]
    # every option checked against data.split's rules, each error naming the option as it was typed
    _apply(cfg, {k: v for k, v in values.items() if v is not None},
           names={key: "--" + key.replace("_", "-") for key in values})
    return cfg


def _split(args: argparse.Namespace) -> int:
    from openlt.data.datasets import check_split_images, fashion_mnist_pool, image_folder_pool
    from openlt.data.splits import (check_outside, check_split_folder, holds_split, make_split,
                                    refuse_count_that_names_a_class, write_split)
    from openlt.errors import ConfigError

    cfg = _split_config(args)
    cifar = args.dataset in ("cifar10", "cifar100")
    if not args.out.strip():  # Path("") is the current folder
        raise ConfigError(f"--out is empty ({args.out!r}): give the folder for the split files")
    out = Path(args.out)
    check_outside(out, args.root if args.dataset == "image-folder" else args.open_root, "--out",
                  "--root" if args.dataset == "image-folder" else "--open-root")
    check_split_folder(out)  # a folder of other files is never replaced
    if holds_split(out) and not args.force:
        raise ConfigError(f"{out} already holds a split (or part of one); pass --force to replace it")
    if cifar:
        from openlt.data.cifar_lt import write_cifar_lt_split

        manifest = write_cifar_lt_split(args.dataset, args.root, cfg, out, args.open_root, replace=args.force)
    else:
        if args.dataset == "fashion-mnist":
            pool = fashion_mnist_pool(args.root)
        else:
            if args.root is None:
                raise ConfigError("--root is required with --dataset image-folder")
            pool = image_folder_pool(args.root)
        refuse_count_that_names_a_class(args.open_classes, cfg.open_classes, pool.class_names)  # folders 0..9
        split = make_split(pool, cfg)
        check_split_images(split, pool)  # every listed image decodes, before anything is written
        manifest = write_split(split, out, pool, cfg, replace=args.force)
    counts = manifest["train_counts"]
    print(f"wrote {out}: {len(counts)} known classes, {sum(counts)} training images "
          f"({max(counts)} .. {min(counts)} per class), open classes: {', '.join(manifest['open_class_names']) or 'none'}")
    imbalance = manifest["imbalance"]
    asked, drawn = imbalance["requested_factor"], imbalance["drawn_factor"]
    print(f"  imbalance factor drawn: {drawn:g} ({max(counts)} / {min(counts)})"
          + (f", asked {asked:g}: a class holds whole images, so n_min = floor(n_max / {asked:g}) = {min(counts)}; "
             f"manifest.json records both" if asked is not None and not math.isclose(asked, drawn, rel_tol=1e-6) else ""))
    for name, info in manifest["files"].items():
        print(f"  {name:5s} {info['lines']:6d} lines  {info['file']}")
    if manifest.get("val_short_classes"):
        short = manifest["val_short_classes"]
        print(f"  note: {len(short)} class(es) train on all their images and have fewer than {cfg.val_per_class} "
              f"validation images: " + ", ".join(f"{k} ({v})" for k, v in list(short.items())[:5]))
    return 0


def _train(args: argparse.Namespace) -> int:
    from openlt.config import build_config
    from openlt.engine.evaluate import evaluate_run
    from openlt.engine.run import open_run
    from openlt.engine.train import final_evaluation, finished_training, train
    from openlt.reporting.run_report import format_table

    if args.resume:
        run = open_run(args.resume)
        cfg = run.config()
        if args.config or args.overrides or args.name is not None:
            print("note: --resume continues with the run's saved config and name; the config, overrides and "
                  "--name given are ignored")
        if args.device is not None:  # where this process trains; the run's config.yaml stays as it is
            cfg.train.device = args.device
        evaluated = finished_training(run, cfg) and run.metrics_file.is_file()  # (refuses a lowered train.epochs)
        run = train(cfg, run=run, resume=True, quiet=args.quiet)
        if evaluated:  # nothing was trained: its evaluation (perhaps with other eval settings) stays as it is
            print(f"{run.path} had finished training and was evaluated ({run.metrics_file.name} kept); "
                  f"`openlt eval {run.path}` evaluates it again")
            return 0
    else:
        if args.config is None:
            raise OpenLTError("give a config file or a packaged config's name (e.g. fmnist_lt/plain; `openlt "
                              "configs` lists them) or --resume RUN")
        if _override_shaped(args.config):
            raise OpenLTError(f"{args.config!r} is an override (KEY=VALUE), not a config: give the config first, "
                              f"then the overrides (openlt train fmnist_lt/plain {args.config}; `openlt configs` "
                              f"lists the packaged configs)")
        device = [] if args.device is None else [f"train.device={args.device}"]
        cfg = build_config(args.config, [*args.overrides, *device])
        run = train(cfg, name=args.name, quiet=args.quiet)
    if not args.no_eval:
        from openlt.engine.distributed import is_main

        with final_evaluation(run):  # interrupted: the message names the run and the command that finishes it
            metrics = evaluate_run(run, "best", quiet=args.quiet, device=args.device)  # under torchrun: a share each
        if is_main():
            print(format_table(metrics))
            print(f"run directory: {run.path}\nmetrics: {run.metrics_file}\nreport: {run.report_file} "
                  f"(figures: {run.report_html_path()})")
    return 0


def _eval(args: argparse.Namespace) -> int:
    from openlt.engine.evaluate import evaluate_run
    from openlt.engine.run import check_tag, open_run
    from openlt.reporting.convergence import convergence_findings
    from openlt.reporting.run_report import format_table

    check_tag(args.tag, "--tag")
    run = open_run(args.run)
    overrides = list(args.overrides)  # "key=value" strings; evaluate_run checks them before loading the model
    if args.threshold is not None:  # after the positional overrides: --threshold wins
        overrides.append(f"eval.open_threshold={args.threshold}")
    with _json_stdout(args.json):
        metrics = evaluate_run(run, args.checkpoint, overrides=overrides, quiet=args.quiet, device=args.device,
                               tag=args.tag)
    from openlt.engine.distributed import is_main

    if not is_main():  # under torchrun every process evaluated a share; rank 0 speaks
        return 0
    if args.json:
        print(json.dumps({k: metrics[k] for k in ("closed", "open", "calibration") if k in metrics}, indent=2))
    else:
        print(format_table(metrics))
        print(f"metrics: {run.metrics_path(args.tag)}\nreport: {run.report_path(args.tag)} "
              f"(figures: {run.report_html_path(args.tag)})")
    for _, text in convergence_findings(metrics):  # as `openlt train` says them (--json: stdout is the JSON alone)
        print(f"note: {text}", file=sys.stderr if args.json else sys.stdout)
    return 0


def _predict(args: argparse.Namespace) -> int:
    from openlt.engine.predict import Predictor, check_output, predict_files, write_records
    from openlt.engine.run import open_run
    from openlt.errors import ConfigError, DataError

    if args.output is not None:
        check_output(args.output)  # a bad file name or folder fails before the model is loaded
    if args.topk < 1 or args.batch_size < 1:
        raise ConfigError(f"--topk and --batch-size must be at least 1 (got {args.topk}, {args.batch_size})")
    run = open_run(args.run)
    run.check_not_training("label images with")  # its best checkpoint and calibration are still changing
    records, heard = [], True  # heard: stdout still has a reader (`| head -1` goes away after its line)
    with _json_stdout(args.json):
        predictor = Predictor.load(run, args.checkpoint, args.threshold, args.device)
        predictor.check_topk(args.topk)  # at most the run's classes, before any image is read
        for record in predict_files(predictor, args.images, args.batch_size, args.topk, output=args.output):
            records.append(record)
            if not args.json and heard:  # each line as its image is labelled; once unheard, labelling goes on
                heard = _echo(_prediction_line(record, args.topk))
    if args.output is not None:  # before the JSON document and the last line: a reader gone keeps the file
        write_records(records, args.output)
    if args.json:
        print(json.dumps(records, indent=2))
    elif args.output is not None and heard:
        heard = _echo(f"{len(records)} predictions: {args.output}")
    failed = [r for r in records if r["error"] is not None]
    if failed:  # every other image was labelled (and saved); the exit status says that some were not
        raise DataError(f"{len(failed)} of {len(records)} images could not be labelled (see their lines); "
                        f"first: {_escaped(failed[0]['error'])}")
    return 0 if heard else _stdout_closed()


def _echo(line: str) -> bool:
    """Print `line` on stdout, flushed; False (stdout pointed at /dev/null, nothing raised) when its reader went
    away (BrokenPipeError), so that the command finishes its work, e.g. predict's --output file, unheard."""
    try:
        print(line, flush=True)
        return True
    except BrokenPipeError:
        _silence(sys.stdout)
        return False


@contextmanager
def _json_stdout(as_json: bool) -> Iterator[None]:
    """With --json, stdout holds the JSON document alone (a user pipes it into jq): while the command works, what
    it prints and logs there (progress, "features ... reused", notes) goes to stderr instead. Without, nothing
    changes."""
    if not as_json:
        yield
        return
    with contextlib.redirect_stdout(sys.stderr):  # the ConsoleHandler writes to the current sys.stdout
        yield


def _prediction_line(r: dict, topk: int) -> str:
    """One tab-separated line of `openlt predict`: path, label (or the error), confidence, top-k when asked.
    A path that is not printable text (a tab, a newline, another control character, bytes that are not UTF-8)
    or that starts with a quote is written as a Python string literal (its repr: 'a\\tb.png'), so that each
    image keeps one line of tab-separated fields; an error's control characters are escaped likewise."""
    path = r["path"]
    path = repr(path) if not path.isprintable() or path.startswith(("'", '"')) else path
    if r["error"] is not None:
        return f"{path}\terror: {_escaped(r['error'])}"
    label = f"unknown (best guess {r['top_class']})" if r["rejected"] else r["class_name"]
    top = "" if topk < 2 else "\t" + ", ".join(f"{t['class_name']} {t['probability']:.3f}" for t in r["topk"])
    return f"{path}\t{label}\t{r['confidence']:.3f}{top}"


def _escaped(text: str) -> str:
    """`text` with each character that is not printable (a tab, a newline, ...) escaped as in a Python string."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def _export(args: argparse.Namespace) -> int:
    from openlt.engine.export import export_run
    from openlt.engine.run import open_run

    run = open_run(args.run)
    run.check_not_training("export")  # its best checkpoint and calibration are still changing
    bundle = export_run(run, args.out, args.format, args.checkpoint, args.force, args.threshold)
    for name, check in bundle["checks"].items():
        diff = ", ".join(f"{k} {v:.1e}" for k, v in check.get("max_abs_diff", {}).items())
        print(f"{name}: checked with {check['checked_with']} (largest difference: {diff})" if check["checked_with"]
              else f"{name}: not checked: {check['note']}")
    print(f"bundle: {args.out} ({', '.join(bundle['files'].values())}, openlt.json)")
    return 0


def _features(args: argparse.Namespace) -> int:
    from openlt.engine.features import SPLITS, load_features
    from openlt.engine.run import open_run

    run = open_run(args.run)
    run.check_not_training("extract features from")  # its checkpoints are still changing (as eval refuses)
    load_features(run, tuple(args.splits or SPLITS), checkpoint=args.checkpoint, dtype=args.dtype, device=args.device,
                  force=args.force, quiet=args.quiet, command="features",  # under torchrun: every process extracts a share
                  named=args.splits is not None)  # splits named and not in the run: one line (trial 16 D7)
    from openlt.engine.distributed import is_main

    if is_main():
        print(f"feature cache: {run.features_dir}")
    return 0


def _bench(args: argparse.Namespace) -> int:
    from openlt.engine.bench import load_bench, run_bench, run_reports
    from openlt.reporting.bench_report import write_bench_results

    spec = load_bench(args.spec, args.overrides, seeds=args.seeds, out_dir=args.out_dir)  # all checked before any run
    files = run_bench(spec, quiet=args.quiet, report_only=args.report_only)
    paths = write_bench_results(spec, files, run_reports(spec, files))
    print(paths["markdown"].read_text(encoding="utf-8"))
    print("\n".join(f"{kind}: {path}" for kind, path in paths.items()))
    return 0


def _summary(args: argparse.Namespace) -> int:
    from openlt.engine.run import Run
    from openlt.errors import ConfigError, RunDirError
    from openlt.reporting.summary import checkpoint_changed, load_metrics, summarize

    if not args.label.strip():
        raise ConfigError("--label must not be empty")
    groups: dict[str, list[dict]] = {}
    names: dict[str, list[str]] = {}
    files: dict[str, dict[Path, str]] = {}
    for run in args.runs:
        label, path = _summary_item(run, args.label)
        file = Path(path) if path.endswith(".json") else Run(Path(path)).metrics_file  # a run or one of its metrics files
        metrics = load_metrics(file)
        changed = checkpoint_changed(metrics, file)
        if changed:
            raise RunDirError(changed)
        seen = files.setdefault(label, {})
        where = file.resolve()  # a run directory's metrics files (metrics.json, metrics-TAG.json) are one run
        where = where.parent if Run(where.parent).config_file.is_file() else where
        if where in seen:
            raise ConfigError(f"{seen[where]} and {path} are the same run ({where}) in the row {label!r}: a row "
                              f"averages different runs (e.g. seeds); give each evaluation its own label (LABEL=RUN)")
        seen[where] = path
        groups.setdefault(label, []).append(metrics)
        names.setdefault(label, []).append(path)
    print(summarize(groups, names))
    return 0


SUMMARY_ITEM = ("an argument that is an existing file or folder is a run, whatever it holds ('sweep/lr=0.1/run'); "
                "otherwise it is LABEL=RUN, split at the first '=' that is followed by an existing path (else at the "
                "first '=')")


def _summary_item(item: str, default_label: str) -> tuple[str, str]:
    """(label, run) of one argument of `openlt summary` (:data:`SUMMARY_ITEM`); ConfigError for an empty label
    or run, or a label with a mark the table puts after labels (a row labelled "A‡" would read as not checked)."""
    from openlt.errors import ConfigError
    from openlt.reporting.summary import UNCHECKED_MARK, UNDER_TRAINED_MARK

    if "=" not in item or os.path.exists(item):
        label, path = default_label, item
    else:
        splits = [i for i, c in enumerate(item) if c == "="]
        at = next((i for i in splits if os.path.exists(item[i + 1:])), splits[0])
        label, path = item[:at], item[at + 1:]
        if not label.strip() or not path.strip():
            raise ConfigError(f"{item!r}: give LABEL=RUN with a label and a run directory (or a metrics file)")
    mark = next((m for m in (UNDER_TRAINED_MARK, UNCHECKED_MARK) if m in label), None)
    if mark:
        raise ConfigError(f"label {label!r} contains {mark}, the mark the table puts after a row's label "
                          f"({UNDER_TRAINED_MARK}: may be under-trained, {UNCHECKED_MARK}: not checked): choose "
                          f"another label")
    return label, path


def _config(args: argparse.Namespace) -> int:
    if args.reference:
        from openlt.config_docs import reference_markdown

        if args.config or args.overrides:
            raise OpenLTError("--reference lists every option with its default; it takes no config or overrides")
        print(reference_markdown(), end="")
        return 0
    from openlt.config import build_config, dump_yaml
    from openlt.losses import check_train_loss

    if _override_shaped(args.config):  # `openlt config train.epochs=2`: no config, the defaults with overrides
        args.config, args.overrides = None, [args.config, *args.overrides]
    cfg = build_config(args.config, args.overrides)
    check_train_loss(cfg)  # train.loss_args as `openlt train` checks them before any run exists
    print(dump_yaml(cfg), end="")
    return 0


_OVERRIDE = re.compile(r"\s*[A-Za-z_][\w.]*\s*=.*", re.DOTALL)


def _override_shaped(value: str | None) -> bool:
    """Whether a config argument is a dotted KEY=VALUE override rather than a config (`train.epochs=2`): it has
    that shape and no file or folder has that name (a file named `a=b.yaml` is a config)."""
    return value is not None and _OVERRIDE.fullmatch(value) is not None and not os.path.lexists(value)


def _configs(args: argparse.Namespace) -> int:
    from openlt.config import PACKAGED_CONFIGS, first_comment, packaged_configs

    shown = {name: path for name, path in packaged_configs().items() if args.filter in name}
    if not shown:
        raise OpenLTError(f"no packaged config name contains {args.filter!r}; `openlt configs` lists them all")
    width = max(len(name) for name in shown)
    print(f"{len(shown)} packaged configs in {PACKAGED_CONFIGS} (give the name to openlt train / config; "
          f"bench/...: openlt bench NAME)")
    for name, path in shown.items():
        print(f"  {name:{width}s}  {first_comment(path)}")
    return 0


def _identify(args: argparse.Namespace) -> int:
    from openlt.engine.identify import format_identification, identify_run
    from openlt.engine.run import check_tag, open_run

    check_tag(args.tag, "--tag")
    run = open_run(args.run)
    with _json_stdout(args.json):
        result = identify_run(run, args.probe, args.gallery, args.distractors, args.pairs, root=args.root,
                              distractor_root=args.distractor_root, checkpoint=args.checkpoint, device=args.device,
                              many_above=args.many_above, chunk_size=args.chunk_size, tag=args.tag,
                              quiet=args.quiet, overrides=args.overrides)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(format_identification(result))
        print(f"identification: {run.identification_path(args.tag)}")
    return 0


def _report(args: argparse.Namespace) -> int:
    from openlt.engine.run import check_tag, open_run
    from openlt.reporting.run_report import rebuild_reports
    from openlt.reporting.summary import checkpoint_changed, load_metrics

    check_tag(args.tag, "--tag")
    run = open_run(args.run)
    print(f"report: {rebuild_reports(run, args.tag)}")
    path = run.metrics_path(args.tag)  # redrawn as evaluated; said when that is no longer the run's checkpoint
    changed = checkpoint_changed(load_metrics(path), path)
    if changed:
        print(f"note: {changed}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The command line: one subcommand per task (split, train, eval, predict, features, bench, summary, config,
    report)."""
    parser = argparse.ArgumentParser(prog="openlt", description="Open long-tailed recognition: split, train, evaluate, predict.")
    parser.add_argument("--version", action="version", version=f"openlt {__version__}")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks")
    sub = parser.add_subparsers(dest="command", required=True)
    for add in (_add_split_command, _add_train_command, _add_eval_command, _add_predict_command, _add_export_command,
                _add_features_command,
                _add_bench_command, _add_summary_command, _add_config_command, _add_configs_command,
                _add_report_command, _add_identify_command):
        add(sub)
    return parser


def _add_split_command(sub: argparse._SubParsersAction) -> None:
    """The `openlt split` subcommand and its options."""
    p = sub.add_parser("split", help="build long-tailed + open-set split files from a labelled data set")
    p.add_argument("--dataset", choices=["fashion-mnist", "image-folder", "cifar10", "cifar100"],
                   default="fashion-mnist")
    p.add_argument("--root", help="image folder root (root/<class>/<image>; images in sub-folders of a class folder "
                   "are that class's), the Fashion-MNIST IDX folder, or the "
                   "folder holding cifar-10-batches-py/ or cifar-100-python/")
    p.add_argument("--open-root", help="cifar: every image under this folder becomes the open set (instead of "
                   "--open-classes)")
    p.add_argument("--out", required=True, help="output folder for train/val/test/open.txt and manifest.json")
    p.add_argument("--profile", choices=["exp", "pareto", "none"])
    p.add_argument("--n-max", type=int, help="exp / pareto: training images of the largest class")
    p.add_argument("--n-min", type=int, help="exp / pareto: training images of the smallest class (not for cifar: "
                   "give --imbalance-factor)")
    p.add_argument("--imbalance-factor", type=float, help="exp / pareto: n_max / n_min, instead of --n-min")
    p.add_argument("--alpha", type=float, help="pareto shape (ImageNet-LT: 6)")
    p.add_argument("--open-classes", help="a number of held-out classes (chosen with the seed; cifar: the last N; "
                   "0: none; count:3 where class folders are numbers) or a list: 8,9 or 'bag,sandal' (names quoted "
                   "in a list: '[\"3\"]')")
    p.add_argument("--val-per-class", type=int)
    p.add_argument("--test-per-class", type=int)
    p.add_argument("--order", choices=["random", "label"], help="which known class gets n_max")
    p.add_argument("--seed", type=int)
    p.add_argument("--force", action="store_true", help="overwrite an existing split folder")
    p.set_defaults(func=_split)


def _add_train_command(sub: argparse._SubParsersAction) -> None:
    """The `openlt train` subcommand and its options."""
    p = sub.add_parser("train", help="train a model from a YAML config; evaluates the best checkpoint at the end")
    p.add_argument("config", nargs="?", help="YAML config file, or a packaged config's name (fmnist_lt/plain; "
                   "`openlt configs` lists them); required (but with --resume), before the overrides")
    p.add_argument("overrides", nargs="*", help="dotted overrides after the config, e.g. train.epochs=2 "
                   "data.root=/data")
    p.add_argument("--resume", metavar="RUN", help="continue an interrupted run from its last checkpoint with its "
                   "config.yaml, where the schedule (train.epochs, train.schedule, ...), eval.* and data.workers may be "
                   "edited, not the data, model or input keys, train.init_from, the optimizer's settings (train.lr, "
                   "...), seed, loss or sampler (a finished run that was evaluated is left as it is: `openlt eval RUN` "
                   "evaluates it again)")
    p.add_argument("--name", help="run name prefix (default: the config's name)")
    p.add_argument("--device", help="auto, cpu, cuda, cuda:N or mps (same as train.device=...; with --resume: "
                   "where this process continues the run)")
    p.add_argument("--no-eval", action="store_true", help="skip the final evaluation")
    p.add_argument("--quiet", action="store_true", help=QUIET_HELP)
    p.set_defaults(func=_train)


def _add_eval_command(sub: argparse._SubParsersAction) -> None:
    """The `openlt eval` subcommand and its options."""
    p = sub.add_parser("eval", help="evaluate a run: shot bands, open-set F-measure, AUROC; writes metrics.json")
    p.add_argument("run")
    p.add_argument("overrides", nargs="*", help="dotted overrides of eval settings, e.g. eval.few_below=10 (eval.*, "
                   "and where the data is / how it is loaded: data.root, data.split_dir, data.workers, ...)")
    p.add_argument("--checkpoint", default="best", choices=["best", "last"])
    p.add_argument("--threshold", type=threshold_option, help="fixed rejection threshold on eval.open_score (same as "
                   "eval.open_threshold=T; default: the run's setting, usually chosen on val)")
    p.add_argument("--device")
    p.add_argument("--json", action="store_true", help="print the metrics as JSON (stdout holds the JSON alone; "
                   "progress and notes go to stderr)")
    p.add_argument("--tag", help="write metrics-TAG.json / report-TAG.md and keep the run's own results "
                   "(e.g. --tag reach with eval.open_score=reachability)")
    p.add_argument("--quiet", action="store_true", help=QUIET_HELP)
    p.set_defaults(func=_eval, early_check=_eval_options)


def _add_predict_command(sub: argparse._SubParsersAction) -> None:
    """The `openlt predict` subcommand and its options."""
    p = sub.add_parser("predict", help="label images with a trained run (its directory alone); 'unknown' when "
                       "rejected", description="Label images with a trained run: one tab-separated line per image "
                       "(path, class or 'unknown', confidence, top-k), or 'path<TAB>error: ...' for an image that "
                       "cannot be read (the others are labelled; exit status 2). A path that is not printable text "
                       "(a tab, a newline, another control character) or that starts with a quote is printed as a "
                       "Python string literal ('a\\tb.png'); --json and --output keep paths as they are (a CSV cell "
                       "that starts with = + - @, a tab or a carriage return gets a leading ', so that no spreadsheet "
                       "reads it as a formula; a CSV cannot hold a name that is not UTF-8: use .jsonl).")
    p.add_argument("run")
    p.add_argument("images", nargs="+", help="image files, folders (their image files, recursively) or glob "
                   "patterns ('photos/**/*.jpg'); image files are named .jpg .jpeg .png .bmp .webp .gif .tif .tiff "
                   ".ppm .pgm (any case): others are skipped in folders and patterns (one warning line) and "
                   "refused when named")
    p.add_argument("--checkpoint", default="best", choices=["best", "last"])
    p.add_argument("--threshold", type=threshold_option, help="fixed rejection threshold on the run's open-set "
                   "score, a finite number inside the score's range (msp: [0, 1]) (default: the run's "
                   "calibration.json, chosen by `openlt eval` for this checkpoint; a run never evaluated needs "
                   "--threshold)")
    p.add_argument("--output", metavar="FILE", help="also write the predictions to FILE.csv or FILE.jsonl (path, "
                   "label, class_name, confidence, open_score, rejected, topk, ...)")
    p.add_argument("--topk", type=int, default=1, help="the K most probable classes per image (default 1)")
    p.add_argument("--batch-size", type=int, default=64, help="images per forward pass (default 64)")
    p.add_argument("--device")
    p.add_argument("--json", action="store_true", help="print the predictions as one JSON list (stdout holds the "
                   "JSON alone; progress and notes go to stderr)")
    p.set_defaults(func=_predict)


def threshold_option(text: str) -> float:
    """The value of eval / predict / export --threshold: a finite number written plainly, as a config value
    (config.finite_number: no '1_0', no full-width digits, no spaces; argparse names the option in its error)."""
    from openlt.config import finite_number
    from openlt.errors import ConfigError

    try:
        return finite_number(text)
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _join_negative_values(argv: list[str]) -> list[str]:
    """`--threshold -inf` / `--threshold -1e3` as `--threshold=VALUE`: argparse takes a value that starts with '-'
    and is no plain negative number ('-1') for an option, and would say "expected one argument"."""
    out, i = [], 0
    while i < len(argv):
        value = argv[i + 1] if argv[i] == "--threshold" and i + 1 < len(argv) else ""
        joined = value.startswith("-") and _is_number(value)
        out.append(f"--threshold={value}" if joined else argv[i])
        i += 2 if joined else 1
    return out


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _add_export_command(sub: argparse._SubParsersAction) -> None:
    """The `openlt export` subcommand and its options."""
    p = sub.add_parser("export", help="write a deployable bundle of a run: weights (safetensors) and openlt.json "
                       "(classes, transform, open-set score, threshold); --format adds a TorchScript / ONNX network")
    p.add_argument("run")
    p.add_argument("out", help="the bundle's folder (new or empty; --force replaces a bundle there)")
    p.add_argument("--format", default="safetensors", choices=["safetensors", "torchscript", "onnx"],
                   help="safetensors: weights and description only; torchscript / onnx: also the traced / exported "
                   "network, checked against the PyTorch model on a test batch (onnx: with onnxruntime, the "
                   "export extra)")
    p.add_argument("--checkpoint", default="best", choices=["best", "last"])
    p.add_argument("--threshold", type=threshold_option, help="fixed rejection threshold on the run's open-set "
                   "score, a finite number inside the score's range (default: the run's calibration.json; a run "
                   "never evaluated needs one)")
    p.add_argument("--force", action="store_true", help="replace a bundle already in OUT (a folder holding other "
                   "files is refused)")
    p.set_defaults(func=_export)


def _add_features_command(sub: argparse._SubParsersAction) -> None:
    """The `openlt features` subcommand and its options."""
    p = sub.add_parser("features", help="cache a run's pooled features of train/val/test/open (frozen network, "
                       "no augmentation) for decoupled stage-2 classifiers; reused while fresh")
    p.add_argument("run")
    p.add_argument("--splits", nargs="+", choices=["train", "val", "test", "open"],
                   help="the splits to extract (default: every split the run has; one it does not have is an error)")
    p.add_argument("--checkpoint", default="best", choices=["best", "last"])
    p.add_argument("--dtype", default="float32", choices=["float32", "float16"], help="storage type of the cache")
    p.add_argument("--device")
    p.add_argument("--force", action="store_true", help="re-extract even when the cache is fresh")
    p.add_argument("--quiet", action="store_true", help=QUIET_HELP)
    p.set_defaults(func=_features)


def _add_bench_command(sub: argparse._SubParsersAction) -> None:
    """The `openlt bench` subcommand and its options."""
    p = sub.add_parser("bench", help="run methods x seeds from a bench spec (skipping finished runs) and write "
                       "the comparison table (markdown, CSV) and an HTML report")
    p.add_argument("spec", help="bench YAML, e.g. configs/bench/fmnist_lt.yaml")
    p.add_argument("overrides", nargs="*", help="dotted overrides for every method, e.g. train.epochs=2")
    p.add_argument("--seeds", type=int, nargs="+", help="replace the spec's seeds")
    p.add_argument("--out-dir", help="replace the spec's out_dir")
    p.add_argument("--report-only", action="store_true",
                   help="train nothing: write the table and report from the runs already finished, list the missing")
    p.add_argument("--quiet", action="store_true", help=QUIET_HELP)
    p.set_defaults(func=_bench)


def _add_summary_command(sub: argparse._SubParsersAction) -> None:
    """The `openlt summary` subcommand and its options."""
    p = sub.add_parser("summary", help="mean ± std table over evaluated runs (e.g. seeds); LABEL=RUN groups runs",
                       description="One row per label: mean ± std over its runs (the population std, ddof=0), which "
                       "must be seeds of one recipe evaluated alike (the same checkpoint: best or last). A row of runs "
                       "whose config.yaml differ (other than seed, name, paths, "
                       "device / workers: summary.RECIPE_IGNORED; a stage-2 run's train.init_from run included), of "
                       "two runs with the same seed, of runs evaluated differently (best vs last, other open-set score "
                       "options such as eval.knn_k), or with a metrics file that has no config.yaml beside it is "
                       "refused with one line naming two runs and what differs (e.g. train.epochs: 12 vs 48): give "
                       "each recipe its own "
                       "LABEL=. Rows on different data (datasets, class lists, split files) get a note.")
    p.add_argument("runs", nargs="+", help="run directories (or their metrics-TAG.json files), optionally as "
                   f"LABEL=RUN to group them in rows: {SUMMARY_ITEM}")
    p.add_argument("--label", default="runs", help="row label for runs given without LABEL=")
    p.set_defaults(func=_summary)


def _add_config_command(sub: argparse._SubParsersAction) -> None:
    """The `openlt config` subcommand and its options."""
    p = sub.add_parser("config", help="print the config a run would use (defaults <- YAML <- overrides), or with "
                       "--reference every option, its default and meaning")
    p.add_argument("config", nargs="?", help="YAML config file or a packaged config's name (none: the defaults; "
                   "a first argument KEY=VALUE is an override of the defaults)")
    p.add_argument("overrides", nargs="*", help="dotted overrides, e.g. train.epochs=2")
    p.add_argument("--reference", action="store_true", help="the option reference as markdown (docs/config.md)")
    p.set_defaults(func=_config)


def _add_configs_command(sub: argparse._SubParsersAction) -> None:
    """The `openlt configs` subcommand: the packaged configs by name, each with its first comment line."""
    p = sub.add_parser("configs", help="list the configs that ship with openlt (name and what it is); a name works "
                       "wherever a config file does: openlt train fmnist_lt/plain")
    p.add_argument("filter", nargs="?", default="", help="show only names containing this text, e.g. fmnist_lt/")
    p.set_defaults(func=_configs)


def _add_identify_command(sub: argparse._SubParsersAction) -> None:
    """The `openlt identify` subcommand and its options (face identification, MS1M-LT / MegaFace-style)."""
    p = sub.add_parser("identify", help="face identification by feature matching: rank-1 per band of training "
                       "images (probes against templates + distractors), open-set TPIR at FPIR, and TAR at FAR "
                       "from a pairs file; writes identification.json")
    p.add_argument("run")
    p.add_argument("overrides", nargs="*", help="where the run's own data is now and how it is read, e.g. "
                   "data.root=/new/place when its training images moved (data.root, data.open_root, data.split_dir, "
                   "data.workers, eval.batch_size, train.device, ...)")
    p.add_argument("--probe", help="probe list: 'path identity' lines, identity -1 = unknown (should be rejected)")
    p.add_argument("--gallery", help="gallery list: these images enrol the identities they name (zero-shot "
                   "identities included); the others are enrolled from their training images")
    p.add_argument("--distractors", help="distractor list: 'path -1' lines, one gallery entry per image")
    p.add_argument("--pairs", help="verification pairs: 'path1 path2 same' lines (same: 1 or 0)")
    p.add_argument("--root", help="folder the lists' paths are relative to (default: the run's data.root); the "
                   "run's training images stay under its data.root (override it if they moved)")
    p.add_argument("--distractor-root", help="folder of the distractors' paths (default: --root)")
    p.add_argument("--checkpoint", default="best", choices=["best", "last"])
    p.add_argument("--many-above", type=int, default=20, help="many-shot identities have more training images "
                   "than this; few-shot 2..N, one-shot 1, zero-shot 0 (default 20)")
    p.add_argument("--chunk-size", type=int, default=65536, help="gallery rows matched at a time (a memory bound: "
                   "the result does not depend on it)")
    p.add_argument("--device")
    p.add_argument("--tag", help="write identification-TAG.json (e.g. one per probe set)")
    p.add_argument("--json", action="store_true", help="print the result as JSON (stdout holds the JSON alone; "
                   "progress and notes go to stderr)")
    p.add_argument("--quiet", action="store_true", help=QUIET_HELP)
    p.set_defaults(func=_identify, early_check=_identify_options)


def _add_report_command(sub: argparse._SubParsersAction) -> None:
    """The `openlt report` subcommand and its options."""
    p = sub.add_parser("report", help="redraw an evaluated run's report.html / report.md from its metrics.json "
                       "and predictions.npz (no model needed)")
    p.add_argument("run")
    p.add_argument("--tag", help="redraw report-TAG.html from metrics-TAG.json and predictions-TAG.npz")
    p.set_defaults(func=_report)


def _message(exc: BaseException) -> str:
    text = str(exc)
    # An error raised inside a DataLoader worker comes back with the worker's traceback in its text.
    if "Original Traceback" in text:
        text = [line for line in text.strip().splitlines() if line.strip()][-1]
        text = text.split(": ", 1)[1] if text.startswith(("openlt.", "DataError", "OpenLTError")) else text
    # One line, always: a message that quotes a multi-line text (a library's error) is joined up.
    return "; ".join(line.strip() for line in text.strip().splitlines() if line.strip()) or type(exc).__name__


def load_registries() -> None:
    """Import every package that registers pluggable pieces, so that a config built from the command line has
    each name (backbone, head, loss, sampler, open-set score, decoupling method) checked before any work."""
    import openlt.data.samplers  # noqa: F401
    import openlt.decoupling  # noqa: F401
    import openlt.losses  # noqa: F401
    import openlt.models  # noqa: F401
    import openlt.openset  # noqa: F401


class Terminated(KeyboardInterrupt):
    """SIGTERM (what schedulers, `kill` and `docker stop` send), raised in the main thread as Ctrl-C raises
    KeyboardInterrupt: the same clean-up and the same one-line message (a run names its `--resume` command),
    then exit status 143 (128 + 15; Ctrl-C: 130)."""


def _raise_terminated(pid: int):
    """The SIGTERM handler of process `pid`; a forked child (a DataLoader worker) just terminates."""

    def handler(signum, frame):
        if os.getpid() != pid:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGTERM)
            return
        raise Terminated()

    return handler


def _check_options(args: argparse.Namespace) -> None:
    """The options every command shares, checked before any work and before torch loads: each override is
    key=value, a key given twice among them (a warning: the last wins), --tag, --device, train's --name, the RUN
    directory of a command that takes one; then the command's own ``early_check`` (set with ``set_defaults``:
    eval's and identify's override keys, what identify is asked to measure and its list files)."""
    from openlt.config import _device_problem, check_override_keys, parse_overrides, run_name_problem
    from openlt.engine.run import check_tag
    from openlt.errors import ConfigError

    overrides = getattr(args, "overrides", None) or []
    parse_overrides(overrides)  # each is key=value (its value's own check comes with the config's)
    check_override_keys(overrides)
    if getattr(args, "tag", None) is not None:
        check_tag(args.tag, "--tag")

    device = getattr(args, "device", None)
    if device is not None and _device_problem(device):
        raise ConfigError(f"--device {_device_problem(device)}")
    name = getattr(args, "name", None)
    if name is not None and run_name_problem(name):
        raise ConfigError(f"--name {run_name_problem(name)}")
    run = getattr(args, "run", None)
    if isinstance(run, str):  # eval, predict, export, features, identify, report: a wrong run path is said at once,
        from openlt.engine.run import open_run  # not after load_registries' imports (torch and more: seconds)

        if not run:  # Path("") is the current folder
            raise ConfigError("the run directory is an empty string (an unset shell variable?): give a run's folder")
        open_run(run)
    if getattr(args, "early_check", None) is not None:  # a command's own checks of its options, as light
        args.early_check(args)


def _eval_options(args: argparse.Namespace) -> None:
    """`openlt eval`'s early check: its overrides are keys an evaluation uses, their values and the run's data
    folders hold (--threshold as the override it becomes)."""
    from openlt.engine.override_scope import check_eval_overrides, check_run_overrides
    from openlt.engine.run import open_run

    check_eval_overrides(args.overrides)
    threshold = [] if args.threshold is None else [f"eval.open_threshold={args.threshold}"]
    check_run_overrides(open_run(args.run), [*args.overrides, *threshold], "eval")


def _identify_options(args: argparse.Namespace) -> None:
    """`openlt identify`'s early check: its overrides, what it is asked to measure and its list files."""
    from openlt.engine.identify_request import check_identify_options, check_list_files
    from openlt.engine.override_scope import IDENTIFY_READS, check_identify_overrides, check_run_overrides
    from openlt.engine.run import open_run

    check_identify_overrides(args.overrides)
    check_identify_options(args.probe, args.gallery, args.distractors, args.pairs, args.chunk_size, args.root,
                           args.distractor_root, args.many_above)
    check_list_files({"probe": args.probe, "gallery": args.gallery, "distractors": args.distractors,
                      "pairs": args.pairs})
    check_run_overrides(open_run(args.run), args.overrides, "identify", IDENTIFY_READS)  # values, data folders


class ConsoleHandler(logging.Handler):
    """The command's voice for the library's log records: each message as one line on the *current*
    sys.stdout (as print wrote it; stderr with an ``openlt: warning:`` prefix from WARNING up), flushed. Under
    torchrun a warning is rank 0's alone (RANK; not one logged with ``extra={"every_rank": True}``)."""

    def emit(self, record: logging.LogRecord) -> None:
        """Write one record's message (and a traceback, when the record carries one)."""
        if record.levelno == logging.WARNING and os.environ.get("RANK", "0").strip() not in ("0", "") \
                and not getattr(record, "every_rank", False):
            return  # under torchrun rank 0 alone warns (every rank loads the same data and weights)
        try:
            text = self.format(record)
            stream = sys.stderr if record.levelno >= logging.WARNING else sys.stdout
            stream.write((f"openlt: warning: {text}" if record.levelno >= logging.WARNING else text) + "\n")
            stream.flush()
        except BrokenPipeError:  # its reader went away (`openlt train ... | head`): the command goes on, unheard
            _silence(stream)
        except Exception:  # noqa: BLE001  (logging's own contract: a failing handler reports, never raises)
            self.handleError(record)


def _silence(stream: Any) -> None:
    """Point `stream`'s file descriptor at /dev/null (Python's advice for a closed pipe), so that later writes and
    the flush at exit neither fail nor print logging's error report."""
    with contextlib.suppress(OSError, ValueError, AttributeError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, stream.fileno())
        os.close(devnull)


@contextmanager
def console_logging(level: int = logging.INFO) -> Iterator[None]:
    """While a command runs, the ``openlt`` loggers (library code logs through ``logging.getLogger(__name__)``,
    never print) write through a :class:`ConsoleHandler` at `level`, and not also to the root logger's
    handlers; afterwards the logger is as it was, so a program that embeds openlt keeps control of its output."""
    logger = logging.getLogger("openlt")
    handler = ConsoleHandler()
    saved = logger.level, logger.propagate
    logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(saved[0])
        logger.propagate = saved[1]


def _say(line: str) -> None:
    """Print `line` (an error line) on stderr, flushed. Its reader gone (``openlt ... 2>&1 | head -1``:
    BrokenPipeError), stderr is pointed at /dev/null (:func:`_silence`) and nothing is raised: the command's exit
    status (2, 130, ...) stands, not 1 for an exception escaping the error path."""
    try:
        print(line, file=sys.stderr, flush=True)
    except BrokenPipeError:
        _silence(sys.stderr)


def _run(args: argparse.Namespace) -> int:
    """`args.func(args)` with every way it can fail turned into one line on stderr and an exit status."""
    try:
        _check_options(args)
        load_registries()
        code = args.func(args)
        sys.stdout.flush()  # here, not at exit: a reader gone (`| head -1`) is then the BrokenPipeError below
        return code
    except BrokenPipeError:
        return _stdout_closed()
    except (OpenLTError, OSError) as exc:  # OSError: the machine's, not a bug (no permission, disk full)
        if args.debug:
            raise
        if _said_by_rank0(exc):  # under torchrun an error every rank meets alike is printed once, by rank 0
            _await_stop()
            return 2
        _say(f"openlt {args.command}: error: {_message(exc)}")
        return 2
    except KeyboardInterrupt as exc:
        how = "SIGTERM" if isinstance(exc, Terminated) else "Ctrl-C"
        _say(f"openlt {args.command}: interrupted ({how})" + (f": {_message(exc)}" if exc.args else ""))
        return 128 + signal.SIGTERM if isinstance(exc, Terminated) else 130
    except Exception as exc:  # a bug: still one line, the traceback on request
        if args.debug:
            raise
        lost = _peer_lost(exc)  # a collective outside the engine's own handling: a lost peer is no bug either
        if lost is not None:
            _say(f"openlt {args.command}: error: {lost}")
            return 2
        _say(f"openlt {args.command}: internal error: {type(exc).__name__}: {_message(exc)} (run with --debug "
             f"for the traceback)")
        return 1


QUIET_HELP = ("no progress bars, nor the feature cache's lines (features ... reused); the results, notes and "
              "warnings are still printed (--json, where a command has it, prints the results alone)")
DATA_PARALLEL = ("train", "eval", "features")  # the commands that share their work over torchrun's processes
STOP_WAIT_S = 30.0  # how long a silent rank of a torchrun job waits for torchrun to stop it (rank 0 has failed)


def _one_process_refusal(args: argparse.Namespace) -> int | None:
    """Under torchrun (WORLD_SIZE > 1), a command other than train, eval and features is refused before any
    work (exit 2): it runs in one process, so each of the job's processes would do all of it (the same files
    twice, one rank refusing the other's output). Rank 0 prints the line; the others end silently with the same
    status (`_await_stop`). The variables are read by `dist_env.check_env` (torch-free), as train, eval and
    features read them: a malformed one (RANK outside 0 .. WORLD_SIZE - 1, no MASTER_ADDR, ...) is its one line,
    printed by the process whose environment it is. None: not refused. Called before the SIGTERM handler is set,
    so a rank that torchrun stops meanwhile ends silently too."""
    if args.command in DATA_PARALLEL:
        return None
    from openlt.engine.dist_env import check_env
    from openlt.errors import ConfigError

    try:
        world = check_env()
    except ConfigError as exc:
        _say(f"openlt {args.command}: error: {exc}")
        return 2
    if world.world_size <= 1:
        return None
    if world.rank != 0:
        _await_stop()
        return 2
    _say(f"openlt {args.command}: error: {args.command} runs in one process (torchrun shares the work of train, "
         f"eval and features only); run it without torchrun (WORLD_SIZE={world.world_size} is set)")
    return 2


def _await_stop() -> None:
    """A rank other than 0 ending silently (rank 0 prints the same error) waits, under torchrun, for torchrun to
    stop it (SIGTERM once rank 0 has failed; at most STOP_WAIT_S): ending first, it would have torchrun stop rank
    0 before its line is printed. Launched otherwise (no torchrun agent): at once."""
    if not os.environ.get("TORCHELASTIC_RUN_ID"):
        return
    import time

    with contextlib.suppress(KeyboardInterrupt):  # (Terminated: the SIGTERM awaited)
        time.sleep(STOP_WAIT_S)


def _peer_lost(exc: BaseException) -> Exception | None:
    """`exc` as `distributed.peer_lost` words it (gloo's / NCCL's error for a peer gone), or None; None at once
    when torch.distributed was never imported."""
    if "torch.distributed" not in sys.modules:
        return None
    from openlt.engine.distributed import peer_lost

    return peer_lost(exc)


def _said_by_rank0(exc: BaseException) -> bool:
    """True on a rank other than 0 of a torchrun job for an error rank 0 prints alike
    (`distributed.said_by_rank0`); False at once in a plain process (RANK unset or 0: nothing imported)."""
    rank = os.environ.get("RANK", "").strip()
    if not rank.isdigit() or int(rank) == 0:
        return False
    from openlt.engine.distributed import said_by_rank0

    return said_by_rank0(exc)


def _stdout_closed() -> int:
    """The reader of stdout went away (`openlt configs | head -1`): no error line, no traceback. As Python's docs
    advise ("Note on SIGPIPE"), stdout is pointed at /dev/null so that the interpreter's last flush does not fail
    again; the exit status is 141 (128 + SIGPIPE), what a shell shows for a command its pipe's reader ended."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # (a stdout without a file descriptor, e.g. captured by a test)
        pass
    finally:
        os.close(devnull)
    return 128 + signal.SIGPIPE


def _parse(parser: argparse.ArgumentParser, argv: list[str]) -> argparse.Namespace:
    """`argv` parsed. Overrides may come after options (`train c.yaml --quiet train.epochs=2`): argparse leaves those
    as unknown arguments, so the key=value ones are collected and anything else is refused (parser.error)."""
    args, extra = parser.parse_known_args(_join_negative_values(argv))
    overrides = [e for e in extra if "=" in e and not e.startswith("-")]
    if hasattr(args, "overrides"):
        extra = [e for e in extra if e != "--"]  # `identify RUN --probe P -- data.root=X`: what follows is positional
        dotted = [e for e in extra if e not in overrides and "." in e and not e.startswith("-")]
        if dotted:  # `--probe P data.workers`: an override without its value, as parse_overrides says before options
            parser.error(f"override {dotted[0]!r} is not of the form key=value ({dotted[0]}=VALUE)")
    unknown = [e for e in extra if e not in overrides]
    if unknown or (overrides and not hasattr(args, "overrides")):
        parser.error(f"unrecognized arguments: {' '.join(unknown or overrides)}")
    if overrides:
        args.overrides = [*args.overrides, *overrides]
    return args


def _parse_once(parser: argparse.ArgumentParser, argv: list[str]) -> argparse.Namespace:
    """:func:`_parse`, whose argparse error (a bad option: usage and one error line, SystemExit 2) is printed once
    under torchrun: by rank 0; the other ranks (RANK > 0 with WORLD_SIZE > 1) exit with the same status silently,
    after `_await_stop` (every rank parses the same command line). Help (exit 0, on stdout) is left as it is."""
    world, rank = os.environ.get("WORLD_SIZE", "").strip(), os.environ.get("RANK", "").strip()
    if not (world.isdigit() and int(world) > 1 and rank.isdigit() and int(rank) != 0):
        return _parse(parser, argv)
    said = io.StringIO()
    try:
        with contextlib.redirect_stderr(said):
            return _parse(parser, argv)
    except SystemExit as exc:
        if exc.code in (0, None):
            sys.stderr.write(said.getvalue())
            raise
        _await_stop()
        raise SystemExit(exc.code) from None


def main(argv: list[str] | None = None) -> int:
    """Run one `openlt` subcommand: the console script's entry point (also `python -m openlt`).

    `argv` is the argument list without the program name (None: ``sys.argv[1:]``); `key=value` overrides may
    also follow the options. Returns the exit status: 0 on success; 2 when an OpenLTError (ConfigError,
    DataError, RunDirError, ...) or an OSError stops the command -- printed as one line
    ``openlt CMD: error: ...`` on stderr, no traceback (``--debug`` re-raises it instead); 130 on Ctrl-C and
    143 on SIGTERM (one line ``openlt CMD: interrupted (...)``, naming the run to resume); 1 for any other
    exception (a bug: one line ``openlt CMD: internal error: ...``); 141 (silently) when the reader of stdout
    went away (``openlt configs | head -1``). Arguments argparse does not know exit through ``parser.error``
    (SystemExit with status 2).
    """
    args = _parse_once(build_parser(), sys.argv[1:] if argv is None else argv)
    refused = _one_process_refusal(args)
    if refused is not None:
        return refused
    in_main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _raise_terminated(os.getpid())) if in_main_thread else None
    code = None
    try:
        with console_logging():  # the library's log records become the command's printed lines
            code = _run(args)
        return code
    except Terminated:  # after the command's end (torchrun stopping the job's others once one failed): no traceback
        return 128 + signal.SIGTERM if code is None else code
    finally:
        if in_main_thread:  # (None: a handler not set from Python; the default is the closest)
            signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)


if __name__ == "__main__":
    sys.exit(main())
