"""Pictures people would rather look at: learning curves, image grids, GIFs (matplotlib Agg)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import ArrayLike


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def moving_average(values: ArrayLike, window: int) -> np.ndarray:
    """Trailing moving average; the first ``window - 1`` points average what exists so far."""
    y = np.asarray(values, dtype=float)
    if window <= 1 or len(y) == 0:
        return y
    c = np.cumsum(np.insert(y, 0, 0.0))
    out = np.empty_like(y)
    n = np.arange(1, len(y) + 1)
    lo = np.maximum(0, n - window)
    out[:] = (c[n] - c[lo]) / (n - lo)
    return out


def plot_curves(
    path: str | Path,
    curves: Mapping[str, tuple[Sequence[float], Sequence[float]]],
    *,
    xlabel: str = "step",
    ylabel: str = "return",
    title: str = "",
    smooth: int = 1,
    hlines: Mapping[str, float] | None = None,
    ylim: tuple[float, float] | None = None,
) -> Path:
    """Plot named ``(x, y)`` curves (optionally smoothed) with reference lines, save as PNG."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
    for name, (x, y) in curves.items():
        ax.plot(np.asarray(x), moving_average(y, smooth), label=name, lw=1.5)
    _finish_axes(ax, xlabel, ylabel, title, hlines, ylim, legend=bool(curves))
    return save_figure(fig, path)


def plot_bands(
    path: str | Path,
    bands: Mapping[str, tuple[ArrayLike, ArrayLike, ArrayLike, ArrayLike]],
    *,
    xlabel: str = "step",
    ylabel: str = "return",
    title: str = "",
    hlines: Mapping[str, float] | None = None,
) -> Path:
    """Plot named ``(x, mean, low, high)`` curves, each ``(n,)``, as lines in shaded bands.

    For a mean over seeds with its spread (:func:`agents.common.sweep.mean_band`).
    """
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
    for name, (x, mean, low, high) in bands.items():
        (line,) = ax.plot(np.asarray(x), np.asarray(mean), label=name, lw=1.5)
        ax.fill_between(np.asarray(x), np.asarray(low), np.asarray(high),
                        color=line.get_color(), alpha=0.2, lw=0)
    _finish_axes(ax, xlabel, ylabel, title, hlines, None, legend=bool(bands))
    return save_figure(fig, path)


def _finish_axes(ax: Any, xlabel: str, ylabel: str, title: str,
                 hlines: Mapping[str, float] | None, ylim: tuple[float, float] | None, *,
                 legend: bool) -> None:
    """Reference lines, labels, limits, title, legend and grid of a curve plot."""
    for name, v in (hlines or {}).items():
        ax.axhline(v, ls="--", lw=1, color="gray")
        ax.text(ax.get_xlim()[0], v, f" {name}", va="bottom", fontsize=8, color="gray")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if ylim:
        ax.set_ylim(*ylim)
    if title:
        ax.set_title(title)
    if legend:
        ax.legend()
    ax.grid(alpha=0.3)


def save_figure(fig: Any, path: str | Path) -> Path:
    """Lay out a Matplotlib figure, write it to ``path`` (folders made) and close it."""
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    _plt().close(fig)
    return path


def save_image_grid(
    path: str | Path, images: np.ndarray, *, nrow: int = 8, pad: int = 1, scale: int = 1
) -> Path:
    """Tile ``images`` ``(n, h, w)`` or ``(n, h, w, 3)`` in [0, 1] into one PNG."""
    from PIL import Image

    images = np.clip(np.asarray(images, dtype=float), 0.0, 1.0)
    if images.ndim == 3:
        images = images[..., None].repeat(3, axis=-1)
    n, h, w, c = images.shape
    ncol = min(nrow, n)
    nrows = (n + ncol - 1) // ncol
    grid = np.ones((nrows * (h + pad) + pad, ncol * (w + pad) + pad, c))
    for i, img in enumerate(images):
        r, q = divmod(i, ncol)
        grid[
            pad + r * (h + pad) : pad + r * (h + pad) + h,
            pad + q * (w + pad) : pad + q * (w + pad) + w,
        ] = img
    im = Image.fromarray((grid * 255).round().astype(np.uint8))
    if scale > 1:
        im = im.resize((im.width * scale, im.height * scale), Image.NEAREST)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    im.save(path)
    return path


def save_gif(path: str | Path, frames: Sequence, *, fps: float = 20) -> Path:
    """Write ``frames`` (uint8 ``(h, w, 3)``, floats in [0, 1] or ``PIL.Image``) as a looping GIF.

    Written atomically (a temporary file beside ``path``, then a rename).
    """
    import os

    from PIL import Image

    if len(frames) == 0:
        raise ValueError("save_gif needs at least one frame")
    ims = []
    for f in frames:
        if isinstance(f, Image.Image):
            ims.append(f)
            continue
        f = np.asarray(f)
        if f.dtype != np.uint8:
            f = (np.clip(f, 0, 1) * 255).round().astype(np.uint8)
        ims.append(Image.fromarray(f))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".partial.gif")
    ims[0].save(
        tmp,
        save_all=True,
        append_images=ims[1:],
        duration=int(round(1000 / fps)),
        loop=0,
        optimize=False,
    )
    os.replace(tmp, path)
    return path
