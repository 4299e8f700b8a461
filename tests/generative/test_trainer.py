import math

import pytest
import torch
from torch import nn

from generative import load_model
from generative.autoregressive import NADE, NADEConfig
from generative.trainer import EMA, TrainConfig, train
from mpgym import load_checkpoint
from mpgym.errors import MpgymError


class Diverging(nn.Module):
    """A model whose loss is finite for ``good`` steps, then NaN."""

    def __init__(self, good: int):
        super().__init__()
        self.w = nn.Parameter(torch.ones(1))
        self.calls, self.good = 0, good

    def loss(self, x):
        if self.training:
            self.calls += 1
        bad = self.training and self.calls > self.good
        return (self.w - 2) ** 2 + (torch.tensor(float("nan")) if bad else 0.0)


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tmp_run):
    model = Diverging(good=25)
    res = train(
        model,
        torch.zeros(10, 1),
        torch.zeros(4, 1),
        TrainConfig(steps=100, eval_every=10, lr=0.01, progress=False),
        run=tmp_run,
        kind="diverging",
    )
    assert res.stopped == "nan" and res.steps == 25 and res.best_step == 20
    ckpt = load_checkpoint(tmp_run.file("checkpoint.safetensors"))
    assert ckpt.meta["step"] == 20 and torch.isfinite(ckpt.state_dict["w"]).all()
    assert torch.allclose(model.w, ckpt.state_dict["w"])


def test_divergence_before_any_validation_is_an_error():
    with pytest.raises(MpgymError, match="diverged"):
        train(
            Diverging(good=0),
            torch.zeros(10, 1),
            torch.zeros(4, 1),
            TrainConfig(steps=50, eval_every=10, progress=False),
        )


def test_ema_update_formula():
    m = nn.Linear(2, 1)
    ema = EMA(m, 0.9)
    old = m.weight.detach().clone()
    with torch.no_grad():
        m.weight.add_(1.0)
    ema.update(m)
    assert torch.allclose(ema.shadow["weight"], 0.9 * old + 0.1 * (old + 1.0))


def test_ema_copies_buffers_instead_of_averaging_them():
    # MADE's current connectivity mask is a 0/1 buffer: an average of masks would leak the future
    from generative.autoregressive import MADE, MADEConfig

    m = MADE(MADEConfig(dim=4, levels=3, hidden=(8,), num_masks=2, order="random", dropout=0.0))
    ema = EMA(m, 0.9)
    m.set_mask(1)
    ema.update(m)
    for i in range(len(m.layers)):
        assert torch.equal(ema.shadow[f"layers.{i}.mask"], m.layers[i].mask)
    assert int(ema.shadow["mask_index"]) == 1


def test_training_writes_metrics_checkpoint_and_reloads(tmp_run):
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 3, (200, 64), generator=g) * 8
    cfg = NADEConfig(hidden=8)
    model = NADE(cfg)
    before = float(model.loss(x))
    res = train(
        model,
        x,
        x[:50],
        TrainConfig(steps=60, eval_every=20, lr=1e-2, ema=0.9, progress=False),
        run=tmp_run,
        kind="nade",
        model_config=cfg,
    )
    assert [r["step"] for r in res.history] == [20, 40, 60]
    assert res.best_val < before
    assert tmp_run.metrics.column("val") == pytest.approx([r["val"] for r in res.history])
    name, loaded = load_model(tmp_run.path)
    assert name == "nade" and torch.allclose(loaded.log_prob(x[:5]), model.log_prob(x[:5]))
    assert math.isfinite(res.seconds)


def test_checkpoint_of_another_model_is_a_clear_error(tmp_run):
    cfg = NADEConfig(hidden=8)
    train(
        NADE(cfg),
        torch.zeros(8, 64, dtype=torch.long),
        torch.zeros(4, 64, dtype=torch.long),
        TrainConfig(steps=2, eval_every=1, progress=False),
        run=tmp_run,
        kind="nade",
        model_config=cfg,
    )
    with pytest.raises(MpgymError, match="expected 'made'"):
        load_model(tmp_run.path, expected="made")
