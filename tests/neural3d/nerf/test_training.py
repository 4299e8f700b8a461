import numpy as np
import pytest
import torch

from mpgym import RunDir
from mpgym.errors import MpgymError
from neural3d.data.multiview import RenderDatasetConfig, load_split, render_dataset
from neural3d.nerf.presets import preset


@pytest.fixture(scope="module")
def ball_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("ball")
    render_dataset(RenderDatasetConfig(source="ball", out=root, views=24, val_views=0,
                                       test_views=2, resolution=32))
    return load_split(root, "train"), load_split(root, "test")


def test_tiny_scene_trains_above_20db(ball_data, tmp_path):
    from neural3d.nerf.io import load_density_field, load_nerf
    from neural3d.nerf.trainer import NerfTrainer

    train, test = ball_data
    cfg = preset("tiny", steps=200, max_seconds=1e9, eval_every_seconds=1e9, batch_rays=256,
                 num_samples=48)
    run = RunDir(tmp_path / "run")
    trainer = NerfTrainer(cfg, train, test, run=run)
    result = trainer.train(progress_bar=False)
    assert result.psnr > 20.0, result.psnr
    assert result.steps == 200 and 0 < trainer.grid.occupancy_fraction < 0.6
    # the checkpoint reloads to the same renders; its density field is dense inside the ball
    field, cfg2, grid = load_nerf(run.path)
    assert cfg2 == cfg and torch.equal(grid.binary, trainer.grid.binary)
    a = trainer.render_view(test.c2w[0])["rgb"]
    from neural3d.nerf.renderer import render_image

    b = render_image(field, torch.as_tensor(test.c2w[0]), test.intrinsics, sampler="occupancy",
                     grid=grid, num_samples=cfg.num_samples)["rgb"]
    torch.testing.assert_close(a, b)
    fn, bounds, level = load_density_field(run.path)
    # the ball's top (radius 0.7) is denser than the free space above it
    shell = fn(torch.tensor([[0.0, 0.0, z] for z in np.linspace(0.55, 0.75, 21)]))
    outside = fn(torch.tensor([[0.0, 0.0, 1.2], [0.0, 0.0, 1.4]]))
    assert shell.shape == (21,) and shell.max() > 2 * outside.max() and level > 0
    assert bounds == ((-1.5, -1.5, -1.5), (1.5, 1.5, 1.5))


def test_hierarchical_sampler_runs_a_step(ball_data):
    from neural3d.nerf.trainer import NerfTrainer

    train, test = ball_data
    cfg = preset("vanilla", width=32, depth=4, num_samples=8, num_fine=8, batch_rays=64)
    t = NerfTrainer(cfg, train, test)
    losses = [t.step() for _ in range(3)]
    assert all(np.isfinite(losses)) and t.grid is None


def test_scene_box_excluding_cameras_is_rejected(ball_data):
    from neural3d.nerf.trainer import NerfTrainer

    train, test = ball_data
    train.c2w = train.c2w.copy()
    train.c2w[:, :3, 0] *= -1  # every camera turned around: looking away from the scene
    train.c2w[:, :3, 2] *= -1
    with pytest.raises(MpgymError, match="seen by none"):
        NerfTrainer(preset("tiny"), train, test)
