"""Animated pictures of motion: the body model performing a motion, panels side by side, as GIF.

Frames are drawn with Pillow (painter's algorithm over the mesh's faces, Lambert shading, a
ground grid so sliding feet show), not matplotlib: a 13,776-face body takes ~50 ms per frame this
way, against ~1 s through matplotlib, and a 10-s motion has 150 frames at the GIF's 15 fps.

Camera (as :mod:`bodies.render`): camera space x right, y down, z forward, ``u = f x / z + c``.
Each panel's camera follows its body's root over the ground (smoothed), looking at it from a
fixed direction in the world, so the body's own turning shows.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from mpgym.errors import MpgymError

VIEW = np.array([0.55, 0.35, 1.0])
"""Direction from the body to the camera (world, y up): front-left, slightly above."""


def look_at(eye: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """World-to-camera ``(R (3, 3), t (3,))`` of a camera at ``eye`` looking at ``target``.

    Camera axes: x right, y down, z forward (towards ``target``); world y is up.
    """
    fwd = target - eye
    fwd = fwd / np.linalg.norm(fwd)
    right = np.cross(fwd, np.array([0.0, 1.0, 0.0]))
    right = right / np.linalg.norm(right)
    down = np.cross(fwd, right)
    R = np.stack([right, down, fwd])
    return R, -R @ eye


def _follow(transl: np.ndarray, fps: float, seconds: float = 0.5) -> np.ndarray:
    """Root ground positions ``(T, 3)`` smoothed over ``seconds`` (the camera's target)."""
    target = transl.copy()
    target[:, 1] = 0.9
    k = max(1, int(round(seconds * fps)))
    if k > 1 and len(target) > 1:
        pad = np.concatenate([np.repeat(target[:1], k, 0), target, np.repeat(target[-1:], k, 0)])
        kernel = np.ones(2 * k + 1) / (2 * k + 1)
        for c in (0, 2):
            target[:, c] = np.convolve(pad[:, c], kernel, mode="valid")
    return target


def _draw_frame(
    draw,
    vertices: np.ndarray,
    faces: np.ndarray,
    R: np.ndarray,
    t: np.ndarray,
    focal: float,
    offset: tuple[float, float],
    color: tuple[float, float, float],
    ground_center: np.ndarray,
) -> None:
    """Ground grid, then the mesh's front faces far to near, onto a Pillow ``ImageDraw``."""
    cx, cy = offset
    # ground grid: lines every 0.5 m within 3 m of the body
    g0 = np.floor(ground_center[[0, 2]] / 0.5) * 0.5
    for axis in (0, 2):
        for s in np.arange(-3.0, 3.01, 0.5):
            a = np.zeros((2, 3))
            a[:, axis] = g0[0 if axis == 0 else 1] + s
            other = 2 if axis == 0 else 0
            a[:, other] = g0[1 if axis == 0 else 0] + np.array([-3.0, 3.0])
            X = a @ R.T + t
            if (X[:, 2] < 0.1).any():
                continue
            uv = focal * X[:, :2] / X[:, 2:3] + np.array([cx, cy])
            draw.line([tuple(uv[0]), tuple(uv[1])], fill=(200, 200, 200), width=1)
    X = vertices @ R.T + t
    uv = focal * X[:, :2] / np.maximum(X[:, 2:3], 1e-3) + np.array([cx, cy])
    tri = X[faces]
    n = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    n /= np.linalg.norm(n, axis=1, keepdims=True) + 1e-12
    facing = (n * tri.mean(1)).sum(1) < 0  # normal points back towards the camera
    light = np.clip(-n @ (np.array([0.3, -0.6, 1.0]) / np.linalg.norm([0.3, -0.6, 1.0])), 0, 1)
    order = np.argsort(-tri[:, :, 2].mean(1))
    order = order[facing[order] & (tri[order, :, 2].min(1) > 0.05)]
    shade = np.clip((0.35 + 0.65 * light[order])[:, None] * np.asarray(color)[None], 0, 1)
    rgb = (255 * shade).astype(np.uint8)
    polys = uv[faces[order]]
    for poly, c in zip(polys, rgb, strict=True):
        draw.polygon([tuple(p) for p in poly], fill=tuple(int(v) for v in c))


PANEL_COLORS = ((0.62, 0.72, 0.86), (0.86, 0.70, 0.55), (0.65, 0.84, 0.62), (0.82, 0.62, 0.80))


def render_motion_frames(
    motions: Sequence,
    *,
    titles: Sequence[str] | None = None,
    size: int = 192,
    fps_out: float = 15.0,
    distance: float = 3.6,
    model=None,
) -> list:
    """Pillow images of bodies performing motions, one panel per motion, side by side.

    Args:
        motions: :class:`bodies.motion.dataset.Motion` objects (same frame rate; the shorter
            ones hold their last frame).
        titles: one caption per panel.
        size: panel width and height in pixels.
        fps_out: frames per second of the pictures (the motions are subsampled to it).
        distance: camera distance from the body (m).
        model: a :class:`bodies.model.BodyModel` (default: the synthetic model, mean shape).

    Returns:
        A list of ``PIL.Image`` frames, ``len(motions) * size`` wide.
    """
    import torch
    from PIL import Image, ImageDraw

    if not motions:
        raise MpgymError("render_motion_frames needs at least one motion.")
    fps = float(motions[0].fps)
    if any(abs(float(m.fps) - fps) > 1e-6 for m in motions):
        raise MpgymError("all motions drawn side by side must have one frame rate.")
    if model is None:
        from bodies.model import BodyModel

        model = BodyModel(dtype=torch.float32)
    faces = np.asarray(model.faces)
    T = max(len(m.transl) for m in motions)
    frames_idx = np.arange(0, T, max(1.0, fps / fps_out)).round().astype(int)
    panels = []
    for m in motions:
        idx = np.minimum(frames_idx, len(m.transl) - 1)
        with torch.no_grad():
            out = model(
                body_pose=torch.as_tensor(
                    m.body_pose[idx].reshape(len(idx), -1), dtype=torch.float32
                ),
                global_orient=torch.as_tensor(m.global_orient[idx], dtype=torch.float32),
                transl=torch.as_tensor(m.transl[idx], dtype=torch.float32),
            )
        # the model puts the pelvis at its rest position plus transl; motions carry the pelvis
        # position itself, so remove the rest pelvis offset
        pelvis0 = out.joints[:, 0].numpy() - m.transl[idx]
        verts = out.vertices.numpy() - pelvis0[:, None]
        panels.append((verts, _follow(m.transl, fps)[idx]))
    focal = 0.9 * size
    images = []
    for k in range(len(frames_idx)):
        img = Image.new("RGB", (size * len(motions), size), (255, 255, 255))
        draw = ImageDraw.Draw(img)
        for p, (verts, target) in enumerate(panels):
            eye = target[k] + distance * VIEW / np.linalg.norm(VIEW)
            R, t = look_at(eye, target[k] - np.array([0.0, 0.1, 0.0]))
            color = PANEL_COLORS[p % len(PANEL_COLORS)]
            ground = target[k]
            _draw_frame(
                draw, verts[k], faces, R, t, focal, (size * (p + 0.5), size / 2), color, ground
            )
            if titles is not None and p < len(titles):
                draw.text((size * p + 4, 3), titles[p], fill=(0, 0, 0))
        images.append(img)
    return images


def save_motion_gif(
    path: str | Path,
    motions: Sequence,
    *,
    titles: Sequence[str] | None = None,
    size: int = 192,
    fps_out: float = 15.0,
) -> Path:
    """Write motions side by side as a looping GIF (atomically: temp file, then rename).

    Args:
        path: output ``.gif``.
        motions: :class:`bodies.motion.dataset.Motion` objects.
        titles: panel captions.
        size: panel size in pixels.
        fps_out: GIF frame rate.

    Returns:
        The path written.
    """
    from mpgym.plots import save_gif

    path = Path(path)
    if path.suffix.lower() != ".gif":
        raise MpgymError(f"motion pictures are written as .gif; got {path.name!r}.")
    frames = render_motion_frames(motions, titles=titles, size=size, fps_out=fps_out)
    return save_gif(path, frames, fps=fps_out)
