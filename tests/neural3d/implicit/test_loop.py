"""The shared optimisation loop and field-of-a-code of the implicit models (training.py)."""

import csv

import numpy as np
import pytest
import torch

from mpgym.errors import MpgymError
from neural3d.implicit.training import LoopRecord, code_field, optimize


def _quadratic(w: torch.nn.Parameter, bad_at: int | None = None):
    def step_loss(step):
        loss = ((w - 3.0) ** 2).sum()
        if step == bad_at:
            loss = loss * float("nan")
        return loss, {"w": float(w.detach())}

    return step_loss


def test_optimize_converges_logs_rows_and_saves_on_schedule(tmp_run):
    w = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([w], lr=0.1)
    saves, record = [], LoopRecord()
    rec = optimize(_quadratic(w), opt, 50, name="toy", run=tmp_run, log_every=10,
                   save=lambda: saves.append(len(record.losses)), progress_bar=False,
                   save_every=20, record=record)
    # gradient descent on (w - 3)^2 with lr 0.1: w_k = 3 (1 - 0.8^k)
    assert float(w.detach()) == pytest.approx(3 * (1 - 0.8**50), rel=1e-5)
    assert rec is record and len(rec.losses) == 50
    assert rec.losses[0] == 9.0 and rec.losses[-1] < 1e-8
    rows = list(csv.DictReader(open(tmp_run.path / "metrics.csv")))
    assert [int(r["step"]) for r in rows] == [0, 10, 20, 30, 40, 49]
    assert {"loss", "seconds", "cpu_seconds", "w"} <= set(rows[0])
    assert saves == [1, 21, 41]  # steps 0, 20, 40 (after their loss was recorded)


def test_optimize_logs_the_learning_rate_with_a_scheduler(tmp_run):
    w = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([w], lr=0.1)
    sched = torch.optim.lr_scheduler.StepLR(opt, 2, gamma=0.5)
    optimize(_quadratic(w), opt, 5, name="toy", run=tmp_run, log_every=2, save=lambda: None,
             progress_bar=False, scheduler=sched)
    rows = list(csv.DictReader(open(tmp_run.path / "metrics.csv")))
    assert [float(r["lr"]) for r in rows] == [0.1, 0.05, 0.025]


def test_optimize_refuses_a_non_finite_loss_with_the_step():
    w = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([w], lr=0.1)
    with pytest.raises(MpgymError, match="toy diverged at step 3 .*lower --lr"):
        optimize(_quadratic(w, bad_at=3), opt, 10, name="toy", run=None, log_every=1,
                 save=lambda: None, progress_bar=False)
    assert float(w.detach()) == pytest.approx(3 * (1 - 0.8**3))  # the bad step changed nothing


def test_code_field_numpy_and_tensor_in_out_and_negation():
    def decoder(x, z):  # [B, N, 3], [B, C] -> [B, N]: |x| - z_0
        return x.norm(dim=-1) - z[:, :1]

    code = torch.tensor([0.5, 9.0], requires_grad=True)
    f, g = code_field(decoder, code), code_field(decoder, code, negate=True)
    x = np.array([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0]], np.float64)
    y = f(x)
    assert isinstance(y, np.ndarray) and y.dtype == np.float32
    np.testing.assert_allclose(y, [-0.5, 0.5])
    yt = g(torch.from_numpy(x).float())
    assert isinstance(yt, torch.Tensor) and not yt.requires_grad
    torch.testing.assert_close(yt, torch.tensor([0.5, -0.5]))
