"""Convolutional Occupancy Networks' encoders and decoder (Peng et al., ECCV 2020).

A point cloud ``[B, T, 3]`` in the collection's frame (the unit cube, padded by ``padding``:
``[-0.55, 0.55]^3`` for OccNet's 0.1) becomes *feature planes* or a *feature grid*:

1. A ResNet-PointNet with **local** pooling (``LocalPoolPointnet``): per-point ResNet-FC blocks
   whose pooled context is the max over the points that fall in the same plane cell (or voxel),
   summed over the planes, instead of OccNet's max over the whole cloud.
2. Per-point features ``[B, T, C]`` are averaged into the cells of three canonical planes
   (``xz``, ``xy``, ``yz``; ``R x R`` cells) or of one ``R^3`` grid (:func:`scatter_cells`).
3. A 2D U-Net (shared by the three planes) or a 3D U-Net turns the sparse, averaged features
   into dense ones.

The decoder (``LocalDecoder``, "simple_local") samples each plane bilinearly (the grid
trilinearly) at a query point, sums the planes' features and conditions OccNet's small ResNet-FC
decoder on them by adding ``fc_c(features)`` before every block (no conditional batch norm).

Coordinates (``src/common.py``): a point's coordinate ``p`` on an axis maps to
``u = p / (1 + padding + 1e-5) + 0.5``, clamped to ``[0, 1 - 1e-5]``; its cell is
``floor(u R)``. Plane ``xz`` uses axes ``(0, 2)``, ``xy`` ``(0, 1)``, ``yz`` ``(1, 2)``; the first
axis of a plane runs along its width (``W``), the second along its height (``H``), so cell
``(i, j)`` is ``plane[..., j, i]`` and ``grid_sample``'s ``(x, y)`` agree with it; in the grid,
``(i, j, k)`` is ``grid[..., k, j, i]``. Sampling uses ``align_corners=True`` (``u = 0`` at the
first cell's centre, ``u = 1`` at the last one's) while scattering uses cells of side ``1 / R``:
a half-cell offset the published code has, kept so the settings mean what they mean there.

Object-level settings (``configs/pointcloud/shapenet_3plane.yaml`` and ``shapenet_grid32.yaml``
with ``configs/default.yaml``): ``c_dim 32``, encoder ``hidden_dim 32``, 5 blocks, local max
pooling, plane resolution 64 with U-Net ``depth 4``, ``start_filts 32``, ``merge_mode concat``;
grid resolution 32 with a 3D U-Net of ``num_levels 3``, ``f_maps 32``; decoder
``hidden_size 32``, bilinear sampling; ``padding 0.1``; 3,000 input points with noise 0.005,
2,048 occupancy samples per shape, batches of 32, Adam at 1e-4 (``train.py``), IoU at
``threshold 0.2``.

References:
    Peng, Niemeyer, Mescheder, Pollefeys, Geiger. "Convolutional Occupancy Networks."
    ECCV 2020. arXiv:2003.04618. Ronneberger et al. (2015) U-Net, arXiv:1505.04597;
    Cicek et al. (2016) 3D U-Net, arXiv:1606.06650.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from neural3d.implicit.networks import ResnetBlockFC

Plane = Literal["xz", "xy", "yz"]
PLANES: tuple[Plane, ...] = ("xz", "xy", "yz")
AXES: dict[str, tuple[int, ...]] = {"xz": (0, 2), "xy": (0, 1), "yz": (1, 2), "grid": (0, 1, 2)}
"""Which coordinates of a point each feature layout uses, first along the width."""
Features = dict[str, Tensor]
"""``{"xz": [B, C, R, R], "xy": ..., "yz": ...}`` or ``{"grid": [B, C, R, R, R]}``."""


# ---------------------------------------------------------------------------- pure functions
def normalize_coordinates(points: Tensor, layout: str, padding: float = 0.1) -> Tensor:
    """Map points ``[B, N, 3]`` to plane (``[B, N, 2]``) or grid (``[B, N, 3]``) coordinates.

    ``u = p / (1 + padding + 1e-5) + 0.5`` clamped to ``[0, 1 - 1e-5]`` on the axes of
    ``layout`` (:data:`AXES`).

    Example:
        ``p = (0.275, 0, -0.55)``, layout ``xz``, padding 0.1: ``u ~ (0.75, 0.0)``.
    """
    u = points[..., list(AXES[layout])] / (1 + padding + 1e-5) + 0.5
    return u.clamp(0.0, 1.0 - 1e-5)


def cell_index(u: Tensor, resolution: int) -> Tensor:
    """Flat cell index of normalised coordinates ``[B, N, D] -> [B, N]`` long.

    ``floor(u_0 R) + R floor(u_1 R) (+ R^2 floor(u_2 R))``: the first coordinate varies fastest.

    Example:
        ``u = (0.6, 0.1)`` with ``R = 4``: cell ``(2, 0)``, index 2.
    """
    cells = (u * resolution).long().clamp(0, resolution - 1)
    index = torch.zeros_like(cells[..., 0])
    for d in reversed(range(cells.shape[-1])):
        index = index * resolution + cells[..., d]
    return index


def scatter_cells(
    features: Tensor, index: Tensor, cells: int, reduce: Literal["mean", "amax"] = "mean"
) -> Tensor:
    """Reduce per-point features into cells: ``[B, N, C], [B, N] -> [B, cells, C]``.

    ``mean`` averages the points of a cell (the feature planes), ``amax`` takes their
    elementwise max (local pooling); cells no point falls into hold zeros.

    Example:
        features ``[[1], [3], [5]]`` in cells ``[0, 0, 2]`` of 3: mean ``[[2], [0], [5]]``.
    """
    B, _, C = features.shape
    out = features.new_zeros(B, cells, C)
    return out.scatter_reduce(1, index[..., None].expand(-1, -1, C), features, reduce,
                              include_self=False)


def gather_cells(cell_features: Tensor, index: Tensor) -> Tensor:
    """The feature of each point's cell: ``[B, cells, C], [B, N] -> [B, N, C]``."""
    return cell_features.gather(1, index[..., None].expand(-1, -1, cell_features.shape[-1]))


def sample_features(features: Tensor, u: Tensor) -> Tensor:
    """Bi- (planes) or trilinear (grid) interpolation at normalised coordinates.

    ``features`` ``[B, C, R, R]`` with ``u`` ``[B, N, 2]``, or ``[B, C, R, R, R]`` with ``u``
    ``[B, N, 3]``; returns ``[B, N, C]``. ``u = 0`` is the first cell's centre and ``u = 1`` the
    last one's (``align_corners=True``), so along one axis ``u`` sits at cell position
    ``u (R - 1)``; outside ``[0, 1]`` the border value repeats.

    Example:
        A ``2 x 2`` plane ``[[a, b], [c, d]]`` (rows: second coordinate) at ``u = (0.25, 0.5)``:
        ``0.5 (0.75 a + 0.25 b) + 0.5 (0.75 c + 0.25 d)``.
    """
    grid = 2.0 * u - 1.0  # [B, N, D] in [-1, 1]
    grid = grid[:, :, None] if u.shape[-1] == 2 else grid[:, :, None, None]
    out = F.grid_sample(features, grid, mode="bilinear", padding_mode="border",
                        align_corners=True)  # [B, C, N, 1(, 1)]
    return out.reshape(*out.shape[:3]).transpose(1, 2)


# ---------------------------------------------------------------------------- U-Nets
def _down(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1), nn.ReLU(),
                         nn.Conv2d(c_out, c_out, 3, padding=1), nn.ReLU())


class UNet2D(nn.Module):
    """ConvONet's 2D U-Net (after jaxony/unet-pytorch): ``[B, C, R, R] -> [B, C_out, R, R]``.

    ``depth`` levels of two 3x3 convolutions with ReLU, ``start_filts * 2^i`` channels, a 2x2
    max pool between levels; up: 2x2 transposed convolution halving the channels, concatenation
    with the level's features, two 3x3 convolutions; a 1x1 convolution at the end. Convolution
    weights Xavier-normal, biases zero. ``R`` must be divisible by ``2^(depth - 1)``.
    """

    def __init__(self, c_in: int, c_out: int, depth: int = 4, start_filts: int = 32):
        super().__init__()
        widths = [start_filts * 2**i for i in range(depth)]
        ins = [c_in, *widths[:-1]]
        self.down = nn.ModuleList(_down(a, b) for a, b in zip(ins, widths, strict=True))
        self.up = nn.ModuleList(nn.ConvTranspose2d(w, w // 2, 2, stride=2) for w in widths[:0:-1])
        self.merge = nn.ModuleList(_down(w, w // 2) for w in widths[:0:-1])
        self.final = nn.Conv2d(widths[0], c_out, 1)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.xavier_normal_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: Tensor) -> Tensor:
        """``[B, c_in, R, R] -> [B, c_out, R, R]``."""
        skips = []
        for i, level in enumerate(self.down):
            x = level(F.max_pool2d(x, 2) if i > 0 else x)
            skips.append(x)
        for up, merge, skip in zip(self.up, self.merge, skips[-2::-1], strict=True):
            x = merge(torch.cat([up(x), skip], dim=1))
        return self.final(x)


def _gcr(c_in: int, c_out: int, groups: int = 8) -> list[nn.Module]:
    """pytorch-3dunet's ``layer_order="gcr"``: GroupNorm, 3x3x3 convolution, ReLU.

    ``groups`` groups, or the largest divisor of ``c_in`` below it where it does not divide.
    """
    return [nn.GroupNorm(math.gcd(groups, c_in), c_in),
            nn.Conv3d(c_in, c_out, 3, padding=1, bias=False), nn.ReLU()]


class UNet3D(nn.Module):
    """ConvONet's 3D U-Net (pytorch-3dunet's ``UNet3D``): ``[B, C, R, R, R]`` in and out.

    ``levels`` levels with ``f_maps * 2^i`` channels, each a double GroupNorm-conv-ReLU
    (the encoder's first convolution to ``max(out / 2, in)`` channels), 2x max pooling between
    levels; up: nearest upsampling, concatenation with the level's features, a double
    convolution; a 1x1x1 convolution at the end. ``R`` must be divisible by ``2^(levels - 1)``.
    """

    def __init__(self, c_in: int, c_out: int, levels: int = 3, f_maps: int = 32):
        super().__init__()
        widths = [f_maps * 2**i for i in range(levels)]
        self.down = nn.ModuleList()
        for a, b in zip([c_in, *widths[:-1]], widths, strict=True):
            mid = max(b // 2, a)
            self.down.append(nn.Sequential(*_gcr(a, mid), *_gcr(mid, b)))
        self.up = nn.ModuleList(nn.Sequential(*_gcr(widths[i] + widths[i + 1], widths[i]),
                                              *_gcr(widths[i], widths[i]))
                                for i in reversed(range(levels - 1)))
        self.final = nn.Conv3d(widths[0], c_out, 1)

    def forward(self, x: Tensor) -> Tensor:
        """``[B, c_in, R, R, R] -> [B, c_out, R, R, R]``."""
        skips = []
        for i, level in enumerate(self.down):
            x = level(F.max_pool3d(x, 2) if i > 0 else x)
            skips.append(x)
        for up, skip in zip(self.up, skips[-2::-1], strict=True):
            x = up(torch.cat([skip, F.interpolate(x, size=skip.shape[2:], mode="nearest")], 1))
        return self.final(x)


# ---------------------------------------------------------------------------- encoder, decoder
class LocalPoolPointNet(nn.Module):
    """ConvONet's ``LocalPoolPointnet``: point cloud ``[B, T, 3]`` -> feature planes or grid.

    Args:
        c_dim: feature channels of the planes / grid (ConvONet: 32).
        hidden: per-point width (ConvONet: 32).
        blocks: ResNet-FC blocks (ConvONet: 5).
        layout: ``"planes"`` (xz, xy, yz) or ``"grid"``.
        resolution: cells per side (ConvONet: 64 for planes, 32 for the grid).
        unet_depth: U-Net levels (ConvONet: 4 for planes, 3 for the grid's 3D U-Net).
        unet_filters: channels of the U-Net's first level (ConvONet: 32).
        padding: the cube ``[-(1 + padding) / 2, (1 + padding) / 2]^3`` is covered (0.1).
    """

    def __init__(self, c_dim: int = 32, hidden: int = 32, blocks: int = 5, *,
                 layout: Literal["planes", "grid"] = "planes", resolution: int = 64,
                 unet_depth: int = 4, unet_filters: int = 32, padding: float = 0.1):
        super().__init__()
        self.c_dim, self.resolution, self.padding = c_dim, resolution, padding
        self.layouts: tuple[str, ...] = PLANES if layout == "planes" else ("grid",)
        self.fc_pos = nn.Linear(3, 2 * hidden)
        self.blocks = nn.ModuleList([ResnetBlockFC(2 * hidden, hidden) for _ in range(blocks)])
        self.fc_c = nn.Linear(hidden, c_dim)
        self.unet: nn.Module = (UNet2D(c_dim, c_dim, unet_depth, unet_filters) if layout == "planes"
                                else UNet3D(c_dim, c_dim, unet_depth, unet_filters))

    def _cells(self, layout: str) -> int:
        return self.resolution ** len(AXES[layout])

    def forward(self, points: Tensor) -> Features:
        """Planes ``{"xz", "xy", "yz": [B, c_dim, R, R]}`` or ``{"grid": [B, c_dim, R, R, R]}``."""
        B = points.shape[0]
        index = {k: cell_index(normalize_coordinates(points, k, self.padding), self.resolution)
                 for k in self.layouts}  # each [B, T]
        h = self.blocks[0](self.fc_pos(points))  # [B, T, hidden]
        for block in self.blocks[1:]:
            pooled = sum(gather_cells(scatter_cells(h, i, self._cells(k), "amax"), i)
                         for k, i in index.items())  # [B, T, hidden]: max over each cell
            h = block(torch.cat([h, pooled], dim=-1))
        c = self.fc_c(h)  # [B, T, c_dim]
        R = self.resolution
        sparse = [scatter_cells(c, index[k], self._cells(k)).transpose(1, 2) for k in self.layouts]
        shape = (-1, self.c_dim) + (R,) * len(AXES[self.layouts[0]])
        dense = self.unet(torch.cat(sparse).reshape(shape))  # planes share one U-Net
        return {k: dense[j * B:(j + 1) * B] for j, k in enumerate(self.layouts)}


class LocalDecoder(nn.Module):
    """ConvONet's ``LocalDecoder``: ``(points [B, N, 3], features) -> logits [B, N]``.

    The features at each point (:func:`sample_features` summed over the planes, or the grid's)
    enter every ResNet-FC block: ``h = block_i(h + fc_c_i(c))``; ``h_0 = fc_p(x)``; the logit is
    ``fc_out(relu(h))``.

    Args:
        c_dim: feature channels (ConvONet: 32).
        hidden: width (ConvONet: 32).
        blocks: ResNet-FC blocks (ConvONet: 5).
        padding: as the encoder's (0.1).
    """

    def __init__(self, c_dim: int = 32, hidden: int = 32, blocks: int = 5, *,
                 padding: float = 0.1):
        super().__init__()
        self.padding = padding
        self.fc_p = nn.Linear(3, hidden)
        self.fc_c = nn.ModuleList([nn.Linear(c_dim, hidden) for _ in range(blocks)])
        self.blocks = nn.ModuleList([ResnetBlockFC(hidden) for _ in range(blocks)])
        self.fc_out = nn.Linear(hidden, 1)

    def point_features(self, x: Tensor, features: Features) -> Tensor:
        """The summed features at points ``[B, N, 3] -> [B, N, c_dim]``."""
        return sum(sample_features(f, normalize_coordinates(x, k, self.padding))
                   for k, f in features.items())  # type: ignore[return-value]

    def forward(self, x: Tensor, features: Features) -> Tensor:
        """Logits ``[B, N]`` (positive inside) of points ``[B, N, 3]``."""
        c = self.point_features(x, features)
        h = self.fc_p(x)
        for fc_c, block in zip(self.fc_c, self.blocks, strict=True):
            h = block(h + fc_c(c))
        return self.fc_out(torch.relu(h)).squeeze(-1)
