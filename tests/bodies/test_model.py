import pickle
import sys

import numpy as np
import pytest
import torch

from bodies.io import UnsafePickleError, load_model_arrays, load_pickle
from bodies.model import BodyModel
from mpgym.errors import MpgymError


def test_synthetic_layout_and_plain_arrays(arrays):
    shapes = {
        "v_template": (6890, 3),
        "f": (13776, 3),
        "J_regressor": (24, 6890),
        "weights": (6890, 24),
        "kintree_table": (2, 24),
        "shapedirs": (6890, 3, 10),
        "posedirs": (6890, 3, 207),
    }
    for k, s in shapes.items():
        assert arrays[k].shape == s, k
        assert arrays[k].dtype != object
    np.testing.assert_allclose(arrays["weights"].sum(1), 1.0, atol=1e-12)
    np.testing.assert_allclose(arrays["J_regressor"].sum(1), 1.0, atol=1e-12)
    assert (arrays["weights"] >= 0).all() and (arrays["J_regressor"] >= 0).all()
    assert ((arrays["weights"] > 0).sum(1) <= 4).all()


def test_synthetic_surface_is_closed_genus_zero(arrays):
    trimesh = pytest.importorskip("trimesh")
    m = trimesh.Trimesh(arrays["v_template"], arrays["f"], process=False)
    assert m.is_watertight and m.is_winding_consistent and m.euler_number == 2
    assert 0.04 < m.volume < 0.09  # an adult's volume in m^3
    height = np.ptp(arrays["v_template"][:, 1])
    assert 1.6 < height < 1.9


def test_skinning_weights_fall_off_from_bones(arrays):
    # a vertex's heaviest joint is its own bone: the hand tips follow the hands, feet the feet
    v, w = arrays["v_template"], arrays["weights"]
    assert w[v[:, 0].argmax()].argmax() == 22  # left hand
    assert w[v[:, 0].argmin()].argmax() == 23
    assert w[v[:, 1].argmax()].argmax() == 15  # head


def test_smplx_loads_the_file_unchanged_and_agrees(model_path, model64):
    smplx = pytest.importorskip("smplx")
    sm = smplx.SMPL(
        str(model_path), data_struct=smplx.utils.Struct(**np.load(model_path)), dtype=torch.float64
    )
    g = torch.Generator().manual_seed(0)
    betas = torch.randn(3, 10, generator=g, dtype=torch.float64)
    pose = torch.randn(3, 69, generator=g, dtype=torch.float64) * 0.5
    go = torch.randn(3, 3, generator=g, dtype=torch.float64)
    tr = torch.randn(3, 3, generator=g, dtype=torch.float64)
    ours = model64(betas, pose, go, tr)
    theirs = sm(betas=betas, body_pose=pose, global_orient=go, transl=tr)
    torch.testing.assert_close(ours.vertices, theirs.vertices, atol=1e-5, rtol=0)
    torch.testing.assert_close(ours.joints, theirs.joints[:, :24], atol=1e-5, rtol=0)


def test_body_model_float32_and_input_forms(model_path, model64):
    m32 = BodyModel(model_path)
    pose = torch.randn(2, 23, 3, dtype=torch.float64) * 0.3
    a = model64(body_pose=pose)
    b = m32(body_pose=pose.float().reshape(2, 69))
    from bodies.rotations import axis_angle_to_matrix

    c = model64(body_pose=axis_angle_to_matrix(pose))
    assert b.vertices.dtype == torch.float32
    torch.testing.assert_close(b.vertices.double(), a.vertices, atol=1e-5, rtol=0)
    torch.testing.assert_close(c.vertices, a.vertices)
    rest = model64()
    torch.testing.assert_close(rest.vertices[0], model64.v_template)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"body_pose": torch.zeros(2, 68)}, "body_pose has shape"),
        ({"betas": torch.zeros(2, 11)}, "betas has shape"),
        ({"betas": torch.zeros(2, 10), "body_pose": torch.zeros(3, 69)}, "batch"),
        ({"global_orient": torch.zeros(1, 4)}, "global_orient has shape"),
    ],
)
def test_wrong_shapes_raise_clear_errors(model64, kwargs, match):
    with pytest.raises(MpgymError, match=match):
        model64(**{k: v.double() for k, v in kwargs.items()})


def test_missing_and_misshaped_keys(tmp_path, arrays):
    bad = {k: v for k, v in arrays.items() if k not in ("posedirs", "weights")}
    np.savez(tmp_path / "m.npz", **bad)
    with pytest.raises(MpgymError, match="missing key 'weights'.*missing key 'posedirs'"):
        load_model_arrays(tmp_path / "m.npz")
    bad = dict(arrays, J_regressor=arrays["J_regressor"][:, :100])
    np.savez(tmp_path / "m2.npz", **bad)
    with pytest.raises(MpgymError, match=r"'J_regressor' has shape \(24, 100\); expected \(J, V\)"):
        load_model_arrays(tmp_path / "m2.npz")


def test_pkl_without_chumpy_loads_like_npz(tmp_path, arrays, model64, official_style_pickle):
    (tmp_path / "SMPL_NEUTRAL.pkl").write_bytes(official_style_pickle(arrays))
    assert "chumpy" not in sys.modules
    loaded = load_model_arrays(tmp_path / "SMPL_NEUTRAL.pkl")
    for k in ("v_template", "shapedirs", "posedirs", "J_regressor", "f"):
        np.testing.assert_array_equal(loaded[k], arrays[k])
    m = BodyModel(tmp_path / "SMPL_NEUTRAL.pkl", dtype=torch.float64)
    pose = torch.full((1, 69), 0.1, dtype=torch.float64)
    torch.testing.assert_close(m(body_pose=pose).vertices, model64(body_pose=pose).vertices)


class _Evil:
    def __reduce__(self):
        import os

        return (os.system, ("touch " + str(_Evil.target),))


def test_malicious_pickle_is_refused_without_running(tmp_path):
    _Evil.target = tmp_path / "pwned"
    (tmp_path / "evil.pkl").write_bytes(pickle.dumps({"v_template": _Evil()}))
    with pytest.raises(UnsafePickleError, match="refusing to load (posix|os|nt).system"):
        load_pickle(tmp_path / "evil.pkl")
    assert not _Evil.target.exists()
