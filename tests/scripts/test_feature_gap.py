"""scripts/feature_gap.py: the test/train distance ratio to a class's training mean, per class and shot band."""

import pytest
import torch
from script_loader import load_script  # tests/helpers

from openlt.metrics.closed import ShotBands


@pytest.fixture(scope="module")
def gap():
    return load_script("feature_gap")


def test_a_test_cloud_twice_as_wide_as_the_training_cloud_gives_two(gap):
    gen = torch.Generator().manual_seed(0)
    directions = torch.nn.functional.normalize(torch.randn(400, 16, generator=gen), dim=1)
    train = torch.cat([directions[:200], 10 + directions[:200]])  # radius 1 around 0 and around 10
    test = torch.cat([2 * directions[200:], 10 + 2 * directions[200:]])  # radius 2
    labels = torch.tensor([0] * 200 + [1] * 200)
    gaps = gap.class_gaps(train, labels, test, labels)
    assert gaps == pytest.approx({0: 2.0, 1: 2.0}, rel=0.05)
    same = gap.class_gaps(train, labels, train, labels)
    assert same == pytest.approx({0: 1.0, 1: 1.0})


def test_bands_average_their_classes_and_skip_classes_without_test_images(gap):
    train_labels = torch.tensor([0] * 150 + [1] * 50 + [2] * 5 + [3] * 5)
    gaps = {0: 1.0, 1: 1.2, 2: 1.4, 3: 1.6}
    assert gap.band_gaps(gaps, train_labels, ShotBands()) == pytest.approx({"many": 1.0, "medium": 1.2, "few": 1.5})
    assert "medium" not in gap.band_gaps({0: 1.0, 2: 1.4}, train_labels, ShotBands())
    features = torch.zeros(4, 2)
    assert gap.class_gaps(features, torch.tensor([0, 0, 1, 1]), features[:1], torch.tensor([0])) == {}  # no spread


def _one_line_error(capsys, gap, *paths) -> str:
    assert gap.main([str(p) for p in paths]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1 and err.startswith("feature_gap: error: "), err
    return err


def test_a_path_that_is_not_a_run_is_one_line(gap, tmp_path, capsys):
    assert "run directory not found" in _one_line_error(capsys, gap, tmp_path / "missing")
    assert "not an openlt run directory" in _one_line_error(capsys, gap, tmp_path)


def test_a_run_without_its_split_files_is_one_line(gap, tmp_path, capsys):
    from synthetic_run import make_run  # tests/helpers

    run, _ = make_run(tmp_path / "run")  # a run directory without the data it was trained on
    _one_line_error(capsys, gap, run.path)


def test_a_class_of_one_training_image_is_left_out_with_a_note(gap, tmp_path, capsys, monkeypatch):
    from synthetic_run import make_run  # tests/helpers

    run, _ = make_run(tmp_path / "run")
    gen = torch.Generator().manual_seed(0)
    labels = torch.tensor([0] * 30 + [1] * 30 + [2])  # class 2: one training image, no spread
    feats = {"train": {"features": torch.randn(61, 4, generator=gen), "labels": labels},
             "test": {"features": torch.randn(6, 4, generator=gen), "labels": torch.tensor([0, 0, 1, 1, 2, 2])}}
    monkeypatch.setattr(gap, "load_features", lambda *args, **kwargs: feats)
    assert gap.main([str(run.path)]) == 0
    out, err = capsys.readouterr()
    assert "1 class(es) with test images have no spread" in err
    assert out.splitlines()[-1].endswith(" | - |")  # the few band had that class alone
