"""Autoencoders: linear and deep AE, VAE, beta-VAE, conditional VAE, VQ-VAE.

The VAE has a Gaussian encoder and a Bernoulli, Gaussian or categorical decoder.

Digits enter as integer levels ``[n, 64]`` (values 0..16); the encoders see ``x / 16``.
The categorical decoder gives 17 logits per pixel, so ``log p(x | z)`` is a proper discrete
likelihood and the VAE's bounds are in the same units (nats per image) as the autoregressive
models'. The Gaussian decoder is for continuous data (2D densities, latents).

References:
    Kingma & Welling (2014) VAE, arXiv:1312.6114; Burda et al. (2016) IWAE, arXiv:1509.00519;
    Higgins et al. (2017) beta-VAE; Sohn et al. (2015) CVAE; van den Oord et al. (2017) VQ-VAE,
    arXiv:1711.00937; Baldi & Hornik (1989) linear AE spans the PCA subspace.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from generative.autoregressive import categorical_log_prob, sample_categorical
from generative.data import DIM, LEVELS, check_images, label_condition, to_unit
from mpgym.nn import diag_gaussian_log_prob, mlp


# ---------------------------------------------------------------------------- pure functions
def reparameterize(mu: torch.Tensor, logvar: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """``z = mu + exp(logvar / 2) * eps`` (Kingma & Welling 2014, eq. 10)."""
    return mu + torch.exp(0.5 * logvar) * eps


def kl_gaussians(
    mu1: torch.Tensor,
    logvar1: torch.Tensor,
    mu2: torch.Tensor | None = None,
    logvar2: torch.Tensor | None = None,
) -> torch.Tensor:
    """Closed-form ``KL(N(mu1, s1^2) || N(mu2, s2^2))`` summed over the last dim.

    ``0.5 sum(logvar2 - logvar1 + (s1^2 + (mu1 - mu2)^2) / s2^2 - 1)``; the prior defaults to
    ``N(0, I)``, giving ``0.5 sum(mu^2 + s^2 - 1 - log s^2)``. Example: ``mu1 = 1``, unit
    variances: ``KL = 0.5``.
    """
    mu2 = torch.zeros_like(mu1) if mu2 is None else mu2
    logvar2 = torch.zeros_like(logvar1) if logvar2 is None else logvar2
    return 0.5 * (
        logvar2 - logvar1 + (torch.exp(logvar1) + (mu1 - mu2) ** 2) * torch.exp(-logvar2) - 1
    ).sum(-1)


def vector_quantize(z: torch.Tensor, codebook: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Nearest codebook entries: ``z`` ``[..., d]``, ``codebook`` ``[K, d]`` -> ``(z_q, index)``."""
    d2 = (z.unsqueeze(-2) - codebook).pow(2).sum(-1)  # [..., K]
    idx = d2.argmin(-1)
    return codebook[idx], idx


# ---------------------------------------------------------------------------- plain autoencoders
@dataclass(frozen=True)
class AEConfig:
    """Autoencoder with squared-error reconstruction on ``x / 16``."""

    latent: int = 8
    """Code size."""
    hidden: tuple[int, ...] = ()
    """Hidden widths; empty gives the linear autoencoder (spans PCA's subspace)."""
    input_dim: int = DIM
    """Input size (64 for digits)."""


class Autoencoder(nn.Module):
    """``decode(encode(x)) ~ x`` under squared error; linear when ``hidden`` is empty."""

    def __init__(self, config: AEConfig = AEConfig()):
        super().__init__()
        self.config = config
        self.encoder = mlp(config.input_dim, config.hidden, config.latent)
        self.decoder = mlp(config.latent, tuple(reversed(config.hidden)), config.input_dim)

    def loss(self, x: torch.Tensor) -> torch.Tensor:
        """Squared error per example (summed over pixels); integer images are scaled by 1/16."""
        v = to_unit(x) if not x.is_floating_point() else x
        return (self.decoder(self.encoder(v)) - v).pow(2).sum(-1).mean()


# ---------------------------------------------------------------------------- VAE
@dataclass(frozen=True)
class VAEConfig:
    """VAE; defaults follow Tomczak's digits example (16-d latent, 256 hidden units)."""

    latent: int = 16
    """Latent dimension."""
    hidden: int = 256
    """Hidden units of the two-layer encoder and decoder MLPs."""
    decoder: Literal["categorical", "bernoulli", "gaussian"] = "categorical"
    """``p(x | z)``: 17-way categorical per pixel, Bernoulli (binary data) or Gaussian."""
    beta: float = 1.0
    """Weight of the KL term (beta-VAE; 1 is the ELBO)."""
    num_classes: int = 0
    """Classes of the conditional VAE (0: unconditional)."""
    input_dim: int = DIM
    """Data dimension (64 for digits, 2 for 2D densities)."""
    levels: int = LEVELS
    """Levels of the categorical decoder."""
    dropout: float = 0.0
    """Dropout in the decoder MLP (regularises with 1,000 training images)."""


@dataclass
class VAEOutput:
    """One pass of :meth:`VAE.elbo`, per example ``[n]``."""

    elbo: torch.Tensor
    reconstruction: torch.Tensor
    kl: torch.Tensor


class VAE(nn.Module):
    """Gaussian encoder ``q(z|x[,y])``, prior ``N(0, I)``, decoder ``p(x|z[,y])``."""

    def __init__(self, config: VAEConfig = VAEConfig()):
        super().__init__()
        self.config, self.num_classes, self.levels = config, config.num_classes, config.levels
        c, h, d = config.num_classes, config.hidden, config.input_dim
        out = {"categorical": d * config.levels, "bernoulli": d, "gaussian": 2 * d}[config.decoder]
        self.encoder = mlp(d + c, (h, h), 2 * config.latent)
        self.decoder = nn.Sequential(
            nn.Linear(config.latent + c, h),
            nn.ReLU(),
            nn.Dropout(config.dropout),
            nn.Linear(h, h),
            nn.ReLU(),
            nn.Dropout(config.dropout),
            nn.Linear(h, out),
        )

    # -- pieces
    def _prepare(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Targets and encoder inputs for the chosen decoder."""
        if self.config.decoder == "gaussian":
            x = x.float()
            return x, x
        x = check_images(x, self.levels if self.config.decoder == "categorical" else 2)
        return x, x.float() / (self.levels - 1 if self.config.decoder == "categorical" else 1)

    def _cond(self, y: torch.Tensor | None, n: int) -> torch.Tensor | None:
        return label_condition(y, self.num_classes, n, model="VAE")

    def encode(
        self, x: torch.Tensor, y: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(mu, logvar)`` each ``[n, latent]`` of ``q(z | x)``."""
        _, v = self._prepare(x)
        c = self._cond(y, v.shape[0])
        mu, logvar = self.encoder(v if c is None else torch.cat([v, c], -1)).chunk(2, -1)
        return mu, logvar.clamp(-12, 8)

    def decode_logits(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """Decoder outputs for latents ``z`` ``[..., n, latent]``.

        Logits ``[..., n, D, L]`` (categorical), ``[..., n, D]`` (Bernoulli) or ``[..., n, 2D]``
        (Gaussian mean and log-variance).
        """
        c = self._cond(y, z.shape[-2])
        if c is not None:
            z = torch.cat([z, c.expand(*z.shape[:-1], -1)], -1)
        out = self.decoder(z)
        if self.config.decoder == "categorical":
            return out.view(*out.shape[:-1], self.config.input_dim, self.levels)
        return out

    def log_likelihood(self, x: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        """``log p(x | z)`` summed over dims (``x``: targets, ``out``: decoder outputs)."""
        if self.config.decoder == "categorical":
            return categorical_log_prob(out, x.expand(*out.shape[:-1]))
        if self.config.decoder == "bernoulli":
            return -F.binary_cross_entropy_with_logits(
                out, x.float().expand_as(out), reduction="none"
            ).sum(-1)
        mu, logvar = out.chunk(2, -1)
        return diag_gaussian_log_prob(x, mu, log_var=logvar.clamp(-10, 5))

    # -- objectives
    def elbo(
        self,
        x: torch.Tensor,
        y: torch.Tensor | None = None,
        *,
        generator: torch.Generator | None = None,
    ) -> VAEOutput:
        """One-sample ELBO ``E_q[log p(x|z)] - KL(q || p)`` with the KL in closed form."""
        target, _ = self._prepare(x)
        mu, logvar = self.encode(x, y)
        eps = torch.randn(mu.shape, generator=generator).to(mu.device)
        z = reparameterize(mu, logvar, eps)
        rec = self.log_likelihood(target, self.decode_logits(z, y))
        kl = kl_gaussians(mu, logvar)
        return VAEOutput(elbo=rec - kl, reconstruction=rec, kl=kl)

    def loss(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """``-(E_q[log p(x|z)] - beta KL)`` averaged over the batch (nats per image)."""
        out = self.elbo(x, y)
        return -(out.reconstruction - self.config.beta * out.kl).mean()

    def iwae_bound(
        self,
        x: torch.Tensor,
        y: torch.Tensor | None = None,
        *,
        k: int = 1000,
        generator: torch.Generator | None = None,
        chunk: int = 250,
    ) -> torch.Tensor:
        """Importance-weighted bound ``log 1/K sum_k p(x, z_k) / q(z_k | x)``, ``[n]``.

        It lower-bounds ``log p(x)`` and tightens as ``k`` grows; ``k = 1`` is the ELBO.
        """
        target, _ = self._prepare(x)
        mu, logvar = self.encode(x, y)
        logw = []
        for start in range(0, k, chunk):
            m = min(chunk, k - start)
            eps = torch.randn((m, *mu.shape), generator=generator).to(mu.device)
            z = reparameterize(mu, logvar, eps)  # [m, n, latent]
            log_pxz = self.log_likelihood(target, self.decode_logits(z, y))
            log_pz = diag_gaussian_log_prob(z, torch.zeros_like(z), log_var=torch.zeros_like(z))
            log_qz = diag_gaussian_log_prob(z, mu, log_var=logvar)
            logw.append(log_pxz + log_pz - log_qz)
        return torch.logsumexp(torch.cat(logw), 0) - math.log(k)

    @torch.no_grad()
    def sample(
        self,
        n: int,
        *,
        generator: torch.Generator | None = None,
        y: torch.Tensor | None = None,
        mean: bool = False,
    ) -> torch.Tensor:
        """``n`` samples: integers ``[n, D]`` (categorical, Bernoulli) or floats (Gaussian)."""
        z = torch.randn(n, self.config.latent, generator=generator)
        return self.decode(z, y, generator=generator, mean=mean)

    @torch.no_grad()
    def decode(
        self,
        z: torch.Tensor,
        y: torch.Tensor | None = None,
        *,
        generator: torch.Generator | None = None,
        mean: bool = False,
    ) -> torch.Tensor:
        """Decode latents ``[n, latent]``; ``mean=True`` returns the most likely / mean image."""
        out = self.decode_logits(z, y)
        if self.config.decoder == "categorical":
            return out.argmax(-1) if mean else sample_categorical(out, generator)
        if self.config.decoder == "bernoulli":
            p = torch.sigmoid(out)
            return (p > 0.5).long() if mean else torch.bernoulli(p, generator=generator).long()
        mu, logvar = out.chunk(2, -1)
        if mean:
            return mu
        return reparameterize(mu, logvar, torch.randn(mu.shape, generator=generator))


# ---------------------------------------------------------------------------- VQ-VAE
@dataclass(frozen=True)
class VQVAEConfig:
    """VQ-VAE on 8x8 digits: a 4x4 grid of tokens from a K-entry codebook."""

    codebook: int = 32
    """Codebook entries K."""
    dim: int = 16
    """Code vector size."""
    hidden: int = 64
    """Conv channels."""
    commitment: float = 0.25
    """beta of the commitment loss (van den Oord et al. 2017)."""
    levels: int = LEVELS
    """Levels of the categorical decoder."""


@dataclass
class VQOutput:
    """One pass of :meth:`VQVAE.forward`."""

    logits: torch.Tensor
    """``[n, 64, L]`` decoder logits."""
    indices: torch.Tensor
    """``[n, 4, 4]`` token ids."""
    codebook_loss: torch.Tensor
    commitment_loss: torch.Tensor


class VQVAE(nn.Module):
    """Conv encoder (8x8 -> 4x4), nearest-code quantisation with the straight-through estimator."""

    def __init__(self, config: VQVAEConfig = VQVAEConfig()):
        super().__init__()
        self.config, self.levels = config, config.levels
        h, d = config.hidden, config.dim
        self.encoder = nn.Sequential(
            nn.Conv2d(1, h, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(h, h, 4, 2, 1),
            nn.ReLU(),
            nn.Conv2d(h, d, 1),
        )
        self.codebook = nn.Parameter(torch.randn(config.codebook, d) * 0.1)
        self.decoder = nn.Sequential(
            nn.Conv2d(d, h, 3, padding=1),
            nn.ReLU(),
            nn.ConvTranspose2d(h, h, 4, 2, 1),
            nn.ReLU(),
            nn.Conv2d(h, config.levels, 1),
        )

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Continuous codes ``z_e`` ``[n, 4, 4, d]``."""
        x = check_images(x, self.levels)
        v = (x.float() / (self.levels - 1)).view(-1, 1, 8, 8)
        return self.encoder(v).permute(0, 2, 3, 1)

    def decode_indices(self, idx: torch.Tensor) -> torch.Tensor:
        """Logits ``[n, 64, L]`` from token ids ``[n, 4, 4]``."""
        return self._decode(self.codebook[idx])

    def _decode(self, zq: torch.Tensor) -> torch.Tensor:
        out = self.decoder(zq.permute(0, 3, 1, 2))  # [n, L, 8, 8]
        return out.permute(0, 2, 3, 1).reshape(zq.shape[0], DIM, self.levels)

    def forward(self, x: torch.Tensor) -> VQOutput:
        """Encode, quantise (straight-through), decode."""
        ze = self.encode(x)
        zq, idx = vector_quantize(ze, self.codebook)
        codebook_loss = (zq - ze.detach()).pow(2).sum(-1).mean()
        commitment = (ze - zq.detach()).pow(2).sum(-1).mean()
        zq_st = ze + (zq - ze).detach()  # straight-through: gradient of z_q flows to z_e
        return VQOutput(self._decode(zq_st), idx, codebook_loss, commitment)

    def loss(self, x: torch.Tensor) -> torch.Tensor:
        """``-log p(x | z_q) + ||sg[z_e] - e||^2 + beta ||z_e - sg[e]||^2``."""
        x = check_images(x, self.levels)
        out = self(x)
        rec = -categorical_log_prob(out.logits, x).mean()
        return rec + out.codebook_loss + self.config.commitment * out.commitment_loss
