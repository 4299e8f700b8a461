"""Autoregressive models: FVSBN, NADE, MADE, PixelCNN, WaveNet-style convs, a causal Transformer.

Every model factorises ``p(x) = prod_i p(x_i | x_<i)`` over the 64 pixels in raster order
with a 17-way categorical per pixel, so its log-likelihood is exact. Convention shared by all
of them: ``forward(h)`` takes the one-hot input ``h`` of shape ``[n, D, L]`` (float, so tests can
differentiate through it) and returns logits ``[n, D, L]`` where row ``i`` depends only on
``h[:, :i]``. ``log_prob(x)`` takes integer levels ``[n, D]``; ``sample(n)`` draws pixel by pixel.

References:
    Frey (1998) FVSBN; Larochelle & Murray (2011) NADE; Germain et al. (2015) MADE,
    arXiv:1502.03509; van den Oord et al. (2016) PixelCNN / Gated PixelCNN, arXiv:1606.05328;
    van den Oord et al. (2016) WaveNet, arXiv:1609.03499; Vaswani et al. (2017), arXiv:1706.03762.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, Protocol

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from generative.data import DIM, LEVELS, SIDE, check_images
from mpgym.errors import MpgymError, check_positive


# ---------------------------------------------------------------------------- pure functions
def categorical_log_prob(logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Sum over pixels of ``log softmax(logits)[x]``.

    Args:
        logits: ``[n, D, L]``.
        x: ``[n, D]`` integer levels.

    Returns:
        ``[n]`` log-probabilities in nats.
    """
    return torch.log_softmax(logits, -1).gather(-1, x.unsqueeze(-1)).squeeze(-1).sum(-1)


def sample_categorical(
    logits: torch.Tensor, generator: torch.Generator | None = None
) -> torch.Tensor:
    """One draw from ``softmax(logits)`` per row: ``[..., L]`` -> ``[...]`` long.

    The draw is made on the CPU (so a CPU ``generator`` serves a model on any device) and
    returned on ``logits``' device.
    """
    probs = torch.softmax(logits, -1).reshape(-1, logits.shape[-1]).cpu()
    draw = torch.multinomial(probs, 1, generator=generator)
    return draw.view(logits.shape[:-1]).to(logits.device)


def made_masks(
    degrees_in: np.ndarray,
    hidden: tuple[int, ...],
    out_degrees: np.ndarray,
    rng: np.random.Generator,
) -> list[np.ndarray]:
    """MADE connectivity masks (Germain et al. 2015, eq. 12-13).

    Hidden unit ``k`` gets a degree ``m(k)`` in ``[min_in, D - 1]``; a weight from a unit of degree
    ``d`` to a hidden unit of degree ``m`` exists iff ``m >= d``, and to an output of degree ``o``
    iff ``o > m`` (strict), so output ``o`` sees only inputs of degree ``< o``.

    Args:
        degrees_in: ``(n_in,)`` degree (1-based position in the order) of each input unit.
        hidden: hidden layer widths.
        out_degrees: ``(n_out,)`` degree of each output unit.
        rng: NumPy generator for the hidden degrees.

    Returns:
        One ``(n_out_layer, n_in_layer)`` 0/1 mask per linear layer.
    """
    D = int(out_degrees.max())
    degrees = [degrees_in]
    for h in hidden:
        lo = min(int(degrees[-1].min()), D - 1)
        degrees.append(_every_degree(rng.integers(lo, D, size=h), lo, D))  # values lo..D-1
    masks = [
        (d_out[:, None] >= d_in[None, :]).astype(np.float32)
        for d_in, d_out in zip(degrees[:-1], degrees[1:], strict=False)
    ]
    masks.append((out_degrees[:, None] > degrees[-1][None, :]).astype(np.float32))
    return masks


def _every_degree(deg: np.ndarray, lo: int, D: int) -> np.ndarray:
    """Give each degree in ``lo..D-1`` at least one unit (when there are enough units).

    Output ``o`` sees input ``d < o`` only through hidden units of degrees in ``[d, o - 1]``; for
    ``o = d + 1`` that is degree ``d`` alone, so a degree no unit drew would cut the pair (with
    512 units and 63 degrees this happened in 1 of the benchmark's 16 masks). Missing degrees
    take units of the most frequent degree, without drawing random numbers, so masks that drew
    every degree are unchanged.
    """
    deg = deg.copy()
    for d in range(lo, D):
        if (deg == d).any():
            continue
        values, counts = np.unique(deg, return_counts=True)
        if counts.max() < 2:
            break  # fewer units than degrees: some pairs stay unconnected
        deg[np.flatnonzero(deg == values[counts.argmax()])[-1]] = d
    return deg


def causal_attention_mask(t: int) -> torch.Tensor:
    """``[t, t]`` boolean mask, True where position ``i`` may NOT attend to ``j`` (``j > i``)."""
    return torch.ones(t, t, dtype=torch.bool).triu(1)


def sinusoidal_positions(t: int, d: int) -> torch.Tensor:
    """Positional encoding of Vaswani et al.: ``PE[p, 2k] = sin(p / 10000^(2k/d))``, cos for odd.

    Returns:
        ``[t, d]``; e.g. ``sinusoidal_positions(2, 2) == [[0, 1], [sin 1, cos 1]]``.
    """
    pos = torch.arange(t, dtype=torch.float32)[:, None]
    inv = torch.exp(-math.log(10000.0) * torch.arange(0, d, 2, dtype=torch.float32) / d)
    pe = torch.zeros(t, d)
    pe[:, 0::2] = torch.sin(pos * inv)
    pe[:, 1::2] = torch.cos(pos * inv)[:, : d // 2]
    return pe


# ---------------------------------------------------------------------------- shared base
class ARConfig(Protocol):
    """What every autoregressive model's config gives.

    ``dim`` is a field of most configs and a property (``side**2``) of
    :class:`PixelCNNConfig`.
    """

    @property
    def dim(self) -> int:
        """Sequence length: pixels per image."""

    @property
    def levels(self) -> int:
        """Levels per pixel."""


class ARModel(nn.Module):
    """Base: one-hot in, logits out; exact ``log_prob`` and pixel-by-pixel ``sample``."""

    levels: int = LEVELS
    dim: int = DIM

    def __init__(self, config: ARConfig):
        super().__init__()
        self.config, self.levels, self.dim = config, config.levels, config.dim

    def forward(self, h: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        """Logits ``[n, D, L]`` from the one-hot input ``h`` ``[n, D, L]``."""
        raise NotImplementedError

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """Exact ``log p(x)`` in nats, ``[n]``, for integer images ``x`` ``[n, 64]``."""
        x = check_images(x, self.levels, dim=self.dim)
        return categorical_log_prob(self(F.one_hot(x, self.levels).float()), x)

    def loss(self, x: torch.Tensor) -> torch.Tensor:
        """Training loss: mean NLL in nats per image (teacher forcing)."""
        return -self.log_prob(x).mean()

    @torch.no_grad()
    def sample(self, n: int, *, generator: torch.Generator | None = None) -> torch.Tensor:
        """Draw ``n`` images ``[n, 64]`` (long), one pixel at a time in raster order."""
        device = next(self.parameters()).device
        x = torch.zeros(n, self.dim, dtype=torch.long, device=device)
        for i in range(self.dim):
            x[:, i] = sample_categorical(self(F.one_hot(x, self.levels).float())[:, i], generator)
        return x


class MaskedLinear(nn.Linear):
    """``y = (W * M) x + b`` with a fixed 0/1 mask ``M`` (a buffer)."""

    def __init__(self, n_in: int, n_out: int, mask: torch.Tensor | None = None):
        super().__init__(n_in, n_out)
        self.register_buffer("mask", torch.ones(n_out, n_in) if mask is None else mask)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the masked affine map."""
        return F.linear(x, self.weight * self.mask, self.bias)


# ---------------------------------------------------------------------------- FVSBN
@dataclass(frozen=True)
class FVSBNConfig:
    """Fully visible sigmoid belief net, generalised to 17-way softmax (Frey 1998)."""

    dim: int = DIM
    """Sequence length (64 pixels of an 8x8 digit; small values for tests)."""
    levels: int = LEVELS
    """Intensity levels per pixel."""


class FVSBN(ARModel):
    """``p(x_i | x_<i) = softmax(W_i onehot(x_<i) + b_i)``: one masked linear layer."""

    def __init__(self, config: FVSBNConfig = FVSBNConfig()):
        super().__init__(config)
        L = config.levels
        deg = np.repeat(np.arange(1, self.dim + 1), L)
        mask = torch.as_tensor((deg[:, None] > deg[None, :]).astype(np.float32))
        self.linear = MaskedLinear(self.dim * L, self.dim * L, mask)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        """Logits ``[n, D, L]``."""
        return self.linear(h.flatten(1)).view(h.shape[0], self.dim, self.levels)


# ---------------------------------------------------------------------------- NADE
@dataclass(frozen=True)
class NADEConfig:
    """NADE with shared hidden weights (Larochelle & Murray 2011)."""

    hidden: int = 128
    """Hidden units shared across conditionals."""
    dim: int = DIM
    """Sequence length (64 pixels of an 8x8 digit; small values for tests)."""
    levels: int = LEVELS
    """Intensity levels per pixel."""


class NADE(ARModel):
    """``a_i = c + sum_{j<i} W_j[x_j]``, ``p(x_i | x_<i) = softmax(V_i sigmoid(a_i) + b_i)``."""

    def __init__(self, config: NADEConfig = NADEConfig()):
        super().__init__(config)
        H, L = config.hidden, config.levels
        self.W = nn.Parameter(torch.randn(self.dim, L, H) * 0.01)
        self.c = nn.Parameter(torch.zeros(H))
        self.V = nn.Parameter(torch.randn(self.dim, L, H) * (1.0 / math.sqrt(H)))
        self.b = nn.Parameter(torch.zeros(self.dim, L))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        """Logits ``[n, D, L]`` in O(D H L) using an exclusive cumulative sum."""
        contrib = torch.einsum("ndl,dlh->ndh", h, self.W)  # [n, D, H]
        a = self.c + torch.cumsum(contrib, 1) - contrib  # exclusive: j < i
        return torch.einsum("ndh,dlh->ndl", torch.sigmoid(a), self.V) + self.b


# ---------------------------------------------------------------------------- MADE
@dataclass(frozen=True)
class MADEConfig:
    """MADE; defaults: two hidden layers of 512 units with dropout 0.5 (Germain et al. 2015)."""

    hidden: tuple[int, ...] = (512, 512)
    """Hidden layer widths."""
    dropout: float = 0.5
    """Dropout after each hidden layer (1,000 images: 0.5 gave 94.7 test nats, 0.25 gave 96.0)."""
    num_masks: int = 1
    """Connectivity masks cycled during training; the density is their uniform mixture (Germain
    et al. sec. 4). On digits 16 masks with random orders gave 92.1 test nats (6,000 steps)
    against 94.2 for one raster-order mask; 8 masks that share the raster order gave 97.1."""
    inputs: Literal["scalar", "onehot"] = "scalar"
    """Input encoding: ``scalar`` (one value per pixel) or ``onehot`` (17 inputs per pixel)."""
    order: Literal["natural", "random"] = "natural"
    """Pixel order: ``natural`` (raster) or ``random`` (a fixed random permutation per mask)."""
    seed: int = 0
    """Seed of the masks and orders."""
    dim: int = DIM
    """Sequence length (64 pixels of an 8x8 digit; small values for tests)."""
    levels: int = LEVELS
    """Intensity levels per pixel."""


class MADE(ARModel):
    """Masked autoencoder; with ``num_masks > 1`` the density is the mixture over masks."""

    def __init__(self, config: MADEConfig = MADEConfig()):
        super().__init__(config)
        L = config.levels
        n_in = self.dim * L if config.inputs == "onehot" else self.dim
        sizes = [n_in, *config.hidden, self.dim * L]
        pairs = zip(sizes[:-1], sizes[1:], strict=True)
        self.layers = nn.ModuleList(MaskedLinear(a, b) for a, b in pairs)
        self.drop = nn.Dropout(config.dropout)
        rng = np.random.default_rng(config.seed)
        masks, orders = [], []
        for _ in range(config.num_masks):
            order = np.arange(self.dim) if config.order == "natural" else rng.permutation(self.dim)
            deg = np.argsort(order) + 1  # degree of pixel d = its 1-based position in the order
            deg_in = np.repeat(deg, L) if config.inputs == "onehot" else deg
            m = made_masks(deg_in, config.hidden, np.repeat(deg, L), rng)
            masks.append([torch.as_tensor(a) for a in m])
            orders.append(torch.as_tensor(order))
        for i in range(len(self.layers)):
            self.register_buffer(f"masks_{i}", torch.stack([m[i] for m in masks]))
        self.register_buffer("orders", torch.stack(orders))
        self.register_buffer("mask_index", torch.zeros((), dtype=torch.long))
        self.register_buffer("level_values", torch.linspace(-1.0, 1.0, L))
        self.set_mask(0)

    def set_mask(self, k: int) -> None:
        """Use connectivity mask ``k`` (mask and order resampling)."""
        k %= self.config.num_masks
        self.mask_index.fill_(k)
        for i, layer in enumerate(self.layers):
            layer.mask.copy_(getattr(self, f"masks_{i}")[k])

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        """Logits ``[n, D, L]`` for the current mask."""
        z = h.flatten(1) if self.config.inputs == "onehot" else h @ self.level_values
        for layer in self.layers[:-1]:
            z = self.drop(F.relu(layer(z)))
        return self.layers[-1](z).view(h.shape[0], self.dim, self.levels)

    def loss(self, x: torch.Tensor) -> torch.Tensor:
        """Mean NLL under one mask, moving to the next mask each call (order resampling).

        In eval mode it is the exact NLL of the mixture over masks, so validation (early
        stopping) scores the density that is reported.
        """
        x = check_images(x, self.levels, dim=self.dim)
        if not self.training:
            return -self.log_prob(x).mean()
        if self.config.num_masks > 1:
            self.set_mask(int(self.mask_index) + 1)
        return -categorical_log_prob(self(F.one_hot(x, self.levels).float()), x).mean()

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """Exact log-likelihood of the uniform mixture over masks, ``[n]``."""
        x = check_images(x, self.levels, dim=self.dim)
        h = F.one_hot(x, self.levels).float()
        lps = []
        current = int(self.mask_index)
        for k in range(self.config.num_masks):
            self.set_mask(k)
            lps.append(categorical_log_prob(self(h), x))
        self.set_mask(current)
        return torch.logsumexp(torch.stack(lps), 0) - math.log(self.config.num_masks)

    @torch.no_grad()
    def sample(self, n: int, *, generator: torch.Generator | None = None) -> torch.Tensor:
        """Exact mixture samples: a uniform mask per image, then its order, pixel by pixel."""
        K = self.config.num_masks
        which = torch.randint(0, K, (n,), generator=generator) if K > 1 else torch.zeros(n).long()
        current = int(self.mask_index)
        x = torch.zeros(n, self.dim, dtype=torch.long)
        for k in range(K):
            rows = (which == k).nonzero().squeeze(1)
            if len(rows) == 0:
                continue
            self.set_mask(k)
            xk = x[rows]
            for i in self.orders[k].tolist():
                logits = self(F.one_hot(xk, self.levels).float())[:, i]
                xk[:, i] = sample_categorical(logits, generator)
            x[rows] = xk
        self.set_mask(current)
        return x


# ---------------------------------------------------------------------------- PixelCNN
class GatedMaskedConv(nn.Module):
    """One Gated PixelCNN layer: a vertical and a horizontal stack (no blind spot).

    The vertical stack at row ``r`` sees rows ``< r`` (all columns); the horizontal stack at
    ``(r, c)`` sees row ``r``, columns ``< c`` (type A) or ``<= c`` (type B), plus the vertical
    stack. Kernels are masked by multiplying with fixed buffers.
    """

    def __init__(self, channels: int, kernel: int, mask_type: str, in_channels: int | None = None):
        super().__init__()
        cin = in_channels or channels
        k = kernel
        self.mask_type, self.k = mask_type, k
        self.vert = nn.Conv2d(cin, 2 * channels, (k // 2 + 1, k), padding=(k // 2, k // 2))
        self.horiz = nn.Conv2d(cin, 2 * channels, (1, k // 2 + 1), padding=(0, k // 2))
        self.v2h = nn.Conv2d(2 * channels, 2 * channels, 1)
        self.h_out = nn.Conv2d(channels, channels, 1)
        vm = torch.ones_like(self.vert.weight)
        hm = torch.ones_like(self.horiz.weight)
        if mask_type == "A":
            vm[:, :, -1] = 0  # the current row
            hm[:, :, :, -1] = 0  # the current pixel
        self.register_buffer("vmask", vm)
        self.register_buffer("hmask", hm)
        self.residual = mask_type == "B"

    @staticmethod
    def _gate(z: torch.Tensor) -> torch.Tensor:
        a, b = z.chunk(2, 1)
        return torch.tanh(a) * torch.sigmoid(b)

    def forward(self, xv: torch.Tensor, xh: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(vertical, horizontal)`` feature maps ``[n, C, H, W]`` each."""
        H, W = xv.shape[-2:]
        hv = F.conv2d(xv, self.vert.weight * self.vmask, self.vert.bias, padding=self.vert.padding)[
            :, :, :H
        ]
        hh = F.conv2d(
            xh, self.horiz.weight * self.hmask, self.horiz.bias, padding=self.horiz.padding
        )[..., :W]
        # the vertical stack at row r (rows <= r-1 after the A layer) feeds the horizontal stack
        out = self.h_out(self._gate(self.v2h(hv) + hh))
        return self._gate(hv), (out + xh if self.residual else out)


@dataclass(frozen=True)
class PixelCNNConfig:
    """Gated PixelCNN (van den Oord et al. 2016) sized for 8x8 digits."""

    channels: int = 64
    """Feature maps per stack."""
    layers: int = 6
    """Gated layers (the first is type A, the rest type B)."""
    kernel: int = 5
    """Odd kernel size (>= 3) of the first layer; later layers use :attr:`block_kernel`."""
    dropout: float = 0.1
    """Dropout before the output head."""
    side: int = SIDE
    """Image side (8 for digits; small values for tests)."""
    levels: int = LEVELS
    """Intensity levels per pixel."""

    @property
    def block_kernel(self) -> int:
        """Kernel of the layers after the first: 3, or wider where 3 cannot cover the image.

        It is the smallest odd size that lets every pixel see all earlier ones. Each layer
        reaches ``kernel // 2`` rows up, columns left and right (the first layer) or
        ``block_kernel // 2`` more (each later layer); full causal coverage needs the reach
        ``kernel // 2 + (layers - 1) * (block_kernel // 2)`` to be at least ``side - 1``.
        With 5 layers, kernel 5 on 8x8 images the later layers need 5 (3 would leave 126 of
        the 2,016 earlier pixels unseen, e.g. pixel (1, 0) never sees (0, 7)); 6 layers need 3.
        """
        missing = self.side - 1 - self.kernel // 2
        if missing <= 0 or self.layers < 2:
            return 3
        half = max(1, -(-missing // (self.layers - 1)))  # ceil
        return 2 * half + 1

    @property
    def dim(self) -> int:
        """Pixels per image, ``side**2`` (the sequence length every AR model config has)."""
        return self.side**2

    @property
    def reach(self) -> int:
        """Rows up and columns to either side that the output at a pixel depends on."""
        return self.kernel // 2 + (self.layers - 1) * (self.block_kernel // 2)


def _check_pixelcnn_config(config: PixelCNNConfig) -> None:
    """Refuse sizes that build no valid network or leave earlier pixels out of view."""
    for name in ("channels", "layers", "side", "levels"):
        check_positive(f"PixelCNN {name}", getattr(config, name))
    if not isinstance(config.kernel, int) or config.kernel < 3 or config.kernel % 2 == 0:
        raise MpgymError(
            f"PixelCNN kernel must be an odd whole number >= 3; got {config.kernel!r}."
        )
    if config.reach < config.side - 1:  # only possible with one layer
        raise MpgymError(
            f"a one-layer PixelCNN with kernel {config.kernel} does not let every pixel of a "
            f"{config.side}x{config.side} image see all earlier ones; use layers >= 2 or "
            f"kernel >= {2 * config.side - 1}."
        )


class PixelCNN(ARModel):
    """Gated PixelCNN with a 17-way softmax per pixel; input is the one-hot image."""

    def __init__(self, config: PixelCNNConfig = PixelCNNConfig()):
        super().__init__(config)
        _check_pixelcnn_config(config)
        C, L, k = config.channels, config.levels, config.block_kernel
        self.first = GatedMaskedConv(C, config.kernel, "A", in_channels=L)
        self.blocks = nn.ModuleList(GatedMaskedConv(C, k, "B") for _ in range(config.layers - 1))
        self.head = nn.Sequential(
            nn.ReLU(),
            nn.Dropout(config.dropout),
            nn.Conv2d(C, 4 * C, 1),
            nn.ReLU(),
            nn.Conv2d(4 * C, L, 1),
        )

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        """Logits ``[n, D, L]``."""
        n = h.shape[0]
        side = self.config.side
        img = h.view(n, side, side, self.levels).permute(0, 3, 1, 2)  # [n, L, 8, 8]
        v, hz = self.first(img, img)
        for block in self.blocks:
            v, hz = block(v, hz)
        return self.head(hz).permute(0, 2, 3, 1).reshape(n, self.dim, self.levels)


# ---------------------------------------------------------------------------- dilated causal conv
class CausalConv1d(nn.Conv1d):
    """1D convolution padded on the left only: output ``t`` sees inputs ``t - (k-1) d .. t``."""

    def __init__(self, cin: int, cout: int, kernel: int, dilation: int = 1):
        super().__init__(cin, cout, kernel, dilation=dilation)
        self.left = (kernel - 1) * dilation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[n, C, T] -> [n, C', T]``."""
        return super().forward(F.pad(x, (self.left, 0)))


@dataclass(frozen=True)
class CausalConvConfig:
    """WaveNet/TCN-style stack of dilated causal convolutions over the 64-pixel sequence."""

    channels: int = 128
    """Channels of the residual stack."""
    kernel: int = 3
    """Kernel size."""
    dilations: tuple[int, ...] = (1, 2, 4, 8, 16, 32)
    """Dilation per residual block; the receptive field covers all 64 pixels."""
    dropout: float = 0.1
    """Dropout inside the blocks."""
    dim: int = DIM
    """Sequence length (64 pixels of an 8x8 digit; small values for tests)."""
    levels: int = LEVELS
    """Intensity levels per pixel."""


class CausalConvAR(ARModel):
    """Inputs shifted right by one step, then gated dilated causal residual blocks (WaveNet)."""

    def __init__(self, config: CausalConvConfig = CausalConvConfig()):
        super().__init__(config)
        C, L = config.channels, config.levels
        self.inp = CausalConv1d(L, C, config.kernel)
        self.blocks = nn.ModuleList(
            CausalConv1d(C, 2 * C, config.kernel, d) for d in config.dilations
        )
        self.res = nn.ModuleList(nn.Conv1d(C, C, 1) for _ in config.dilations)
        self.drop = nn.Dropout(config.dropout)
        self.out = nn.Sequential(nn.ReLU(), nn.Conv1d(C, C, 1), nn.ReLU(), nn.Conv1d(C, L, 1))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        """Logits ``[n, D, L]``."""
        z = F.pad(h.transpose(1, 2), (1, -1))  # shift right: step t sees x_<t
        z = self.inp(z)
        for conv, res in zip(self.blocks, self.res, strict=False):
            a, b = conv(z).chunk(2, 1)
            z = z + res(self.drop(torch.tanh(a) * torch.sigmoid(b)))
        return self.out(z).transpose(1, 2)


# ---------------------------------------------------------------------------- causal Transformer
class CausalSelfAttention(nn.Module):
    """Multi-head self-attention with the future masked out."""

    def __init__(self, d: int, heads: int, dropout: float):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(d, 3 * d)
        self.proj = nn.Linear(d, d)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[n, T, d] -> [n, T, d]``; ``softmax(Q K^T / sqrt(d_h) + mask) V`` per head."""
        n, t, d = x.shape
        q, k, v = self.qkv(x).view(n, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        att = q @ k.transpose(-1, -2) / math.sqrt(d // self.heads)  # [n, heads, T, T]
        att = att.masked_fill(causal_attention_mask(t).to(x.device), float("-inf"))
        y = self.drop(torch.softmax(att, -1)) @ v
        return self.proj(y.transpose(1, 2).reshape(n, t, d))


class TransformerBlock(nn.Module):
    """Pre-norm block: ``x + attn(LN(x))``, then ``x + MLP(LN(x))``."""

    def __init__(self, d: int, heads: int, dropout: float):
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.attn = CausalSelfAttention(d, heads, dropout)
        self.mlp = nn.Sequential(
            nn.Linear(d, 4 * d), nn.GELU(), nn.Linear(4 * d, d), nn.Dropout(dropout)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[n, T, d] -> [n, T, d]``."""
        x = x + self.attn(self.ln1(x))
        return x + self.mlp(self.ln2(x))


@dataclass(frozen=True)
class TransformerConfig:
    """A small GPT-style causal Transformer over the 64 pixels."""

    d_model: int = 128
    """Width."""
    heads: int = 4
    """Attention heads."""
    layers: int = 4
    """Blocks."""
    dropout: float = 0.1
    """Dropout (attention, MLP and embeddings)."""
    dim: int = DIM
    """Sequence length (64 pixels of an 8x8 digit; small values for tests)."""
    levels: int = LEVELS
    """Intensity levels per pixel."""


class CausalTransformer(ARModel):
    """Token embedding + sinusoidal positions, shifted right by a learned start token."""

    def __init__(self, config: TransformerConfig = TransformerConfig()):
        super().__init__(config)
        d = config.d_model
        self.embed = nn.Linear(config.levels, d, bias=False)  # one-hot @ E: differentiable lookup
        self.start = nn.Parameter(torch.zeros(1, 1, d))
        self.register_buffer("pos", sinusoidal_positions(self.dim, d))
        self.pos_learned = nn.Parameter(torch.zeros(self.dim, d))
        self.drop = nn.Dropout(config.dropout)
        self.blocks = nn.Sequential(
            *(TransformerBlock(d, config.heads, config.dropout) for _ in range(config.layers))
        )
        self.ln = nn.LayerNorm(d)
        self.head = nn.Linear(d, config.levels)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        """Logits ``[n, D, L]``."""
        n = h.shape[0]
        tok = torch.cat([self.start.expand(n, 1, -1), self.embed(h[:, :-1])], 1)
        z = self.drop(tok + self.pos + self.pos_learned)
        return self.head(self.ln(self.blocks(z)))
