"""`openlt predict` / ``LoadedRun.predict`` on tied probabilities (trial 10 D10): a record's label, class_name,
top_class and confidence are its top-k's first entry, never another class of equal probability."""

import pytest
import torch

import openlt
from tiny_run import the_run


@pytest.fixture(scope="module")
def loaded(tmp_path_factory, shared_run, single_thread):
    root = shared_run("api-cpu", tmp_path_factory.mktemp("predict-ties"))  # train_tiny_run(root, "train.device=cpu")
    return openlt.load_run(the_run(root / "runs").path, device="cpu", threshold=0.0)


def test_a_tie_gives_one_class_as_label_and_first_of_topk(loaded, monkeypatch):
    k = len(loaded.classes)
    row = torch.zeros(k)
    row[0], row[1], row[2] = 0.334, 0.334, 0.2   # two classes of equal logits: max() says 0, topk() says 1 on a CPU
    predictor = loaded._predictor
    real = predictor.outputs

    def tied(batch):
        out = real(batch)
        out["logits"] = row.expand(batch.shape[0], k).clone()
        return out

    monkeypatch.setattr(predictor, "outputs", tied)
    image = torch.stack([loaded.transform(__import__("PIL.Image", fromlist=["Image"]).new("RGB", (16, 16))) for _ in range(2)])
    for record in loaded.predict(image, topk=2):
        first = record["topk"][0]
        assert record["top_class"] == first["class_name"] == loaded.classes[0]
        assert record["label"] == 0 and record["class_name"] == loaded.classes[0]
        assert record["confidence"] == first["probability"]
        assert [t["class_name"] for t in record["topk"]] == [loaded.classes[0], loaded.classes[1]]
