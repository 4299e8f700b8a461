"""A token prior for the VQ-VAE: an autoregressive model over its discrete code grid.

The VQ-VAE maps an 8x8 digit to a 4x4 grid of codebook ids ``z``; van den Oord et al. (2017,
sec. 3.2) then fit an autoregressive prior ``p(z)`` to the codes of the training images and
generate by sampling ``z ~ p(z)`` and decoding. Here the prior is a gated PixelCNN (or the causal
Transformer) from :mod:`generative.autoregressive` with ``K`` levels (one per codebook entry)
over the 16 positions of the grid, so ``p(z)`` is exact.

With the encoder's deterministic posterior ``q(z | x) = 1[z = z_q(x)]`` the evidence bound is
``log p(x) >= log p(x | z_q(x)) + log p(z_q(x))`` (the KL term is ``-log p(z_q(x))``), which
:meth:`TokenPrior.nll_bound` reports in nats per image like the other models' bounds.

Training is two-stage as in the paper: fit the VQ-VAE, freeze it, fit the prior on its codes
(:meth:`TokenPrior.loss` is the prior's NLL of the codes of the batch, in nats per image).

References:
    van den Oord, Vinyals & Kavukcuoglu (2017) Neural Discrete Representation Learning,
    arXiv:1711.00937.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from generative.autoencoders import VQVAE, VQVAEConfig, vector_quantize
from generative.autoregressive import (
    ARModel,
    CausalTransformer,
    PixelCNN,
    PixelCNNConfig,
    TransformerConfig,
    categorical_log_prob,
    sample_categorical,
)
from generative.data import LEVELS, check_images


@dataclass(frozen=True)
class TokenPriorConfig:
    """A VQ-VAE (its fields repeated here, flat) and the autoregressive prior over its codes."""

    prior: Literal["pixelcnn", "transformer"] = "pixelcnn"
    """Prior over the 4x4 code grid: gated PixelCNN or causal Transformer (raster order)."""
    channels: int = 64
    """PixelCNN feature maps, or the Transformer's width."""
    layers: int = 4
    """PixelCNN gated layers, or Transformer blocks."""
    dropout: float = 0.1
    """Dropout of the prior."""
    codebook: int = 32
    """VQ-VAE codebook entries K (the prior's number of levels)."""
    code_dim: int = 16
    """VQ-VAE code vector size."""
    hidden: int = 64
    """VQ-VAE conv channels."""
    commitment: float = 0.25
    """VQ-VAE commitment weight beta."""
    levels: int = LEVELS
    """Levels of the digits (the VQ-VAE decoder's categorical)."""

    @property
    def vqvae(self) -> VQVAEConfig:
        """The VQ-VAE part as its own config."""
        return VQVAEConfig(
            codebook=self.codebook,
            dim=self.code_dim,
            hidden=self.hidden,
            commitment=self.commitment,
            levels=self.levels,
        )


GRID = 4
"""Side of the VQ-VAE's code grid for 8x8 digits (one stride-2 convolution)."""


def build_prior(config: TokenPriorConfig) -> ARModel:
    """The autoregressive model over ``GRID * GRID`` tokens with ``config.codebook`` levels."""
    if config.prior == "pixelcnn":
        return PixelCNN(
            PixelCNNConfig(
                channels=config.channels,
                layers=config.layers,
                kernel=3,
                dropout=config.dropout,
                side=GRID,
                levels=config.codebook,
            )
        )
    return CausalTransformer(
        TransformerConfig(
            d_model=config.channels,
            heads=4,
            layers=config.layers,
            dropout=config.dropout,
            dim=GRID * GRID,
            levels=config.codebook,
        )
    )


class TokenPrior(nn.Module):
    """A frozen VQ-VAE with an autoregressive prior over its ``[n, 16]`` code ids."""

    def __init__(self, config: TokenPriorConfig = TokenPriorConfig(), vqvae: VQVAE | None = None):
        super().__init__()
        if vqvae is not None and vqvae.config != config.vqvae:
            raise ValueError(
                f"the VQ-VAE's config {vqvae.config} does not match the prior's {config.vqvae}"
            )
        self.config, self.levels = config, config.levels
        self.vqvae = (vqvae or VQVAE(config.vqvae)).requires_grad_(False)
        self.prior = build_prior(config)

    def train(self, mode: bool = True) -> TokenPrior:
        """Train mode for the prior only; the frozen VQ-VAE stays in eval mode."""
        super().train(mode)
        self.vqvae.eval()
        return self

    @torch.no_grad()
    def codes(self, x: torch.Tensor) -> torch.Tensor:
        """Token ids ``[n, 16]`` (raster order over the 4x4 grid) of digits ``x`` ``[n, 64]``."""
        _, idx = vector_quantize(self.vqvae.encode(x), self.vqvae.codebook)  # [n, 4, 4]
        return idx.flatten(1)

    def log_prob_codes(self, z: torch.Tensor) -> torch.Tensor:
        """Exact ``log p(z)`` in nats ``[n]`` of token grids ``z`` ``[n, 16]``."""
        return self.prior.log_prob(z)

    def loss(self, x: torch.Tensor) -> torch.Tensor:
        """Prior NLL of the batch's codes, nats per image (the VQ-VAE is not trained here)."""
        return -self.log_prob_codes(self.codes(x)).mean()

    @torch.no_grad()
    def nll_bound(self, x: torch.Tensor) -> torch.Tensor:
        """``-log p(x | z_q(x)) - log p(z_q(x))`` ``[n]``: an upper bound on ``-log p(x)``."""
        x = check_images(x, self.levels)
        z = self.codes(x)
        rec = categorical_log_prob(self.vqvae.decode_indices(z.view(-1, GRID, GRID)), x)
        return -(rec + self.log_prob_codes(z))

    @torch.no_grad()
    def sample_codes(self, n: int, *, generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` token grids ``[n, 16]`` from the prior."""
        return self.prior.sample(n, generator=generator)

    @torch.no_grad()
    def sample(
        self,
        n: int,
        *,
        generator: torch.Generator | None = None,
        mean: bool = False,
    ) -> torch.Tensor:
        """``n`` digits ``[n, 64]``: tokens from the prior, then the VQ-VAE decoder.

        Args:
            n: number of images.
            generator: random numbers of the prior and the decoder.
            mean: decode to each pixel's most likely level instead of sampling it.
        """
        z = self.sample_codes(n, generator=generator).view(n, GRID, GRID)
        logits = self.vqvae.decode_indices(z)  # [n, 64, L]
        return logits.argmax(-1) if mean else sample_categorical(logits, generator)
