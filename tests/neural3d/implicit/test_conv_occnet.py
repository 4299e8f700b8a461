"""Convolutional occupancy networks: coordinates, scatter, bilinear sampling, shapes, gradients,
and a tiny training on procedural shapes (Peng et al. 2020)."""

from dataclasses import replace

import pytest
import torch

from mpgym import MpgymError, RunDir
from neural3d.implicit import collection as C
from neural3d.implicit.conv_occnet import (
    LocalDecoder,
    LocalPoolPointNet,
    UNet2D,
    UNet3D,
    cell_index,
    normalize_coordinates,
    sample_features,
    scatter_cells,
)

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def procedural(tmp_path_factory):
    from neural3d.data.collections import CollectionConfig, prepare_collection

    cfg = CollectionConfig(
        n_surface=2000, n_sdf=1000, n_occupancy=4000, procedural_shapes=4, procedural_resolution=32
    )
    return prepare_collection(
        "procedural", cfg, cache_dir=tmp_path_factory.mktemp("shapes"), progress_bar=False
    )


# ---------------------------------------------------------------------------- pure functions
def test_coordinates_follow_convonet_normalisation():
    p = torch.tensor([[[0.275, 0.0, -0.55], [0.9, -0.9, 0.0]]])
    u = normalize_coordinates(p, "xz", 0.1)
    torch.testing.assert_close(u[0, 0], torch.tensor([0.275 / 1.10001 + 0.5, 0.0]))
    assert u.max() < 1 and u.min() >= 0  # outliers clamped into the cube
    assert normalize_coordinates(p, "grid").shape == (1, 2, 3)
    torch.testing.assert_close(normalize_coordinates(p, "yz")[0, 1], torch.tensor([0.0, 0.5]),
                               atol=1e-5, rtol=0)
    # first coordinate fastest: (0.6, 0.1) at R = 4 is cell (2, 0); (0.3, 0.8) is (1, 3)
    idx = cell_index(torch.tensor([[[0.6, 0.1], [0.3, 0.8]]]), 4)
    assert idx.tolist() == [[2, 1 + 4 * 3]]
    assert cell_index(torch.tensor([[[0.5, 0.0, 0.99]]]), 2).tolist() == [[1 + 2 * 2 * 1]]


def test_scatter_mean_and_max_per_cell():
    f = torch.tensor([[[1.0], [3.0], [5.0]]])
    i = torch.tensor([[0, 0, 2]])
    assert scatter_cells(f, i, 3).flatten().tolist() == [2.0, 0.0, 5.0]
    assert scatter_cells(f, i, 3, "amax").flatten().tolist() == [3.0, 0.0, 5.0]
    neg = scatter_cells(-f, i, 3, "amax").flatten().tolist()
    assert neg == [-1.0, 0.0, -5.0]  # max over the cell's points, not over zero


def test_bilinear_sampling_matches_a_hand_computation():
    a, b, c, d = 1.0, 2.0, 10.0, 20.0
    plane = torch.tensor([[[[a, b], [c, d]]]])  # [1, 1, 2, 2]: rows are the second coordinate
    u = torch.tensor([[[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.25, 0.5], [0.5, 0.75]]])
    want = [
        a,
        b,  # the first coordinate runs along the width
        c,
        0.5 * (0.75 * a + 0.25 * b) + 0.5 * (0.75 * c + 0.25 * d),
        0.25 * (0.5 * a + 0.5 * b) + 0.75 * (0.5 * c + 0.5 * d),
    ]
    got = sample_features(plane, u)
    assert got.shape == (1, 5, 1)
    torch.testing.assert_close(got[0, :, 0], torch.tensor(want))
    # a 3x3 plane: u = 0.25 is half-way between cell centres 0 and 1 (align_corners)
    p3 = torch.arange(9.0).reshape(1, 1, 3, 3)
    torch.testing.assert_close(sample_features(p3, torch.tensor([[[0.25, 0.0]]])).flatten(),
                               torch.tensor([0.5]))
    # trilinear in a 2^3 grid: value x + 2y + 4z at its corners is reproduced exactly inside
    grid = torch.tensor([[[[[float(i + 2 * j + 4 * k) for i in range(2)] for j in range(2)]
                           for k in range(2)]]])
    pt = torch.tensor([[[0.3, 0.6, 0.9]]])
    torch.testing.assert_close(sample_features(grid, pt).flatten(), torch.tensor([0.3 + 1.2 + 3.6]))


def test_scattered_feature_is_sampled_back_at_its_cell_layout():
    # one point per plane cell: the sparse plane holds its feature at [.., v, u]
    p = torch.tensor([[[0.4, -0.1, 0.2]]])
    u = normalize_coordinates(p, "xz")
    plane = scatter_cells(torch.ones(1, 1, 1), cell_index(u, 4), 16).transpose(1, 2)
    plane = plane.reshape(1, 1, 4, 4)
    i, j = (u[0, 0] * 4).long().tolist()
    assert plane[0, 0, j, i] == 1 and plane.sum() == 1


# ---------------------------------------------------------------------------- modules
@pytest.mark.parametrize("batch", [1, 2])
def test_module_shapes(batch):
    torch.manual_seed(0)
    assert UNet2D(4, 6, depth=3, start_filts=4)(torch.randn(batch, 4, 8, 8)).shape == (
        batch, 6, 8, 8)
    assert UNet3D(4, 6, levels=2, f_maps=4)(torch.randn(batch, 4, 4, 4, 4)).shape == (
        batch, 6, 4, 4, 4)
    cloud, x = torch.rand(batch, 50, 3) - 0.5, torch.rand(batch, 30, 3) - 0.5
    planes = LocalPoolPointNet(8, 8, 3, layout="planes", resolution=8, unet_depth=2,
                               unet_filters=4)(cloud)
    assert {k: tuple(v.shape) for k, v in planes.items()} == {
        k: (batch, 8, 8, 8) for k in ("xz", "xy", "yz")}
    grid = LocalPoolPointNet(8, 8, 3, layout="grid", resolution=4, unet_depth=2,
                             unet_filters=4)(cloud)
    assert {k: tuple(v.shape) for k, v in grid.items()} == {"grid": (batch, 8, 4, 4, 4)}
    dec = LocalDecoder(8, 16, 3)
    assert dec(x, planes).shape == dec(x, grid).shape == (batch, 30)
    assert dec.point_features(x, planes).shape == (batch, 30, 8)


def test_encoder_is_invariant_to_point_order_and_shapes_are_independent():
    torch.manual_seed(0)
    enc = LocalPoolPointNet(8, 8, 3, resolution=8, unet_depth=2, unet_filters=4)
    cloud = torch.rand(2, 40, 3) - 0.5
    f = enc(cloud)
    g = enc(cloud[:, torch.randperm(40)])
    for k in f:
        torch.testing.assert_close(f[k], g[k])
    torch.testing.assert_close(enc(cloud[1:])["xy"], f["xy"][1:])


@pytest.mark.parametrize("layout", ["planes", "grid"])
def test_gradcheck_tiny_model(layout):
    torch.manual_seed(0)
    cfg = replace(C.OCCNET_PRESETS[f"{layout}-tiny"], c_dim=2, encoder_hidden=2,
                  decoder_hidden=3, blocks=2, resolution=4, unet_depth=2, unet_filters=2)
    model = C.ConditionalOccNet(cfg).double()
    for prm in model.parameters():  # the zero-initialised last layers would hide the encoder
        prm.data.add_(0.1 * torch.randn_like(prm))
    cloud = (torch.rand(1, 12, 3, dtype=torch.float64) - 0.5).requires_grad_()
    x = (torch.rand(1, 5, 3, dtype=torch.float64) - 0.5).requires_grad_()
    assert torch.autograd.gradcheck(lambda a, b: model(b, a), (cloud, x), eps=1e-6, atol=1e-5)
    model(x, cloud).sum().backward()
    assert all(p.grad is not None for p in model.encoder.parameters())


def test_config_checks_refuse_bad_conv_settings():
    with pytest.raises(MpgymError, match="halved"):
        C._check(replace(C.OCCNET_PRESETS["planes-cpu"], resolution=36, unet_depth=4))
    with pytest.raises(MpgymError, match="encoder"):
        C._check(replace(C.OCCNET_PRESETS["cpu"], encoder="voxels"))
    with pytest.raises(MpgymError, match="padding"):
        C._check(replace(C.OCCNET_PRESETS["planes-cpu"], padding=-0.1))
    for name, cfg in C.OCCNET_PRESETS.items():
        C._check(cfg)
        if name.endswith("-paper"):
            assert cfg.input_points == 3000 and cfg.c_dim == cfg.decoder_hidden == 32


# ---------------------------------------------------------------------------- training
def test_tiny_training_on_procedural_shapes_resumes_and_reloads(procedural, tmp_path):
    """Two training shapes, planes at 16^2: IoU on them goes from ~0.3 to above 0.6."""
    cfg = replace(C.OCCNET_PRESETS["planes-tiny"], iterations=60, log_every=20)
    assert len(procedural.split("train")) == 2
    untrained = C.eval_occnet_heldout(C.ConditionalOccNet(cfg), procedural, cfg, split="train")
    run = RunDir(tmp_path / "run")
    half = C.train_occnet_collection(procedural, replace(cfg, iterations=30), run=run,
                                     progress_bar=False)
    assert half.steps == 30 and (tmp_path / "run" / C.TRAINER_FILE).is_file()
    res = C.train_occnet_collection(procedural, cfg, run=run, progress_bar=False, resume=True)
    assert res.steps == 60 and len(res.losses) == 30
    held = C.eval_occnet_heldout(res.model, procedural, cfg, split="train")
    assert untrained.mean < 0.5 < 0.6 < held.mean
    model, loaded_cfg, meta = C.load_occnet_collection(tmp_path / "run" / "checkpoint.safetensors")
    assert loaded_cfg == cfg and meta["steps"] == 60
    again = C.eval_occnet_heldout(model, procedural, cfg, split="train")
    assert again.mean == pytest.approx(held.mean)
    with pytest.raises(MpgymError, match="other settings"):
        C.train_occnet_collection(procedural, replace(cfg, lr=1e-3), run=run, resume=True,
                                  progress_bar=False)


def test_time_cap_stops_training(procedural):
    cfg = replace(C.OCCNET_PRESETS["grid-tiny"], iterations=10_000, max_minutes=1e-4)
    res = C.train_occnet_collection(procedural, cfg, progress_bar=False)
    assert res.steps < 10_000
