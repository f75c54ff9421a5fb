"""LoadedRun.predict / features on paths that name no image (engine/api.py reads each path through
predict.read_image, as `openlt predict` does): a dangling symlink, named or in a folder, is named with its missing
target (trial 16 D14: the API said only "image not found: DIR/dangling.png"), and so is a symlink loop."""

import numpy as np
import pytest
from PIL import Image

import openlt
from openlt.errors import DataError
from synthetic_run import make_run


@pytest.fixture(scope="module")
def loaded(tmp_path_factory):
    root = tmp_path_factory.mktemp("api_paths")
    made, _ = make_run(root / "run")
    return openlt.load_run(made.path), root


def test_a_dangling_symlink_is_named_with_its_missing_target(loaded, tmp_path, single_thread):
    run, _ = loaded
    folder = tmp_path / "f"
    folder.mkdir()
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(folder / "ant.png")
    (folder / "dangle.png").symlink_to("nowhere.png")
    said = f"{folder / 'dangle.png'} is a symlink to a missing file (nowhere.png); remove it or restore its target"
    for given in ([str(folder)], [str(folder / "dangle.png")], str(folder / "d*.png")):
        with pytest.raises(DataError) as caught:
            run.predict(given)
        assert str(caught.value) == said
    with pytest.raises(DataError) as caught:
        run.features([str(folder)])
    assert str(caught.value) == said
    (folder / "dangle.png").unlink()
    (folder / "loop.png").symlink_to(folder / "loop.png")
    with pytest.raises(DataError) as caught:
        run.predict([str(folder)])
    assert str(caught.value) == f"{folder / 'loop.png'} is a symlink loop ({folder / 'loop.png'} leads back to itself); remove it"
    assert len(run.predict([str(folder / "ant.png")])) == 1
