"""Evaluation: NLL in nats and bits/dim, IWAE and diffusion bounds, classifier Fréchet distance.

A digit classifier trained here supplies the feature space of the Fréchet distance.

Units: every NLL is ``-log P(x)`` in nats per 8x8 image over the 17 discrete levels, so
models are comparable: exact for autoregressive models, a dequantisation bound for flows
(``E_u[-log p((x+u)/17)] + 64 log 17``, tightened by importance weighting over ``u``), the
IWAE bound for VAEs, the variational bound for diffusion and the VQ-VAE + token-prior bound.
Bits per dimension = nats / (64 ln 2). Reference points on the test split: uniform
64 ln 17 = 181.33 nats, independent per-pixel categorical (add-one counts) 106.47 nats
= 2.40 bits/dim.
"""

from __future__ import annotations

import copy
import logging
import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from generative.data import DIM, LEVELS, SIDE, DigitsSplit, check_images

log = logging.getLogger(__name__)


def nats_to_bits_per_dim(nats: float, dim: int = DIM) -> float:
    """``nats / (dim ln 2)``; 106.47 nats on 64 pixels is 2.40 bits/dim."""
    return nats / (dim * math.log(2))


def _batched(fn, x: torch.Tensor, y: torch.Tensor | None, batch: int) -> torch.Tensor:
    outs = []
    for i in range(0, len(x), batch):
        outs.append(fn(x[i : i + batch], None if y is None else y[i : i + batch]))
    return torch.cat(outs)


@torch.no_grad()
def exact_nll(model: nn.Module, x: torch.Tensor, *, batch: int = 256) -> float:
    """Mean ``-log p(x)`` (nats per image) of a model with an exact ``log_prob``."""
    model.eval()
    return float(-_batched(lambda xb, _: model.log_prob(xb), x, None, batch).mean())


@torch.no_grad()
def dequantized_nll(
    flow: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor | None = None,
    *,
    samples: int = 16,
    generator: torch.Generator | None = None,
    batch: int = 256,
) -> float:
    """Flow NLL bound: ``-log (1/K sum_k p((x + u_k)/L)) + D log L`` averaged over images.

    With ``K = 1`` this is the usual dequantisation bound; larger ``K`` tightens it towards
    ``-log P(x)`` (importance-weighted dequantisation with the uniform proposal).
    """
    flow.eval()
    g = generator or torch.Generator().manual_seed(0)
    lps = torch.stack(
        [
            _batched(
                lambda xb, yb: (
                    flow.log_prob(xb, yb, generator=g)
                    if yb is not None
                    else flow.log_prob(xb, generator=g)
                ),
                x,
                y,
                batch,
            )
            for _ in range(samples)
        ]
    )
    return float(-(torch.logsumexp(lps, 0) - math.log(samples)).mean())


@torch.no_grad()
def iwae_nll(
    vae: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor | None = None,
    *,
    k: int = 1000,
    generator: torch.Generator | None = None,
    batch: int = 64,
) -> float:
    """``-IWAE_k`` bound (nats per image), an upper bound on the VAE's NLL."""
    vae.eval()
    g = generator or torch.Generator().manual_seed(0)
    return float(
        -_batched(lambda xb, yb: vae.iwae_bound(xb, yb, k=k, generator=g), x, y, batch).mean()
    )


@torch.no_grad()
def diffusion_nll(
    ddpm: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor | None = None,
    *,
    timesteps: int = 0,
    generator: torch.Generator | None = None,
    batch: int = 128,
) -> float:
    """Variational bound ``L_T + sum_{t>=2} L_{t-1} + L_0`` in nats per image.

    Args:
        ddpm: a :class:`generative.diffusion.DDPM`.
        x: ``[n, 64]`` integer images.
        y: labels of a conditional model.
        timesteps: 0 sums every term exactly; ``K > 0`` draws, for each image, one step in each
            of ``K`` equal strata of ``2..T`` (an unbiased, low-variance estimate of the sum);
            ``L_0`` and ``L_T`` are always exact.
        generator: random numbers for the noise and the strata.
        batch: images per forward pass.
    """
    ddpm.eval()
    g = generator or torch.Generator().manual_seed(0)
    T = ddpm.config.T
    total = torch.zeros(len(x), dtype=torch.float64)
    n = len(x)
    if timesteps <= 0 or timesteps >= T - 1:
        steps = [(torch.full((n,), t, dtype=torch.long), 1.0) for t in range(2, T + 1)]
    else:
        edges = np.linspace(2, T + 1, timesteps + 1)
        steps = []
        for a, b in zip(edges[:-1], edges[1:], strict=True):
            lo, hi = int(math.ceil(a)), int(math.ceil(b))  # stratum [lo, hi)
            if hi > lo:  # an independent step per image keeps the estimate's variance low
                steps.append((torch.randint(lo, hi, (n,), generator=g), float(hi - lo)))
    for ts, w in [(torch.ones(n, dtype=torch.long), 1.0), *steps]:
        terms = [
            ddpm.bound_terms(
                x[i : i + batch],
                ts[i : i + batch],
                y=None if y is None else y[i : i + batch],
                generator=g,
            )
            for i in range(0, n, batch)
        ]
        total += w * torch.cat(terms).double()
    total += _batched(lambda xb, _: ddpm.prior_term(xb), x, None, batch).double()
    return float(total.mean())


# ---------------------------------------------------------------------------- classifier + FD
class DigitClassifier(nn.Module):
    """Small CNN on 8x8 digits; its 128-d penultimate ``features`` define the Fréchet distance."""

    def __init__(self, width: int = 16, feature_dim: int = 128, dropout: float = 0.3):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(1, width, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(width, 2 * width, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Dropout(dropout),
            nn.Linear(2 * width * 16, feature_dim),
            nn.ReLU(),
        )
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(feature_dim, 10))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """``[n, 64]`` integer images -> ``[n, feature_dim]``."""
        x = check_images(x, LEVELS)
        return self.body((x.float() / (LEVELS - 1)).view(-1, 1, SIDE, SIDE))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits ``[n, 10]``."""
        return self.head(self.features(x))


def _shift_augment(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Random one-pixel translations (zero fill) of ``[n, 64]`` images."""
    img = x.view(-1, SIDE, SIDE)
    pad = F.pad(img, (1, 1, 1, 1))
    dx, dy = torch.randint(0, 3, (2,), generator=g).tolist()
    return pad[:, dy : dy + SIDE, dx : dx + SIDE].reshape(-1, DIM)


@dataclass
class ClassifierResult:
    """What :func:`train_classifier` returns."""

    model: DigitClassifier
    val_acc: float
    test_acc: float


def train_classifier(
    split: DigitsSplit, *, steps: int = 3000, seed: int = 0, lr: float = 1e-3
) -> ClassifierResult:
    """Train :class:`DigitClassifier` on the train split (shift augmentation), select on validation.

    Returns:
        The classifier (eval mode) with its validation and test accuracy.
    """
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = DigitClassifier()
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=1e-4)
    best, best_state = -1.0, None
    for step in range(1, steps + 1):
        model.train()
        idx = torch.randint(0, len(split.x_train), (64,), generator=g)
        loss = F.cross_entropy(model(_shift_augment(split.x_train[idx], g)), split.y_train[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 250 == 0:
            acc = accuracy(model, split.x_val, split.y_val)
            if acc > best:
                best, best_state = acc, copy.deepcopy(model.state_dict())
    model.load_state_dict(best_state)
    model.eval()
    return ClassifierResult(model, best, accuracy(model, split.x_test, split.y_test))


@torch.no_grad()
def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """Fraction of correct argmax predictions."""
    model.eval()
    return float((model(x).argmax(-1) == y).float().mean())


def frechet_distance(f1: np.ndarray, f2: np.ndarray) -> float:
    """``||mu1 - mu2||^2 + Tr(S1 + S2 - 2 (S1 S2)^(1/2))`` between Gaussian fits of two sets.

    ``Tr (S1 S2)^(1/2)`` is computed as ``Tr (S1^(1/2) S2 S1^(1/2))^(1/2)``, whose argument is
    symmetric PSD, via eigen-decompositions (no complex round-off). Identical sets give 0.

    Args:
        f1: ``(n1, d)`` features.
        f2: ``(n2, d)`` features.
    """
    f1, f2 = np.asarray(f1, np.float64), np.asarray(f2, np.float64)
    mu1, mu2 = f1.mean(0), f2.mean(0)
    s1, s2 = np.atleast_2d(np.cov(f1, rowvar=False)), np.atleast_2d(np.cov(f2, rowvar=False))
    w, v = np.linalg.eigh(s1)
    r1 = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    m = r1 @ s2 @ r1
    tr_sqrt = np.sqrt(np.clip(np.linalg.eigvalsh((m + m.T) / 2), 0, None)).sum()
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * tr_sqrt)


@torch.no_grad()
def feature_fd(
    classifier: DigitClassifier, samples: torch.Tensor, reference: torch.Tensor
) -> float:
    """Fréchet distance of classifier features of ``samples`` and ``reference`` (``[n, 64]``)."""
    classifier.eval()
    return frechet_distance(
        classifier.features(samples).numpy(), classifier.features(reference).numpy()
    )


# ---------------------------------------------------------------------------- one call per model
BOUND_KIND = {
    "fvsbn": "exact",
    "nade": "exact",
    "made": "exact",
    "pixelcnn": "exact",
    "wavenet": "exact",
    "transformer": "exact",
    "glow": "dequantised",
    "vae": "IWAE",
    "ddpm": "variational bound",
    "gan": "none",
    "vqvae": "none",
    "vqprior": "VQ bound",
}
"""How each registered digits model's NLL is measured."""


@dataclass
class EvalResult:
    """Test-split figures of one model (NaN where a model has no likelihood)."""

    nll_nats: float
    bits_per_dim: float
    bound: str
    fd: float
    samples: torch.Tensor
    """``[n, 64]`` the samples the Fréchet distance was computed on."""


@torch.no_grad()
def evaluate(
    name: str,
    model: nn.Module,
    split: DigitsSplit,
    *,
    classifier: DigitClassifier | None = None,
    n_samples: int = 1000,
    quick: bool = False,
    seed: int = 0,
    ddim_steps: int = 0,
    diffusion_timesteps: int = 100,
) -> EvalResult:
    """NLL on the test split in the model's own bound, and the FD of ``n_samples`` samples.

    Args:
        name: registry name (decides the estimator, see :data:`BOUND_KIND`).
        model: a trained model in eval mode.
        split: the digits split.
        classifier: feature network for the Fréchet distance (skipped when ``None``).
        n_samples: samples drawn for the FD.
        quick: cheaper estimators (fewer importance samples / timesteps).
        seed: seed of the estimators and the sampler.
        ddim_steps: DDPM only: FD samples by DDIM on this many steps (0: ancestral, all T).
        diffusion_timesteps: DDPM only: strata of the bound estimate (0: every term).
    """
    model.eval()
    g = torch.Generator().manual_seed(seed)
    x = split.x_test
    bound = BOUND_KIND.get(name, "none")
    if bound == "exact":
        nll = exact_nll(model, x)
    elif bound == "dequantised":
        nll = dequantized_nll(model, x, samples=4 if quick else 32, generator=g)
    elif bound == "IWAE":
        nll = iwae_nll(model, x, k=100 if quick else 1000, generator=g)
    elif bound == "VQ bound":  # -log p(x | z_q(x)) - log p(z_q(x)), see generative.token_prior
        nll = float(_batched(lambda xb, _: model.nll_bound(xb), x, None, 256).mean())
    elif bound == "variational bound":
        nll = diffusion_nll(
            model,
            x,
            timesteps=min(20, diffusion_timesteps) if quick else diffusion_timesteps,
            generator=g,
        )
    else:
        nll = float("nan")
    if n_samples == 0 or bound == "none" and name == "vqvae":
        return EvalResult(
            nll,
            nats_to_bits_per_dim(nll),
            bound,
            float("nan"),
            torch.zeros(0, DIM, dtype=torch.long),
        )
    samples = sample_digits(name, model, n_samples, generator=g, ddim_steps=ddim_steps)
    fd = feature_fd(classifier, samples, x) if classifier is not None else float("nan")
    return EvalResult(nll, nats_to_bits_per_dim(nll), bound, fd, samples)


@torch.no_grad()
def sample_digits(
    name: str,
    model: nn.Module,
    n: int,
    *,
    generator: torch.Generator | None = None,
    batch: int = 500,
    ddim_steps: int = 0,
) -> torch.Tensor:
    """``[n, 64]`` integer samples, drawn in batches (DDPM: all T ancestral steps, or DDIM)."""
    if name == "vqvae":
        raise ValueError(
            "the VQ-VAE has no prior over its tokens here; sample from a token model instead"
        )
    if name == "ddpm" and ddim_steps > 0:
        out = [
            model.sample_ddim(min(batch, n - i), steps=ddim_steps, generator=generator)
            for i in range(0, n, batch)
        ]
        return torch.cat(out)
    out = [model.sample(min(batch, n - i), generator=generator) for i in range(0, n, batch)]
    return torch.cat(out)
