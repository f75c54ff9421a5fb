"""figures.to_pngs renders a report's figures in two processes (a forked child draws every other one) and gives
the same PNG bytes, in order, as figures.to_png one by one; a child that fails leaves its share to the caller."""

import os

import numpy as np
import pytest
from matplotlib.figure import Figure

from openlt.reporting import figures


def _figures(n: int) -> list[Figure]:
    out = []
    for i in range(n):
        fig = Figure(figsize=(3, 2), layout="constrained")
        ax = fig.add_subplot()
        ax.plot(np.arange(10) * (i + 1), label=f"figure {i}")
        ax.set_title(f"figure {i}")
        out.append(fig)
    return out


@pytest.mark.parametrize("n", [0, 1, 2, 5])
def test_to_pngs_gives_the_bytes_of_to_png_in_order(n):
    figs = _figures(n)
    assert figures.to_pngs(figs, dpi=40) == [figures.to_png(fig, dpi=40) for fig in figs]


@pytest.mark.skipif(not hasattr(os, "sched_getaffinity"), reason="Linux only")
def test_a_child_renders_every_other_figure_where_two_cpus_are_free(monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1})
    forks = []
    fork = os.fork
    monkeypatch.setattr(os, "fork", lambda: forks.append(1) or fork())
    figs = _figures(4)
    assert figures.to_pngs(figs, dpi=40) == [figures.to_png(fig, dpi=40) for fig in figs]
    assert forks == [1]
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0})  # one CPU: no child
    assert figures.to_pngs(figs, dpi=40) == [figures.to_png(fig, dpi=40) for fig in figs]
    assert forks == [1]


@pytest.mark.skipif(not hasattr(os, "sched_getaffinity"), reason="Linux only")
def test_a_failing_child_leaves_its_figures_to_the_parent(monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1})
    parent, drawn = os.getpid(), []
    to_png = figures.to_png

    def child_fails(fig, dpi=110):
        if os.getpid() != parent:
            raise RuntimeError("the child cannot draw")
        drawn.append(fig)
        return to_png(fig, dpi)

    monkeypatch.setattr(figures, "to_png", child_fails)
    figs = _figures(3)
    expected = [to_png(fig, dpi=40) for fig in figs]
    assert figures.to_pngs(figs, dpi=40) == expected
    assert drawn == [figs[0], figs[2], figs[1]]  # its own share, then the child's
