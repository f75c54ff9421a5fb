"""The feature-based detectors (Mahalanobis, KNN, ViM, ReAct) and ODIN: they separate separable synthetic data,
equal a NumPy computation of the papers' formulas on tiny inputs, equal pytorch-ood (which they wrap) on the
same inputs, save / load / clone as scikit-learn estimators, and refuse what they cannot score."""

import numpy as np
import pytest
import torch
from sklearn.base import clone

pytest.importorskip("pytorch_ood", reason="the detectors wrap pytorch-ood (pip install 'openlt[ood]')")
import pytorch_ood.detector as ood  # noqa: E402

from openlt.errors import ConfigError, DataError, NotFittedError  # noqa: E402
from openlt.metrics import auroc  # noqa: E402
from openlt.openset import KNN, ODIN, Mahalanobis, ReAct, ViM, build_score, load_score, save_score  # noqa: E402

K, D = 4, 16
FEATURE_SCORES = ("mahalanobis", "knn", "vim", "react")


def head() -> tuple[torch.Tensor, torch.Tensor]:
    """A linear head reading class c from feature dimension c: W (K, D), b (K,)."""
    weight = torch.zeros(K, D)
    weight[:, :K] = 3 * torch.eye(K)
    return weight, torch.linspace(-0.2, 0.2, K)


def synthetic(n: int, seed: int, unknown: bool = False) -> dict:
    """Non-negative features: a known image of class c is 4 e_c plus small activity in dims 0-7; an unknown
    image is active in dims 8-15 instead (another direction, outside the known principal subspace, low logits)."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % K
    feature = 0.05 * torch.rand(n, D, generator=g)
    if unknown:
        feature[:, 8:] += torch.rand(n, 8, generator=g) * 1.5
        labels = -torch.ones(n, dtype=torch.long)
    else:
        feature[:, :8] += 0.4 * torch.rand(n, 8, generator=g)
        feature[torch.arange(n), labels] += 4.0
    weight, bias = head()
    return {"feature": feature, "logits": feature @ weight.T + bias, "labels": labels}


def fitted(name: str, train: dict, **options):
    scorer = build_score(name) if not options else type(build_score(name))(**options)
    return scorer.fit(train, head=head() if scorer.needs_head else None)


@pytest.mark.parametrize("name", FEATURE_SCORES)
def test_each_detector_separates_separable_features(name):
    scorer = fitted(name, synthetic(200, 0), **({"k": 5} if name == "knn" else {"dim": 8} if name == "vim" else {}))
    known, unknown = scorer.score(synthetic(60, 1)), scorer.score(synthetic(60, 2, unknown=True))
    assert known.dtype == torch.float32 and known.shape == (60,)
    assert auroc(known.numpy(), unknown.numpy()) > 0.9


# ----------------------------------------------------------------------------- the papers' formulas in NumPy


def tiny(seed: int = 3, n: int = 24, d: int = 6, k: int = 3):
    rng = np.random.default_rng(seed)
    y = np.arange(n) % k
    z = rng.normal(size=(n, d)) + 2 * np.eye(k, d)[y]
    x = rng.normal(size=(7, d))
    w, b = rng.normal(size=(k, d)), rng.normal(size=k)
    return z.astype(np.float32), y, x.astype(np.float32), w.astype(np.float32), b.astype(np.float32)


def as_outputs(z, y=None):
    out = {"feature": torch.from_numpy(z)}
    return out if y is None else {**out, "labels": torch.from_numpy(y)}


def test_mahalanobis_is_the_tied_covariance_distance_to_the_nearest_class_mean():
    z, y, x, _, _ = tiny()
    z64, x64 = z.astype(np.float64), x.astype(np.float64)
    means = np.stack([z64[y == c].mean(0) for c in range(3)])
    scatter = sum((z64[y == c] - means[c]).T @ (z64[y == c] - means[c]) for c in range(3)) + 1e-6 * np.eye(6)
    precision = np.linalg.inv(scatter)  # pytorch-ood's: the summed scatter, not divided by N
    dist = np.stack([np.einsum("nd,de,ne->n", x64 - m, precision, x64 - m) for m in means], 1)
    expected = -0.5 * dist.min(1)
    got = Mahalanobis().fit(as_outputs(z, y)).score(as_outputs(x))
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-4)


def test_knn_is_minus_the_kth_distance_between_normalised_features():
    z, y, x, _, _ = tiny()
    zn = z / np.linalg.norm(z, axis=1, keepdims=True)
    xn = x / np.linalg.norm(x, axis=1, keepdims=True)
    dist = np.sort(np.linalg.norm(xn[:, None] - zn[None], axis=2), axis=1)
    got = KNN(k=3).fit(as_outputs(z, y)).score(as_outputs(x))
    np.testing.assert_allclose(got.numpy(), -dist[:, 2], rtol=1e-5, atol=1e-6)


def test_vim_is_energy_minus_the_scaled_residual_norm():
    z, y, x, w, b = tiny()
    z64, x64, w64, b64 = (a.astype(np.float64) for a in (z, x, w, b))
    u = -np.linalg.pinv(w64) @ b64
    centred = z64 - u
    _, vectors = np.linalg.eigh(centred.T @ centred / len(z))
    residual_space = vectors[:, :6 - 2]  # the D - d directions of smallest variance, d = 2
    alpha = (z64 @ w64.T + b64).max(1).mean() / np.linalg.norm(centred @ residual_space, axis=1).mean()
    logits = x64 @ w64.T + b64
    energy = np.log(np.exp(logits).sum(1))
    expected = energy - alpha * np.linalg.norm((x64 - u) @ residual_space, axis=1)
    scorer = ViM(dim=2).fit(as_outputs(z, y), head=(torch.from_numpy(w), torch.from_numpy(b)))
    np.testing.assert_allclose(scorer.score(as_outputs(x)).numpy(), expected, rtol=1e-3, atol=1e-3)
    assert scorer.alpha_ == pytest.approx(alpha, rel=1e-4)


def test_react_is_the_energy_of_logits_from_clipped_features():
    z, y, x, w, b = tiny()
    c = np.percentile(z, 80)
    logits = np.minimum(x.astype(np.float64), c) @ w.T.astype(np.float64) + b
    expected = np.log(np.exp(logits).sum(1))
    scorer = ReAct(percentile=0.8).fit(as_outputs(z, y), head=(torch.from_numpy(w), torch.from_numpy(b)))
    assert scorer.threshold_ == pytest.approx(c)
    np.testing.assert_allclose(scorer.score(as_outputs(x)).numpy(), expected, rtol=1e-5)


def test_odin_perturbs_against_the_gradient_and_takes_the_tempered_softmax():
    rng = np.random.default_rng(0)
    a, bias = rng.normal(size=(3, 12)).astype(np.float32), rng.normal(size=3).astype(np.float32)
    images = rng.normal(size=(5, 3, 2, 2)).astype(np.float32)
    std, t, eps = np.array([0.5, 0.25, 1.0]), 10.0, 0.01

    def softmax(v):
        e = np.exp(v - v.max(1, keepdims=True))
        return e / e.sum(1, keepdims=True)

    x = images.reshape(5, 12).astype(np.float64)
    p = softmax((x @ a.T + bias) / t)
    grad = (p - np.eye(3)[p.argmax(1)]) @ a / t  # d CE(f(x) / T, argmax) / dx for f(x) = A x + b
    step = (np.sign(grad).reshape(5, 3, 2, 2) / std[None, :, None, None]).reshape(5, 12)
    expected = softmax(((x - eps * step) @ a.T + bias) / t).max(1)
    linear = torch.nn.Linear(12, 3)
    with torch.no_grad():
        linear.weight.copy_(torch.from_numpy(a))
        linear.bias.copy_(torch.from_numpy(bias))
    got = ODIN(temperature=t, eps=eps).score_images(lambda im: linear(im.flatten(1)), torch.from_numpy(images),
                                                    norm_std=std.tolist())
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-5)
    assert linear.weight.grad is None  # only the input gets a gradient


# ----------------------------------------------------------------------------- the wrappers equal pytorch-ood


def test_each_wrapper_equals_pytorch_ood_on_the_same_inputs():
    train, test = synthetic(80, 0), synthetic(30, 1)
    z, y, x = train["feature"], train["labels"], test["feature"]
    weight, bias = head()
    pairs = [
        (Mahalanobis().fit(train), ood.Mahalanobis(None).fit_features(z, y).predict_features(x)),
        (KNN(k=7).fit(train), ood.KNN(None, k=7).fit_features(z, y).predict_features(x)),
        (ViM(dim=8).fit(train, head=(weight, bias)),
         ood.ViM(None, 8, weight, bias).fit_features(z, y).predict_features(x)),
        (ReAct(percentile=0.85).fit(train, head=(weight, bias)),
         ood.ReAct(torch.nn.Identity(), lambda f: f @ weight.T + bias, percentile=0.85).fit_feature_maps(z, y)
         .predict_feature_maps(x)),
    ]
    for ours, theirs in pairs:
        if ours.name == "mahalanobis":  # openlt's own scoring (linear in K), pytorch-ood's fit
            torch.testing.assert_close(ours.score(test), -theirs.float(), rtol=1e-5, atol=1e-5)
        elif ours.name == "knn":  # openlt's own chunked search (float32), scikit-learn's (float64)
            torch.testing.assert_close(ours.score(test), -theirs.float(), rtol=0, atol=1e-6)
        elif ours.name == "vim":  # openlt's chunked fit (float64 sums and eigenvectors), pytorch-ood's float32 one
            # alpha = 325 scales residual norms of ~1e-2 whose subspace float32's eigh finds to 1e-5: pytorch-ood's
            # scores are 5.6e-4 from the float64 formula on one CPU, 1.0e-3 on another (BLAS paths differ), openlt's
            # 1.6e-5 (tests/openset/test_detector_fits.py); a wrong formula is off by the scores' own size (~1)
            torch.testing.assert_close(ours.score(test), -theirs.float(), rtol=0, atol=5e-3)
        else:
            assert torch.equal(ours.score(test), -theirs.float()), ours.name
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 3))
    images = torch.randn(6, 3, 2, 2, generator=torch.Generator().manual_seed(0))
    theirs = ood.ODIN(model, eps=0.002, temperature=100.0, norm_std=[0.5, 0.5, 0.5]).predict(images)
    assert torch.equal(ODIN(100.0, 0.002).score_images(model, images, [0.5, 0.5, 0.5]), -theirs)


# ----------------------------------------------------------------------------- estimator contract


@pytest.mark.parametrize("name", FEATURE_SCORES)
def test_fit_save_load_round_trip_and_clone(name, tmp_path):
    scorer = fitted(name, synthetic(60, 0), **({"k": 3} if name == "knn" else {}))
    test = synthetic(9, 1)
    path = tmp_path / "score.safetensors"
    save_score(path, scorer)
    again = load_score(path)
    assert type(again) is type(scorer) and again.get_params() == scorer.get_params()
    assert torch.equal(again.score(test), scorer.score(test))
    assert again.summary() == scorer.summary()
    twin = clone(scorer)
    assert twin.get_params() == scorer.get_params() and not [a for a in vars(twin) if a.endswith("_")]
    with pytest.raises(NotFittedError):
        twin.score(test)


def test_options_are_checked_when_the_score_is_built():
    for make, key in ((lambda: KNN(k=0), "eval.knn_k"), (lambda: ViM(dim=0), "eval.vim_dim"),
                      (lambda: ReAct(percentile=1.5), "eval.react_percentile"),
                      (lambda: ODIN(temperature=0), "eval.odin_temperature"), (lambda: ODIN(eps=-1), "eval.odin_eps")):
        with pytest.raises(ConfigError, match=key):
            make()
    assert KNN(k=9).set_params(k=3).k == 3 and ODIN(5.0, 0.0).get_params() == {"temperature": 5.0, "eps": 0.0}


def test_what_a_detector_cannot_score_is_refused_in_one_line():
    train = synthetic(40, 0)
    with pytest.raises(ConfigError, match="needs a linear classifier head"):
        ViM().fit(train)  # no head given: the model's head is not linear
    with pytest.raises(ConfigError, match="penultimate features"):
        Mahalanobis().fit({"logits": train["logits"], "labels": train["labels"]})
    with pytest.raises(ConfigError, match="more than the 40 training images"):
        KNN(k=41).fit(train)
    with pytest.raises(ConfigError, match="eval.vim_dim=16 must be between"):
        ViM(dim=16).fit(train, head=head())
    with pytest.raises(DataError, match=r"classes \[2\] have no training image"):
        Mahalanobis().fit({"feature": train["feature"][:3], "labels": torch.tensor([0, 1, 3])})
    with pytest.raises(ConfigError, match="computed by openlt eval"):
        ODIN().score({"logits": train["logits"]})  # cached outputs carry no perturbed-image score


def _arrays(n: int = 40, d: int = 8, k: int = 4):
    rng = np.random.default_rng(0)
    return (rng.standard_normal((n, d)).astype("float32"), np.arange(n) % k,
            (rng.standard_normal((k, d)).astype("float32"), np.zeros(k, "float32")))


DETECTORS = [("mahalanobis", {}), ("knn", {"k": 3}), ("vim", {"dim": 4}), ("react", {})]


@pytest.mark.parametrize("name, params", DETECTORS, ids=[d[0] for d in DETECTORS])
def test_detectors_take_plain_arrays_and_say_what_shape_they_need(name, params):
    """fit(X, y) / score(X) on arrays, tensors and lists (as the README says); a score before fit is a
    NotFittedError; empty, 1-D or wrong-width features are one ValueError naming the shape, never a raw torch /
    scikit-learn error."""
    from openlt.errors import NotFittedError
    from openlt.openset import SCORES

    X, y, head = _arrays()
    cls = SCORES.get(name)
    with pytest.raises(NotFittedError, match="not fitted"):
        cls(**params).score(X)
    fitted = cls(**params).fit(X, y, head=head)
    as_dict = cls(**params).fit({"feature": X, "labels": y}, head=head)
    for given in (X[:5], torch.from_numpy(X[:5]), X[:5].tolist(), {"feature": X[:5]}):
        assert torch.allclose(fitted.score(given), as_dict.score({"feature": X[:5]}))
    assert fitted.score(np.zeros((0, 8), "float32")).shape == (0,)
    for bad, says in ((np.zeros((3, 5), "float32"), r"features must be \(N, 8\).*got shape \(3, 5\)"),
                      (X[0], r"must be \(N, D\), got shape \(8,\)")):
        with pytest.raises(ValueError, match=says):
            fitted.score(bad)
    for bad_x, bad_y, says in ((np.zeros((0, 8), "float32"), np.zeros(0), r"N >= 1.*got shape \(0, 8\)"),
                               (X, y[:-1], r"labels must be \(40,\)"), (X, None, "needs the training labels")):
        with pytest.raises(ValueError, match=says):
            cls(**params).fit(bad_x, bad_y, head=head)
    # non-finite features and fractional labels: one DataError, not NaN scores or labels truncated to a class
    nan_x, inf_x = X.copy(), X.copy()
    nan_x[3, 2], inf_x[0, 0] = np.nan, np.inf
    for bad_x, bad_y, says in ((nan_x, y, "training features contain NaN or infinite"),
                               (inf_x, y, "training features contain NaN or infinite"),
                               (X, y + 0.9, "integer class ids, got non-integral")):
        with pytest.raises(DataError, match=says):
            cls(**params).fit(bad_x, bad_y, head=head)
    with pytest.raises(DataError, match=r"score: the features contain NaN or infinite"):
        fitted.score(inf_x[:5])


def test_mahalanobis_scoring_is_exact_in_chunks_and_agrees_with_pytorch_ood_at_many_classes(monkeypatch):
    from openlt.openset import detectors

    g = torch.Generator().manual_seed(5)
    k, d = 40, 12
    y = torch.arange(k).repeat_interleave(6)
    z = torch.randn(k, d, generator=g)[y] * 3 + torch.randn(len(y), d, generator=g)
    x = torch.randn(97, d, generator=g) * 3
    fitted = Mahalanobis().fit(z, y)
    whole = fitted.score(x)
    monkeypatch.setattr(detectors, "_ROW_ELEMENTS", 3 * k)  # 3 rows at a time
    assert torch.equal(fitted.score(x), whole)
    theirs = ood.Mahalanobis(None).fit_features(z, y).predict_features(x)
    torch.testing.assert_close(whole, -theirs.float(), rtol=1e-5, atol=1e-5)
    assert (whole <= 0).all()
