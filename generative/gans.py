"""GANs: MLP and DCGAN pairs, minimax / non-saturating / WGAN-GP losses, conditional GAN.

The discriminator takes ``k`` steps per generator step; WGAN-GP adds its gradient penalty.

Digits are shown to the discriminator dequantised and scaled to [-1, 1]:
``2 (x + u) / 17 - 1``; generated images are quantised back to the 17 levels. The losses are
pure functions of discriminator logits so tests can check them against their formulas.

References:
    Goodfellow et al. (2014), arXiv:1406.2661 (minimax and non-saturating losses);
    Radford et al. (2016) DCGAN, arXiv:1511.06434; Gulrajani et al. (2017) WGAN-GP,
    arXiv:1704.00028 (lambda = 10, Adam(1e-4, 0, 0.9), 5 critic steps);
    Mirza & Osindero (2014) cGAN.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from generative.data import (
    DIM,
    LEVELS,
    SIDE,
    check_images,
    dequantize,
    label_condition,
    quantize,
)


# ---------------------------------------------------------------------------- losses
def d_loss_minimax(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """``-E[log D(x)] - E[log(1 - D(G(z)))]`` with ``D = sigmoid(logits)``."""
    return F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean()


def g_loss_minimax(fake_logits: torch.Tensor) -> torch.Tensor:
    """``E[log(1 - D(G(z)))]`` (saturates when D wins): ``-softplus(logits)``."""
    return -F.softplus(fake_logits).mean()


def g_loss_nonsaturating(fake_logits: torch.Tensor) -> torch.Tensor:
    """``-E[log D(G(z))]`` = ``softplus(-logits)``."""
    return F.softplus(-fake_logits).mean()


def wgan_d_loss(real_scores: torch.Tensor, fake_scores: torch.Tensor) -> torch.Tensor:
    """Critic loss ``E[f(G(z))] - E[f(x)]`` (the penalty is added separately)."""
    return fake_scores.mean() - real_scores.mean()


def wgan_g_loss(fake_scores: torch.Tensor) -> torch.Tensor:
    """Generator loss ``-E[f(G(z))]``."""
    return -fake_scores.mean()


def gradient_penalty(
    critic,
    real: torch.Tensor,
    fake: torch.Tensor,
    eps: torch.Tensor,
    cond: torch.Tensor | None = None,
) -> torch.Tensor:
    """``E[(||grad f(x_hat)||_2 - 1)^2]`` at ``x_hat = eps x + (1 - eps) G(z)`` (WGAN-GP eq. 3).

    Args:
        critic: maps ``(x, cond)`` to scores ``[n]``.
        real: ``[n, ...]``.
        fake: ``[n, ...]``.
        eps: ``[n]`` mixing weights in [0, 1].
        cond: optional conditioning passed to the critic.
    """
    e = eps.view(-1, *([1] * (real.dim() - 1)))
    x_hat = (e * real + (1 - e) * fake.detach()).requires_grad_(True)
    (grad,) = torch.autograd.grad(critic(x_hat, cond).sum(), x_hat, create_graph=True)
    return (grad.flatten(1).norm(dim=1) - 1).pow(2).mean()


# ---------------------------------------------------------------------------- networks
class MLPGenerator(nn.Module):
    """``z [n, latent] (+ label) -> x [n, dim]``."""

    def __init__(self, latent: int, dim: int, hidden: int, cond: int, out_act: bool):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(latent + cond, hidden),
            nn.LeakyReLU(0.2),
            nn.Linear(hidden, hidden),
            nn.LeakyReLU(0.2),
            nn.Linear(hidden, dim),
            nn.Tanh() if out_act else nn.Identity(),
        )

    def forward(self, z: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        """``[n, dim]``."""
        return self.net(z if cond is None else torch.cat([z, cond], -1))


class MLPDiscriminator(nn.Module):
    """``x [n, dim] (+ label) -> logits [n]``."""

    def __init__(self, dim: int, hidden: int, cond: int):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(dim + cond, hidden),
            nn.LeakyReLU(0.2),
            nn.Linear(hidden, hidden),
            nn.LeakyReLU(0.2),
            nn.Linear(hidden, 1),
        )

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        """``[n]``."""
        x = x.flatten(1)
        return self.net(x if cond is None else torch.cat([x, cond], -1)).squeeze(-1)


class DCGenerator(nn.Module):
    """DCGAN-style: linear to ``[2h, 2, 2]``, two stride-2 transposed convs to 8x8, tanh."""

    def __init__(self, latent: int, hidden: int, cond: int):
        super().__init__()
        self.h = hidden
        self.fc = nn.Sequential(
            nn.Linear(latent + cond, 2 * hidden * 4), nn.BatchNorm1d(2 * hidden * 4), nn.ReLU()
        )
        self.net = nn.Sequential(
            nn.ConvTranspose2d(2 * hidden, hidden, 4, 2, 1),
            nn.BatchNorm2d(hidden),
            nn.ReLU(),
            nn.ConvTranspose2d(hidden, hidden, 4, 2, 1),
            nn.BatchNorm2d(hidden),
            nn.ReLU(),
            nn.Conv2d(hidden, 1, 3, padding=1),
            nn.Tanh(),
        )

    def forward(self, z: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        """``[n, 64]``."""
        h = self.fc(z if cond is None else torch.cat([z, cond], -1)).view(-1, 2 * self.h, 2, 2)
        return self.net(h).flatten(1)


class DCDiscriminator(nn.Module):
    """DCGAN-style: stride-2 convs with LeakyReLU (no batch norm, so WGAN-GP stays valid)."""

    def __init__(self, hidden: int, cond: int):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(1 + cond, hidden, 4, 2, 1),
            nn.LeakyReLU(0.2),
            nn.Conv2d(hidden, 2 * hidden, 4, 2, 1),
            nn.LeakyReLU(0.2),
            nn.Flatten(),
            nn.Linear(2 * hidden * 4, 1),
        )

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        """``[n]``."""
        img = x.view(-1, 1, SIDE, SIDE)
        if cond is not None:
            img = torch.cat([img, cond[:, :, None, None].expand(-1, -1, SIDE, SIDE)], 1)
        return self.net(img).squeeze(-1)


# ---------------------------------------------------------------------------- model
@dataclass(frozen=True)
class GANConfig:
    """GAN on digits (or 2D points with ``arch="mlp", dim=2``)."""

    arch: Literal["mlp", "dcgan"] = "dcgan"
    """Network pair."""
    loss: Literal["minimax", "nonsaturating", "wgan-gp"] = "nonsaturating"
    """Objective."""
    latent: int = 32
    """Noise dimension."""
    hidden: int = 64
    """Width (MLP units, or DCGAN base channels)."""
    d_steps: int = 1
    """Discriminator steps per generator step (k; WGAN-GP uses 5)."""
    gp_weight: float = 10.0
    """lambda of the gradient penalty."""
    num_classes: int = 0
    """Classes of the conditional GAN (0: unconditional)."""
    dim: int = DIM
    """Data dimension (64 digits, 2 for points)."""
    levels: int = LEVELS
    """Levels of the digits (samples are quantised to them)."""


class GAN(nn.Module):
    """Generator + discriminator with :meth:`train_step` for the shared trainer."""

    def __init__(self, config: GANConfig = GANConfig()):
        super().__init__()
        self.config, self.num_classes, self.levels = config, config.num_classes, config.levels
        c, h = config.num_classes, config.hidden
        images = config.dim == DIM
        if config.arch == "dcgan":
            self.generator: nn.Module = DCGenerator(config.latent, h, c)
            self.discriminator: nn.Module = DCDiscriminator(h, c)
        else:
            self.generator = MLPGenerator(config.latent, config.dim, 4 * h, c, out_act=images)
            self.discriminator = MLPDiscriminator(config.dim, 4 * h, c)
        self.images = images

    def _cond(self, y: torch.Tensor | None, n: int) -> torch.Tensor | None:
        return label_condition(y, self.num_classes, n, model="GAN")

    def to_data_space(
        self, x: torch.Tensor, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Digits ``[n, 64]`` long -> dequantised floats in [-1, 1]; points unchanged."""
        if not self.images:
            return x.float()
        return 2 * dequantize(check_images(x, self.levels), generator, self.levels) - 1

    def make_optimizers(self, lr: float) -> list[torch.optim.Optimizer]:
        """Adam for G and D; betas (0.5, 0.999) (DCGAN) or (0, 0.9) (WGAN-GP)."""
        betas = (0.0, 0.9) if self.config.loss == "wgan-gp" else (0.5, 0.999)
        return [
            torch.optim.Adam(self.generator.parameters(), lr=lr, betas=betas),
            torch.optim.Adam(self.discriminator.parameters(), lr=lr, betas=betas),
        ]

    def _d_objective(
        self, real: torch.Tensor, fake: torch.Tensor, cond: torch.Tensor | None
    ) -> torch.Tensor:
        r, f = self.discriminator(real, cond), self.discriminator(fake.detach(), cond)
        if self.config.loss == "wgan-gp":
            eps = torch.rand(real.shape[0])
            return wgan_d_loss(r, f) + self.config.gp_weight * gradient_penalty(
                self.discriminator, real, fake, eps, cond
            )
        return d_loss_minimax(r, f)

    def _g_objective(self, fake: torch.Tensor, cond: torch.Tensor | None) -> torch.Tensor:
        f = self.discriminator(fake, cond)
        return {
            "minimax": g_loss_minimax,
            "nonsaturating": g_loss_nonsaturating,
            "wgan-gp": wgan_g_loss,
        }[self.config.loss](f)

    def train_step(
        self, x: torch.Tensor, y: torch.Tensor | None, optimizers: list[torch.optim.Optimizer]
    ) -> dict[str, float]:
        """``k`` discriminator updates, then one generator update; returns the losses."""
        opt_g, opt_d = optimizers
        real = self.to_data_space(x)
        n = real.shape[0]
        cond = self._cond(y, n)
        for _ in range(self.config.d_steps):
            fake = self.generator(torch.randn(n, self.config.latent), cond)
            d_loss = self._d_objective(real, fake, cond)
            opt_d.zero_grad(set_to_none=True)
            d_loss.backward()
            opt_d.step()
        g_loss = self._g_objective(self.generator(torch.randn(n, self.config.latent), cond), cond)
        opt_g.zero_grad(set_to_none=True)
        g_loss.backward()
        opt_g.step()
        return {"loss": float(d_loss.detach()), "g_loss": float(g_loss.detach())}

    def loss(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """Discriminator objective on ``x`` vs fresh fakes (a diagnostic: no likelihood)."""
        real = self.to_data_space(x)
        cond = self._cond(y, real.shape[0])
        with torch.enable_grad():
            return self._d_objective(
                real, self.generator(torch.randn(real.shape[0], self.config.latent), cond), cond
            ).detach()

    @torch.no_grad()
    def sample(
        self, n: int, *, generator: torch.Generator | None = None, y: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Digits ``[n, 64]`` long (quantised) or points ``[n, dim]``."""
        was = self.generator.training
        self.generator.eval()
        out = self.generator(
            torch.randn(n, self.config.latent, generator=generator), self._cond(y, n)
        )
        self.generator.train(was)
        if not self.images:
            return out
        return quantize((out + 1) / 2, self.levels)
