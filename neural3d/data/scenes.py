"""Built-in scenes to render multi-view datasets from: meshes with per-face materials.

A :class:`TexturedScene` is a triangle mesh plus, per face, a base colour and a procedural
pattern (plain, 3-D checker, stripes) evaluated at the hit point -- texture without image
files. :func:`builtin_scene` builds the named scenes; ``"tabletop"`` (the default) has thin
parts (a 5 cm pole, a 2 cm-thick flag, a thin ring), concavities (an open cup, a torus hole)
and textured surfaces (a checkered base, a striped ball), all inside ``[-1, 1]^3`` with ``+z``
up, as NeRF-synthetic scenes are.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mpgym.errors import MpgymError

__all__ = ["BUILTIN_SCENES", "PATTERNS", "TexturedScene", "builtin_scene", "scene_from_mesh"]

PATTERNS = ("plain", "checker", "stripes")
"""Procedural patterns by index (``face_pattern`` values)."""


@dataclass
class TexturedScene:
    """A mesh with per-face base colours and procedural patterns."""

    mesh: object
    """``trimesh.Trimesh``."""
    face_color: np.ndarray
    """``(F, 3)`` float base colour in [0, 1]."""
    face_pattern: np.ndarray
    """``(F,)`` int index into :data:`PATTERNS`."""
    vertex_color: np.ndarray | None = None
    """``(V, 3)`` float colours interpolated over faces instead of ``face_color`` when given."""

    def albedo(self, points: np.ndarray, faces: np.ndarray, bary: np.ndarray) -> np.ndarray:
        """Albedo ``(N, 3)`` at hit ``points (N, 3)`` on ``faces (N,)`` (barycentrics ``bary``)."""
        if self.vertex_color is not None:
            tri = np.asarray(self.mesh.faces)[faces]  # (N, 3)
            u, v = bary[:, :1], bary[:, 1:]
            vc = self.vertex_color
            base = (1 - u - v) * vc[tri[:, 0]] + u * vc[tri[:, 1]] + v * vc[tri[:, 2]]
        else:
            base = self.face_color[faces]
        pat = self.face_pattern[faces]
        mod = np.ones(len(points))
        checker = np.floor(points * 8.0).sum(-1).astype(np.int64) % 2  # 1/8-unit 3-D checker
        mod = np.where(pat == 1, 0.45 + 0.55 * checker, mod)
        stripes = 0.5 + 0.5 * np.sin(points[:, 2] * 40.0)  # horizontal bands
        mod = np.where(pat == 2, 0.35 + 0.65 * stripes, mod)
        return np.clip(base * mod[:, None], 0.0, 1.0)


def _part(mesh, color, pattern: str):
    n = len(mesh.faces)
    return mesh, np.tile(np.asarray(color, float), (n, 1)), np.full(n, PATTERNS.index(pattern))


def _tabletop():
    import trimesh
    from trimesh import creation

    parts = []
    base = creation.box(extents=(1.7, 1.7, 0.12))
    base.apply_translation((0, 0, -0.6))
    parts.append(_part(base, (0.85, 0.75, 0.55), "checker"))
    outer = creation.cylinder(radius=0.32, height=0.55, sections=48)
    inner = creation.cylinder(radius=0.26, height=0.55, sections=48)
    inner.apply_translation((0, 0, 0.08))  # open at the top, 5 cm floor
    try:
        cup = outer.difference(inner, engine="manifold")
    except Exception:  # no boolean engine: an uncut cylinder still renders
        cup = outer
    cup.apply_translation((-0.38, -0.3, -0.265))
    parts.append(_part(cup, (0.15, 0.45, 0.85), "plain"))
    torus = creation.torus(major_radius=0.28, minor_radius=0.08, major_sections=48,
                           minor_sections=16)
    torus.apply_transform(trimesh.transformations.rotation_matrix(np.pi / 2, (1, 0, 0)))
    torus.apply_translation((0.42, -0.35, -0.18))
    parts.append(_part(torus, (0.9, 0.3, 0.2), "plain"))
    ball = creation.icosphere(subdivisions=3, radius=0.26)
    ball.apply_translation((0.35, 0.42, -0.28))
    parts.append(_part(ball, (0.95, 0.85, 0.2), "stripes"))
    pole = creation.cylinder(radius=0.025, height=1.1, sections=16)
    pole.apply_translation((-0.45, 0.45, 0.0))
    parts.append(_part(pole, (0.3, 0.3, 0.3), "plain"))
    flag = creation.box(extents=(0.36, 0.02, 0.22))
    flag.apply_translation((-0.45 + 0.2, 0.45, 0.42))
    parts.append(_part(flag, (0.2, 0.75, 0.3), "checker"))
    ring = creation.torus(major_radius=0.22, minor_radius=0.015, major_sections=48,
                          minor_sections=8)
    ring.apply_translation((0.0, 0.1, 0.35))
    ring.apply_transform(trimesh.transformations.rotation_matrix(0.6, (0, 1, 0)))
    parts.append(_part(ring, (0.8, 0.2, 0.7), "plain"))
    mesh = trimesh.util.concatenate([p[0] for p in parts])
    return TexturedScene(mesh, np.concatenate([p[1] for p in parts]),
                         np.concatenate([p[2] for p in parts]))


def _ball():
    from trimesh import creation

    m, c, p = _part(creation.icosphere(subdivisions=3, radius=0.7), (0.9, 0.5, 0.2), "checker")
    return TexturedScene(m, c, p)


BUILTIN_SCENES = {"tabletop": _tabletop, "ball": _ball}
"""Name -> builder. ``ball`` is a checkered sphere for quick tests."""


def builtin_scene(name: str = "tabletop") -> TexturedScene:
    """A built-in scene by name (see :data:`BUILTIN_SCENES`)."""
    if name not in BUILTIN_SCENES:
        raise MpgymError(f"unknown built-in scene {name!r}; accepted: {', '.join(BUILTIN_SCENES)}.")
    return BUILTIN_SCENES[name]()


def scene_from_mesh(mesh) -> TexturedScene:
    """Wrap a user's ``trimesh.Trimesh``: its vertex colours when it has them, else grey checker."""
    n = len(mesh.faces)
    vc = None
    if getattr(mesh.visual, "kind", None) == "vertex":
        vc = np.asarray(mesh.visual.vertex_colors)[:, :3].astype(float) / 255.0
    return TexturedScene(mesh, np.full((n, 3), 0.75), np.full(n, 1 if vc is None else 0), vc)
