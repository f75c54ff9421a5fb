"""Mahalanobis's and ViM's fits (issue 17): openlt computes pytorch-ood's fits in passes over chunks of rows, linear
in N and K (class sums by index_add_, the centred scatter chunk by chunk), and they equal pytorch-ood's own fit on
the same inputs: float32, float16 and float64 features, a class with one image, chunks that do not divide N. The
memory is a chunk: no conversion or copy of all N x D features.

Tolerances, and why: pytorch-ood fits in float32 (its sums, its inverse / eigenvectors), openlt sums in float64
and multiplies chunks in float32, so the two differ by float32 rounding: the class means by a few ulps (rtol 1e-6),
the precision / projector / scores by the float32 rounding of a solve with the scatter's condition number (~50
here: the columns' scales run from 0.3 to 2), 1e-5 of the largest entry. Against a float64 reference (pytorch-ood's
Mahalanobis run with float64 as the default dtype, ViM's formulas in float64) on float64 features, only the order
of the sums differs: 1e-10."""

import pytest
import torch

pytest.importorskip("pytorch_ood", reason="the detectors wrap pytorch-ood (pip install 'openlt[ood]')")
import pytorch_ood.detector as ood  # noqa: E402

from openlt.openset import Mahalanobis, ViM, base, detectors  # noqa: E402

K, D, N = 7, 24, 301


def features(dtype: torch.dtype = torch.float32, n: int = N) -> tuple[torch.Tensor, torch.Tensor]:
    """(n, D) features of K classes, class K - 1 with one image (row 0), columns of scales 0.3 .. 2 (a clear
    spectral gap for ViM's subspace), in `dtype` (the values float16 holds exactly, so every dtype has the same)."""
    g = torch.Generator().manual_seed(0)
    y = torch.cat([torch.tensor([K - 1]), torch.randint(0, K - 1, (n - 1,), generator=g)])
    z = torch.randn(K, D, generator=g)[y] * 2 + torch.randn(n, D, generator=g) * torch.linspace(0.3, 2, D)
    return z.half().to(dtype), y


def head() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return torch.randn(K, D, generator=g), torch.randn(K, generator=g)


def chunks(monkeypatch, rows: int | None) -> None:
    """Fit `rows` rows at a time (None: the defaults, every row at once here); 5 and 7 do not divide N = 301."""
    if rows is not None:
        monkeypatch.setattr(detectors, "_FIT_ELEMENTS", rows * D)
        monkeypatch.setattr(detectors, "_ROW_ELEMENTS", rows * D)  # ViM's alpha: rows x max(K, D) logits


def close(ours: torch.Tensor, theirs: torch.Tensor, rtol: float = 1e-5) -> None:
    torch.testing.assert_close(ours.double(), theirs.double(), rtol=0, atol=rtol * float(theirs.abs().max()))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.float64])
@pytest.mark.parametrize("rows", [None, 5, 7])
def test_mahalanobis_fit_equals_pytorch_oods_fit(dtype, rows, monkeypatch):
    z, y = features(dtype)
    chunks(monkeypatch, rows)
    ours = Mahalanobis().fit(z, y)
    theirs = ood.Mahalanobis(None).fit_features(z.float(), y)
    assert ours.means_.dtype == ours.precision_.dtype == torch.float32
    assert torch.equal(ours.means_[K - 1], z[0].float())  # the class of one image: its mean is the image
    torch.testing.assert_close(ours.means_, theirs.mu, rtol=1e-6, atol=1e-6)
    close(ours.precision_, theirs.precision)
    queries = torch.randn(40, D, generator=torch.Generator().manual_seed(2)) * 3
    close(ours.score(queries), -theirs.predict_features(queries))


@pytest.mark.parametrize("rows", [None, 5])
def test_mahalanobis_sums_equal_pytorch_oods_float64_fit(rows, monkeypatch):
    """pytorch-ood with float64 as the default dtype fits in float64 throughout: the means and the summed scatter
    are the same sums in another order."""
    z, y = features(torch.float64)
    chunks(monkeypatch, rows)
    with torch.no_grad():
        default = torch.get_default_dtype()
        torch.set_default_dtype(torch.float64)
        try:
            theirs = ood.Mahalanobis(None).fit_features(z, y)
        finally:
            torch.set_default_dtype(default)
    means = detectors.class_means(z, y, K)
    scatter = detectors.centred_scatter(z, lambda start, stop: means[y[start:stop]])
    assert means.dtype == scatter.dtype == torch.float64 and theirs.cov.dtype == torch.float64
    close(means, theirs.mu, 1e-12)
    close(scatter + 1e-6 * torch.eye(D, dtype=torch.float64), theirs.cov, 1e-12)


def vim_reference(z: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, dim: int):
    """ViM's fit as pytorch-ood writes it, in float64: (projector onto the residual space, alpha, origin)."""
    z, weight, bias = z.double(), weight.double(), bias.double()
    origin = -(torch.linalg.pinv(weight) @ bias)
    x = z - origin
    null = torch.linalg.eigh(x.T @ x / len(x)).eigenvectors[:, :D - dim]
    alpha = (z @ weight.T + bias).max(dim=1).values.mean() / (x @ null).norm(dim=1).mean()
    return null @ null.T, float(alpha), origin


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.float64])
@pytest.mark.parametrize("rows", [None, 5, 7])
def test_vim_fit_equals_pytorch_oods_fit(dtype, rows, monkeypatch):
    z, y = features(dtype)
    weight, bias = head()
    chunks(monkeypatch, rows)
    ours = ViM(dim=10).fit(z, y, head=(weight, bias))
    theirs = ood.ViM(None, 10, weight, bias).fit_features(z.float(), y)
    assert torch.equal(ours.origin_, theirs.u)  # pytorch-ood's own u = -W^+ b
    assert ours.null_space_.shape == (D, D - 10) and ours.null_space_.dtype == torch.float32
    close(ours.null_space_ @ ours.null_space_.T, theirs.principal_subspace @ theirs.principal_subspace.T)
    assert ours.alpha_ == pytest.approx(theirs.alpha, rel=1e-6)
    queries = torch.randn(40, D, generator=torch.Generator().manual_seed(2)) * 3
    close(ours.score(queries), -theirs.predict_features(queries))
    projector, alpha, _ = vim_reference(z, weight, bias, 10)
    close(ours.null_space_.double() @ ours.null_space_.double().T, projector, 1e-5)
    assert ours.alpha_ == pytest.approx(alpha, rel=1e-6)  # float32 logits and norms, float64 sums


def test_vim_subspace_of_float64_features_equals_the_float64_formula(monkeypatch):
    z, y = features(torch.float64)
    weight, bias = head()
    chunks(monkeypatch, 7)
    origin = ood.ViM(None, 10, weight, bias).u.double()
    cov = detectors.centred_scatter(z, lambda start, stop: origin) / len(z)
    x = z - origin
    close(cov, x.T @ x / len(x), 1e-12)


class Allocations(torch.Tensor):
    """Features that record the size of every tensor an operation on them (or on what derives from them) returns
    in new memory: not the features' own storage (views, detach, the features themselves)."""

    largest, storage = 0, None

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        out = super().__torch_function__(func, types, args, kwargs or {})
        with torch._C.DisableTorchFunctionSubclass():
            if isinstance(out, torch.Tensor) and out.untyped_storage().data_ptr() != cls.storage:
                cls.largest = max(cls.largest, out.numel())
        return out


@pytest.mark.parametrize("name", ["mahalanobis", "vim"])
def test_the_fit_holds_a_chunk_of_rows_not_a_copy_of_the_features(name, monkeypatch):
    """3,001 x 24 features fitted 5 rows at a time: no tensor derived from them is larger than the D x D scatter
    (pytorch-ood's fits hold an N x D float32 copy, ViM's also the N x K logits and the N x (D - d) projection)."""
    z, y = features(torch.float16, n=3001)
    monkeypatch.setattr(base, "_SPREAD_ROWS", 5)  # the no-spread check's float64 chunks, also a chunk
    chunks(monkeypatch, 5)
    spied = z.as_subclass(Allocations)
    Allocations.largest, Allocations.storage = 0, z.untyped_storage().data_ptr()
    if name == "mahalanobis":
        fitted = Mahalanobis().fit(spied, y)
        plain = Mahalanobis().fit(z, y)
        close(fitted.precision_.as_subclass(torch.Tensor), plain.precision_, 1e-6)
    else:
        fitted = ViM(dim=10).fit(spied, y, head=head())
        assert fitted.alpha_ == pytest.approx(ViM(dim=10).fit(z, y, head=head()).alpha_, rel=1e-6)
    assert 0 < Allocations.largest <= D * D < len(z) * D // 100


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_the_fits_leave_the_callers_features_as_they_were(dtype, monkeypatch):
    """Each chunk is centred in a copy: float32 / float64 features are not centred in place (a view of them is what
    ``.to`` gives in their own dtype)."""
    z, y = features(dtype)
    kept = z.clone()
    chunks(monkeypatch, 5)
    Mahalanobis().fit(z, y)
    ViM(dim=10).fit(z, y, head=head())
    assert torch.equal(z, kept)
