"""Pictures of bodies: shaded meshes drawn with matplotlib (painter's algorithm), keypoints on top.

Camera convention (as SMPLify): points ``X`` in camera space (x right, y down, z forward)
project to ``u = f x / z + c``. Bodies in SMPL's frame (y up, facing +z) are seen from the front
by a camera at ``(0, 0, d)`` looking back at them; :func:`front_camera` makes that camera.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from bodies.skeleton import PARENTS


def front_camera(distance: float = 3.3) -> tuple[np.ndarray, np.ndarray]:
    """Rotation and translation (``X_cam = R X + t``) of a front camera.

    The camera is at ``z = distance`` facing the body (image x = the body's left,
    image y = down), centred 0.3 m below the origin.
    """
    return np.diag([1.0, -1.0, -1.0]), np.array([0.0, -0.3, distance])


def project(
    points: np.ndarray, R: np.ndarray, t: np.ndarray, focal: float, center: tuple[float, float]
) -> tuple[np.ndarray, np.ndarray]:
    """Perspective projection.

    Args:
        points: ``(..., 3)`` world points.
        R: ``(3, 3)`` world-to-camera rotation.
        t: ``(3,)`` translation.
        focal: focal length in pixels.
        center: principal point ``(cx, cy)``.

    Returns:
        ``(uv (..., 2), depth (...))``.
    """
    X = points @ R.T + t
    return focal * X[..., :2] / X[..., 2:3] + np.asarray(center), X[..., 2]


def draw_mesh(
    ax,
    vertices: np.ndarray,
    faces: np.ndarray,
    R: np.ndarray,
    t: np.ndarray,
    focal: float,
    center: tuple[float, float],
    *,
    color=(0.62, 0.72, 0.86),
    alpha: float = 1.0,
) -> None:
    """Draw a shaded mesh into a matplotlib axis in pixel coordinates (far faces first)."""
    from matplotlib.collections import PolyCollection

    uv, z = project(vertices, R, t, focal, center)
    tri = vertices[faces] @ R.T
    n = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    n /= np.linalg.norm(n, axis=1, keepdims=True) + 1e-12
    facing = n[:, 2] < 0  # camera looks along +z: front faces have normals towards -z
    light = np.clip(-n @ np.array([0.3, 0.4, 1.0]) / np.linalg.norm([0.3, 0.4, 1.0]), 0, 1)
    order = np.argsort(-z[faces].mean(1))
    order = order[facing[order]]
    shade = (0.35 + 0.65 * light[order])[:, None] * np.asarray(color)[None]
    pc = PolyCollection(
        uv[faces[order]],
        facecolors=np.clip(shade, 0, 1),
        edgecolors="none",
        alpha=alpha,
        antialiased=False,
    )
    ax.add_collection(pc)


def draw_skeleton(
    ax,
    uv: np.ndarray,
    *,
    color: str = "r",
    parents=PARENTS,
    marker: str = "o",
    label: str | None = None,
    visible: np.ndarray | None = None,
) -> None:
    """Draw 2D joints ``(J, 2)`` and their bones."""
    vis = np.ones(len(uv), bool) if visible is None else np.asarray(visible, bool)
    for j, p in enumerate(parents):
        if p >= 0 and vis[j] and vis[p]:
            ax.plot(uv[[p, j], 0], uv[[p, j], 1], "-", color=color, lw=1.2)
    ax.plot(uv[vis, 0], uv[vis, 1], marker, color=color, ms=3, ls="none", label=label)


def body_figure(
    path: str | Path, panels: list[dict], *, size: int = 256, focal: float = 400.0, title: str = ""
) -> Path:
    """Save a row of panels as one PNG.

    Each panel is a dict with ``vertices``, ``faces`` and optional ``keypoints`` ``(J, 2)``,
    ``pred_keypoints`` (pixels), ``title``, ``camera`` ``(R, t)``.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(
        1, len(panels), figsize=(2.4 * len(panels), 2.6), dpi=110, squeeze=False
    )
    for ax, p in zip(axes[0], panels, strict=False):
        R, t = p.get("camera") or front_camera()
        center = (size / 2, size / 2)
        draw_mesh(
            ax,
            np.asarray(p["vertices"]),
            np.asarray(p["faces"]),
            R,
            t,
            focal,
            center,
            alpha=p.get("alpha", 1.0),
        )
        if p.get("keypoints") is not None:
            draw_skeleton(
                ax,
                np.asarray(p["keypoints"]),
                color="tab:red",
                label="input",
                visible=p.get("visible"),
            )
        if p.get("pred_keypoints") is not None:
            draw_skeleton(
                ax, np.asarray(p["pred_keypoints"]), color="tab:green", marker="x", label="fit"
            )
        ax.set_xlim(0, size)
        ax.set_ylim(size, 0)
        ax.set_aspect("equal")
        ax.axis("off")
        ax.set_title(p.get("title", ""), fontsize=8)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
