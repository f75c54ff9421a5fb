"""The per-sample results of an evaluation, saved beside metrics.json as predictions.npz (tagged:
predictions-TAG.npz), so that reports can be rebuilt and re-plotted without the model or the images.

Arrays, one entry per image of the split (`open_*` only when the run has an open split):
  test_labels, test_preds, test_score, test_max_prob, open_preds, open_score, open_max_prob
`*_preds` are the closed-set predictions (argmax of the logits, before rejection), `*_score` the open-set
score the evaluation used (higher = more known), `*_max_prob` the maximum softmax probability (the
confidence of the reliability diagram).
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping

import numpy as np
import torch

from openlt.errors import RunDirError
from openlt.io import atomic_path

FORMAT = "openlt-predictions/1"
SPLITS = ("test", "open")


def sample_table(outputs: Mapping[str, Mapping[str, torch.Tensor]], scores: Mapping[str, torch.Tensor]) -> dict[str, np.ndarray]:
    """Compact per-sample arrays of the test and open splits (names and meaning in the module docstring).

    ``outputs[split]``: ``"logits"`` (N, K) float and, for test, ``"labels"`` (N,) int64; ``scores[split]``: the
    (N,) open-set scores. Gives int64 labels / predictions, float32 scores and maximum softmax probabilities."""
    table: dict[str, np.ndarray] = {}
    for split in SPLITS:
        if split not in outputs:
            continue
        logits = outputs[split]["logits"].float()
        prob, pred = torch.softmax(logits, dim=1).max(dim=1)
        if split == "test":
            table["test_labels"] = outputs[split]["labels"].numpy().astype(np.int64)
        table[f"{split}_preds"] = pred.numpy().astype(np.int64)
        table[f"{split}_score"] = torch.as_tensor(scores[split]).float().numpy()
        table[f"{split}_max_prob"] = prob.numpy().astype(np.float32)
    return table


def save_samples(path: str | Path, table: Mapping[str, np.ndarray]) -> None:
    """Write the table as a compressed .npz (atomic: a temporary file, then a rename)."""
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:  # a file object: savez would append ".npz" to a name
        np.savez_compressed(fh, format=np.array(FORMAT), **table)


def load_samples(path: str | Path) -> dict[str, np.ndarray]:
    """The per-sample arrays saved by :func:`save_samples` (see the module docstring), by name.

    Raises RunDirError for a missing or unreadable file, or one that is not an openlt predictions file.
    """
    path = Path(path)
    if not path.is_file():
        raise RunDirError(f"{path} not found: re-evaluate the run (`openlt eval RUN`) to save the per-sample results")
    try:
        with np.load(path, allow_pickle=False) as data:
            table = {key: data[key] for key in data.files}
    except (OSError, ValueError) as exc:
        raise RunDirError(f"{path} is not a readable predictions file ({exc})") from None
    if str(table.pop("format", "")) != FORMAT or "test_labels" not in table:
        raise RunDirError(f"{path} is not an openlt predictions file ({FORMAT})")
    return table
