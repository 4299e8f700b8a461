"""The PointFlow protocol: Chamfer, EMD, MMD, COV and 1-NNA against brute force on tiny sets."""

import itertools

import numpy as np
import pytest
import torch

from mpgym.errors import MpgymError
from neural3d.shape_metrics import (
    N_POINTS,
    chamfer,
    coverage,
    emd,
    mmd,
    normalize_clouds,
    one_nn_accuracy,
    pairwise_chamfer,
    pairwise_emd,
    sample_point_clouds,
    shape_set_metrics,
    with_empty_samples,
)

torch.set_num_threads(1)


def _brute_chamfer(a, b):
    d = ((a[:, None, :] - b[None, :, :]) ** 2).sum(-1)  # explicit squared distances
    return d.min(1).mean() + d.min(0).mean()


def _brute_emd(a, b):
    best = np.inf
    for perm in itertools.permutations(range(len(b))):
        best = min(best, np.mean([np.linalg.norm(a[i] - b[j]) for i, j in enumerate(perm)]))
    return best


def _clouds(rng, k, n, shift=0.0):
    return rng.normal(size=(k, n, 3)) * rng.uniform(0.5, 1.5, size=(k, 1, 3)) + shift


# -- two clouds -------------------------------------------------------------------------------
def test_chamfer_hand_examples():
    assert chamfer(np.zeros((1, 3)), np.array([[0.0, 0, 1], [0, 0, 2]])) == pytest.approx(3.5)
    a = np.array([[0.0, 0, 0], [1, 0, 0]])
    assert chamfer(a, a) == 0.0
    # a shift by t makes every nearest distance |t| (t small against the spacing): 2 t^2
    assert chamfer(a, a + [0, 0.1, 0]) == pytest.approx(2 * 0.01)


def test_chamfer_matches_brute_force_and_is_symmetric():
    rng = np.random.default_rng(0)
    for n, m in [(5, 7), (30, 30), (1, 9)]:
        a, b = rng.normal(size=(n, 3)), rng.normal(size=(m, 3))
        assert chamfer(a, b) == pytest.approx(_brute_chamfer(a, b), rel=1e-10)
        assert chamfer(a, b) == pytest.approx(chamfer(b, a), rel=1e-12)


def test_emd_hand_examples_and_brute_force():
    assert emd(np.array([[0.0, 0, 0], [1, 0, 0]]), np.array([[1.0, 0, 1], [0, 0, 1]])) == 1.0
    rng = np.random.default_rng(1)
    a = rng.normal(size=(6, 3))
    # a translation costs exactly its length (no matching beats the mean displacement)
    assert emd(a, a + [0.3, -0.4, 0.0]) == pytest.approx(0.5)
    assert emd(a, a[::-1]) == pytest.approx(0.0, abs=1e-12)
    for _ in range(3):
        a, b = rng.normal(size=(6, 3)), rng.normal(size=(6, 3))
        assert emd(a, b) == pytest.approx(_brute_emd(a, b), rel=1e-10)
        assert emd(a, b) == pytest.approx(emd(b, a), rel=1e-12)


def test_bad_clouds_are_refused():
    with pytest.raises(MpgymError, match="equal size"):
        emd(np.zeros((3, 3)), np.zeros((4, 3)))
    with pytest.raises(MpgymError, match=r"\(K, N, 3\)"):
        chamfer(np.zeros((3, 2)), np.zeros((3, 2)))
    with pytest.raises(MpgymError, match="NaN"):
        chamfer(np.full((3, 3), np.nan), np.zeros((3, 3)))
    with pytest.raises(MpgymError, match="backend"):
        pairwise_chamfer(np.zeros((2, 3, 3)), backend="gpu")  # type: ignore[arg-type]


# -- normalisation and sampling -----------------------------------------------------------------
def test_normalize_box_centres_and_scales_each_cloud():
    rng = np.random.default_rng(2)
    c = _clouds(rng, 4, 50)
    out = normalize_clouds(c * [[[3.0]], [[0.1]], [[1.0]], [[7.0]]] + 5.0, "box")
    lo, hi = out.min(1), out.max(1)
    np.testing.assert_allclose((hi - lo).max(1), 1.0)
    np.testing.assert_allclose((hi + lo) / 2, 0.0, atol=1e-12)
    # invariant to translation and uniform scale
    np.testing.assert_allclose(normalize_clouds(c * 2.5 - 1.0), normalize_clouds(c), atol=1e-12)
    np.testing.assert_array_equal(normalize_clouds(c, "none"), c)
    with pytest.raises(MpgymError, match="one place"):
        normalize_clouds(np.zeros((1, 4, 3)))


def test_sample_point_clouds_on_the_surface():
    import trimesh

    meshes = [trimesh.creation.icosphere(3, radius=0.4), trimesh.creation.box((1, 0.5, 0.2))]
    clouds = sample_point_clouds(meshes, np.random.default_rng(0))
    assert clouds.shape == (2, N_POINTS, 3) and clouds.dtype == np.float32
    r = np.linalg.norm(clouds[0], axis=1)
    assert abs(r - 0.4).max() < 0.01  # on the sphere (flat facets sit slightly inside)
    assert np.abs(clouds[1]).max(0) == pytest.approx([0.5, 0.25, 0.1], abs=1e-6)
    again = sample_point_clouds(meshes, np.random.default_rng(0))
    np.testing.assert_array_equal(clouds, again)


# -- distance matrices --------------------------------------------------------------------------
def test_pairwise_chamfer_backends_match_the_loop():
    rng = np.random.default_rng(3)
    x, y = _clouds(rng, 3, 40), _clouds(rng, 4, 40)
    loop = np.array([[_brute_chamfer(a, b) for b in y] for a in x])
    np.testing.assert_allclose(pairwise_chamfer(x, y), loop, rtol=1e-10)
    np.testing.assert_allclose(pairwise_chamfer(x, y, backend="torch", batch=3), loop, rtol=1e-8)
    self_ = pairwise_chamfer(x)
    np.testing.assert_allclose(self_, self_.T)
    assert (np.diag(self_) == 0).all()
    np.testing.assert_allclose(pairwise_chamfer(x, backend="torch"), self_, rtol=1e-8, atol=1e-12)


def test_pairwise_emd_exact_and_subsampled():
    rng = np.random.default_rng(4)
    x, y = _clouds(rng, 3, 6), _clouds(rng, 2, 6)
    loop = np.array([[_brute_emd(a, b) for b in y] for a in x])
    np.testing.assert_allclose(pairwise_emd(x, y), loop, rtol=1e-10)
    np.testing.assert_allclose(pairwise_emd(x, y, points=6), loop, rtol=1e-10)
    sym = pairwise_emd(x)
    np.testing.assert_allclose(sym, sym.T)
    assert (np.diag(sym) == 0).all()
    # the fast path: close to the exact value on larger clouds
    a, b = _clouds(rng, 1, 400), _clouds(rng, 1, 400, shift=1.0)
    exact = pairwise_emd(a, b)[0, 0]
    approx = pairwise_emd(a, b, points=128, rng=np.random.default_rng(0))[0, 0]
    assert approx == pytest.approx(exact, rel=0.15)


# -- set metrics --------------------------------------------------------------------------------
def _loop_mmd(d_sr):
    return np.mean([min(d_sr[i, j] for i in range(d_sr.shape[0])) for j in range(d_sr.shape[1])])


def _loop_cov(d_sr):
    nearest = {min(range(d_sr.shape[1]), key=lambda j: d_sr[i, j]) for i in range(len(d_sr))}
    return len(nearest) / d_sr.shape[1]


def _loop_nna(d_ss, d_sr, d_rr):
    s, r = len(d_ss), len(d_rr)

    def dist(i, j):  # index i, j into S + R
        if i < s and j < s:
            return d_ss[i, j]
        if i >= s and j >= s:
            return d_rr[i - s, j - s]
        return d_sr[i, j - s] if i < s else d_sr[j, i - s]

    correct = 0
    for i in range(s + r):
        j = min((j for j in range(s + r) if j != i), key=lambda j: dist(i, j))
        correct += (i < s) == (j < s)
    return correct / (s + r)


def test_set_metrics_match_explicit_loops():
    rng = np.random.default_rng(5)
    for s, r in [(4, 3), (5, 5), (2, 6)]:
        pts = rng.normal(size=(s + r, 3))
        d = np.linalg.norm(pts[:, None] - pts[None], axis=-1)  # a real metric, no ties
        d_ss, d_sr, d_rr = d[:s, :s], d[:s, s:], d[s:, s:]
        assert mmd(d_sr) == pytest.approx(_loop_mmd(d_sr))
        assert coverage(d_sr) == pytest.approx(_loop_cov(d_sr))
        assert one_nn_accuracy(d_ss, d_sr, d_rr) == pytest.approx(_loop_nna(d_ss, d_sr, d_rr))
    # hand examples
    d_sr = np.array([[1.0, 5.0], [2.0, 3.0]])
    assert mmd(d_sr) == 2.0 and coverage(d_sr) == 0.5
    with pytest.raises(MpgymError, match="shape"):
        one_nn_accuracy(np.zeros((2, 2)), np.zeros((3, 2)), np.zeros((2, 2)))


def test_empty_samples_count_against_the_generator():
    """Empty generated shapes: told apart in 1-NNA (as a loop over the definition says), no
    change to MMD and COV, counted in n_sample; one empty shape alone is a sample too."""
    rng = np.random.default_rng(8)
    s, r, k = 4, 5, 3
    pts = rng.normal(size=(s + r, 3))
    d = np.linalg.norm(pts[:, None] - pts[None], axis=-1)
    d_ss, d_sr, d_rr = d[:s, :s], d[:s, s:], d[s:, s:]
    ss, sr = with_empty_samples(d_ss, d_sr, k)
    # brute force: empties are 0 apart, infinitely far from the rest -> each picks an empty one
    correct = sum((i < s) == (j < s) for i, j in enumerate(
        min((j for j in range(s + r) if j != i), key=lambda j: d[i, j]) for i in range(s + r)))
    assert one_nn_accuracy(ss, sr, d_rr) == pytest.approx((correct + k) / (s + k + r))
    assert one_nn_accuracy(*with_empty_samples(d_ss, d_sr, 1), d_rr) == pytest.approx(
        (correct + 1) / (s + 1 + r))
    assert one_nn_accuracy(ss, sr, d_rr) > one_nn_accuracy(d_ss, d_sr, d_rr)
    a, b = _clouds(rng, 6, 64), _clouds(rng, 6, 64)
    full = shape_set_metrics(a, b, with_emd=False)
    holes = shape_set_metrics(a, b, empty_samples=2, with_emd=False)
    assert (holes.mmd_cd, holes.cov_cd) == (full.mmd_cd, full.cov_cd)
    assert holes.nna_cd > full.nna_cd and holes.n_sample == 8
    with pytest.raises(MpgymError, match="empty samples"):
        with_empty_samples(d_ss, d_sr, -1)


def test_one_nna_half_for_one_distribution_one_for_disjoint():
    rng = np.random.default_rng(6)
    a, b = _clouds(rng, 40, 64), _clouds(rng, 40, 64)
    d_ss, d_sr, d_rr = pairwise_chamfer(a), pairwise_chamfer(a, b), pairwise_chamfer(b)
    assert 0.3 <= one_nn_accuracy(d_ss, d_sr, d_rr) <= 0.7
    far = _clouds(rng, 40, 64, shift=10.0)
    d_sf = pairwise_chamfer(far, b)
    assert one_nn_accuracy(pairwise_chamfer(far), d_sf, d_rr) == 1.0
    # disjoint sets: samples all map to the reference nearest the shift -> low coverage
    assert coverage(d_sf) < 0.5
    # symmetric in the roles of the two sets
    assert one_nn_accuracy(d_ss, d_sr, d_rr) == one_nn_accuracy(d_rr, d_sr.T, d_ss)


def test_training_set_as_generator_reference_row():
    """The reference row: a set compared with itself has MMD 0, COV 1 and 1-NNA 0 (copies)."""
    rng = np.random.default_rng(7)
    ref = _clouds(rng, 6, 32)
    m = shape_set_metrics(ref, ref, emd_points=None)
    assert m.mmd_cd == 0.0 and m.cov_cd == 1.0 and m.mmd_emd == pytest.approx(0.0, abs=1e-12)
    assert m.nna_cd == 0.0 and m.nna_emd == 0.0  # each cloud's neighbour is its copy
    other = shape_set_metrics(_clouds(rng, 5, 32), ref, emd_points=16, with_emd=True)
    assert other.n_sample == 5 and other.n_ref == 6
    assert 0 < other.mmd_cd and 0 < other.cov_cd <= 1 and 0 <= other.nna_emd <= 1
    no_emd = shape_set_metrics(_clouds(rng, 5, 32), ref, with_emd=False)
    assert no_emd.mmd_emd is None and no_emd.nna_emd is None
