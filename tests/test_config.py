import pytest

from openlt.config import build_config, parse_overrides
from openlt.errors import ConfigError


def test_defaults_yaml_and_overrides_apply_in_order(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("name: x\ntrain:\n  epochs: 5\n  lr: 0.2\n")
    cfg = build_config(path, ["train.epochs=2", "data.split.open_classes=[bag, sandal]", "model.pretrained=null"])
    assert cfg.name == "x" and cfg.train.epochs == 2 and cfg.train.lr == 0.2
    assert cfg.data.split.open_classes == ["bag", "sandal"]
    assert cfg.model.pretrained is None and cfg.train.momentum == 0.9


def test_base_config_is_merged(tmp_path):
    (tmp_path / "base.yaml").write_text("train:\n  epochs: 7\n  lr: 0.3\n")
    (tmp_path / "child.yaml").write_text("base: base.yaml\ntrain:\n  lr: 0.01\n")
    cfg = build_config(tmp_path / "child.yaml")
    assert cfg.train.epochs == 7 and cfg.train.lr == 0.01


@pytest.mark.parametrize("override, message", [
    (["train.epoch=3"], "did you mean 'train.'epochs'|unknown config key 'train.epoch'"),
    (["trian.epochs=3"], "unknown config key 'trian'"),
    (["train.epochs=many"], "must be an integer"),
    (["train.lr=abc"], "must be a number"),
    (["train.nesterov=3"], "true or false"),
    (["train=3"], "is a section"),
    (["epochs"], "key=value"),
])
def test_bad_keys_and_values_are_named(override, message):
    with pytest.raises(ConfigError, match=message):
        build_config(None, override)


def test_missing_or_broken_file(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        build_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        build_config(bad)


def test_parse_overrides_nested():
    assert parse_overrides(["a.b=1", "a.c=x", "d=0.5"]) == {"a": {"b": 1, "c": "x"}, "d": 0.5}


def test_every_shipped_config_loads():
    from pathlib import Path

    configs = sorted(p for p in (Path(__file__).parent.parent / "configs").rglob("*.yaml")
                     if p.parent.name != "bench")  # bench specs are not training configs (tests/test_bench.py)
    assert configs, "no configs found"
    for path in configs:
        build_config(path)


def test_paper_configs_carry_the_public_codes_hyperparameters():
    from pathlib import Path

    root = Path(__file__).parent.parent / "configs"
    s1 = build_config(root / "imagenet_lt" / "plain_resnet10.yaml")
    assert (s1.model.backbone, s1.train.batch_size, s1.train.epochs, s1.train.lr, s1.train.weight_decay) == \
        ("resnet10", 128, 30, 0.1, 5e-4)
    assert (s1.train.schedule, s1.train.step_epochs, s1.eval.open_threshold) == ("step", 10, 0.1)
    s2 = build_config(root / "imagenet_lt" / "oltr_stage2_resnet10.yaml")
    assert (s2.train.epochs, s2.train.step_epochs, s2.train.lr, s2.train.backbone_lr, s2.train.centroid_lr) == \
        (60, 20, 0.1, 0.01, 0.01)
    assert (s2.model.attention, s2.model.feature_fc, s2.model.classifier, s2.train.sampler, s2.train.loss) == \
        (True, True, "meta_embedding", "class_aware", "oltr")
    assert s2.train.loss_args == {"weight": 0.01} and s2.model.head.scale == 16.0
    p2 = build_config(root / "places_lt" / "oltr_stage2_resnet152.yaml")
    assert (p2.model.backbone, p2.train.freeze_backbone, p2.train.backbone_lr, p2.train.lr, p2.train.epochs) == \
        ("resnet152", True, 1e-4, 0.01, 30)


def test_config_command_prints_the_resolved_config_and_it_rebuilds_the_same(tmp_path, capsys):
    from openlt.cli import main
    from openlt.config import Config, dump_yaml

    assert main(["config", "configs/fmnist_lt/decouple_ncm_cl2n.yaml", "seed=3"]) == 0
    printed = capsys.readouterr().out
    saved = tmp_path / "resolved.yaml"
    saved.write_text(printed)
    cfg = build_config(saved)
    assert cfg.seed == 3 and cfg.model.head.ncm_center is True and cfg.decouple.method == "ncm"
    assert dump_yaml(cfg) == printed  # what it prints is a complete config
    assert main(["config", "configs/fmnist_lt/plain.yaml", "train.epoch=3"]) == 2
    assert "did you mean 'train.epochs'" in capsys.readouterr().err
    assert main(["config"]) == 0 and build_config(None) == Config()


def test_the_option_reference_covers_every_key_and_docs_config_md_is_current(capsys):
    """docs/config.md is `openlt config --reference`: regenerate it with that command when an option changes."""
    from pathlib import Path

    from openlt.cli import main
    from openlt.config_docs import option_rows

    assert main(["config", "--reference"]) == 0
    reference = capsys.readouterr().out
    rows = option_rows()
    keys = [key for key, _, _ in rows]
    assert len(keys) == len(set(keys)) and {"train.epochs", "model.head.ncm_center", "decouple.keep"} <= set(keys)
    for key, _, text in rows:
        assert f"| `{key}` |" in reference
        assert text, f"{key} has no comment in src/openlt/config.py"  # every option says what it does
    assert "`meta_embedding`" in reference and "`progressive`" in reference  # registry names listed
    assert Path("docs/config.md").read_text() == reference, "regenerate: openlt config --reference > docs/config.md"
