"""A run is one directory: resolved config, split manifest, checkpoints, metrics logs, results, report.

A run can be resumed, re-evaluated and used for prediction from its directory alone.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from pathlib import Path

from openlt.config import Config, build_config, dump_yaml, read_yaml_mapping
from openlt.errors import OpenLTError, RunDirError, WriteError
from openlt.io import write_json, write_text


@dataclass
class Run:
    """One run directory. Every path inside it is a property or method here, so that its layout is known in one
    place; a `tag` (e.g. another open-set score, ``openlt eval --tag``) names the files of an extra evaluation
    (metrics-TAG.json, report-TAG.md, ...) that leave the run's own results as they were."""

    path: Path

    def _tagged(self, stem: str, suffix: str, tag: str | None) -> Path:
        return self.path / f"{stem}{'' if tag is None else f'-{tag}'}{suffix}"

    @property
    def config_file(self) -> Path:
        """The resolved config the run was trained with."""
        return self.path / "config.yaml"

    @property
    def manifest_file(self) -> Path:
        """The description of the run's split files (hashes, classes, counts)."""
        return self.path / "split_manifest.json"

    @property
    def log_file(self) -> Path:
        """The per-epoch log, one JSON object a line."""
        return self.path / "metrics.jsonl"

    @property
    def tensorboard_dir(self) -> Path:
        """TensorBoard event files of the per-epoch log (when tensorboard is installed)."""
        return self.path / "tensorboard"

    @property
    def calibration_file(self) -> Path:
        """The open-set decision chosen by the run's evaluation (score, threshold, source)."""
        return self.path / "calibration.json"

    @property
    def metrics_file(self) -> Path:
        """The evaluation's numbers, metrics.json."""
        return self.metrics_path()

    @property
    def report_file(self) -> Path:
        """The markdown report, report.md."""
        return self.report_path()

    @property
    def splits_dir(self) -> Path:
        """Where the split files are built when the config gives no data.split_dir."""
        return self.path / "splits"

    @property
    def checkpoints_dir(self) -> Path:
        """checkpoints/ with best.safetensors and last.safetensors."""
        return self.path / "checkpoints"

    @property
    def features_dir(self) -> Path:
        """The feature cache (`openlt features`, decoupled stage 2)."""
        return self.path / "features"

    @property
    def decouple_file(self) -> Path:
        """What a decoupled stage 2 chose (method, tau, kept epoch, ...)."""
        return self.path / "decouple.json"

    @property
    def tau_curve_file(self) -> Path:
        """The validation top-1 per band against tau of tau-normalisation / logit adjustment."""
        return self.path / "tau_curve.png"

    def metrics_path(self, tag: str | None = None) -> Path:
        """The evaluation's numbers, metrics(-TAG).json."""
        return self._tagged("metrics", ".json", tag)

    def report_path(self, tag: str | None = None) -> Path:
        """The markdown report, report(-TAG).md."""
        return self._tagged("report", ".md", tag)

    def report_html_path(self, tag: str | None = None) -> Path:
        """The self-contained HTML report with the figures, report(-TAG).html."""
        return self._tagged("report", ".html", tag)

    def predictions_path(self, tag: str | None = None) -> Path:
        """The per-sample results the reports are drawn from, predictions(-TAG).npz."""
        return self._tagged("predictions", ".npz", tag)

    def open_score_path(self, tag: str | None = None) -> Path:
        """A fitted open-set score (OpenMax), open-score(-TAG).safetensors."""
        return self._tagged("open-score", ".safetensors", tag)

    def identification_path(self, tag: str | None = None) -> Path:
        """Face identification / verification numbers (`openlt identify`), identification(-TAG).json."""
        return self._tagged("identification", ".json", tag)

    def checkpoint(self, name: str) -> Path:
        """checkpoints/NAME.safetensors (`best`, `last`)."""
        return self.checkpoints_dir / f"{name}.safetensors"

    def feature_cache(self, split: str) -> Path:
        """The cached features of one split (train, val, test, open)."""
        return self.features_dir / f"{split}.safetensors"

    def config(self) -> Config:
        """The run's saved config; RunDirError when it is missing, not YAML, or not readable by this version."""
        try:  # the checked reader: UTF-8, no duplicate keys (an edit that adds one), no aliases
            saved = read_yaml_mapping(self.config_file, "run config")
        except OpenLTError as exc:
            raise RunDirError(str(exc)) from None
        try:
            return build_config(base=saved)
        except OpenLTError as exc:
            raise RunDirError(f"run {self.path} has a config this version cannot read: {exc}") from None

    def write_config(self, cfg: Config) -> None:
        """Save the resolved config as config.yaml (atomic)."""
        write_text(self.config_file, dump_yaml(cfg))

    def write_manifest(self, manifest: dict) -> None:
        """Save the description of the run's split files (atomic)."""
        write_json(self.manifest_file, manifest)

    def calibration(self) -> dict:
        """The saved open-set calibration (score, threshold, source), or {} before the run is evaluated."""
        if not self.calibration_file.is_file():
            return {}
        return json.loads(self.calibration_file.read_text(encoding="utf-8"))

    def epochs_logged(self) -> list[dict]:
        """The per-epoch records of metrics.jsonl, oldest first ([] before the first epoch)."""
        if not self.log_file.is_file():
            return []
        return [json.loads(line) for line in self.log_file.read_text(encoding="utf-8").splitlines() if line.strip()]


def new_run(cfg: Config, name: str | None = None) -> Run:
    """A new run directory OUT_DIR/NAME-YYYYmmdd-HHMMSS (-2, -3, ... when taken) with its checkpoints folder;
    WriteError when it cannot be created."""
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    base = Path(cfg.out_dir) / f"{name or cfg.name}-{stamp}"
    path, n = base, 1
    while path.exists():
        n += 1
        path = base.with_name(f"{base.name}-{n}")
    try:
        Run(path).checkpoints_dir.mkdir(parents=True)
    except OSError as exc:
        raise WriteError(f"cannot create the run directory {path}: {exc.strerror or exc}") from None
    return Run(path)


def open_run(path: str | Path) -> Run:
    """An existing run directory; RunDirError when it is missing or holds no config.yaml."""
    path = Path(path)
    if not path.is_dir():
        raise RunDirError(f"run directory not found: {path}")
    run = Run(path)
    if not run.config_file.is_file():
        raise RunDirError(f"{path} is not an openlt run directory (no {run.config_file.name})")
    return run
