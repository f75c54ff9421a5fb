"""scripts/bench_detector_fits.py: one measurement of each fit, before and after, at a tiny size in this process (the
fitted thing, a time, a peak above the start), and the table's cells and ratios from given measurements."""

from __future__ import annotations

import pytest
from script_loader import load_script  # tests/helpers

pytest.importorskip("pytorch_ood", reason="the detectors' fits wrap pytorch-ood")
bench = load_script("bench_detector_fits")


@pytest.mark.parametrize("detector", ["mahalanobis", "vim"])
def test_one_measurement_fits_both_versions_and_they_agree(detector):
    x, y, head = bench._data(4, 60, 16)
    assert x.dtype.itemsize == 2 and sorted(set(y.tolist())) == [0, 1, 2, 3]
    before, after = (bench._fit(detector, version, x, y, head, 8) for version in ("before", "after"))
    if detector == "mahalanobis":
        assert (after.means_ - before.mu).abs().max() < 1e-5
    else:
        assert after.alpha_ == pytest.approx(before.alpha, rel=1e-4)
    row = bench.child(4, 60, 16, detector, "after")
    assert row["k"] == 4 and row["n"] == 60 and row["d"] == 16 and row["version"] == "after"
    assert row["seconds"] > 0 and row["cpu_s"] > 0 and row["peak_mb"] >= 0


def test_the_table_gives_each_versions_time_ratio_against_the_ratios_of_n_and_nk():
    rows = [{"detector": "vim", "k": k, "n": n, "version": v, "cpu_s": s, "seconds": 2 * s, "peak_mb": mb}
            for k, n, v, s, mb in ((10, 100, "before", 2.0, 1500.0), (10, 100, "after", 1.0, 30.0),
                                   (20, 200, "before", 9.0, 6000.0), (20, 200, "after", 2.1, 31.0))]
    text = bench.table(rows)
    assert "| vim | 10 | 100 | 2.00 | 4.00 | 1,500 | 1.00 | 2.00 | 30 |" in text
    assert "| vim | 20 | 200 | 9.00 | 18.00 | 6,000 | 2.10 | 4.20 | 31 |" in text
    assert "| vim | K=20 N=200 over K=10 N=100 | 4.50 | 2.10 | 2.00 | 4.00 |" in text
