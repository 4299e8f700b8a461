"""NerfTrainer hooks: a per-step callback off the training clock, state_dict round trips."""

import types

import pytest
import torch

from neural3d.data.multiview import RenderDatasetConfig, load_split, render_dataset
from neural3d.nerf.presets import preset


@pytest.fixture(scope="module")
def ball_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("ball")
    render_dataset(RenderDatasetConfig(source="ball", out=root, views=12, val_views=0,
                                       test_views=1, resolution=16))
    return load_split(root, "train"), load_split(root, "test")


def _tiny(**kw):
    return preset("tiny", max_seconds=1e9, eval_every_seconds=1e9, batch_rays=64,
                  num_samples=16, **kw)


def test_callback_runs_after_every_step_off_the_clock(ball_data, monkeypatch):
    from neural3d.nerf import trainer as trainer_mod

    clock = {"now": 0.0}

    def perf_counter():  # each reading advances 1 s: a timed block lasts exactly 1 s
        clock["now"] += 1.0
        return clock["now"]

    monkeypatch.setattr(trainer_mod, "time", types.SimpleNamespace(perf_counter=perf_counter))
    seen = []

    def callback(t):
        seen.append((t.step_count, t.train_seconds))
        clock["now"] += 100.0  # a slow callback must not count as training time

    t = trainer_mod.NerfTrainer(_tiny(steps=5), *ball_data)
    result = t.train(progress_bar=False, callback=callback)
    # the first-grid update before step 1 is timed (1 s), then each step (1 s each)
    assert seen == [(k, 1.0 + k) for k in range(1, 6)]
    assert result.steps == 5 and result.seconds == 6.0


def test_train_without_callback_is_unchanged(ball_data):
    from neural3d.nerf.trainer import NerfTrainer

    a = NerfTrainer(_tiny(steps=4), *ball_data)
    b = NerfTrainer(_tiny(steps=4), *ball_data)
    a.train(progress_bar=False)
    b.train(progress_bar=False, callback=lambda t: None)
    for (k, v), (k2, v2) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert k == k2 and torch.equal(v, v2), k


@pytest.mark.parametrize("name", ["tiny", "vanilla"])
def test_load_state_dict_restores_a_snapshot(ball_data, name):
    from neural3d.nerf.trainer import NerfTrainer

    cfg = _tiny(steps=3) if name == "tiny" else preset(
        "vanilla", width=16, depth=2, num_samples=4, num_fine=4, batch_rays=16, steps=3,
        max_seconds=1e9, eval_every_seconds=1e9)
    t = NerfTrainer(cfg, *ball_data)
    for _ in range(2):
        t.step()
    snap = {k: v.detach().clone() for k, v in t.state_dict().items()}
    before = t.render_view(ball_data[1].c2w[0])["rgb"]
    for _ in range(3):
        t.step()
    assert not torch.equal(t.render_view(ball_data[1].c2w[0])["rgb"], before)
    t.load_state_dict(snap)
    torch.testing.assert_close(t.render_view(ball_data[1].c2w[0])["rgb"], before,
                               rtol=0, atol=0)
    assert all(torch.equal(v, snap[k]) for k, v in t.state_dict().items())
