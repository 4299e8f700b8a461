"""Feature extractors for pixel and dict observations (layer b), and their observation encoders.

The deep agents keep one observation convention everywhere -- buffers, checkpoints, the NumPy
acting path -- a float32 vector per observation, ``[B, dim]``. Images keep it too: an
:class:`ImageEncoder` turns a batch of images into channel-first float32 images flattened to
``[B, C * H * W]`` (the transpose stable-baselines3's ``VecTransposeImage`` makes), and the
extractor reshapes them back to ``[B, C, H, W]`` and scales them (uint8 ``/ 255``, as SB3's
``preprocess_obs``; MinAtar's boolean channels are 0/1 already). A :class:`DictEncoder`
concatenates the members of a ``Dict`` observation, each flattened the same way, and
:class:`MultiInputExtractor` splits them again (SB3's ``CombinedExtractor``).

Image layouts (``shape`` of the ``Box``; the smaller of the first and last axes is taken as
the channels, and channel-last when they are equal, as Gymnasium's images are):

- ``(H, W)``: one channel.
- ``(H, W, C)`` channel-last (Gymnasium, MinAtar) or ``(C, H, W)`` channel-first.
- ``(S, H, W, C)`` or ``(S, C, H, W)``: ``S`` stacked frames
  (``gymnasium.wrappers.FrameStackObservation``), merged into ``S * C`` channels, oldest frame
  first: channels ``[k * C, (k + 1) * C)`` hold frame ``k``.

Frame stacking example (4 MinAtar frames of 4 channels: 16 input channels to the CNN)::

    from gymnasium.wrappers import FrameStackObservation
    from envs.make import make_env  # registers the MinAtar/ ids

    env = FrameStackObservation(make_env("MinAtar/Breakout-v0"), stack_size=4)
    agent = DQN(env, DQN.PRESETS["minatar-breakout"]).learn(100_000)
    agent.save("dqn.safetensors")
    # a wrapped env cannot be rebuilt from its id: pass one to load
    same = DQN.load("dqn.safetensors", env=FrameStackObservation(make_env(...), stack_size=4))

Extractors:

- ``"nature"``: Mnih et al. 2015 (Nature 518, 529; doi:10.1038/nature14236): conv 32 8x8
  stride 4, conv 64 4x4 stride 2, conv 64 3x3 stride 1, fully connected 512, ReLU after each.
  Needs images of at least 36x36.
- ``"minatar"``: Young & Tian 2019 (arXiv:1903.03176): conv 16 3x3 stride 1, fully connected
  128, ReLU after each. Needs images of at least 3x3.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import gymnasium as gym
import numpy as np
import torch
from torch import Tensor, nn

from mpgym.errors import MpgymError
from mpgym.nn import orthogonal_

Policy = Literal["auto", "mlp", "cnn", "multi_input"]
"""What a deep agent's ``policy`` config field accepts."""
Features = Literal["nature", "minatar"]
"""The CNN feature extractors (``features`` config field)."""

FEATURE_DIMS: dict[str, int] = {"nature": 512, "minatar": 128}
"""Width of each extractor's output."""
MIN_SIZES: dict[str, int] = {"nature": 36, "minatar": 3}
"""The smallest image height and width each extractor's kernels fit."""


def resolve_policy(policy: str, space: gym.Space) -> str:
    """The policy kind for ``space``: ``policy`` itself, or what ``"auto"`` picks.

    ``"auto"`` (as stable-baselines3 picks ``CnnPolicy`` / ``MultiInputPolicy``): a ``Dict``
    space -> ``"multi_input"``; a ``Box`` of 2 to 4 dimensions (an image, possibly stacked)
    -> ``"cnn"``; anything else -> ``"mlp"``.
    """
    if policy != "auto":
        return policy
    if isinstance(space, gym.spaces.Dict):
        return "multi_input"
    if isinstance(space, gym.spaces.Box) and 2 <= len(space.shape) <= 4:
        return "cnn"
    return "mlp"


# -- observation encoders (NumPy, before the networks) ----------------------------------------
@dataclass(frozen=True)
class ImageLayout:
    """Where an image observation's pixels go: the transpose and the channel-first shape.

    Attributes:
        shape: the observation's shape in the env.
        chw: ``(C, H, W)`` after the transpose and the merge of stacked frames.
        perm: axes of a batch ``[B, *shape]`` that give ``[B, ..., C, H, W]``, or None when
            the layout is channel-first already.
        scale: multiplies the pixels in the network: ``1 / 255`` for uint8, else 1.
    """

    shape: tuple[int, ...]
    chw: tuple[int, int, int]
    perm: tuple[int, ...] | None
    scale: float

    @property
    def dim(self) -> int:
        """Length of the flattened image, ``C * H * W``."""
        return math.prod(self.chw)


def image_layout(space: gym.spaces.Box, who: str) -> ImageLayout:
    """The :class:`ImageLayout` of an image ``Box`` (see the module docstring for the layouts).

    Raises:
        MpgymError: a ``Box`` that is not 2- to 4-dimensional.
    """
    shape = tuple(int(n) for n in space.shape)
    scale = 1.0 / 255.0 if space.dtype == np.uint8 else 1.0
    if len(shape) == 2:
        return ImageLayout(shape, (1, *shape), None, scale)  # type: ignore[arg-type]
    if len(shape) == 3:
        if shape[0] < shape[2]:  # (C, H, W)
            return ImageLayout(shape, shape, None, scale)  # type: ignore[arg-type]
        h, w, c = shape
        return ImageLayout(shape, (c, h, w), (0, 3, 1, 2), scale)
    if len(shape) == 4:
        s = shape[0]
        if shape[1] < shape[3]:  # (S, C, H, W)
            return ImageLayout(shape, (s * shape[1], shape[2], shape[3]), None, scale)
        _, h, w, c = shape
        return ImageLayout(shape, (s * c, h, w), (0, 1, 4, 2, 3), scale)
    raise MpgymError(
        f"{who} uses a CNN policy, which takes images: a Box of shape (H, W), (H, W, C), "
        f"(C, H, W) or stacked frames (S, H, W, C) / (S, C, H, W); the observation space is "
        f"{space}. Use policy='mlp' for vectors."
    )


def _image_to_flat(x: np.ndarray, layout: ImageLayout) -> np.ndarray:
    """``[B, *shape]`` -> ``[B, C * H * W]`` float32, channel-first."""
    if layout.perm is not None:
        x = x.transpose(layout.perm)
    return np.ascontiguousarray(x, dtype=np.float32).reshape(x.shape[0], -1)


class ImageEncoder:
    """Image observations -> channel-first float32 images flattened to ``[B, C * H * W]``.

    Has :class:`agents.deep.base.ObsEncoder`'s interface (``dim``, ``is_batch``, ``__call__``),
    so buffers and checkpoints keep their ``[B, dim]`` vectors; ``layout`` tells the network
    how to unflatten them.
    """

    def __init__(self, space: gym.Space, who: str):
        if not isinstance(space, gym.spaces.Box):
            raise MpgymError(
                f"{who} uses a CNN policy, which takes image observations (a Box); the "
                f"observation space is {space}. Use policy='multi_input' for Dict spaces."
            )
        self.space = space
        self.layout = image_layout(space, who)
        self.dim = self.layout.dim

    def is_batch(self, obs: Any) -> bool:
        """Whether ``obs`` holds several observations (one more leading axis)."""
        return np.ndim(obs) == len(self.layout.shape) + 1

    def __call__(self, obs: Any) -> np.ndarray:
        """One image or a batch -> ``[B, C * H * W]`` float32 (B = 1 for a single one)."""
        x = np.asarray(obs).reshape(-1, *self.layout.shape)
        return _image_to_flat(x, self.layout)


def storage_dtype(encoder: Any) -> type:
    """How a replay buffer stores ``encoder``'s observations: ``np.uint8`` or ``np.float32``.

    uint8 for :class:`ImageEncoder` images of uint8 or boolean pixels, whose encoded values are
    the integers 0..255 (the CNN scales them), so the cast back to float32 is exact; float32
    for everything else (vectors, float images, ``Dict`` observations).
    """
    if isinstance(encoder, ImageEncoder) and encoder.space.dtype in (np.uint8, np.bool_):
        return np.uint8
    return np.float32


@dataclass(frozen=True)
class DictPart:
    """One member of a ``Dict`` observation.

    Its key and shape, its image layout (None for a vector) and its flattened size;
    ``onehot``: for a ``Discrete`` member, its ``(start, n)`` (encoded one-hot, as SB3 does).
    """

    key: str
    shape: tuple[int, ...]
    image: ImageLayout | None
    size: int
    onehot: tuple[int, int] | None = None


class DictEncoder:
    """``Dict`` observations -> their members flattened and concatenated, ``[B, dim]`` float32.

    Image members (``Box`` of 2 to 4 dimensions) go channel-first as in :class:`ImageEncoder`;
    other ``Box`` and ``MultiBinary`` members are flattened (0/1 as floats), ``Discrete``
    members one-hot (as SB3's ``CombinedExtractor`` preprocesses them). Members are taken in the
    space's key order.

    Raises:
        MpgymError: not a ``Dict`` space, or a member of another kind.
    """

    def __init__(self, space: gym.Space, who: str):
        if not isinstance(space, gym.spaces.Dict):
            raise MpgymError(
                f"{who} uses a multi_input policy, which takes Dict observations; the "
                f"observation space is {space}. Use policy='cnn' or 'mlp'."
            )
        parts = []
        for key, sub in space.spaces.items():
            if isinstance(sub, gym.spaces.Discrete):
                n = int(sub.n)
                parts.append(DictPart(str(key), (), None, n, (int(sub.start), n)))
                continue
            if isinstance(sub, gym.spaces.MultiBinary):
                shape = tuple(int(n) for n in sub.shape)
                parts.append(DictPart(str(key), shape, None, math.prod(shape)))
                continue
            if not isinstance(sub, gym.spaces.Box):
                raise MpgymError(
                    f"{who} uses a multi_input policy, which takes Dict observations of Box "
                    f"(images and vectors), MultiBinary and Discrete members; member {key!r} "
                    f"is {sub}."
                )
            shape = tuple(int(n) for n in sub.shape)
            if 2 <= len(shape) <= 4:
                layout = image_layout(sub, who)
                parts.append(DictPart(str(key), shape, layout, layout.dim))
            else:
                parts.append(DictPart(str(key), shape, None, math.prod(shape)))
        self.space = space
        self.parts: tuple[DictPart, ...] = tuple(parts)
        self.dim = sum(p.size for p in parts)

    def is_batch(self, obs: Any) -> bool:
        """Whether ``obs`` holds several observations (one more leading axis on each member)."""
        first = self.parts[0]
        return np.ndim(obs[first.key]) == len(first.shape) + 1

    def __call__(self, obs: Any) -> np.ndarray:
        """One observation or a batch (a dict of arrays) -> ``[B, dim]`` float32."""
        cols = []
        for p in self.parts:
            x = np.asarray(obs[p.key]).reshape(-1, *p.shape)
            if p.onehot is not None:
                start, n = p.onehot
                idx = x.astype(np.int64) - start
                if idx.size and (idx.min() < 0 or idx.max() >= n):  # -1 would wrap silently
                    raise MpgymError(f"observation member {p.key!r} holds {x.ravel().tolist()}; "
                                     f"its Discrete space takes {start}..{start + n - 1}.")
                cols.append(np.eye(n, dtype=np.float32)[idx])
            elif p.image is not None:
                cols.append(_image_to_flat(x, p.image))
            else:
                cols.append(x.reshape(x.shape[0], -1).astype(np.float32))
        return np.concatenate(cols, axis=1)


# -- extractors (PyTorch modules) --------------------------------------------------------------
def _conv_out(size: int, kernel: int, stride: int) -> int:
    return (size - kernel) // stride + 1


class FeatureExtractor(nn.Module):
    """Base of the extractors: ``[B, dim]`` encoded observations -> ``[B, out_dim]`` features."""

    out_dim: int
    """Width of the features (the input of the MLPs after the extractor)."""


class CNNExtractor(FeatureExtractor):
    """A CNN over channel-first images: ``[B, C * H * W]`` or ``[B, C, H, W]`` -> ``[B, out_dim]``.

    The pixels are multiplied by ``layout.scale`` first (uint8 images to [0, 1]).

    Args:
        layout: the images' :class:`ImageLayout`.
        kind: ``"nature"`` or ``"minatar"`` (see the module docstring).
        who: the agent's name, for errors.
        orthogonal: orthogonal initialisation with gain sqrt(2) and zero biases (SB3's
            actor-critic policies); else PyTorch's default (SB3's and MinAtar's DQN).

    Raises:
        MpgymError: images smaller than the kernels, or an unknown kind.
    """

    def __init__(self, layout: ImageLayout, kind: str, who: str, *, orthogonal: bool = False):
        super().__init__()
        c, h, w = layout.chw
        if kind not in FEATURE_DIMS:
            raise MpgymError(f"{who}: features must be one of {sorted(FEATURE_DIMS)}, "
                             f"got {kind!r}.")
        if min(h, w) < MIN_SIZES[kind]:
            other = [k for k, n in MIN_SIZES.items() if min(h, w) >= n]
            hint = f" Use features={other[0]!r}." if other else ""
            raise MpgymError(
                f"{who}: the {kind!r} CNN needs images of at least {MIN_SIZES[kind]}x"
                f"{MIN_SIZES[kind]} pixels, but the observation space {layout.shape} gives "
                f"{h}x{w} images ({c} channels).{hint}"
            )
        self.chw = layout.chw
        self.scale = layout.scale
        self.out_dim = FEATURE_DIMS[kind]
        if kind == "nature":
            convs = [(c, 32, 8, 4), (32, 64, 4, 2), (64, 64, 3, 1)]
        else:
            convs = [(c, 16, 3, 1)]
        layers: list[nn.Module] = []
        for c_in, c_out, k, s in convs:
            layers += [nn.Conv2d(c_in, c_out, k, stride=s), nn.ReLU()]
            h, w = _conv_out(h, k, s), _conv_out(w, k, s)
        layers += [nn.Flatten(), nn.Linear(convs[-1][1] * h * w, self.out_dim), nn.ReLU()]
        self.cnn = nn.Sequential(*layers)
        if orthogonal:
            for m in self.cnn:
                if isinstance(m, nn.Conv2d | nn.Linear) and m.bias is not None:
                    orthogonal_(m.weight, math.sqrt(2))
                    nn.init.zeros_(m.bias)

    def forward(self, obs: Tensor) -> Tensor:
        """``[B, C * H * W]`` (or ``[B, C, H, W]``) -> ``[B, out_dim]`` features."""
        x = obs.reshape(-1, *self.chw)
        if self.scale != 1.0:
            x = x * self.scale
        return self.cnn(x)


class MultiInputExtractor(FeatureExtractor):
    """SB3's ``CombinedExtractor``: a CNN per image member, the vectors as they are, concatenated.

    Input: the :class:`DictEncoder`'s ``[B, dim]`` rows; output ``[B, out_dim]`` with
    ``out_dim = sum(CNN widths) + sum(vector sizes)``.
    """

    def __init__(self, parts: Sequence[DictPart], kind: str, who: str, *,
                 orthogonal: bool = False):
        super().__init__()
        self.sizes = [p.size for p in parts]
        cnns = {p.key: CNNExtractor(p.image, kind, who, orthogonal=orthogonal)
                for p in parts if p.image is not None}
        self.cnns = nn.ModuleDict(cnns)
        self.keys = [p.key for p in parts]
        self.out_dim = sum(cnns[p.key].out_dim if p.key in cnns else p.size for p in parts)

    def forward(self, obs: Tensor) -> Tensor:
        """``[B, dim]`` -> ``[B, out_dim]``."""
        chunks = obs.split(self.sizes, dim=1)
        return torch.cat([self.cnns[k](x) if k in self.cnns else x
                          for k, x in zip(self.keys, chunks, strict=True)], dim=1)


def make_extractor(encoder: Any, kind: str, who: str, *,
                   orthogonal: bool = False) -> FeatureExtractor | None:
    """The feature extractor an encoder's observations need: None for vectors (MLP policies).

    Args:
        encoder: the agent's observation encoder (:class:`ImageEncoder`, :class:`DictEncoder`
            or the MLP encoder, which gives None).
        kind: ``"nature"`` or ``"minatar"``.
        who: the agent's name, for errors.
        orthogonal: see :class:`CNNExtractor`.
    """
    if isinstance(encoder, ImageEncoder):
        return CNNExtractor(encoder.layout, kind, who, orthogonal=orthogonal)
    if isinstance(encoder, DictEncoder):
        return MultiInputExtractor(encoder.parts, kind, who, orthogonal=orthogonal)
    return None
