"""Occupancy network and DeepSDF on tiny sets of spheres (known answers, fixed budgets)."""

import numpy as np
import pytest
import torch

from neural3d.data.sampling import SamplingConfig
from neural3d.implicit.data import samples_from_shape
from neural3d.implicit.deepsdf import (
    DeepSDFConfig,
    deepsdf_field,
    infer_code,
    load_deepsdf,
    observations_from_points,
    train_deepsdf,
)
from neural3d.implicit.occnet import OccNetConfig, load_occnet, train_occnet
from neural3d.shapes import Sphere


@pytest.fixture(scope="module")
def spheres():
    rng = np.random.default_rng(0)
    cfg = SamplingConfig(n_points=4000)
    return [samples_from_shape(f"r{r}", Sphere(r), cfg, rng, n_surface=2000)
            for r in (0.2, 0.35)]


def test_occnet_separates_two_spheres(spheres, tmp_run):
    cfg = OccNetConfig(condition="latent", hidden=32, blocks=2, latent_dim=8, iterations=150,
                       points_per_shape=512, lr=3e-3)
    res = train_occnet(spheres, cfg, run=tmp_run, progress_bar=False)
    assert min(res.iou.values()) > 0.8
    model, cfg2, meta = load_occnet(tmp_run.path)
    assert cfg2 == cfg and meta["names"] == ["r0.2", "r0.35"]


@pytest.mark.slow
def test_deepsdf_trains_and_completes_a_half_sphere(spheres, tmp_run):
    cfg = DeepSDFConfig(latent_dim=8, width=64, depth=4, iterations=200, points_per_shape=512,
                        infer_iterations=150, lr=3e-3)
    res = train_deepsdf(spheres, cfg, run=tmp_run, progress_bar=False)
    assert min(res.iou.values()) > 0.8
    decoder, codes, cfg2, _ = load_deepsdf(tmp_run.path)
    assert torch.equal(codes, res.codes) and cfg2 == cfg
    # a new sphere seen only on its x > 0 half: the code must give a closed sphere near r=0.3
    s = spheres[1]
    keep = s.surface[:, 0] > 0
    x, v = observations_from_points(s.surface[keep], s.normals[keep])
    z = infer_code(decoder, x, v, cfg)
    fn = deepsdf_field(decoder, z)
    axis = np.array([[-0.35, 0, 0], [-0.1, 0, 0], [-0.5, 0, 0]], np.float32)  # unseen side
    f = fn(axis)
    assert abs(f[0]) < 0.05 and f[1] < 0 and f[2] > 0
