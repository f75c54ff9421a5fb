"""Published numbers, to print beside a bench on one of the papers' benchmarks (top-1 in %, F in [0, 1]).

Keys of a row are the bench table's columns; a bench method is matched to a row by its `paper_row` (or its
name). Sources: Liu et al. 2019 (OLTR) Tables 2 and 3, with their FSLwF row (Gidaris & Komodakis 2018;
F-measures before the authors' 2020 fix, see REFERENCE §4); Kang et al. 2020 (decoupling) Table 2 / the
classifier-balancing README; CIFAR-LT numbers as collected in REFERENCE §6 (overall top-1 only).
"""

from __future__ import annotations

_OLTR_COLUMNS = ("many", "medium", "few", "overall", "open many", "open medium", "open few", "F")


def _rows(table: dict[str, tuple]) -> dict[str, dict[str, float | None]]:
    return {name: dict(zip(_OLTR_COLUMNS, values)) for name, values in table.items()}


PAPERS: dict[str, dict] = {
    "imagenet_lt": {
        "source": "Liu et al. 2019, Table 2: ImageNet-LT, ResNet-10 from scratch",
        "rows": _rows({
            "plain": (40.9, 10.7, 0.4, 20.9, 40.1, 10.4, 0.4, 0.295),
            "lifted": (35.8, 30.4, 17.9, 30.8, 34.8, 29.3, 17.4, 0.374),
            "focal": (36.4, 29.9, 16.0, 30.5, 35.7, 29.3, 15.6, 0.371),
            "range": (35.8, 30.3, 17.6, 30.7, 34.7, 29.4, 17.2, 0.373),
            "openmax": (None, None, None, None, 35.8, 30.3, 17.6, 0.368),
            "fslwf": (40.9, 22.1, 15.0, 28.4, 40.8, 21.7, 14.5, 0.347),
            "oltr": (43.2, 35.1, 18.5, 35.6, 41.9, 33.9, 17.4, 0.474),
        }),
    },
    "places_lt": {
        "source": "Liu et al. 2019, Table 3: Places-LT, ResNet-152 pretrained on ImageNet",
        "rows": _rows({
            "plain": (45.9, 22.4, 0.36, 27.2, 45.9, 22.4, 0.36, 0.366),
            "lifted": (41.1, 35.4, 24.0, 35.2, 41.0, 35.2, 23.8, 0.459),
            "focal": (41.1, 34.8, 22.4, 34.6, 41.0, 34.8, 22.3, 0.453),
            "range": (41.1, 35.4, 23.2, 35.1, 41.0, 35.3, 23.1, 0.457),
            "openmax": (None, None, None, None, 41.1, 35.4, 23.2, 0.458),
            "fslwf": (43.9, 29.9, 29.5, 34.9, 38.1, 19.5, 14.8, 0.375),
            "oltr": (44.7, 37.0, 25.3, 35.9, 44.6, 36.8, 25.2, 0.464),
        }),
    },
    "imagenet_lt_decoupling": {
        "source": "Kang et al. 2020: ImageNet-LT, ResNeXt-50, 90 epochs",
        "rows": {name: dict(zip(("many", "medium", "few", "overall"), values)) for name, values in {
            "joint": (65.9, 37.5, 7.7, 44.4), "ncm": (56.6, 45.3, 28.1, 47.3), "crt": (61.8, 46.2, 27.4, 49.6),
            "tau_norm": (59.1, 46.9, 30.7, 49.4), "lws": (60.2, 47.2, 30.3, 49.9)}.items()},
    },
    "cifar10_lt": {
        "source": "REFERENCE §6: CIFAR-10-LT, IF 100, ResNet-32 (overall top-1)",
        "rows": {name: {"overall": v} for name, v in {
            "ce": 70.4, "focal": 71.6, "class_balanced": 75.2, "ldam_drw": 77.0, "balanced_softmax": 77.5,
            "logit_adjusted": 77.9, "crt": 75.0, "tau_norm": 72.7}.items()},
    },
    "cifar100_lt": {
        "source": "REFERENCE §6: CIFAR-100-LT, IF 100, ResNet-32 (overall top-1)",
        "rows": {name: {"overall": v} for name, v in {
            "ce": 38.3, "focal": 37.2, "class_balanced": 38.6, "ldam_drw": 42.0, "balanced_softmax": 43.0,
            "logit_adjusted": 43.9, "crt": 40.3, "tau_norm": 41.0}.items()},
    },
}
