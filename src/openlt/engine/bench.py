"""`openlt bench SPEC`: methods x seeds on one benchmark, run one after another, each finished run reused (an
interrupted bench resumes: a run with a `last` checkpoint is continued, one without is started again), and one
comparison table (mean ± std) with the papers' numbers beside it, as markdown, CSV and an HTML report.

A bench spec is YAML:

    name: fmnist_lt
    out_dir: runs/bench/fmnist_lt           # relative to the working directory
    seeds: [0, 1, 2]
    paper: null                             # imagenet_lt | places_lt | imagenet_lt_decoupling | cifar10_lt | ...
    overrides: [data.split_dir=splits/fmnist_lt]      # for every method
    methods:
      - {name: plain, config: ../fmnist_lt/plain.yaml}                       # paths relative to the spec
      - {name: oltr, config: ../fmnist_lt/oltr_stage2.yaml, init_from: plain}  # stage 2 of that seed's plain run
      - {name: plain+energy, eval_of: plain, overrides: [eval.open_score=energy]}  # another score, same run

`init_from: M` starts from method M's run of the same seed; `eval_of: M` re-evaluates M's run with other
eval settings (written as metrics-<name>.json in that run); `paper_row` names the published row to show.

A stage-2 run is reused only when started from this seed's run of its `init_from` method (`_stage1_mismatch`): one
whose stage-1 run is gone or changed is deleted and trained again, saying so. Two benches may share an out_dir:
each METHOD-sSEED is chosen, trained and evaluated holding OUT_DIR/.METHOD-sSEED.bench.lock, and a run another
live process holds (train.lock) is waited for, never deleted or resumed under it (`_choosing`).
"""

from __future__ import annotations

import contextlib
import copy
import difflib
import logging
import os
import re
import shutil
import socket
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX: runs are not locked
    fcntl = None

from openlt.config import (EXECUTION_KEYS, SEED_END, TRAINS_NOTHING, UNTRAINED_TRAIN_KEYS, Config, ConfigWarning,
                           build_config, check_override_keys, flatten, out_dir_problem, read_json, read_yaml_mapping,
                           resolve_config, run_name_problem, to_dict)
from openlt.data.build import prepare_data
from openlt.data.splits import MANIFEST
from openlt.engine.decouple import adopt_representation
from openlt.engine.checkpoint import TRAINED_AMPS, checkpoint_state
from openlt.engine.evaluate import eval_config, evaluate_run, evaluated_data, evaluation_amp
from openlt.engine.init_from import stage2_kind
from openlt.engine.manifest import read_run_manifest
from openlt.engine.precision import native_bf16, precision_name, run_amp
from openlt.engine.precheck import (check_loss_weights, check_open_score, check_validation_needs, config_setting,
                                    counts_of, split_data)
from openlt.engine.run import (EVALUATING, Run, _holder, _read_settled, _same_file, absolute_paths, check_tag,
                               open_run, run_around)
from openlt.engine.runtime import resolve_device
from openlt.engine.train import train
from openlt.errors import ConfigError, DataError, OpenLTError, RunDirError, WriteError
from openlt.io import sha256_file, unmakeable_folder
from openlt.openset import build_score
from openlt.openset.rejector import keep_known_text, parse_threshold
from openlt.paper_numbers import PAPERS
from openlt.reporting.summary import (MANIFEST_SPLITS_KEY, SOURCE_KEY, Lineage, check_comparable, load_metrics,
                                     recipe_differences, recorded_run_amp, run_lineage, score_options)
from openlt.reporting.summary import split_files as summary_split_files

_LOG = logging.getLogger(__name__)

NAME = re.compile(r"^[A-Za-z0-9_.+-]+$")
SPEC_KEYS = {"name", "out_dir", "seeds", "paper", "overrides", "methods"}
METHOD_KEYS = {"name", "config", "init_from", "eval_of", "overrides", "paper_row"}
# the config keys the bench sets on every run itself (after all overrides): key -> (what to write instead in the
# spec, on the command line); an override of them would be silently replaced
BENCH_SET = {
    "seed": ("a bench's seeds come from its `seeds:` list (e.g. seeds: [7])",
             "a bench's seeds come from its `seeds:` list or --seeds (e.g. --seeds 7)"),
    "out_dir": ("a bench's runs go to its `out_dir:` (e.g. out_dir: runs/bench/NAME)",
                "a bench's runs go to its `out_dir:` or --out-dir (e.g. --out-dir runs/bench/NAME)"),
    "name": ("a bench names each run METHOD-sSEED after the method's `name:`",
             "a bench names each run METHOD-sSEED after the method's `name:` in the spec"),
}


@dataclass
class BenchMethod:
    """One method of a bench spec: a config to train (maybe from `init_from`'s run), or `eval_of` a trained
    method's run evaluated again with `overrides`."""

    name: str
    config: Path | None = None
    init_from: str | None = None
    eval_of: str | None = None
    overrides: list[str] = field(default_factory=list)
    paper_row: str | None = None

    @property
    def tag(self) -> str:
        """The tag of an eval_of method's files in its base run (metrics-TAG.json): the name without + or . (two
        names with one tag are refused by `load_bench`)."""
        return self.name.replace("+", "-").replace(".", "-")


@dataclass
class BenchSpec:
    """A bench spec as `load_bench` read and checked it: methods x seeds, run into `out_dir`."""

    name: str
    out_dir: Path
    seeds: list[int]
    methods: list[BenchMethod]
    overrides: list[str] = field(default_factory=list)
    paper: str | None = None
    path: Path | None = None
    # trained methods whose data.split_dir (its split files, or the image folder they list) could not be read at
    # load time: {method: why} (`_check_split_folders`)
    split_problems: dict[str, str] = field(default_factory=dict)


def _strings(value, where: str, field_name: str) -> list[str]:
    """A list of key=value override strings (None: none); ConfigError naming the spec and the field."""
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) and "=" in v for v in value):
        raise ConfigError(f"{where}: {field_name} must be a list of key=value strings, got {value!r}")
    command_line = field_name == "command-line overrides"
    for item in value:  # the bench sets each run's seed, out_dir and name last: an override's would be replaced
        key = item.split("=", 1)[0].strip()
        if key in BENCH_SET:
            raise ConfigError(f"{where}: {field_name} set {item!r}; {BENCH_SET[key][command_line]}")
    return list(value)


def _text(raw: dict, key: str, where: str, default: str | None, field_name: str | None = None) -> str | None:
    """raw[key] as a non-empty string (`default` when absent or null); ConfigError naming the field otherwise."""
    value = raw.get(key)
    if value is None:
        return default
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{where}: {field_name or key} must be a non-empty text, got {value!r}")
    return value


def _seeds(value, what: str) -> list[int]:
    """`seeds` (or --seeds): a non-empty list of distinct integers >= 0 and < SEED_END (each becomes the runs'
    `seed`); ConfigError starting with `what` (e.g. "bench spec FILE: seeds") otherwise."""
    if (not isinstance(value, list) or not value or len(set(value)) != len(value)
            or not all(isinstance(s, int) and not isinstance(s, bool) and 0 <= s < SEED_END for s in value)):
        raise ConfigError(f"{what} must be a non-empty list of distinct integers >= 0 and <= {SEED_END - 1}, "
                          f"got {value!r}")
    return list(value)


def _method(entry, i: int, before: list[BenchMethod], path: Path, paper: str | None) -> BenchMethod:
    """methods[i] of the spec at `path`, checked: its fields' types, a unique name, references to trained methods
    listed before it (`before`), a config that exists, a `paper_row` of the spec's paper."""
    where = f"bench spec {path}"
    if not isinstance(entry, dict) or "name" not in entry:
        raise ConfigError(f"{where}: methods[{i}] must be a mapping with a name, got {entry!r}")
    name = _text(entry, "name", where, None, f"methods[{i}].name")
    bad = set(entry) - METHOD_KEYS
    if bad:
        raise ConfigError(f"{where}: method {name!r} has unknown key(s) {sorted(bad)}; valid: {sorted(METHOD_KEYS)}")
    if not NAME.match(name) or name in {m.name for m in before}:
        raise ConfigError(f"{where}: method name {name!r} must be unique and use letters, digits, _ . + -")
    clash = next((m.name for m in before if m.eval_of and m.tag == BenchMethod(name).tag), None)
    if clash and entry.get("eval_of") is not None:  # two evaluations would share one metrics-TAG.json
        raise ConfigError(f"{where}: methods {clash!r} and {name!r} would write the same metrics-{BenchMethod(name).tag}"
                          f".json (+ and . become - in file names); rename one of them")
    if entry.get("eval_of") is not None:  # its files' tag, by the rule of `openlt eval --tag`, before any work
        check_tag(BenchMethod(name).tag, f"{where}: method {name!r} gives the file tag")
    fields = {key: _text(entry, key, where, None, f"method {name!r}: {key}")
              for key in ("config", "init_from", "eval_of", "paper_row")}
    known = {m.name: m for m in before}
    for ref in ("init_from", "eval_of"):
        target = fields[ref]
        if target is not None and (target not in known or known[target].eval_of):
            raise ConfigError(f"{where}: method {name!r}: {ref}={target!r} must name a trained method listed before it"
                              f"{_reference_hint(target, before)}")
    if bool(fields["config"]) == bool(fields["eval_of"]):
        raise ConfigError(f"{where}: method {name!r} needs exactly one of config or eval_of")
    if fields["paper_row"] is not None and (paper is None or fields["paper_row"] not in PAPERS[paper]["rows"]):
        known_rows = "" if paper is None else f"; rows of {paper}: {', '.join(PAPERS[paper]['rows'])}"
        raise ConfigError(f"{where}: method {name!r}: paper_row {fields['paper_row']!r} is not a row of the spec's "
                          f"paper ({paper}){known_rows}")
    config = None
    if fields["config"]:
        config = resolve_config(fields["config"], path.parent,  # a packaged name when no such file
                                f"{where}: method {name!r}: config").resolve()
        if not config.is_file():
            raise ConfigError(f"{where}: method {name!r}: config not found: {config}")
        if not (path.parent / fields["config"]).exists():  # (said: a file of that name was maybe meant)
            _LOG.info(f"{where}: method {name!r}: config {fields['config']} is openlt's packaged config {config} "
                      f"(no such file beside the spec)")
    return BenchMethod(name, config, fields["init_from"], fields["eval_of"],
                       _strings(entry.get("overrides"), where, f"method {name!r}: overrides"), fields["paper_row"])


def _reference_hint(target: str, before: list[BenchMethod]) -> str:
    """What a bad init_from / eval_of reference is closest to: "; did you mean 'plain'?" and the trained methods
    listed before it (at most 6), or that none is."""
    trained = [m.name for m in before if not m.eval_of]
    if not trained:
        return "; no trained method (one with a config) is listed before it"
    close = difflib.get_close_matches(target, trained, n=1, cutoff=0.6)
    shown = ", ".join(trained[:6]) + (f" and {len(trained) - 6} more" if len(trained) > 6 else "")
    return (f"; did you mean {close[0]!r}?" if close else "") + f" (trained methods before it: {shown})"


def load_bench(path: str | Path, extra_overrides: list[str] | None = None, seeds: list[int] | None = None,
               out_dir: str | Path | None = None) -> BenchSpec:
    """Read and check a bench spec before any run: unknown keys, fields of the wrong type (each ConfigError names
    the spec file and the field), names, references, and every method's config with its overrides -- an
    `eval_of` method's evaluation overrides too (keys, open-set score, threshold), on its base method's config.
    `seeds` and `out_dir` (``--seeds``, ``--out-dir``) replace the spec's, checked as they are."""
    if seeds is not None:  # the command line's first: checked as the spec's seeds, naming the option
        seeds = _seeds(seeds, "--seeds")
    path = resolve_config(path, what="bench spec")  # a file, or a packaged spec's name (bench/fmnist_lt)
    raw = read_yaml_mapping(path, "bench spec")
    where = f"bench spec {path}"
    unknown = set(raw) - SPEC_KEYS
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {sorted(unknown)}; valid: {sorted(SPEC_KEYS)}")
    paper = _text(raw, "paper", where, None)
    if paper is not None and paper not in PAPERS:
        raise ConfigError(f"{where}: unknown paper {paper!r}; known: {', '.join(PAPERS)}")
    entries = raw.get("methods")
    if entries is not None and not isinstance(entries, list):
        raise ConfigError(f"{where}: methods must be a list of mappings (name, config | eval_of, ...), got {entries!r}")
    methods: list[BenchMethod] = []
    for i, entry in enumerate(entries or []):
        methods.append(_method(entry, i, methods, path, paper))
    if not methods:
        raise ConfigError(f"{where} lists no methods")
    _warn_replaced_command_line(methods, extra_overrides or [], where)
    for m in methods:  # one list sets a key twice: the last wins, as on a command line (said, as there)
        check_override_keys(m.overrides, f"in {where}, method {m.name!r}'s overrides")
    spec_out_dir = Path(_text(raw, "out_dir", where, f"runs/bench/{path.stem}"))
    if out_dir is None:
        check_out_dir(spec_out_dir, f"{where}: out_dir")
    else:  # the folder the runs will go to: --out-dir's
        if not str(out_dir).strip():
            raise ConfigError("--out-dir must not be empty")
        out_dir = Path(out_dir)
        check_out_dir(out_dir, "--out-dir")
    spec_seeds = _seeds(raw.get("seeds", [0]), f"{where}: seeds")
    spec = BenchSpec(_text(raw, "name", where, path.stem), spec_out_dir if out_dir is None else out_dir,
                     spec_seeds if seeds is None else seeds, methods,
                     _strings(raw.get("overrides"), where, "overrides")
                     + _strings(extra_overrides, where, "command-line overrides"), paper, path)
    for m in methods:  # each run is named METHOD-sSEED: a name too long for a folder fails here, not at its turn
        problem = None if m.eval_of else run_name_problem(f"{m.name}-s{max(spec.seeds)}")
        if problem:
            raise ConfigError(f"{where}: method {m.name!r} gives the run name {m.name}-s{max(spec.seeds)}, which "
                              f"{problem}")
    _check_configs(spec)
    return spec


# What a bench's out_dir may hold besides run directories (named as runs, or with a config.yaml) and hidden entries (staged
# runs, temporary files): the results write_bench_results writes, and logs.
BENCH_FILES = {"results.md", "results.csv", "report.html", "bands.png", "openset.png"}
RUN_DIR = re.compile(r".+-\d{8}-\d{6}(-\d+)?")


def check_out_dir(out_dir: Path, what: str) -> None:
    """A bench's out_dir must be a new or empty folder, or one that holds only what a bench writes (run
    directories, results.md / .csv, report.html, the two charts, *.log, hidden staged entries): never the
    filesystem root, the home folder or a folder of other files, where results.md and run directories would be
    written among them. ConfigError naming `what` and a few of the foreign entries."""
    problem = out_dir_problem(str(out_dir))  # too long for a run folder inside: named here, not as errno 36
    if problem:
        raise ConfigError(f"{what} {problem}")
    path = out_dir.expanduser().resolve()
    if path == path.parent or path == Path.home().resolve():
        raise ConfigError(f"{what} {out_dir} is {'the filesystem root' if path == path.parent else 'your home folder'}"
                          f"; give the bench a folder of its own (e.g. runs/bench/NAME)")
    if path.exists() and not path.is_dir():
        raise ConfigError(f"{what} {out_dir} is not a folder")
    unmakeable = None if path.exists() else unmakeable_folder(path)
    if unmakeable:  # (said before any run; mkdir would say a bare errno after the checks)
        raise ConfigError(f"{what} {out_dir} cannot be created: {unmakeable}")
    if (path / "config.yaml").is_file():  # one run's folder, given where a folder of runs goes
        raise ConfigError(f"{what} {out_dir} is a run directory (it has a config.yaml), not a folder of a bench's "
                          f"runs: give the bench a new or empty folder of its own (e.g. runs/bench/NAME); a table of "
                          f"runs already trained: `openlt summary LABEL=RUN ...`")
    inside = run_around(path)
    if inside is not None:  # its runs would be files of that run (and vanish with it, or be copied with it)
        raise ConfigError(f"{what} {out_dir} is inside the run directory {inside}: give the bench a folder outside "
                          f"any run (e.g. runs/bench/NAME)")
    foreign = sorted(p.name for p in path.iterdir() if not _bench_entry(p)) if path.is_dir() else []
    if foreign:
        shown = ", ".join(foreign[:3]) + (f" and {len(foreign) - 3} more" if len(foreign) > 3 else "")
        raise ConfigError(f"{what} {out_dir} holds files that are not a bench's ({shown}); give the bench a new or "
                          f"empty folder of its own (e.g. runs/bench/NAME)")


def _bench_entry(p: Path) -> bool:
    if p.name.startswith("."):
        return True
    if p.is_dir():  # a run: its config.yaml, or at least a run's name (NAME-YYYYmmdd-HHMMSS[-N])
        return (p / "config.yaml").is_file() or RUN_DIR.fullmatch(p.name) is not None
    return p.name in BENCH_FILES or p.suffix == ".log"


def _warn_replaced_command_line(methods: list[BenchMethod], command_line: list[str], where: str) -> None:
    """A warning per command-line override a trained method's own `overrides:` set again: those come last (the
    spec's, then the command line's, for every method; then each method's own), so the method's value is used --
    e.g. `openlt bench convergence_e384.yaml train.epochs=1` still trains plain_e384 for 384 epochs (session 27)."""
    given = {item.split("=", 1)[0].strip(): item for item in command_line if "=" in item}
    for m in methods:
        for item in m.overrides if m.config is not None else ():
            key = item.split("=", 1)[0].strip()
            if key in given:
                warnings.warn(f"{where}: method {m.name!r} sets {item!r} itself, after the command line's "
                              f"{given[key]!r} (a method's own overrides come last): it runs with {item!r}",
                              ConfigWarning, stacklevel=2)


def _check_configs(spec: BenchSpec) -> None:
    """Every trained method's config with the spec's and its own overrides, and every `eval_of` method's
    evaluation overrides on its base method's config, built and checked as `openlt train` / `eval` would: a typo,
    or a validation split the method needs and the data lacks (`precheck.check_validation_needs`), fails here,
    before hours of training. ConfigError naming the spec and the method."""
    built, methods, datas = {}, {m.name: m for m in spec.methods}, {}
    for m in spec.methods:
        try:
            if m.config is not None:
                cfg = built[m.name] = build_config(m.config, [*m.overrides, f"seed={spec.seeds[0]}"],
                                                   shared=spec.overrides)
                scorer, trained = build_score(cfg.eval.open_score, cfg.eval), m
                _check_stage1_method(m, cfg, methods, built)
            else:
                (cfg, scorer), trained = eval_config(built[m.eval_of], m.overrides), methods[m.eval_of]
            # eval.open_score against the head, feature width, classes and training images the run will have
            stage1 = built[trained.init_from] if cfg.decouple.method != "none" and trained.init_from else cfg
            read_stage1 = _read_once(datas, stage1)
            check_open_score(scorer, config_setting(cfg, lambda: counts_of(read_stage1()), lambda: stage1))
            # the validation split the method needs (a τ search; auto threshold on an open split), as its run checks
            if cfg.decouple.method == "none" or trained.init_from:  # (else: a stage-1 run outside the bench)
                check_validation_needs(cfg, stage1, read_stage1, fits=m.config is not None)
            if m.config is not None:
                check_loss_weights(cfg)  # per-class loss weights (focal alpha) against the split's class count
                if cfg.data.split_dir is not None and _read_once(datas, cfg)() is None:
                    spec.split_problems[m.name] = _split_problem(cfg)
        except ConfigError as exc:
            what = f"eval_of {m.eval_of!r}, overrides" if m.eval_of else f"config {m.config}"
            raise ConfigError(f"bench spec {spec.path}: method {m.name!r} ({what}): {exc}") from None


def _split_problem(cfg: Config) -> str:
    """Why `data.split_dir` cannot be read (`openlt train`'s refusal of it, e.g. `split folder not found: X`, or of
    the image folder it lists: `data root does not exist or is not a folder: X`)."""
    try:
        prepare_data(cfg, decode=False)
    except (ConfigError, DataError) as exc:
        return str(exc)
    return f"split folder {cfg.data.split_dir} could not be read"


def _check_split_folders(spec: BenchSpec) -> None:
    """A trained method with a seed still to train whose split folder `load_bench` could not read (missing, a
    broken split file, a missing data.root: `spec.split_problems`) is refused here, before any run: not at its
    turn, after the methods before it trained for hours. A method whose runs are all finished is reused without
    reading it (it may have moved since). DataError naming the spec, the method and the folder's problem."""
    for m in spec.methods:
        problem = spec.split_problems.get(m.name)
        if problem is None or all(any(run.metrics_file.is_file() for run in _runs_of(spec.out_dir, f"{m.name}-s{seed}"))
                                  for seed in spec.seeds):
            continue
        raise DataError(f"bench spec {spec.path}: method {m.name!r} (config {m.config}): {problem}; nothing was "
                        f"trained (fix data.root or data.split_dir of this method, or its split files)")


def _read_once(cache: dict, cfg: Config) -> Callable[[], Any]:
    """`split_data(cfg)`, its split files parsed once for every method of the spec with the same data section
    (keyed by its values, not by the config object: each method builds its own; a spec of 45 methods on one split
    read it ~60 times, 12 s)."""
    def read() -> Any:
        key = repr(to_dict(cfg.data))
        if key not in cache:
            cache[key] = split_data(cfg)
            cache[repr(to_dict(cfg.data))] = cache[key]  # also as read: reading records data.root from the manifest
        return cache[key]
    return read


def _check_stage1_method(m: BenchMethod, cfg: Config, methods: dict[str, BenchMethod], built: dict[str, Config]) -> None:
    """`init_from` must name a method whose runs can start this stage 2 (init_from.stage2_kind, as `openlt train`
    checks on the run): a decoupled stage 2 starts from no decoupled run, a stage 2 that trains from no stage 2;
    a decoupled stage 2 without `init_from` (nor a train.init_from of its own) is refused here, not at its turn
    after the methods before it have trained (session 27)."""
    if not m.init_from:
        if cfg.decouple.method != "none" and not cfg.train.init_from:
            raise ConfigError(f"decouple.method={cfg.decouple.method} fits a classifier on a stage-1 run's features: "
                              f"give the method `init_from: METHOD` (a stage-1 method listed before it)")
        return
    source = built[m.init_from]
    what = stage2_kind(source, methods[m.init_from].init_from or source.train.init_from)
    if cfg.decouple.method != "none" and source.decouple.method == "none":
        what = None  # a decoupled stage 2 keeps the representation of any jointly trained run
    if what:
        raise ConfigError(f"init_from={m.init_from!r} is {what}, not a stage-1 run: its runs cannot start this stage 2; "
                          f"start it from a stage-1 method (trained without init_from and decouple.method)")


def _runs_of(out_dir: Path, name: str) -> list[Run]:
    """The run directories new_run made for `name` (NAME-YYYYmmdd-HHMMSS, -2, ...), oldest first."""
    return [Run(p) for p in sorted(p for p in out_dir.glob(f"{name}-*") if p.is_dir() and re.fullmatch(
        re.escape(name) + r"-\d{8}-\d{6}(-\d+)?", p.name))]


def run_bench(spec: BenchSpec, quiet: bool = False, log: Callable[[str], None] | None = None,
              report_only: bool = False) -> dict[str, list[Path]]:
    """Train and evaluate every (method, seed) that is not finished; return {method: [metrics files]}.
    `report_only`: train and evaluate nothing, collect what is finished (e.g. while another process runs the
    bench), and say what is missing."""
    log = log or _LOG.info
    check_out_dir(spec.out_dir, f"bench {spec.name}: out_dir")  # again: the folder may have changed since load_bench
    if report_only:
        _check_something_finished(spec)
    else:
        _check_split_folders(spec)
        _check_records_have_weights(spec)
        try:
            spec.out_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:  # (a folder of a virtual filesystem, /proc/x, says no only when asked)
            raise ConfigError(f"bench {spec.name}: out_dir {spec.out_dir} cannot be created: "
                              f"{exc.strerror or exc}") from None
    try:
        results = _run_all(spec, quiet, log, report_only)
    except KeyboardInterrupt as exc:  # (Ctrl-C; SIGTERM through the CLI) the run's hint names `train --resume`
        if not report_only:
            exc.args = (bench_resume_hint(spec, str(exc.args[0]) if exc.args else None),)
        raise
    check_rows(spec, results)
    return results


SUMMARY_ADVICE = re.compile(r";[^;]*LABEL=RUN[^;]*$")  # summary's closing advice (its CLI's labels)


def check_rows(spec: BenchSpec, results: dict[str, list[Path]]) -> None:
    """Each method's runs (its metrics files, one per seed) as `openlt summary` compares the runs of one row
    (summary.check_comparable: recipes, seeds, weights, evaluations), before the table is written; its refusal
    with a bench's advice instead of summary's (`LABEL=RUN`: a bench row takes no labels): which run folder to
    delete, so that the next `openlt bench` trains that method and seed again from the spec (trial 15 #1)."""
    for method, paths in results.items():
        if len(paths) < 2:
            continue
        folders = [str(p.parent) for p in paths]
        try:
            check_comparable(method, [load_metrics(p) for p in paths], folders)
        except RunDirError as exc:
            named = [f for f in folders if f in str(exc)]
            which = f" ({' or '.join(named)})" if named else ""
            raise RunDirError(f"bench {spec.name}: {SUMMARY_ADVICE.sub('', str(exc))}; a bench row averages one "
                              f"method's runs over the spec's seeds: delete the run folder that does not belong"
                              f"{which} and run `openlt bench {spec.path or 'SPEC'}` again, which trains that method "
                              f"and seed again from the spec") from None


def bench_resume_hint(spec: BenchSpec, run_hint: str | None) -> str:
    """The one line an interrupted bench ends with: the interrupted run's own hint (its checkpoint and `openlt
    train --resume RUN`, which finishes that run alone), then that running the bench again with the same
    arguments resumes it (finished runs reused, the interrupted one continued) and writes its table."""
    again = (f"to finish the bench, run `openlt bench {spec.path or 'SPEC'}` again with the same arguments: it "
             f"reuses the finished runs, continues the interrupted one and writes the table")
    if not run_hint:
        return f"bench {spec.name} stopped; {again}"
    return f"{run_hint.rstrip()} (that finishes this run alone); {again}"


def _run_all(spec: BenchSpec, quiet: bool, log: Callable[[str], None], report_only: bool) -> dict[str, list[Path]]:
    results: dict[str, list[Path]] = {m.name: [] for m in spec.methods}
    total = len(spec.methods) * len(spec.seeds)
    done = 0
    started = time.time()
    for seed in spec.seeds:
        runs: dict[str, Run] = {}  # this seed's run of every trained method
        found = 0
        for m in spec.methods:
            done += 1
            prefix = f"[{done}/{total}] {m.name} seed {seed}"
            if m.eval_of:
                base = runs.get(m.eval_of)
                with _choosing(spec.out_dir, f"{m.name}-s{seed}", log, prefix, report_only,
                               lambda: [base] if base is not None else []):
                    metrics = _evaluated_again(spec, m, base, quiet, log, prefix, report_only, f"{m.name}-s{seed}")
            else:
                run = _trained(spec, m, seed, runs, quiet, log, prefix, report_only)
                metrics = None if run is None else run.metrics_file
                if run is not None:
                    runs[m.name] = run
            if metrics is not None:
                results[m.name].append(metrics)
                found += 1
        if report_only:  # (nothing was trained: say what was found)
            log(f"seed {seed}: {found} of {len(spec.methods)} method(s) finished")
        else:
            log(f"seed {seed} finished ({(time.time() - started) / 60:.1f} min so far)")
    return results


def _check_something_finished(spec: BenchSpec) -> None:
    """`--report-only` needs at least one finished (evaluated) run of the spec's trained methods and seeds in its
    out_dir: ConfigError naming the missing runs and how to train them otherwise, before anything is written."""
    trained = [f"{m.name}-s{seed}" for seed in spec.seeds for m in spec.methods if not m.eval_of]
    out_dir = spec.out_dir
    if out_dir.is_dir() and any(run.metrics_file.is_file() for name in trained for run in _runs_of(out_dir, name)):
        return
    busy = {name: _busy(out_dir, name, _runs_of(out_dir, name)) if out_dir.is_dir() else None for name in trained}
    missing = [name for name in trained if busy[name] is None]
    shown = ", ".join(missing[:4]) + (f" and {len(missing) - 4} more" if len(missing) > 4 else "")
    held = "".join(f"; {name}: {what}" for name, what in busy.items() if what is not None)
    raise ConfigError(f"bench {spec.name}: --report-only found no finished run in {out_dir} "
                      f"({f'missing: {shown}' if missing else 'none missing'}{held}); "
                      + (f"train them first with `openlt bench {spec.path or 'SPEC'}` (without --report-only)"
                         if missing else "run --report-only again once they have ended"))


def run_reports(spec: BenchSpec, files: dict[str, list[Path]]) -> dict[Path, Path]:
    """The HTML report beside each metrics file `run_bench` returned: report.html of a trained method's run,
    report-TAG.html of an `eval_of` method's metrics-TAG.json."""
    tags = {m.name: m.tag if m.eval_of else None for m in spec.methods}
    return {path: Run(path.parent).report_html_path(tags[name]) for name, paths in files.items() for path in paths}


def _evaluated_again(spec: BenchSpec, m: BenchMethod, base: Run | None, quiet: bool, log: Callable[[str], None],
                     prefix: str, report_only: bool, name: str) -> Path | None:
    """The metrics-TAG.json of an `eval_of` method in its base run, evaluated now unless it exists."""
    metrics = base.metrics_path(m.tag) if base else None
    if metrics is not None and metrics.is_file() and _as_the_spec_says(spec, m, base, m.tag, m.overrides, report_only,
                                                                       log, prefix):
        log(f"{prefix}: done ({metrics})")
    elif report_only:  # (the base run is then missing too, or not yet evaluated this way)
        busy = _busy(spec.out_dir, name, [base] if base else [])
        log(f"{prefix}: {busy}: not in the table" if busy else f"{prefix}: missing")
        return None
    else:
        _check_weights(spec, base, f"{m.name} evaluates it")
        log(f"{prefix}: evaluating {base.path.name} with {' '.join(m.overrides) or 'its own settings'}")
        evaluate_run(base, overrides=m.overrides, quiet=quiet, tag=m.tag, device=_spec_device(spec, m))
    return metrics


def _trained(spec: BenchSpec, m: BenchMethod, seed: int, runs: dict[str, Run], quiet: bool,
             log: Callable[[str], None], prefix: str, report_only: bool) -> Run | None:
    """The finished (evaluated) run of a method and seed: an existing one, else trained (or resumed) and
    evaluated now; None when missing under `report_only`. A bench chooses (and trains) it holding the (out_dir,
    method, seed)'s lock, after every run of it that another live process holds is free (:func:`_choosing`).
    A stage-2 run (`init_from`) not started from this seed's run of its base method (`runs`) is trained again
    when its stage-1 run is gone or changed, refused when it is another intact run (:func:`_stage1_mismatch`)."""
    name = f"{m.name}-s{seed}"
    with _choosing(spec.out_dir, name, log, prefix, report_only, lambda: _runs_of(spec.out_dir, name)):
        stage1 = runs.get(m.init_from) if m.init_from else None
        for run in [run for run in _runs_of(spec.out_dir, name) if run.metrics_file.is_file()]:
            why = _stage1_mismatch(spec, m, seed, run, stage1) if m.init_from else None
            if why is not None:
                _replace_stale(spec, run, why, report_only, log, prefix)
                continue
            expected = _check_same_config(spec, m, seed, run, finished=True)
            if not _as_the_spec_says(spec, m, run, None, [], report_only, log, prefix):
                # its config.yaml's eval settings (the spec's, checked above), on the device the spec asks for
                evaluate_run(run, quiet=quiet, device=expected.train.device)
            log(f"{prefix}: done ({run.path})")
            return run
        if report_only:
            busy = _busy(spec.out_dir, name, _runs_of(spec.out_dir, name))
            log(f"{prefix}: {busy}: not in the table" if busy else f"{prefix}: missing")
            return None
        run = _train_or_resume(spec, m, seed, name, runs, quiet, log, prefix)
        evaluate_run(run, quiet=quiet)
        return run


WAIT_POLL_S = 0.5  # how often a bench waiting for another process's run (or choice) looks again


def _choice_lock_file(out_dir: Path, name: str) -> Path:
    """OUT_DIR/.NAME.bench.lock: held (flock) by the bench that chooses, trains or evaluates NAME (METHOD-sSEED)."""
    return out_dir / f".{name}.bench.lock"


@contextlib.contextmanager
def _choosing(out_dir: Path, name: str, log: Callable[[str], None], prefix: str, report_only: bool,
              held: Callable[[], list[Run]]) -> Iterator[None]:
    """Inside the block this bench alone chooses, trains and evaluates `name` (METHOD-sSEED) in `out_dir`: it holds
    OUT_DIR/.NAME.bench.lock (flock, exclusive; the file holds its PID and host, and is removed as it is released,
    as train.lock is), taken when another bench lets it go, and every run of `held()` that another live process
    holds (its train.lock: an `openlt train`, `eval`, or a bench of an older openlt) is free. Two benches on one
    out_dir so never both create METHOD-sSEED, never delete or resume a run the other trains: the second waits,
    saying so once (one line naming the run and the process), then reuses or resumes what the first left (as
    for an interrupted run when the first was killed). `report_only` (which writes nothing): no lock, no wait."""
    if report_only or fcntl is None:
        yield
        return
    said = False

    def waiting(holder: str, what: str) -> None:
        nonlocal said
        if not said:
            log(f"{prefix}: {what} is in use by process {holder}; waiting for it to end")
            said = True

    path = _choice_lock_file(out_dir, name)
    while True:
        try:
            fh = open(path, "a+", encoding="utf-8", errors="replace")
        except OSError as exc:
            raise WriteError(f"cannot create {path}: {exc.strerror or exc}") from None
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            fh.seek(0)
            holder = fh.read().strip() or "(unknown)"
            fh.close()
            if not said:  # the run it trains, or (an eval_of method: no folder of its own) the run it evaluates
                runs = held()
                what = runs[-1].path if runs else f"{out_dir / name} (not created yet)"
                waiting(f"{holder} (another `openlt bench` on {out_dir})", str(what))
            time.sleep(WAIT_POLL_S)
            continue
        info = os.fstat(fh.fileno())
        if _same_file(path, info):
            break
        fh.close()  # its holder removed it as it ended: lock the file at the path now
    with fh:
        fh.seek(0)
        fh.truncate()
        fh.write(f"{os.getpid()} on {socket.gethostname()}\n")
        fh.flush()
        try:
            while True:  # runs that another process (not a bench of this openlt) trains or evaluates
                busy = next(((run, who) for run in held() if (who := _holder_of(run)) is not None), None)
                if busy is None:
                    break
                waiting(busy[1], str(busy[0].path))
                time.sleep(WAIT_POLL_S)
            yield
        finally:
            if _same_file(path, info):
                with contextlib.suppress(OSError):
                    os.unlink(path)


def _holder_of(run: Run) -> str | None:
    """"PID on HOST" of another live process that holds `run`'s train.lock (training it, `Run.lock`, or
    evaluating it, `Run.eval_lock`); None when the lock is free (also a killed process's file), gone, or this
    process's. A record not whole yet (its holder has just taken the lock) is read again, as `Run` reads it."""
    held = _activity_of(run)
    return None if held is None else held[0]


def _activity_of(run: Run) -> tuple[str, str] | None:
    """(:func:`_holder_of`'s "PID on HOST", what it does: run.TRAINING or run.EVALUATING), or None."""
    if fcntl is None or not run.lock_file.is_file():  # pragma: no cover - not POSIX
        return None
    held = _read_settled(run._other_holder, lambda held: held is None or held[1] is not None)
    if held is None:
        return None
    text, record = held
    holder, what = record or _holder(text)
    return None if holder.split(" ", 1)[0] == str(os.getpid()) else (holder, what)


def _busy(out_dir: Path, name: str, runs: list[Run]) -> str | None:
    """What another live process is doing with `name` (METHOD-sSEED) now, for `--report-only` (which takes no lock
    and writes nothing): "RUN is being trained (or evaluated) by process PID on HOST" for a run of `runs` whose
    train.lock it holds, else "it is being chosen, trained or evaluated by process PID on HOST (another `openlt
    bench` on OUT_DIR)" while a bench holds OUT_DIR/.NAME.bench.lock; None when neither (trial 15 #10: such a run
    was listed as missing)."""
    for run in runs:
        held = _activity_of(run)
        if held is not None:
            return f"{run.path} is being {'evaluated' if held[1] == EVALUATING else 'trained'} by process {held[0]}"
    path = _choice_lock_file(out_dir, name)
    if fcntl is None or not path.is_file():  # pragma: no cover - not POSIX
        return None
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            try:
                fcntl.flock(fh, fcntl.LOCK_SH | fcntl.LOCK_NB)
                return None  # free: a killed bench's file
            except OSError:
                holder = fh.read().strip() or "(unknown)"
    except OSError:
        return None
    return f"it is being chosen, trained or evaluated by process {holder} (another `openlt bench` on {out_dir})"


def _check_records_have_weights(spec: BenchSpec) -> None:
    """:func:`_check_weights` of every finished base run in out_dir that a stage 2 or `eval_of` row not made yet
    will start from, before anything is trained (trial 24b: the rows before it were trained first). The base is the
    run :func:`_trained` reuses (its first finished one); a stage 2 counts as made when a finished run of it is
    there (whether it still holds for its stage 1 is judged when its row is reached)."""
    if not spec.out_dir.is_dir():
        return
    for seed in spec.seeds:
        for m in spec.methods:
            base_name = m.init_from or m.eval_of
            if base_name is None:
                continue
            base = next((r for r in _runs_of(spec.out_dir, f"{base_name}-s{seed}") if r.metrics_file.is_file()), None)
            made = (base is not None and base.metrics_path(m.tag).is_file() if m.eval_of else
                    any(r.metrics_file.is_file() for r in _runs_of(spec.out_dir, f"{m.name}-s{seed}")))
            if base is not None and not made:
                _check_weights(spec, base, f"{m.name} seed {seed} {'evaluates' if m.eval_of else 'starts from'} it")


def _check_weights(spec: BenchSpec, run: Run, needed_by: str) -> None:
    """RunDirError, before anything is trained or evaluated, when the finished run `run` that a stage 2 starts from
    or an `eval_of` method evaluates (`needed_by` says which) has no checkpoints/best.safetensors: a record without
    weights (scripts/archive_runs.py keeps none) counts as finished for the table, but nothing can start from it."""
    if not run.checkpoint("best").is_file():
        why = ("its best checkpoint was deleted" if run.checkpoint("last").is_file() else
               "it is a record without weights (scripts/archive_runs.py keeps none) or its checkpoints were deleted")
        raise RunDirError(f"bench {spec.name}: {run.path} has no {run.checkpoint('best').relative_to(run.path)}, "
                          f"and {needed_by}: {why}; move the run out of {spec.out_dir} and run the bench again to "
                          f"train it anew")


def _remove_run(run: Run) -> None:
    """Delete a run directory the bench replaces (killed before its first checkpoint, or a stale stage 2), holding
    its lock (`Run.lock`): a run another live process holds is never deleted (RunDirError naming the process)."""
    with run.lock():
        shutil.rmtree(run.path)


def _recorded_stage1(run: Run) -> dict:
    """What `run`'s checkpoint (best, else last) records of the stage-1 checkpoint it was fitted on ("stage1" of
    a decoupled stage 2: stage1_record.stage1_record); {} when none (a stage 2 that trains, an older openlt) or
    the checkpoint cannot be read (the evaluation names it)."""
    for which in ("best", "last"):
        path = run.checkpoint(which)
        if path.is_file():
            try:
                recorded = checkpoint_state(path).get("stage1")
            except OpenLTError:
                return {}
            return recorded if isinstance(recorded, dict) and isinstance(recorded.get("sha256"), str) else {}
    return {}


_SHA: dict[tuple, str] = {}  # (path, inode, size, mtime_ns) -> sha256: a stage-1 checkpoint read once a bench


def _sha_of(path: Path) -> str | None:
    """sha256 of the file at `path`, None when there is none."""
    try:
        info = path.stat()
    except OSError:
        return None
    key = (str(path.resolve()), info.st_ino, info.st_size, info.st_mtime_ns)
    if key not in _SHA:
        _SHA[key] = sha256_file(path)
    return _SHA[key]


def _stage1_mismatch(spec: BenchSpec, m: BenchMethod, seed: int, run: Run, stage1: Run | None) -> str | None:
    """None when `run`, a run of the stage-2 method `m`, was started from `stage1`, this seed's run of
    `m.init_from` that the bench uses (None: missing under --report-only), or from the same weights: for a
    decoupled stage 2 the sha256 of the stage-1 checkpoint its own checkpoint records (a moved or copied run
    matches); for one that trains (no such record) its train.init_from, the same path or a run folder of the
    same name (an out_dir moved). Else why its results do not hold (the caller trains it again): the stage-1
    run it was started from is gone or its checkpoint changed since. ConfigError, one line, when that run is
    there, intact, and another than the bench's (two runs of the base method and seed): which one is meant is
    the user's to say."""
    saved = run.config().train.init_from
    recorded = _recorded_stage1(run)
    which = recorded.get("checkpoint", "best") if recorded else "best"
    if stage1 is not None and recorded and _sha_of(stage1.checkpoint(which)) == recorded["sha256"]:
        diffs = stage1_recipe_differences(run, stage1)
        if not diffs:
            return None
        more = f" and {len(diffs) - 3} more" if len(diffs) > 3 else ""
        return (f"was started from a {m.init_from} run of another recipe than this seed's {m.init_from} run "
                f"{stage1.path} (the stage-1 config its checkpoint records vs that run's config.yaml: "
                f"{', '.join(diffs[:3])}{more}), though of the same checkpoints/{which}.safetensors")
    if stage1 is not None and not recorded and saved and (Path(saved).resolve() == stage1.path.resolve()
                                                          or Path(saved).name == stage1.path.name):
        return None
    where = f"bench spec {spec.path}: method {m.name!r} seed {seed}: the run {run.path}"
    if not saved:
        raise ConfigError(f"{where} was made without train.init_from, not from this seed's {m.init_from} run; "
                          f"delete that run folder or give the bench another out_dir")
    source = Run(Path(saved))
    if not source.config_file.is_file():
        return f"was started from the {m.init_from} run {saved}, which is gone"
    if recorded:
        now = _sha_of(source.checkpoint(which))
        if now != recorded["sha256"]:
            return (f"was started from the {m.init_from} run {saved}, whose checkpoints/{which}.safetensors "
                    f"changed since (sha256 {recorded['sha256'][:12]} then, {now[:12] if now else 'none'} now)")
    if stage1 is None:  # (--report-only, this seed's base run missing: nothing to compare with)
        return None
    raise ConfigError(f"{where} was started from the {m.init_from} run {saved}, not from this seed's {m.init_from} "
                      f"run {stage1.path} that the bench uses (both are there); delete the run folder that is not "
                      f"wanted or give the bench another out_dir")


def stage1_recipe_differences(run: Run, stage1: Run) -> list[str]:
    """How the stage-1 recipe `run` (a stage 2) records (its checkpoint's "stage1" config, else its
    train.init_from folder's config.yaml: summary.run_lineage) differs from `stage1`'s (this seed's stage-1 run the
    bench uses), "KEY: RECORDED vs NOW" each, compared as `openlt summary` compares the recipes of a row's runs
    (summary.recipe_differences on Lineage.recipe: seeds, paths and speed settings left out): a stage 2 the
    bench reuses is one summary averages with the other seeds' (trial 15 #1: a stage-1 run retrained with 2
    epochs whose best checkpoint is the 1-epoch run's, bit for bit, was reused, and the table refused). [] when
    either recipe cannot be read (the evaluation or the table names why)."""
    try:
        mine = run_lineage({SOURCE_KEY: str(run.metrics_file)})
        now = run_lineage({SOURCE_KEY: str(stage1.metrics_file)})
    except OpenLTError:
        return []
    if mine is None or now is None or len(mine.levels) < 2:
        return []
    return recipe_differences(Lineage(mine.levels[1:], mine.sha256[1:]).recipe(), now.recipe())


def _replace_stale(spec: BenchSpec, run: Run, why: str, report_only: bool, log: Callable[[str], None],
                   prefix: str) -> None:
    """A stage-2 run whose stage-1 run is gone or changed (`why`, :func:`_stage1_mismatch`): its results do not
    hold for this seed's stage-1 run, so it is deleted (with its eval_of files) and trained again, one line
    saying so; under `report_only` (nothing is trained) ConfigError naming the run, why and the remedy."""
    if report_only:
        raise ConfigError(f"bench {spec.name}: the run {run.path} {why}: its results do not hold for this seed's "
                          f"stage-1 run; --report-only trains nothing: run `openlt bench {spec.path or 'SPEC'}` "
                          f"without it to train it again")
    log(f"{prefix}: the run {run.path} {why}: its results do not hold for this seed's stage-1 run; deleting it "
        f"and training it again")
    _remove_run(run)


def _as_the_spec_says(spec: BenchSpec, m: BenchMethod, run: Run, tag: str | None, overrides: list[str],
                      report_only: bool, log: Callable[[str], None], prefix: str) -> bool:
    """Whether the run's metrics file of `tag` (metrics.json of a trained method, metrics-TAG.json of an eval_of
    one) was written under the evaluation settings the spec gives the method: the run's config with `overrides`
    (:func:`evaluation_differences`). An `openlt eval RUN eval.open_score=max_logit` without --tag replaces
    metrics.json: its numbers must not be shown under the method's name. False (after one line saying so: the
    caller evaluates it again under the spec's settings) when they differ; under `report_only`, which evaluates
    nothing, ConfigError naming the run, both settings and the remedy. An unreadable file is left to the
    report's reading, which names it."""
    path = run.metrics_path(tag)
    try:
        metrics = read_json(path, "metrics file")
        cfg, scorer = eval_config(run.config(), overrides)
    except OpenLTError:
        return True
    diffs = ([*evaluation_differences(metrics, cfg, scorer), *source_differences(metrics, run, cfg),
              *precision_differences(metrics, run, cfg)] if isinstance(metrics, dict) else [])
    if not diffs:
        return True
    what = f"{path.name} of {run.path} was written by an evaluation under other settings than the spec gives " \
           f"method {m.name!r} ({'; '.join(diffs)})"
    if report_only:
        raise ConfigError(f"bench {spec.name}: {what}; --report-only evaluates nothing: run `openlt bench "
                          f"{spec.path or 'SPEC'}` without it to evaluate the run again under the spec's settings "
                          f"(to keep another evaluation, give it a tag: `openlt eval RUN --tag NAME ...`)")
    log(f"{prefix}: {what}: evaluating it again under the spec's settings")
    return False


def evaluation_differences(metrics: dict, cfg: Config, scorer) -> list[str]:
    """How the evaluation recorded in `metrics` (a metrics.json) differs from the one `cfg`'s eval section asks
    for, one "KEY: run X, spec Y" each: the open-set score and its options (as `openlt summary` compares them:
    :func:`openlt.reporting.summary.score_options`), the threshold (fixed number or chosen on validation, with
    its keep_known) and the band edges. What a file does not record (an older openlt) is not compared."""
    diffs = []
    recorded = metrics.get("open_score")
    name = recorded.get("name") if isinstance(recorded, dict) else None
    if name is not None and name != cfg.eval.open_score:
        diffs.append(f"eval.open_score: run {name}, spec {cfg.eval.open_score}")
    elif name is not None:
        have, want = score_options(metrics) or {}, score_options({"open_score": scorer.summary()}) or {}
        k = recorded.get("num_classes")
        if want.get("eval.openmax_alpha", 0) is None and isinstance(k, int) and k > 0:
            want["eval.openmax_alpha"] = scorer.alpha_for(k)  # null = min(10, K): the fit records it resolved
        diffs += [f"{key}: run {have[key]!r}, spec {want[key]!r}" for key in sorted(want)
                  if key in have and have[key] != want[key]]
    calibration = metrics.get("calibration")
    threshold = parse_threshold(cfg.eval.open_threshold)
    if isinstance(calibration, dict):
        source = str(calibration.get("source", ""))
        fixed = source.startswith("fixed")
        if threshold is not None and (not fixed or calibration.get("threshold") != threshold):
            run_value = calibration.get("threshold") if fixed else "auto"
            diffs.append(f"eval.open_threshold: run {run_value}, spec {threshold}")
        elif threshold is None and fixed:
            diffs.append(f"eval.open_threshold: run {calibration.get('threshold')}, spec auto")
        elif (threshold is None and re.search(r"keeps [\d.]+% ", source)  # (a source in other words: not compared)
              and f"keeps {keep_known_text(cfg.eval.keep_known)} " not in source):
            diffs.append(f"eval.keep_known: run {source!r}, spec {cfg.eval.keep_known}")
    elif threshold is not None and "calibration" not in metrics and "open" in metrics:
        diffs.append(f"eval.open_threshold: run none, spec {threshold}")
    bands = metrics.get("bands")
    if isinstance(bands, dict):
        for key, value in (("many_above", cfg.eval.many_above), ("few_below", cfg.eval.few_below),
                           ("inclusive", cfg.eval.inclusive_bands)):
            if key in bands and bands[key] != value:
                option = "inclusive_bands" if key == "inclusive" else key
                diffs.append(f"eval.{option}: run {bands[key]!r}, spec {value!r}")
    return diffs


BENCH_CHECKPOINT = "best"  # what a bench evaluates (evaluate_run's default)


def source_differences(metrics: dict, run: Run, cfg: Config) -> list[str]:
    """How the weights and the data an evaluation recorded in `metrics` (a metrics file of `run`) differ from what
    the bench evaluates, one "KEY: run X, spec Y" each: the checkpoint (``openlt eval RUN --checkpoint last``; the
    bench evaluates ``best``), the weights of checkpoints/best.safetensors (its sha256 then and now: the run trained
    on after it was evaluated), data.root and data.open_root (``openlt eval RUN data.root=ELSEWHERE``; `cfg` is the
    run's config with the method's overrides: what the bench evaluates with; a root whose packed files (CIFAR,
    Fashion-MNIST) the run's split_manifest.json fingerprints is not compared: the evaluation checked their sha256,
    so they are the same images wherever they are) and the split files (which splits and their sha256, against
    split_manifest.json; a metrics.json without "split_files" is taken, as `openlt summary` takes it, to be on the
    split files split_manifest.json records). What a file does not record (metrics.json of an older openlt: no
    "checkpoint", "checkpoint_sha256" or "data") is taken as the bench's own (not compared), as is a setting the
    run's config leaves unset (data.root of an older image-folder run: the split folder's manifest names it)."""
    diffs = []
    checkpoint = metrics.get("checkpoint")
    sha = metrics.get("checkpoint_sha256")
    best = run.checkpoint(BENCH_CHECKPOINT)
    if isinstance(checkpoint, str) and checkpoint != BENCH_CHECKPOINT:
        diffs.append(f"checkpoint: run {checkpoint} (`openlt eval RUN --checkpoint {checkpoint}`), spec "
                     f"{BENCH_CHECKPOINT}")
    elif isinstance(sha, str) and sha and best.is_file():
        now = sha256_file(best)
        if now != sha:
            diffs.append(f"checkpoints/{best.name}: run sha256 {sha[:12]}, now {now[:12]} (trained on after this "
                         f"evaluation)")
    try:
        manifest = read_run_manifest(run)
    except OpenLTError:  # (missing or broken: the evaluation the bench runs names it)
        return diffs
    recorded = metrics.get("data")
    if isinstance(recorded, dict):
        want = evaluated_data(cfg, cfg.data.split_dir or run.splits_dir)
        packed = manifest.get("data_files", {})
        for key in ("root", "open_root"):
            if f"data.{key}" in packed or key not in recorded or (key == "root" and want[key] is None):
                continue
            if recorded[key] != want[key]:
                diffs.append(f"data.{key}: run {recorded[key]}, spec {want[key]}")
    then = {split: info["sha256"] for split, info in manifest["files"].items()}
    # `openlt summary`'s rule (summary.split_files): an older metrics.json without "split_files" was evaluated on
    # the split files its run's split_manifest.json records (the evaluation checked them against it)
    split_files = summary_split_files({**metrics, MANIFEST_SPLITS_KEY: then})
    if isinstance(split_files, dict):
        for split in sorted(then.keys() | split_files.keys()):
            if split_files.get(split) != then.get(split):
                show = lambda h: "none" if not isinstance(h, str) else h[:12]  # noqa: E731
                diffs.append(f"{split} split: run sha256 {show(split_files.get(split))}, spec (split_manifest.json) "
                             f"{show(then.get(split))}")
    return diffs


def precision_differences(metrics: dict, run: Run, cfg: Config) -> list[str]:
    """["precision: run X, spec Y"] when the precision the evaluation recorded in `metrics` (metrics.json "amp",
    e.g. of ``openlt eval RUN train.amp=none``) is not the one the bench's evaluation of `run` runs in now
    (evaluate.evaluation_amp on `cfg`'s device, `cfg` being the run's config with the method's overrides: the
    run's trained precision, precision.py); else []. The trained precision is one truth per run: a spec asking
    another is refused before (:func:`_check_same_config`). Not compared: a file that records none (an older openlt), a run whose precision
    cannot be worked out now (the evaluation names why), and a recorded precision this device cannot run natively
    (bf16 on a CPU that emulates it, fp16 off CUDA): evaluating again here would only fall back, machine-made."""
    recorded = metrics.get("amp")
    if recorded not in TRAINED_AMPS:
        return []
    try:
        dev = resolve_device(cfg.train.device)
        want = evaluation_amp(run, cfg, dev, checkpoint_state(run.checkpoint(BENCH_CHECKPOINT)))
    except OpenLTError:
        return []
    native = recorded == "none" or (recorded == "bf16" and native_bf16(dev)) or (recorded == "fp16"
                                                                                and dev.type == "cuda")
    if want == recorded or not native:
        return []
    return [f"precision: run {precision_name(recorded)}, spec {precision_name(want)}"]


def _train_or_resume(spec: BenchSpec, m: BenchMethod, seed: int, name: str, runs: dict[str, Run], quiet: bool,
                     log: Callable[[str], None], prefix: str) -> Run:
    """Resume the interrupted run of `name` (one with a `last` checkpoint, its config the spec's, a stage 2's
    started from this seed's stage-1 run), deleting those killed before their first checkpoint and stale stage-2
    runs (:func:`_stage1_mismatch`); else train a new one. Called holding the choice lock (:func:`_choosing`),
    no run of `name` held by another process."""
    stage1 = runs.get(m.init_from) if m.init_from else None
    for partial in _runs_of(spec.out_dir, name):
        if partial.checkpoint("last").is_file():
            why = _stage1_mismatch(spec, m, seed, partial, stage1) if m.init_from else None
            if why is not None:
                _replace_stale(spec, partial, why, False, log, prefix)
                continue
            _check_same_config(spec, m, seed, partial, finished=False)
            log(f"{prefix}: resuming the interrupted run {partial.path}")
            run = open_run(partial.path)
            return train(run.config(), run=run, resume=True, quiet=quiet, log=log)
        _remove_run(partial)  # killed before its first checkpoint: nothing to keep
    overrides = [*m.overrides, f"seed={seed}", f"out_dir={spec.out_dir}"]
    if m.init_from:
        _check_weights(spec, runs[m.init_from], f"{m.name} seed {seed} starts from it")
        overrides.append(f"train.init_from={runs[m.init_from].path}")
    log(f"{prefix}: training {m.config.name}")
    return train(build_config(m.config, overrides, shared=spec.overrides), name=name, quiet=quiet, log=log)


def _check_same_config(spec: BenchSpec, m: BenchMethod, seed: int, run: Run, finished: bool) -> Config:
    """Refuse to reuse (or resume) `run` when its saved config is not the one the spec builds now for `m` and
    `seed` (an edited spec or method config): ConfigError naming the run, the first differing keys and the remedy.
    Compared with paths resolved; name and out_dir, train.init_from when the bench sets it (this seed's run of
    the base method), and for a `finished` (evaluated) run config.EXECUTION_KEYS (a run trained on a GPU machine with
    train.device=cuda, say, and brought here, is the same run; an interrupted one resumes with its own), may differ.
    Returns the config the spec builds (its device is the one a reused run is evaluated on again)."""
    expected = build_config(m.config, [*m.overrides, f"seed={seed}"], shared=spec.overrides)
    saved: Config = run.config()
    ignore = {"name", "out_dir"} | ({"train.init_from"} if m.init_from else set())
    if finished:
        ignore |= EXECUTION_KEYS
    if expected.decouple.method in TRAINS_NOTHING:  # settings it does not read (a run made when a spec still set
        ignore |= {f"train.{key}" for key in UNTRAINED_TRAIN_KEYS}  # train.epochs=1 for it is the same run)
    if expected.decouple.method != "none" and saved.train.init_from:  # stage 2 took its stage-1 run's data, model
        try:
            adopt_representation(expected, Run(Path(saved.train.init_from)), lambda _: None)
        except OpenLTError:  # (that run is gone or unreadable: its data and model are not compared)
            ignore |= {f"{section}." for section in ("data", "model")}
    trained = recorded_run_amp(run.path)  # the trained precision (None: an older run, auto = float32 on a CPU)
    want, have = _comparable(expected, trained), _comparable(saved, trained)
    resolved = _resolve_unset(expected, run, want, have)
    shown = lambda key: (f"{want.get(key)!r}" if key not in resolved  # noqa: E731
                         else f"None (resolves to {want.get(key)!r} now: {resolved[key]})")
    diffs = [f"{key}: run {have.get(key)!r}, spec {shown(key)}" for key in sorted(want.keys() | have.keys())
             if key not in ignore and not key.startswith(tuple(k for k in ignore if k.endswith(".")))
             and want.get(key) != have.get(key)]
    if diffs:
        shown = "; ".join(diffs[:3]) + (f"; and {len(diffs) - 3} more" if len(diffs) > 3 else "")
        raise ConfigError(f"bench spec {spec.path}: method {m.name!r} seed {seed}: the run {run.path} was made with "
                          f"another config than the spec builds now ({shown}); delete that run folder or give the "
                          f"bench another out_dir")
    return expected


def _spec_device(spec: BenchSpec, m: BenchMethod) -> str:
    """The train.device the spec builds for an `eval_of` method `m`: its base method's, or its own overrides' (an
    evaluation key), not the device a reused base run was trained on."""
    base = next(b for b in spec.methods if b.name == m.eval_of)
    return build_config(base.config, [*base.overrides, *m.overrides], shared=spec.overrides).train.device


# The config keys a run resolves when it starts, where its config leaves them unset, and records resolved in its
# config.yaml (data.build.prepare_data): the image root (the split folder's manifest.json's) and the input size (the
# training images' own when they are at most 64 px), each with what it is resolved from.
RESOLVED_AT_RUN = {"data.root": "the split folder's manifest.json", "data.image_size": "the training images' size"}


def _resolve_unset(expected: Config, run: Run, want: dict, have: dict) -> dict[str, str]:
    """A spec leaving a :data:`RESOLVED_AT_RUN` key unset means "resolved at run time": where the run recorded a
    value for it, the spec's is resolved now the same way (prepare_data on a copy of `expected`, the split files
    read as the run reads them, no image decoded) and put into `want` (the spec's flattened config). When the data
    cannot be read now (the evaluation or training that follows names why), the run's resolution is taken. Returns
    {key: what it was resolved from} for the keys resolved."""
    unset = [key for key in RESOLVED_AT_RUN if want.get(key) is None and have.get(key) is not None]
    if not unset:
        return {}
    cfg = copy.deepcopy(expected)
    split_dir = Path(cfg.data.split_dir) if cfg.data.split_dir is not None else run.splits_dir
    try:
        if not (split_dir / MANIFEST).is_file():  # (never built here: a run's own splits are in its folder)
            raise ConfigError(f"no {MANIFEST} in {split_dir}")
        prepare_data(cfg, default_split_dir=run.splits_dir, decode=False)
    except OpenLTError:
        want.update({key: have[key] for key in unset})
        return {}
    now = flatten(to_dict(absolute_paths(cfg)))
    want.update({key: now.get(key) for key in unset})
    return {key: RESOLVED_AT_RUN[key] for key in unset}


def _comparable(config: Config, trained: str | None) -> dict:
    """`config` flattened with paths resolved and `train.amp` resolved for its device as for the run it is
    compared with (`trained`: the precision that run's checkpoint records; precision.run_amp): `auto` is the
    precision the run trained in, or, for a run from before runs recorded it, what `auto` meant then (float32 on
    any CPU). So a run saved with `none` before `auto` became the default, or trained with `auto` before `auto`
    meant bf16 on a CPU with bfloat16 units, still matches (and is reused, or resumed in float32) for a spec that
    says `auto`; a spec that says bf16 or none explicitly matches only a run trained in it."""
    flat = flatten(to_dict(absolute_paths(config)))
    try:  # the device is resolved only for a legacy run's `auto`
        flat["train.amp"] = run_amp(config.train.amp, lambda: resolve_device(config.train.device), trained)
    except ConfigError:  # (a device this machine lacks: compared as written)
        pass
    return flat
