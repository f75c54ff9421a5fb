"""scripts/bench_perf.py --only centroids: OLTR's stage-2 start from the feature cache against the network pass."""

import pytest
from cli_ok import main_ok  # tests/helpers
from script_loader import load_script


@pytest.fixture(scope="module")
def bench():
    return load_script("bench_perf")


def test_the_centroid_times_compare_the_feature_cache_with_the_network_pass(bench, tmp_path, monkeypatch):
    # the section's measurement on a smaller generated 224 px split, from a float32 stage-1 run
    monkeypatch.setattr(bench, "MEMORY_SPLIT", {"train": [6, 3], "val": 1, "test": 1, "open": (1, 1)})
    images, splits = bench.write_224_split(tmp_path / "data")
    data = [f"data.root={images}", f"data.split_dir={splits}", "data.workers=0"]
    main_ok(["train", bench.MEMORY_CONFIG, *data, "train.epochs=1", "train.batch_size=4", "train.amp=none",
             f"out_dir={tmp_path / 'runs'}", "--no-eval", "--quiet"])
    run = next((tmp_path / "runs").iterdir())
    r = bench.centroid_times(run, data, rounds=1)
    assert r["images"] == 9 and r["network_s"] > 0 and r["cache_s"] > 0 and r["first_s"] > 0
    assert r["relative_diff"] < 1e-5  # a float32 run: the same means, to float rounding
    assert (run / "features" / "train.safetensors").is_file()
