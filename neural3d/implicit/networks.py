"""Networks for implicit shapes: IGR, Occupancy Networks (decoder + PointNet), DeepSDF.

All decoders map points ``[B, N, 3]`` (plus a latent ``[B, C]`` when conditioned) to one value
per point ``[B, N]``: a signed distance (IGR, DeepSDF; negative inside) or an occupancy logit
(occupancy network; positive inside).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from neural3d.encodings import PositionalEncoding


class IGRNet(nn.Module):
    """IGR's SDF network: an MLP with Softplus(beta) and one skip connection, sphere-initialised.

    Geometric initialisation (Atzmon & Lipman, SAL, CVPR 2020): hidden weights ``N(0, 2/out)``,
    last layer ``N(sqrt(pi)/sqrt(width), 1e-4)`` with bias ``-radius``, so at step 0 the
    network approximates ``|x| - radius``, the SDF of a sphere. With a positional encoding, the
    first layer's weights on the sine/cosine features start at zero (as in Neuralangelo / SAL's
    follow-ups) so the initial field is still the sphere.

    Args:
        width: hidden units per layer (IGR: 512).
        depth: number of hidden layers (IGR: 8).
        skip: hidden layer index whose input is concatenated with the network input
            (IGR: 4; the concatenation is divided by sqrt(2)); -1 for none.
        beta: Softplus sharpness (IGR: 100).
        radius: radius of the initial sphere.
        num_freqs: octaves of the positional encoding (0: raw xyz, as IGR).
    """

    def __init__(self, width: int = 512, depth: int = 8, skip: int = 4, beta: float = 100.0,
                 radius: float = 0.3, num_freqs: int = 0):
        super().__init__()
        self.encoding = PositionalEncoding(3, num_freqs) if num_freqs > 0 else None
        d_in = self.encoding.out_dim if self.encoding is not None else 3
        self.skip, self.d_in = skip, d_in
        layers = []
        for i in range(depth + 1):
            fan_in = d_in if i == 0 else width
            fan_out = 1 if i == depth else (width - d_in if i + 1 == skip else width)
            lin = nn.Linear(fan_in, fan_out)
            if i == depth:
                nn.init.normal_(lin.weight, mean=math.sqrt(math.pi) / math.sqrt(fan_in), std=1e-4)
                nn.init.constant_(lin.bias, -radius)
            else:
                nn.init.normal_(lin.weight, 0.0, math.sqrt(2.0) / math.sqrt(fan_out))
                nn.init.zeros_(lin.bias)
                if i == 0 and self.encoding is not None:
                    nn.init.zeros_(lin.weight[:, 3:])
                if i == skip and self.encoding is not None:
                    nn.init.zeros_(lin.weight[:, -(d_in - 3):])
            layers.append(lin)
        self.layers = nn.ModuleList(layers)
        self.act = nn.Softplus(beta=beta)

    def forward(self, x: Tensor) -> Tensor:
        """Signed distance ``[..., 3] -> [...]``."""
        inp = self.encoding(x) if self.encoding is not None else x
        h = inp
        for i, lin in enumerate(self.layers):
            if i == self.skip:
                h = torch.cat([h, inp], dim=-1) / math.sqrt(2.0)
            h = lin(h)
            if i < len(self.layers) - 1:
                h = self.act(h)
        return h.squeeze(-1)


class ResnetBlockFC(nn.Module):
    """Fully connected ResNet block (Occupancy Networks): ``x + fc1(relu(fc0(relu(x))))``.

    ``fc1`` starts at zero, so each block starts as the identity.
    """

    def __init__(self, size_in: int, size_out: int | None = None, size_h: int | None = None):
        super().__init__()
        size_out = size_out or size_in
        size_h = size_h or min(size_in, size_out)
        self.fc_0, self.fc_1 = nn.Linear(size_in, size_h), nn.Linear(size_h, size_out)
        self.shortcut = None if size_in == size_out else nn.Linear(size_in, size_out, bias=False)
        nn.init.zeros_(self.fc_1.weight)

    def forward(self, x: Tensor) -> Tensor:
        """``[..., size_in] -> [..., size_out]``."""
        dx = self.fc_1(torch.relu(self.fc_0(torch.relu(x))))
        return (x if self.shortcut is None else self.shortcut(x)) + dx


class OccupancyDecoder(nn.Module):
    """Occupancy Networks' decoder ``f(x, z) -> logit``: ResNet-FC blocks, ``z`` added per block.

    Args:
        latent_dim: size of ``z`` (0 for an unconditioned field).
        hidden: width (OccNet: 256; 128 here for CPU budgets).
        blocks: ResNet blocks (OccNet: 5).
        num_freqs: positional-encoding octaves on ``x`` (0: raw xyz, as OccNet).
    """

    def __init__(self, latent_dim: int = 128, hidden: int = 128, blocks: int = 5,
                 num_freqs: int = 0):
        super().__init__()
        self.encoding = PositionalEncoding(3, num_freqs) if num_freqs > 0 else None
        d_in = self.encoding.out_dim if self.encoding is not None else 3
        self.fc_p = nn.Linear(d_in, hidden)
        self.fc_z = nn.ModuleList([nn.Linear(latent_dim, hidden) for _ in range(blocks)]
                                  if latent_dim > 0 else [])
        self.blocks = nn.ModuleList([ResnetBlockFC(hidden) for _ in range(blocks)])
        self.fc_out = nn.Linear(hidden, 1)

    def forward(self, x: Tensor, z: Tensor | None = None) -> Tensor:
        """Logits ``[B, N]`` for points ``x`` ``[B, N, 3]`` and codes ``z`` ``[B, C]``."""
        h = self.fc_p(self.encoding(x) if self.encoding is not None else x)
        for i, block in enumerate(self.blocks):
            if z is not None and self.fc_z:
                h = h + self.fc_z[i](z)[..., None, :]
            h = block(h)
        return self.fc_out(torch.relu(h)).squeeze(-1)


class PointNetEncoder(nn.Module):
    """ResNet PointNet (Occupancy Networks): per-point blocks with max-pooled context -> ``z``.

    Args:
        latent_dim: output code size.
        hidden: width.
    """

    def __init__(self, latent_dim: int = 128, hidden: int = 128):
        super().__init__()
        self.fc_pos = nn.Linear(3, 2 * hidden)
        self.blocks = nn.ModuleList([ResnetBlockFC(2 * hidden, hidden) for _ in range(3)]
                                    + [ResnetBlockFC(2 * hidden, hidden)])
        self.fc_c = nn.Linear(hidden, latent_dim)

    def forward(self, points: Tensor) -> Tensor:
        """Code ``[B, latent_dim]`` of point clouds ``[B, T, 3]``."""
        h = self.blocks[0](self.fc_pos(points))                    # [B, T, hidden]
        for block in self.blocks[1:]:
            pooled = h.max(dim=1, keepdim=True).values.expand_as(h)
            h = block(torch.cat([h, pooled], dim=-1))
        return self.fc_c(torch.relu(h.max(dim=1).values))


class DeepSDFDecoder(nn.Module):
    """DeepSDF's auto-decoder network ``f(z, x) -> s``: MLP, latent re-injected mid-way.

    DeepSDF (``specs.json``): 8 x 512, input ``[z, x]`` concatenated again at layer 4, weight
    normalisation, dropout 0.2, ReLU, tanh output. Widths default smaller here for CPU.

    Args:
        latent_dim: code size (DeepSDF: 256).
        width: hidden units (DeepSDF: 512).
        depth: hidden layers (DeepSDF: 8).
        dropout: dropout probability on hidden layers (DeepSDF: 0.2; 0 disables).
        num_freqs: positional-encoding octaves on ``x`` (0: raw xyz, as DeepSDF).
    """

    def __init__(self, latent_dim: int = 64, width: int = 256, depth: int = 6,
                 dropout: float = 0.0, num_freqs: int = 0):
        super().__init__()
        self.encoding = PositionalEncoding(3, num_freqs) if num_freqs > 0 else None
        d_x = self.encoding.out_dim if self.encoding is not None else 3
        self.d_in = latent_dim + d_x
        self.skip = depth // 2
        layers = []
        for i in range(depth):
            fan_in = self.d_in if i == 0 else width
            fan_out = width - self.d_in if i + 1 == self.skip else width
            layers.append(nn.utils.parametrizations.weight_norm(nn.Linear(fan_in, fan_out)))
        self.layers = nn.ModuleList(layers)
        self.out = nn.Linear(width, 1)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()

    def forward(self, x: Tensor, z: Tensor) -> Tensor:
        """SDF ``[B, N]`` for points ``[B, N, 3]`` and codes ``[B, C]``."""
        xe = self.encoding(x) if self.encoding is not None else x
        inp = torch.cat([z[:, None, :].expand(-1, x.shape[1], -1), xe], dim=-1)
        h = inp
        for i, lin in enumerate(self.layers):
            if i == self.skip:
                h = torch.cat([h, inp], dim=-1)
            h = self.dropout(torch.relu(lin(h)))
        return torch.tanh(self.out(h)).squeeze(-1)


class ResnetPointNetEncoder(nn.Module):
    """Occupancy Networks' ``ResnetPointnet`` (``pointnet_resnet``) point-cloud encoder.

    ``fc_pos`` lifts each point to ``2 * hidden`` features; five :class:`ResnetBlockFC`
    (``2 * hidden -> hidden``), each after the first fed ``[h, maxpool(h)]``; the code is
    ``fc_c(relu(maxpool(h)))``. Max-pooling makes it invariant to the order of the points.
    OccNet's point-cloud completion config (``configs/pointcloud/onet.yaml``) uses
    ``hidden_dim: 512``, ``c_dim: 512``; :class:`PointNetEncoder` is the 4-block variant.

    Args:
        c_dim: code size (OccNet: 512).
        hidden: width (OccNet: 512).
        blocks: ResNet blocks (OccNet: 5).
    """

    def __init__(self, c_dim: int = 512, hidden: int = 512, blocks: int = 5):
        super().__init__()
        self.c_dim = c_dim
        self.fc_pos = nn.Linear(3, 2 * hidden)
        self.blocks = nn.ModuleList([ResnetBlockFC(2 * hidden, hidden) for _ in range(blocks)])
        self.fc_c = nn.Linear(hidden, c_dim)

    def forward(self, points: Tensor) -> Tensor:
        """Code ``[B, c_dim]`` of point clouds ``[B, T, 3]``."""
        h = self.blocks[0](self.fc_pos(points))  # [B, T, hidden]
        for block in self.blocks[1:]:
            pooled = h.max(dim=1, keepdim=True).values.expand_as(h)  # [B, T, hidden]
            h = block(torch.cat([h, pooled], dim=-1))
        return self.fc_c(torch.relu(h.max(dim=1).values))


class CBatchNorm(nn.Module):
    """Conditional batch norm (OccNet's ``CBatchNorm1d``): ``gamma(c) * BN(x) + beta(c)``.

    Batch statistics over the batch and the points (``BatchNorm1d(affine=False)``), scale and
    shift predicted from the code; the predictors start at ``gamma = 1``, ``beta = 0``.

    Args:
        c_dim: code size.
        features: feature size of ``x``.
    """

    def __init__(self, c_dim: int, features: int):
        super().__init__()
        self.gamma, self.beta = nn.Linear(c_dim, features), nn.Linear(c_dim, features)
        self.bn = nn.BatchNorm1d(features, affine=False)
        nn.init.zeros_(self.gamma.weight)
        nn.init.ones_(self.gamma.bias)
        nn.init.zeros_(self.beta.weight)
        nn.init.zeros_(self.beta.bias)

    def forward(self, x: Tensor, c: Tensor) -> Tensor:
        """Normalised ``x`` ``[B, N, F]`` conditioned on ``c`` ``[B, c_dim]``."""
        h = self.bn(x.reshape(-1, x.shape[-1])).view(x.shape)  # [B, N, F], stats over B*N
        return self.gamma(c)[:, None, :] * h + self.beta(c)[:, None, :]


class CResnetBlockFC(nn.Module):
    """OccNet's ``CResnetBlockConv1d``: ``x + fc1(relu(cbn1(fc0(relu(cbn0(x, c))), c)))``.

    ``fc1`` starts at zero, so the block starts as the identity.
    """

    def __init__(self, c_dim: int, size: int):
        super().__init__()
        self.bn_0, self.bn_1 = CBatchNorm(c_dim, size), CBatchNorm(c_dim, size)
        self.fc_0, self.fc_1 = nn.Linear(size, size), nn.Linear(size, size)
        nn.init.zeros_(self.fc_1.weight)

    def forward(self, x: Tensor, c: Tensor) -> Tensor:
        """``[B, N, size]`` conditioned on ``c`` ``[B, c_dim]``."""
        h = self.fc_0(torch.relu(self.bn_0(x, c)))
        return x + self.fc_1(torch.relu(self.bn_1(h, c)))


class CBatchNormDecoder(nn.Module):
    """OccNet's ``DecoderCBatchNorm`` (``decoder: cbatchnorm``, ``z_dim: 0``): ``f(x, c) -> logit``.

    ``fc_p`` lifts points to ``hidden``; :class:`CResnetBlockFC` blocks conditioned on the
    code by conditional batch norm; a last CBN, ReLU and ``fc_out``. Batch statistics mix the
    shapes of a batch in training; ``eval()`` uses running statistics, so each shape's
    prediction is then independent of the others.

    Args:
        c_dim: code size (OccNet point clouds: 512).
        hidden: width (OccNet: 256).
        blocks: ResNet blocks (OccNet: 5).
    """

    def __init__(self, c_dim: int = 512, hidden: int = 256, blocks: int = 5):
        super().__init__()
        self.c_dim = c_dim
        self.fc_p = nn.Linear(3, hidden)
        self.blocks = nn.ModuleList([CResnetBlockFC(c_dim, hidden) for _ in range(blocks)])
        self.bn = CBatchNorm(c_dim, hidden)
        self.fc_out = nn.Linear(hidden, 1)

    def forward(self, x: Tensor, c: Tensor) -> Tensor:
        """Logits ``[B, N]`` (positive inside) for points ``[B, N, 3]`` and codes ``[B, c_dim]``."""
        h = self.fc_p(x)  # [B, N, hidden]
        for block in self.blocks:
            h = block(h, c)
        return self.fc_out(torch.relu(self.bn(h, c))).squeeze(-1)
