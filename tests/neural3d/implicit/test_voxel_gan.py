"""3D-GAN at 32^3: shapes and ranges, the adaptive rule, voxelisation, steps, marching cubes."""

import numpy as np
import pytest
import torch

from mpgym.errors import MpgymError
from neural3d.implicit.voxel_gan import (
    PRESETS,
    VoxelGAN,
    VoxelGANConfig,
    check_voxels,
    discriminator_accuracy,
    load_gan,
    save_gan,
    should_update_discriminator,
    train_voxel_gan,
    voxel_centers,
    voxel_iou,
    voxelize_collection,
    voxelize_mesh,
    voxelize_points,
    voxels_to_mesh,
)

TINY = VoxelGANConfig(latent=16, width=1 / 32, batch_size=4)  # 16-8-4-2 channels


def sphere_grid(radius=0.35, res=32):
    return (np.linalg.norm(voxel_centers(res), axis=1) < radius).reshape(res, res, res)


def test_generator_and_discriminator_shapes_and_ranges():
    gan = VoxelGAN(TINY)
    assert PRESETS["paper"].channels == (512, 256, 128, 64)
    assert PRESETS["cpu"].channels == (64, 32, 16, 8)
    g = torch.Generator().manual_seed(0)
    x = gan.sample(3, g)
    assert x.shape == (3, 32, 32, 32)
    assert float(x.min()) >= 0 and float(x.max()) <= 1
    logits = gan.discriminator(x)
    assert logits.shape == (3,) and torch.isfinite(logits).all()
    # the paper's generator at full width, one sample: shape only
    full = VoxelGAN(VoxelGANConfig(latent=200))
    assert full.sample(1).shape == (1, 32, 32, 32)


def test_adaptive_rule_and_accuracy():
    assert should_update_discriminator(0.8) and should_update_discriminator(0.2)
    assert not should_update_discriminator(0.81)
    assert not should_update_discriminator(0.6, threshold=0.5)
    acc = discriminator_accuracy(torch.tensor([1.0, -1.0]), torch.tensor([-2.0, -3.0]))
    assert acc == 0.75


def test_voxelize_sphere_matches_analytic_occupancy():
    rng = np.random.default_rng(0)
    r = 0.35
    truth = sphere_grid(r)
    # samples like the collection's: uniform in the padded cube plus near-surface points
    uni = rng.uniform(-0.55, 0.55, (50_000, 3))
    d = rng.normal(size=(50_000, 3))
    near = d / np.linalg.norm(d, axis=1, keepdims=True) * r + rng.normal(0, 0.02, (50_000, 1))
    pts = np.concatenate([uni, near])
    grid = voxelize_points(pts, np.linalg.norm(pts, axis=1) < r)
    assert grid.shape == (32, 32, 32) and grid.dtype == bool
    assert voxel_iou(grid, truth) > 0.9
    import trimesh

    mesh_grid = voxelize_mesh(trimesh.creation.icosphere(4, r))
    assert voxel_iou(mesh_grid, truth) > 0.9


def test_marching_cubes_of_a_grid_is_a_closed_mesh():
    mesh = voxels_to_mesh(sphere_grid(0.3))
    assert mesh.is_watertight and mesh.volume > 0
    assert abs(mesh.volume - 4 / 3 * np.pi * 0.3**3) / (4 / 3 * np.pi * 0.3**3) < 0.15
    # a shape touching the grid's border is closed by the padding
    full = voxels_to_mesh(np.ones((32, 32, 32), bool))
    assert full.is_watertight
    assert np.allclose(full.bounds, [[-0.5, -0.5, -0.5], [0.5, 0.5, 0.5]], atol=1 / 32)
    with pytest.raises(MpgymError, match="no voxel"):
        voxels_to_mesh(np.zeros((32, 32, 32)))
    with pytest.raises(MpgymError, match="shape"):
        voxels_to_mesh(np.zeros((4, 4)))
    # a generated grid meshes too (an untrained generator is ~0.5 everywhere; shift it)
    gan = VoxelGAN(TINY)
    grid = gan.sample(1, torch.Generator().manual_seed(0))[0]
    assert voxels_to_mesh(grid, level=float(grid.median())).faces.shape[1] == 3


def test_a_few_gan_steps_change_both_networks(tmp_path):
    rng = np.random.default_rng(0)
    radii = rng.uniform(0.2, 0.4, 12)
    data = np.stack([sphere_grid(r) for r in radii])
    before = {k: v.clone() for k, v in VoxelGAN(TINY).state_dict().items()}
    gan, result = train_voxel_gan(data, TINY, steps=4, eval_every=2, progress=False)
    assert result.steps == 4 and len(result.history) == 2
    after = gan.state_dict()
    changed = {k.split(".")[0] for k in before if not torch.equal(before[k], after[k])}
    assert changed == {"generator", "discriminator"}
    assert gan.d_updates >= 1
    back = load_gan(save_gan(gan, tmp_path / "gan.safetensors"))
    g1, g2 = torch.Generator().manual_seed(1), torch.Generator().manual_seed(1)
    torch.testing.assert_close(gan.eval().sample(2, g1), back.sample(2, g2))


def test_adaptive_rule_skips_discriminator_updates():
    gan = VoxelGAN(VoxelGANConfig(latent=16, width=1 / 32, batch_size=4, d_threshold=1e-9))
    opts = gan.make_optimizers(0.0)
    d_before = {k: v.clone() for k, v in gan.discriminator.state_dict().items()}
    x = torch.from_numpy(np.stack([sphere_grid(0.3)] * 4))
    out = gan.train_step(x, None, opts)
    assert out["d_updated"] == 0.0 and gan.d_updates == 0
    d_params = dict(gan.discriminator.named_parameters())
    for k, v in d_params.items():
        assert torch.equal(v, d_before[k])  # no optimiser step on D (BN stats may move)


def test_bad_input_is_refused():
    with pytest.raises(MpgymError, match="shape"):
        check_voxels(np.zeros((2, 16, 16, 16)))
    with pytest.raises(MpgymError, match=r"\[0, 1\]"):
        check_voxels(np.full((1, 32, 32, 32), 2.0))
    with pytest.raises(MpgymError, match="width"):
        VoxelGAN(VoxelGANConfig(width=0.0))
    with pytest.raises(MpgymError, match="match"):
        voxelize_points(np.zeros((5, 3)), np.zeros(4, bool))


def test_voxelize_collection_caches(tmp_path):
    from neural3d.data.collections import CollectionConfig, prepare_collection

    cfg = CollectionConfig(
        n_surface=500, n_sdf=4000, n_occupancy=4000, procedural_shapes=6, procedural_resolution=32
    )
    coll = prepare_collection("procedural", cfg, cache_dir=tmp_path, progress_bar=False)
    vox = voxelize_collection(coll, "train", progress_bar=False)
    assert vox.shape == (len(coll.split("train")), 32, 32, 32) and vox.dtype == bool
    assert vox.reshape(len(vox), -1).any(1).all()
    again = voxelize_collection(coll, "train", progress_bar=False)
    assert np.array_equal(vox, again)
    assert len(list(coll.root.glob("voxels-train-r32-*.npz"))) == 1


def test_voxel_cache_reader_checks_the_header_before_reading(tmp_path):
    import io

    from neural3d.implicit.voxel_gan import _read_bits

    good = tmp_path / "v.npz"
    buf = io.BytesIO()
    np.savez_compressed(buf, bits=np.packbits(np.ones(100, bool)))
    good.write_bytes(buf.getvalue())
    assert _read_bits(good, 13).tolist() == [255] * 12 + [240]
    assert _read_bits(good, 14) is None  # another split's size: rebuilt, never reshaped
    wrong = tmp_path / "w.npz"
    buf = io.BytesIO()
    np.savez_compressed(buf, bits=np.zeros(13, np.float64))
    wrong.write_bytes(buf.getvalue())
    assert _read_bits(wrong, 13) is None
    junk = tmp_path / "j.npz"
    junk.write_bytes(b"not a zip")
    assert _read_bits(junk, 13) is None
