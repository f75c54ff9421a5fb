"""A run is one directory: resolved config, split manifest, checkpoints, metrics logs, results, report.

A run can be resumed, re-evaluated and used for prediction from its directory alone.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from pathlib import Path

import yaml

from openlt.config import Config, build_config, dump_yaml, yaml_error_text
from openlt.errors import OpenLTError, RunDirError, WriteError
from openlt.io import write_json, write_text


@dataclass
class Run:
    path: Path

    @property
    def config_file(self) -> Path:
        return self.path / "config.yaml"

    @property
    def manifest_file(self) -> Path:
        return self.path / "split_manifest.json"

    @property
    def log_file(self) -> Path:
        return self.path / "metrics.jsonl"

    @property
    def calibration_file(self) -> Path:
        return self.path / "calibration.json"

    @property
    def metrics_file(self) -> Path:
        return self.path / "metrics.json"

    @property
    def report_file(self) -> Path:
        return self.path / "report.md"

    def metrics_path(self, tag: str | None = None) -> Path:
        return self.metrics_file if tag is None else self.path / f"metrics-{tag}.json"

    def report_path(self, tag: str | None = None) -> Path:
        return self.report_file if tag is None else self.path / f"report-{tag}.md"

    def checkpoint(self, name: str) -> Path:
        return self.path / "checkpoints" / f"{name}.safetensors"

    def config(self) -> Config:
        try:
            saved = yaml.safe_load(self.config_file.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError) as exc:
            raise RunDirError(f"cannot read the config of run {self.path}: {exc}") from None
        except yaml.YAMLError as exc:
            raise RunDirError(f"{self.config_file} is not valid YAML ({yaml_error_text(exc)})") from None
        if not isinstance(saved, dict):
            raise RunDirError(f"{self.config_file} must hold a mapping of config keys, not {type(saved).__name__}")
        try:
            return build_config(base=saved)
        except OpenLTError as exc:
            raise RunDirError(f"run {self.path} has a config this version cannot read: {exc}") from None

    def write_config(self, cfg: Config) -> None:
        write_text(self.config_file, dump_yaml(cfg))

    def write_manifest(self, manifest: dict) -> None:
        write_json(self.manifest_file, manifest)

    def calibration(self) -> dict:
        if not self.calibration_file.is_file():
            return {}
        return json.loads(self.calibration_file.read_text(encoding="utf-8"))

    def epochs_logged(self) -> list[dict]:
        if not self.log_file.is_file():
            return []
        return [json.loads(line) for line in self.log_file.read_text(encoding="utf-8").splitlines() if line.strip()]


def new_run(cfg: Config, name: str | None = None) -> Run:
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    base = Path(cfg.out_dir) / f"{name or cfg.name}-{stamp}"
    path, n = base, 1
    while path.exists():
        n += 1
        path = base.with_name(f"{base.name}-{n}")
    try:
        (path / "checkpoints").mkdir(parents=True)
    except OSError as exc:
        raise WriteError(f"cannot create the run directory {path}: {exc.strerror or exc}") from None
    return Run(path)


def open_run(path: str | Path) -> Run:
    path = Path(path)
    if not path.is_dir():
        raise RunDirError(f"run directory not found: {path}")
    if not (path / "config.yaml").is_file():
        raise RunDirError(f"{path} is not an openlt run directory (no config.yaml)")
    return Run(path)
