"""``BodyModel``: an SMPL-format body model as a ``torch.nn.Module`` (smplx-compatible).

Example:
    >>> model = BodyModel("synthetic")                      # doctest: +SKIP
    >>> out = model(betas=torch.zeros(2, 10), body_pose=torch.zeros(2, 69))  # doctest: +SKIP
    >>> out.vertices.shape, out.joints.shape                # doctest: +SKIP
    (torch.Size([2, 6890, 3]), torch.Size([2, 24, 3]))

Differences from ``smplx.SMPL``: ``joints`` are the 24 regressed joints only (smplx appends 21
vertices picked on the official mesh, which mean nothing on another mesh); parameters are
passed to ``forward``, not stored in the module.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from bodies.io import load_model_arrays
from bodies.lbs import joint_major_weights, joint_shape_basis, lbs
from mpgym.errors import MpgymError


def _brief(value: Any) -> str:
    """A tensor or array as its shape and dtype (``float32[2, 6890, 3]``); other values as is."""
    if isinstance(value, (Tensor, np.ndarray)):
        dtype = str(value.dtype).removeprefix("torch.")
        return f"{dtype}[{', '.join(map(str, value.shape))}]"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, list) and len(value) > 8:
        return f"[{len(value)} items]"
    return repr(value)


def shapes_repr(obj: Any) -> str:
    """``Name(field=float32[2, 24, 3], ...)``: a dataclass's repr without the tensors' values."""
    fields = ", ".join(f"{f.name}={_brief(getattr(obj, f.name))}" for f in dataclasses.fields(obj))
    return f"{type(obj).__name__}({fields})"


@dataclass(repr=False)
class BodyOutput:
    """What :class:`BodyModel` returns (field names as in smplx's ``SMPLOutput``)."""

    vertices: Tensor  # [B, V, 3]
    joints: Tensor  # [B, J, 3]
    betas: Tensor  # [B, S]
    full_pose: Tensor  # [B, J, 3, 3] local rotations, root first

    def __repr__(self) -> str:
        return shapes_repr(self)


def resolve_model_path(model: str | os.PathLike) -> Path:
    """``"synthetic"`` -> the built (cached) SMPL-compatible model; anything else is a path."""
    if str(model) == "synthetic":
        from bodies.synthetic import build

        return build()
    return Path(model)


class BodyModel(nn.Module):
    """SMPL-format body model: shape and pose blend shapes, joint regressor, LBS.

    Args:
        model: ``"synthetic"`` (built on first use, cached) or a path to an SMPL ``.npz``/``.pkl``.
        num_betas: how many shape coefficients to use (at most those in the file).
        dtype: ``torch.float32`` or ``torch.float64`` for the buffers.
    """

    def __init__(
        self,
        model: str | os.PathLike = "synthetic",
        *,
        num_betas: int = 10,
        dtype: torch.dtype = torch.float32,
    ):
        super().__init__()
        path = resolve_model_path(model)
        a = load_model_arrays(path)
        self.path = path
        S = a["shapedirs"].shape[-1]
        if not 1 <= num_betas <= S:
            raise MpgymError(
                f"num_betas={num_betas}, but {path} has {S} shape components; accepted: 1..{S}."
            )
        self.num_betas = num_betas
        V = a["v_template"].shape[0]
        t = lambda x: torch.as_tensor(np.asarray(x, dtype=np.float64), dtype=dtype)  # noqa: E731
        self.register_buffer("v_template", t(a["v_template"]))
        self.register_buffer("shapedirs", t(a["shapedirs"][..., :num_betas]))
        self.register_buffer("posedirs", t(a["posedirs"].reshape(V * 3, -1).T))
        self.register_buffer("J_regressor", t(a["J_regressor"]))
        self.register_buffer("lbs_weights", t(a["weights"]))
        # joints are affine in the betas: precontract J_regressor with the shape basis once
        self.register_buffer(
            "joint_basis", joint_shape_basis(self.J_regressor, self.v_template, self.shapedirs)
        )
        # and lay the skinning weights out joint-major once, as the compiled skinning reads them
        self.register_buffer(
            "lbs_weights_jm", joint_major_weights(self.lbs_weights), persistent=False
        )
        parents = torch.as_tensor(a["kintree_table"][0].astype(np.int64))
        parents[0] = -1
        self.register_buffer("parents", parents)
        self.register_buffer("faces_tensor", torch.as_tensor(a["f"].astype(np.int64)))
        names = a.get("joint_names")
        self.joint_names = (
            tuple(names.tolist())
            if names is not None
            else tuple(f"joint{j}" for j in range(len(parents)))
        )

    def extra_repr(self) -> str:
        """What ``print(model)`` shows: the file and the sizes, not the arrays."""
        return (
            f"model={self.path.name!r}, vertices={self.v_template.shape[0]}, "
            f"faces={self.faces_tensor.shape[0]}, joints={self.num_joints}, "
            f"num_betas={self.num_betas}, dtype={str(self.v_template.dtype).removeprefix('torch.')}"
        )

    def joint_affine(self) -> tuple[Tensor, Tensor]:
        """The rest joints as an affine function of the betas, ``J(beta) = J0 + D beta``.

        Returns:
            ``(J0 [J, 3], D [J, 3, S])``: the ``joint_basis`` buffer
            (:func:`bodies.lbs.joint_shape_basis`, built once) in joint-major layout.
        """
        J, S = self.num_joints, self.num_betas
        return self.joint_basis[:, S].reshape(J, 3), self.joint_basis[:, :S].reshape(J, 3, S)

    @property
    def num_joints(self) -> int:
        """Joints in the tree (24 for SMPL)."""
        return int(self.parents.shape[0])

    @property
    def faces(self) -> np.ndarray:
        """``(F, 3)`` int64 triangle indices."""
        return self.faces_tensor.cpu().numpy()

    def _rotations(self, name: str, x: Tensor | None, n: int, B: int) -> Tensor:
        """Axis-angle ``[B, n*3]``/``[B, n, 3]`` or ``[B, n, 3, 3]`` -> ``[B, n, 3, 3]``."""
        from bodies.rotations import axis_angle_to_matrix

        if x is None:
            return torch.eye(3, dtype=self.v_template.dtype, device=self.v_template.device).expand(
                B, n, 3, 3
            )
        if x.ndim == 2 and x.shape[1] == n * 3:
            x = x.reshape(x.shape[0], n, 3)
        if x.ndim == 3 and x.shape[1:] == (n, 3):
            return axis_angle_to_matrix(x)
        if x.ndim == 4 and x.shape[1:] == (n, 3, 3):
            return x
        raise MpgymError(
            f"{name} has shape {tuple(x.shape)}; accepted: (B, {n * 3}) or (B, {n}, 3) "
            f"axis-angle, or (B, {n}, 3, 3) rotation matrices."
        )

    def forward(
        self,
        betas: Tensor | None = None,
        body_pose: Tensor | None = None,
        global_orient: Tensor | None = None,
        transl: Tensor | None = None,
    ) -> BodyOutput:
        """Pose and shape the body.

        Args:
            betas: ``[B, S']`` with ``S' <= num_betas`` (missing ones are zero); default zeros.
            body_pose: ``[B, 3 (J-1)]`` axis-angle (``[B, 69]`` for SMPL), ``[B, J-1, 3]``, or
                ``[B, J-1, 3, 3]`` rotation matrices; default rest pose.
            global_orient: ``[B, 3]`` axis-angle or ``[B, 1, 3, 3]``; default identity.
            transl: ``[B, 3]`` translation; default zero.

        Returns:
            :class:`BodyOutput` with ``vertices [B, V, 3]`` and ``joints [B, J, 3]``.
        """
        given = [x for x in (betas, body_pose, global_orient, transl) if x is not None]
        B = max((x.shape[0] for x in given), default=1)
        for name, x in (
            ("betas", betas),
            ("body_pose", body_pose),
            ("global_orient", global_orient),
            ("transl", transl),
        ):
            if x is not None and (x.ndim < 2 or x.shape[0] not in (1, B)):
                raise MpgymError(
                    f"{name} has shape {tuple(x.shape)}; expected a batch of {B} "
                    "(or 1) in the first dimension."
                )
        dtype, device = self.v_template.dtype, self.v_template.device
        if betas is None:
            betas = torch.zeros(B, self.num_betas, dtype=dtype, device=device)
        if betas.ndim != 2 or betas.shape[1] > self.num_betas:
            raise MpgymError(
                f"betas has shape {tuple(betas.shape)}; "
                f"accepted: (B, S) with S <= {self.num_betas}."
            )
        if betas.shape[1] < self.num_betas:
            betas = torch.nn.functional.pad(betas, (0, self.num_betas - betas.shape[1]))
        J = self.num_joints
        go = (
            global_orient[:, None]
            if global_orient is not None and global_orient.shape[1:] == (3,)
            else global_orient
        )
        rot = torch.cat(
            [
                self._rotations("global_orient", go, 1, B).expand(B, -1, -1, -1),
                self._rotations("body_pose", body_pose, J - 1, B).expand(B, -1, -1, -1),
            ],
            1,
        )
        betas = betas.to(dtype).expand(B, -1)
        verts, joints = lbs(
            betas,
            rot.to(dtype),
            self.v_template,
            self.shapedirs,
            self.posedirs,
            self.J_regressor,
            self.parents,
            self.lbs_weights,
            pose2rot=False,
            joint_basis=self.joint_basis,
            joint_major=self.lbs_weights_jm,
        )
        if transl is not None:
            if transl.shape[-1] != 3:
                raise MpgymError(f"transl has shape {tuple(transl.shape)}; accepted: (B, 3).")
            verts = verts + transl.to(dtype)[:, None]
            joints = joints + transl.to(dtype)[:, None]
        return BodyOutput(vertices=verts, joints=joints, betas=betas, full_pose=rot)


def _fuzz_entry(path: str) -> None:
    """Load a model file and pose two bodies through the compiled kernels (for fuzz tests)."""
    model = BodyModel(path, num_betas=1, dtype=torch.float64)
    pose = torch.full((2, 3 * (model.num_joints - 1)), 0.1, dtype=torch.float64)
    with torch.no_grad():
        model(betas=torch.ones(2, 1, dtype=torch.float64), body_pose=pose)
        model(body_pose=pose[:1])
