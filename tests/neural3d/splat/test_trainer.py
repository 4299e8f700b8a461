"""SplatTrainer: the schedule, the loss, fitting a tiny scene, exact resume, NaN and Ctrl-C."""

import math
import signal

import numpy as np
import pytest
import torch

from mpgym import load_checkpoint
from mpgym.errors import MpgymError
from neural3d.cameras import Intrinsics, sphere_poses
from neural3d.data.multiview import NERF_SYNTHETIC_ANGLE, MultiviewData
from neural3d.image_metrics import ssim, ssim_tensor
from neural3d.splat.model import GaussianModel
from neural3d.splat.presets import preset
from neural3d.splat.render import render
from neural3d.splat.trainer import (
    SplatTrainer,
    expon_lr,
    load_splat,
)

BACKEND = "torch"
"""The reference rasterizer: deterministic, no compile time."""
RES = 32


def _target_model() -> GaussianModel:
    """24 opaque, coloured, anisotropic Gaussians in [-0.6, 0.6]^3 (SH degree 0 colours)."""
    g = torch.Generator().manual_seed(1)
    n = 24
    return GaussianModel({
        "means": (torch.rand(n, 3, generator=g) - 0.5) * 1.2,
        "log_scales": torch.log(0.08 + 0.12 * torch.rand(n, 3, generator=g)),
        "quats": torch.randn(n, 4, generator=g),
        "opacity_logits": torch.full((n,), 2.0),
        "sh_dc": (torch.rand(n, 1, 3, generator=g) - 0.5) / 0.2821,
        "sh_rest": torch.zeros(n, 15, 3),
    }, max_sh_degree=3)


def _views(model, n, seed) -> MultiviewData:
    """RGBA views of ``model`` (straight colour, alpha = coverage) from ``n`` cameras."""
    intr = Intrinsics.from_fov(NERF_SYNTHETIC_ANGLE, RES)
    poses = sphere_poses(n, 3.0, rng=np.random.default_rng(seed), upper=False).astype(np.float32)
    images = []
    with torch.no_grad():
        for c2w in poses:
            out = render(model, torch.as_tensor(c2w), intr, background=torch.zeros(3),
                         backend=BACKEND)
            a = out.alpha[..., None]
            rgb = torch.where(a > 0, out.image / a.clamp_min(1e-8), 0.0)
            images.append(torch.cat([rgb.clamp(0, 1), a], -1).numpy())
    return MultiviewData(np.stack(images).astype(np.float32), poses, intr)


@pytest.fixture(scope="module")
def scene():
    target = _target_model()
    return _views(target, 16, seed=0), _views(target, 2, seed=1)


def _cfg(**kw):
    base = {"iterations": 40, "position_lr_max_steps": 40, "init_points": 200, "init_box": 0.7,
            "densify_from": 10, "densify_until": 30, "densify_every": 10,
            "opacity_reset_every": 25, "sh_degree_every": 15, "backend": BACKEND,
            "log_every": 5, "checkpoint_every": 0, "threads": 1}
    return preset("tiny", **{**base, **kw})


def test_expon_lr_is_log_linear():
    assert expon_lr(0, 1.6e-4, 1.6e-6, 30_000) == pytest.approx(1.6e-4)
    assert expon_lr(15_000, 1.6e-4, 1.6e-6, 30_000) == pytest.approx(1.6e-5)
    assert expon_lr(60_000, 1.6e-4, 1.6e-6, 30_000) == pytest.approx(1.6e-6)
    # warm-up: delay_mult at step 0, full rate from delay_steps on
    assert expon_lr(0, 1.0, 1.0, 10, delay_steps=4, delay_mult=0.01) == pytest.approx(0.01)
    assert expon_lr(2, 1.0, 1.0, 10, delay_steps=4, delay_mult=0.01) == pytest.approx(
        0.01 + 0.99 * math.sin(math.pi / 4))


def test_ssim_loss_matches_metric_and_is_differentiable():
    g = torch.Generator().manual_seed(0)
    a, b = torch.rand(20, 24, 3, generator=g), torch.rand(20, 24, 3, generator=g)
    b = 0.5 * a + 0.5 * b
    assert float(ssim_tensor(a, b)) == pytest.approx(ssim(a, b), abs=1e-6)
    assert float(ssim_tensor(a, a, padding="same")) == pytest.approx(1.0, abs=1e-6)
    x = a.clone().requires_grad_(True)
    ssim_tensor(x, b, padding="same").backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_fits_a_tiny_scene_from_random_init(scene, tmp_path):
    train, val = scene
    cfg = _cfg(iterations=300, position_lr_max_steps=300, densify_from=50, densify_until=200,
               densify_every=50, opacity_reset_every=1000, sh_degree_every=100, log_every=50)
    trainer = SplatTrainer(cfg, train, val, run_dir=tmp_path / "run")
    before = trainer.evaluate().mean_psnr
    result = trainer.train(progress_bar=False)
    assert result.steps == 300 and trainer.model.sh_degree == 3
    assert result.psnr > 24.0 and result.psnr > before + 8, (before, result.psnr)
    assert result.num_gaussians != 200  # density control acted
    rows = (tmp_path / "run" / "metrics.csv").read_text().splitlines()
    assert rows[0].startswith("step,seconds,loss,l1,num_gaussians") and "val_psnr" in rows[0]
    # the checkpoint reloads to the same Gaussians and renders
    model, cfg2 = load_splat(tmp_path / "run")
    assert cfg2 == cfg and model.sh_degree == 3
    for k, v in trainer.model.params.items():
        assert torch.equal(model.params[k], v.detach()), k
    ev = trainer.evaluate(val)
    assert len(ev.psnr) == len(ev.ssim) == 2 and ev.mean_psnr == pytest.approx(result.psnr)


@pytest.mark.parametrize("backend", ["torch", "numba"])
def test_resume_continues_bit_for_bit(scene, tmp_path, backend):
    train, _ = scene
    # random backgrounds: the generator state matters; densification at 20 and 30, opacity
    # reset at 25, so the run stops with half-accumulated density statistics
    kw = {"background": "random", "densify_until": 35, "backend": backend}
    full = SplatTrainer(_cfg(**kw), train)
    full.train(progress_bar=False)
    half = SplatTrainer(_cfg(iterations=25, **kw), train, run_dir=tmp_path / "half")
    half.train(progress_bar=False)
    resumed = SplatTrainer.resume(tmp_path / "half", train, iterations=40)
    assert resumed.step_count == 25 and resumed.config == full.config
    resumed.train(progress_bar=False)
    assert resumed.model.num_gaussians == full.model.num_gaussians
    for k, v in full.model.params.items():
        assert torch.equal(resumed.model.params[k], v), k
    for g, h in zip(full.optimizer.param_groups, resumed.optimizer.param_groups, strict=True):
        a, b = full.optimizer.state[g["params"][0]], resumed.optimizer.state[h["params"][0]]
        assert torch.equal(a["exp_avg_sq"], b["exp_avg_sq"]) and float(a["step"]) == float(
            b["step"])


def test_views_are_shuffled_per_epoch_or_drawn_uniformly(scene):
    train, _ = scene
    n = len(train)
    shuffled = SplatTrainer(_cfg(), train)
    assert shuffled.config.view_order == "shuffle"  # 3DGS's viewpoint stack is the default
    views = [shuffled._next_view() for _ in range(3 * n)]
    for e in range(3):  # every view once per epoch
        assert sorted(views[e * n:(e + 1) * n]) == list(range(n))
    assert views[:n] != views[n:2 * n]  # in a new order each epoch
    uniform = SplatTrainer(_cfg(view_order="uniform"), train)
    g = torch.Generator()
    g.set_state(uniform.gen.get_state())
    drawn = [uniform._next_view() for _ in range(3 * n)]
    assert drawn == [int(torch.randint(n, (1,), generator=g)) for _ in range(3 * n)]
    assert sorted(drawn[:n]) != list(range(n))  # independent draws repeat views


def test_a_resumed_epoch_continues_its_order_or_restarts_on_other_views(scene):
    train, _ = scene
    a = SplatTrainer(_cfg(), train)
    first = [a._next_view() for _ in range(5)]
    sd = a.state_dict()
    rest = [a._next_view() for _ in range(len(train) - 5)]
    assert sorted(first + rest) == list(range(len(train)))
    b = SplatTrainer(_cfg(), train)
    b.load_state_dict(sd)
    assert [b._next_view() for _ in range(len(train) - 5)] == rest  # the epoch goes on
    fewer = MultiviewData(train.images[:6], train.c2w[:6], train.intrinsics)
    c = SplatTrainer(_cfg(), fewer)
    c.load_state_dict(sd)  # the saved order is of 16 views: a new epoch of the 6
    assert sorted(c._next_view() for _ in range(6)) == list(range(6))


def test_configs_from_before_the_view_order_keep_uniform_draws():
    from dataclasses import asdict

    from neural3d.splat.presets import config_from_dict

    old = asdict(preset("tiny"))
    del old["view_order"]
    assert config_from_dict(old).view_order == "uniform"
    assert config_from_dict(asdict(preset("tiny"))).view_order == "shuffle"
    assert preset("cpu").view_order == "shuffle"
    assert preset("cpu").rasterize_mode == "antialiased"  # a run of the preset renders so too
    assert preset("cpu").opacity_reset == "effective"
    with pytest.raises(MpgymError, match="view_order"):
        config_from_dict({**old, "view_order": "sequential"})


def test_the_rasterize_mode_trains_renders_and_round_trips(scene, tmp_path):
    """A run trained antialiased steps, evaluates and reloads in that mode; configs written
    before the option are classic; an unknown mode is refused."""
    from dataclasses import asdict

    from neural3d.splat.presets import config_from_dict

    train, val = scene
    cfg = _cfg(rasterize_mode="antialiased", iterations=5, backend="numba")
    trainer = SplatTrainer(cfg, train, val, run_dir=tmp_path / "run")
    trainer.train(progress_bar=False)
    pose, intr = val.c2w[0], val.camera(0)
    view = trainer.render_view(pose, intr).image
    with torch.no_grad():
        kw = {"background": torch.ones(3), "backend": "numba"}
        aa = render(trainer.model, torch.as_tensor(pose), intr, rasterize_mode="antialiased", **kw)
        classic = render(trainer.model, torch.as_tensor(pose), intr, **kw)
    torch.testing.assert_close(view, aa.image)
    assert float((view - classic.image).abs().max()) > 1e-3  # the mode makes a difference
    _, cfg2 = load_splat(tmp_path / "run")
    assert cfg2.rasterize_mode == "antialiased"
    old = asdict(preset("tiny"))
    del old["rasterize_mode"]
    assert config_from_dict(old).rasterize_mode == "classic"
    with pytest.raises(MpgymError, match="rasterize_mode"):
        config_from_dict({**old, "rasterize_mode": "mip"})
    del old["opacity_reset"]
    assert config_from_dict(old).opacity_reset == "raw"
    with pytest.raises(MpgymError, match="opacity_reset"):
        config_from_dict({**old, "opacity_reset": "peak"})


def test_antialiased_training_resets_the_peak_alpha(scene):
    """The trainer hands density control each view's antialiasing factors: the effective reset
    caps each opacity at 0.01 over the largest factor seen, so some stay above the raw 0.01."""
    train, _ = scene
    cfg = _cfg(rasterize_mode="antialiased", opacity_reset="effective", iterations=25,
               backend="numba")
    trainer = SplatTrainer(cfg, train)
    record = {}

    def before_reset(model, optimizer):
        record["factor"] = trainer.strategy.state["max_factor"].clone()
        record["before"] = model.opacities().detach().clone()
        reset(model, optimizer)
        record["opacity"] = model.opacities().detach().clone()

    reset, trainer.strategy.reset_opacity = trainer.strategy.reset_opacity, before_reset
    trainer.train(progress_bar=False)  # the reset at step 25
    factor, opacity = record["factor"], record["opacity"]
    seen = factor > 0
    assert seen.float().mean() > 0.5 and float(factor.max()) <= 1
    want = torch.minimum(record["before"], 0.01 / factor.clamp_min(1e-6))
    torch.testing.assert_close(opacity[seen], want[seen])
    assert float(opacity.max()) > 0.0101  # where the factor is below 1, above the raw 0.01


def test_nan_stops_training_and_keeps_the_last_good_checkpoint(scene, tmp_path):
    train, _ = scene
    run = tmp_path / "run"
    trainer = SplatTrainer(_cfg(checkpoint_every=5), train, run_dir=run)
    saved = {}

    def poison(t):
        if t.step_count == 5:
            saved["bytes"] = (run / "checkpoint.safetensors").read_bytes()
        if t.step_count == 7:
            with torch.no_grad():
                t.model.params["sh_dc"].fill_(float("nan"))

    with pytest.raises(MpgymError, match=r"diverged at step (8|9|10):.*\(step 5\)") as exc:
        trainer.train(progress_bar=False, callback=poison)
    assert "\n" not in str(exc.value)
    assert (run / "checkpoint.safetensors").read_bytes() == saved["bytes"]
    assert load_checkpoint(run).meta["steps"] == 5
    assert not list(run.glob(".*tmp"))  # nothing half-written
    with pytest.raises(MpgymError, match="NaN"):
        trainer.save()


def test_ctrl_c_saves_after_the_step_and_raises(scene, tmp_path):
    train, _ = scene
    trainer = SplatTrainer(_cfg(), train, run_dir=tmp_path / "run")
    handler = signal.getsignal(signal.SIGINT)

    def interrupt(t):
        if t.step_count == 3:
            signal.raise_signal(signal.SIGINT)

    with pytest.raises(KeyboardInterrupt):
        trainer.train(progress_bar=False, callback=interrupt)
    assert trainer.step_count == 3
    assert load_checkpoint(tmp_path / "run").meta["steps"] == 3
    assert signal.getsignal(signal.SIGINT) is handler


def test_damaged_checkpoint_is_refused(scene, tmp_path):
    from mpgym import save_checkpoint

    train, _ = scene
    trainer = SplatTrainer(_cfg(iterations=1), train)
    sd = trainer.state_dict()
    sd["model.quats"] = sd["model.quats"][:5]
    save_checkpoint(tmp_path / "c.safetensors", sd, kind="splat", config=trainer.config)
    with pytest.raises(MpgymError, match="c.safetensors.*quats"):
        load_splat(tmp_path / "c.safetensors")


def test_init_points_needs_a_point_cloud(scene):
    train, _ = scene
    with pytest.raises(MpgymError, match="point cloud"):
        SplatTrainer(_cfg(init="points"), train)


def test_kernels_are_warmed_off_the_clock_without_drawing_randomness(scene, monkeypatch):
    """train() renders and back-propagates a fixed tiny scene before its first timed step (a
    fresh install compiles the kernels there), drawing no random numbers and leaving the model
    as it was; a finished run does not warm up again."""
    import neural3d.splat.trainer as T

    train, _ = scene
    trainer = SplatTrainer(_cfg(iterations=2, rasterize_mode="antialiased", backend="numba"), train)
    seen = []
    real_render = T.render

    def spy(model, *a, **kw):
        out = real_render(model, *a, **kw)
        seen.append((model.num_gaussians, bool(out.visible.all()), kw["backend"],
                     kw["rasterize_mode"]))
        return out

    monkeypatch.setattr(T, "render", spy)
    before = {k: v.detach().clone() for k, v in trainer.model.params.items()}
    rng, gen = torch.get_rng_state(), trainer.gen.get_state()
    T.warm_up_kernels(trainer.model, trainer.config, trainer.device)
    assert seen == [(4, True, "numba", "antialiased")]
    assert torch.equal(torch.get_rng_state(), rng) and torch.equal(trainer.gen.get_state(), gen)
    assert all(torch.equal(v, before[k]) for k, v in trainer.model.params.items())
    assert all(p.grad is None for p in trainer.model.params.values())

    order = []
    monkeypatch.setattr(T, "warm_up_kernels", lambda *a: order.append("warm"))
    step = trainer._guarded_step
    monkeypatch.setattr(trainer, "_guarded_step", lambda: order.append("step") or step())
    trainer.train(progress_bar=False)
    assert order == ["warm", "step", "step"]
    trainer.train(progress_bar=False)  # already done: nothing to warm
    assert order == ["warm", "step", "step"]
