"""BVH motion files of the SMPL skeleton: write (opens in Blender) and read back.

The skeleton written by :func:`save_bvh` is SMPL's 24 joints with their names
(:data:`bodies.skeleton.JOINT_NAMES`) and tree, each joint's ``OFFSET`` from its parent taken
from the rest skeleton (:func:`bodies.skeleton.rest_joints`, a T-pose) in **metres** by default
(``units="cm"`` writes centimetres; :func:`load_bvh` tells them apart by the offsets' size), the
axes SMPL's (y up, the body faces +z). Leaf joints (head, hands, toes) end in an ``End Site``
(:data:`END_SITES`).

Channels: the root ``Xposition Yposition Zposition Zrotation Xrotation Yrotation``, every other
joint ``Zrotation Xrotation Yrotation``, angles in degrees. BVH applies a joint's rotation
channels in the order they are listed, each about the joint's (rotating) local axis, so
``Zrotation Xrotation Yrotation`` means ``R = R_z(z) R_x(x) R_y(y)`` acting on column vectors,
which is scipy's intrinsic ``Rotation.from_euler("ZXY", [z, x, y], degrees=True)``. That ``R``
is SMPL's local rotation of the joint (the root's: its global orientation), because SMPL's rest
pose has every joint frame aligned with the world. The root's position channels (plus its
``OFFSET``, written as 0) are the pelvis' world position, :attr:`Motion.transl`.

Reading (:func:`read_bvh` for any skeleton, :func:`load_bvh` for this one) is bounded:
:data:`MAX_BYTES` per file, :data:`MAX_JOINTS` joints, ``MAX_FRAMES`` frames, nesting depth
:data:`MAX_JOINTS`, and every malformed file is one :class:`~mpgym.errors.MpgymError`.
"""

from __future__ import annotations

import math
import os
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from bodies.motion.dataset import MAX_FRAMES, Motion
from bodies.skeleton import JOINT_NAMES, NUM_JOINTS, PARENTS, children, rest_joints
from mpgym.errors import MpgymError

__all__ = ["END_SITES", "BvhClip", "load_bvh", "read_bvh", "save_bvh"]

MAX_BYTES = 256 * 2**20
"""Largest BVH file read (256 MiB: hours of motion of a 24-joint body)."""
MAX_JOINTS = 256
"""Most joints (and ``End Site`` blocks) a BVH file may declare."""

END_SITES: dict[int, tuple[float, float, float]] = {
    10: (0.0, -0.02, 0.07),
    11: (0.0, -0.02, 0.07),
    15: (0.0, 0.2, 0.02),
    22: (0.08, 0.0, 0.0),
    23: (-0.08, 0.0, 0.0),
}
"""``End Site`` offset (m) of each leaf joint: toe tips, the top of the head, finger tips."""

ROOT_CHANNELS = ("Xposition", "Yposition", "Zposition", "Zrotation", "Xrotation", "Yrotation")
JOINT_CHANNELS = ("Zrotation", "Xrotation", "Yrotation")
_UNITS = {"m": 1.0, "cm": 100.0}


@dataclass(repr=False)
class BvhClip:
    """A parsed BVH file, any skeleton: the hierarchy in file order and the frames."""

    names: tuple[str, ...]
    """Joint names in file (depth-first) order, root first."""
    parents: tuple[int, ...]
    """Parent index of each joint (``-1`` for the root)."""
    offsets: np.ndarray
    """``(J, 3)`` offset of each joint from its parent, in the file's units."""
    channels: tuple[tuple[str, ...], ...]
    """Channel names of each joint, in file order."""
    frame_time: float
    """Seconds per frame."""
    values: np.ndarray
    """``(T, C)`` float64 channel values of each frame, joints in file order."""

    def __repr__(self) -> str:
        return f"BvhClip(joints={len(self.names)}, frames={len(self.values)})"

    def _columns(self, j: int, kind: str) -> tuple[list[int], str]:
        """Columns of joint ``j``'s ``kind`` (``"rotation"``/``"position"``) channels, axes."""
        start = sum(len(c) for c in self.channels[:j])
        cols = [start + i for i, c in enumerate(self.channels[j]) if c.endswith(kind)]
        axes = "".join(self.channels[j][c - start][0] for c in cols)
        return cols, axes

    def local_rotations(self) -> np.ndarray:
        """``(T, J, 3, 3)`` each joint's rotation, its channels applied in the listed order.

        ``Zrotation Xrotation Yrotation`` with values ``(z, x, y)`` degrees gives
        ``R_z(z) R_x(x) R_y(y)`` (intrinsic ``"ZXY"``); a joint without rotation channels stays
        at rest.
        """
        from scipy.spatial.transform import Rotation

        T = len(self.values)
        out = np.broadcast_to(np.eye(3), (T, len(self.names), 3, 3)).copy()
        for j in range(len(self.names)):
            cols, axes = self._columns(j, "rotation")
            if cols and T:
                out[:, j] = Rotation.from_euler(
                    axes, self.values[:, cols], degrees=True
                ).as_matrix()
        return out

    def root_positions(self) -> np.ndarray:
        """``(T, 3)`` the root's ``OFFSET`` plus its position channels (file units)."""
        pos = np.broadcast_to(self.offsets[0], (len(self.values), 3)).copy()
        cols, axes = self._columns(0, "position")
        for c, a in zip(cols, axes, strict=True):
            pos[:, "XYZ".index(a)] += self.values[:, c]
        return pos


# ------------------------------------------------------------------ writing
def _hierarchy(scale: float) -> tuple[list[str], list[int]]:
    """The ``HIERARCHY`` lines and the joints in the depth-first order their channels take."""
    J = rest_joints()
    kids = children(PARENTS)
    lines, order = ["HIERARCHY"], []

    def fmt(v: np.ndarray | tuple[float, ...]) -> str:
        return " ".join(f"{scale * x:.6f}" for x in v)

    def joint(k: int, depth: int) -> None:
        pad = "  " * depth
        head = "ROOT" if k == 0 else "JOINT"
        offset = np.zeros(3) if k == 0 else J[k] - J[PARENTS[k]]
        chans = ROOT_CHANNELS if k == 0 else JOINT_CHANNELS
        lines.extend(
            [
                f"{pad}{head} {JOINT_NAMES[k]}",
                f"{pad}{{",
                f"{pad}  OFFSET {fmt(offset)}",
                f"{pad}  CHANNELS {len(chans)} {' '.join(chans)}",
            ]
        )
        order.append(k)
        for c in kids[k]:
            joint(c, depth + 1)
        if not kids[k]:
            end = END_SITES.get(k, (0.0, 0.05, 0.0))
            lines.extend(
                [f"{pad}  End Site", f"{pad}  {{", f"{pad}    OFFSET {fmt(end)}", f"{pad}  }}"]
            )
        lines.append(f"{pad}}}")

    joint(0, 0)
    return lines, order


def save_bvh(path: str | os.PathLike, motion: Motion, *, units: Literal["m", "cm"] = "m") -> Path:
    """Write a motion as a BVH file of the SMPL skeleton (module docstring), atomically.

    Args:
        path: the ``.bvh`` file to write.
        motion: the motion.
        units: ``"m"`` (Blender's default import scale shows it life-size) or ``"cm"``.

    Returns:
        ``path``.
    """
    from scipy.spatial.transform import Rotation

    from mpgym.checkpoint import atomic_write_bytes

    if units not in _UNITS:
        raise MpgymError(f"units {units!r} are not accepted; use 'm' or 'cm'.")
    scale = _UNITS[units]
    lines, order = _hierarchy(scale)
    T = len(motion)
    rot = motion.poses.reshape(T, NUM_JOINTS, 3)[:, order].reshape(-1, 3)
    with warnings.catch_warnings():  # at x = +-90 deg scipy picks y = 0: still the same rotation
        warnings.filterwarnings("ignore", "Gimbal lock", UserWarning)
        euler = Rotation.from_rotvec(rot).as_euler("ZXY", degrees=True).reshape(T, -1)
    values = np.concatenate([scale * motion.transl, euler], 1)
    lines += ["MOTION", f"Frames: {T}", f"Frame Time: {1.0 / motion.fps:.10g}"]
    lines += [" ".join(f"{v:.10g}" for v in row) for row in values]
    return atomic_write_bytes(path, ("\n".join(lines) + "\n").encode("ascii"))


# ------------------------------------------------------------------ reading
class _Tokens:
    """The ``HIERARCHY`` section as a stream of whitespace-separated tokens."""

    def __init__(self, text: str, path: Path):
        self.items = text.split()
        self.i = 0
        self.path = path

    def next(self, what: str) -> str:
        if self.i >= len(self.items):
            raise MpgymError(f"{self.path}: the hierarchy ends early (expected {what}).")
        self.i += 1
        return self.items[self.i - 1]

    def expect(self, word: str) -> None:
        got = self.next(repr(word))
        if got != word:
            raise MpgymError(f"{self.path}: expected {word!r} in the hierarchy, found {got!r}.")

    def number(self) -> float:
        tok = self.next("a number")
        try:
            x = float(tok)
        except ValueError:
            raise MpgymError(
                f"{self.path}: expected a number in the hierarchy, found {tok!r}."
            ) from None
        if not math.isfinite(x):
            raise MpgymError(f"{self.path}: an OFFSET holds {tok!r}; offsets must be finite.")
        return x


_CHANNEL = re.compile(r"[XYZ](position|rotation)")


def _parse_joint(tok: _Tokens, parent: int, clip: dict, depth: int) -> None:
    """One ``ROOT``/``JOINT`` block (its name already read into ``clip``), recursively."""
    if depth > MAX_JOINTS or len(clip["names"]) > MAX_JOINTS:
        raise MpgymError(f"{tok.path}: more than {MAX_JOINTS} joints or levels of nesting.")
    me = len(clip["names"]) - 1
    clip["parents"].append(parent)
    tok.expect("{")
    tok.expect("OFFSET")
    clip["offsets"].append([tok.number() for _ in range(3)])
    chans: tuple[str, ...] = ()
    word = tok.next("CHANNELS, JOINT, End Site or }")
    if word == "CHANNELS":
        n = tok.next("a channel count")
        if n not in {"0", "1", "2", "3", "4", "5", "6"}:
            raise MpgymError(f"{tok.path}: CHANNELS {n!r}; a joint has 0 to 6 channels.")
        chans = tuple(tok.next("a channel name") for _ in range(int(n)))
        bad = [c for c in chans if not _CHANNEL.fullmatch(c)]
        if bad or len(set(chans)) != len(chans):
            raise MpgymError(
                f"{tok.path}: joint {clip['names'][me]!r} has channels {' '.join(chans)}; "
                "accepted: distinct X/Y/Z position and rotation channels."
            )
        word = tok.next("JOINT, End Site or }")
    clip["channels"].append(chans)
    while word != "}":
        if word == "JOINT":
            clip["names"].append(tok.next("a joint name"))
            _parse_joint(tok, me, clip, depth + 1)
        elif word == "End":
            tok.expect("Site")
            tok.expect("{")
            tok.expect("OFFSET")
            [tok.number() for _ in range(3)]
            tok.expect("}")
        else:
            raise MpgymError(f"{tok.path}: unexpected {word!r} in joint {clip['names'][me]!r}.")
        word = tok.next("JOINT, End Site or }")


def _frames_header(lines: list[str], path: Path) -> tuple[int, float]:
    """``Frames: N`` and ``Frame Time: dt`` after ``MOTION``."""
    m1 = re.fullmatch(r"Frames:\s*(\d{1,9})", lines[0].strip()) if lines else None
    m2 = re.fullmatch(r"Frame\s+Time:\s*(\S+)", lines[1].strip()) if len(lines) > 1 else None
    if not (m1 and m2):
        raise MpgymError(f"{path}: MOTION must be followed by 'Frames: N' and 'Frame Time: dt'.")
    n = int(m1.group(1))
    try:
        dt = float(m2.group(1))
    except ValueError:
        dt = math.nan
    if not (math.isfinite(dt) and dt > 0) or not 1 <= n <= MAX_FRAMES:
        raise MpgymError(
            f"{path}: Frames {n}, Frame Time {m2.group(1)}; expected 1 to {MAX_FRAMES} frames "
            "and a frame time > 0 s."
        )
    return n, dt


def read_bvh(path: str | os.PathLike) -> BvhClip:
    """Parse a BVH file of any skeleton (bounded, module docstring).

    Args:
        path: the ``.bvh`` file.

    Returns:
        :class:`BvhClip`.
    """
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > MAX_BYTES:
            raise MpgymError(f"{path} is {size} bytes; BVH files up to {MAX_BYTES} are read.")
        text = path.read_bytes().decode("utf-8")
    except OSError as exc:
        raise MpgymError(f"cannot read {path} ({exc}).") from None
    except UnicodeDecodeError:
        raise MpgymError(f"{path} is not a text (UTF-8) BVH file.") from None
    head, sep, tail = text.partition("MOTION")
    tok = _Tokens(head, path)
    if not sep or tok.next("HIERARCHY") != "HIERARCHY":
        raise MpgymError(f"{path} is not a BVH file: expected HIERARCHY ... MOTION sections.")
    tok.expect("ROOT")
    clip: dict = {"names": [tok.next("the root's name")], "parents": [], "offsets": []}
    clip["channels"] = []
    _parse_joint(tok, -1, clip, 0)
    if tok.i != len(tok.items):
        raise MpgymError(f"{path}: {tok.items[tok.i]!r} after the root joint's block.")
    lines = tail.strip().split("\n", 2)
    n, dt = _frames_header(lines, path)
    C = sum(len(c) for c in clip["channels"])
    body = lines[2] if len(lines) > 2 else ""
    try:
        values = np.array(body.split(), dtype=np.float64)
    except ValueError:
        raise MpgymError(f"{path}: the frames hold something that is not a number.") from None
    if values.size != n * C:
        raise MpgymError(
            f"{path}: {n} frames of {C} channels need {n * C} numbers; the file holds "
            f"{values.size}."
        )
    return BvhClip(
        names=tuple(clip["names"]),
        parents=tuple(clip["parents"]),
        offsets=np.array(clip["offsets"], np.float64),
        channels=tuple(clip["channels"]),
        frame_time=dt,
        values=values.reshape(n, C),
    )


def _check_smpl(clip: BvhClip, path: Path) -> list[int]:
    """SMPL joint index of each file joint; one error if the skeleton is not SMPL's."""
    expected = ", ".join(
        f"{JOINT_NAMES[k]}<{JOINT_NAMES[PARENTS[k]]}" for k in range(1, NUM_JOINTS)
    )
    problem = None
    if sorted(clip.names) != sorted(JOINT_NAMES):
        extra = sorted(set(clip.names) - set(JOINT_NAMES))
        missing = sorted(set(JOINT_NAMES) - set(clip.names))
        problem = f"joints not in SMPL: {extra or 'none'}; SMPL joints missing: {missing or 'none'}"
        if len(clip.names) != len(set(clip.names)):
            problem = "a joint name used twice"
    elif clip.names[0] != "pelvis":
        problem = f"root {clip.names[0]!r}"
    else:
        for j, p in enumerate(clip.parents[1:], 1):
            k = JOINT_NAMES.index(clip.names[j])
            if clip.names[p] != JOINT_NAMES[PARENTS[k]]:
                problem = f"{clip.names[j]!r} under {clip.names[p]!r}"
                break
    if problem is None:
        for j, chans in enumerate(clip.channels):
            rot = [c for c in chans if c.endswith("rotation")]
            pos = [c for c in chans if c.endswith("position")]
            if len(rot) != 3 or (j == 0 and len(pos) != 3):
                problem = f"joint {clip.names[j]!r} has channels {' '.join(chans) or 'none'}"
                break
    if problem is not None:
        raise MpgymError(
            f"{path} does not hold the SMPL skeleton ({problem}). Expected 24 joints, root "
            f"pelvis, each under its SMPL parent (joint<parent): {expected}; three rotation "
            "channels per joint and three position channels at the root."
        )
    return [JOINT_NAMES.index(n) for n in clip.names]


def _unit_scale(clip: BvhClip, path: Path) -> float:
    """File units per metre (1 or 100), from the offsets' size against the rest skeleton's."""
    J = rest_joints()
    rest = sum(np.linalg.norm(J[k] - J[PARENTS[k]]) for k in range(1, NUM_JOINTS))
    s = float(np.linalg.norm(clip.offsets[1:], axis=1).sum() / rest)
    for scale in _UNITS.values():
        if 0.5 * scale < s < 2.0 * scale:
            return scale
    raise MpgymError(
        f"{path}: the bones are {s:.3g} times the rest skeleton's length in metres; expected "
        "an SMPL-sized body in metres (about 1x) or centimetres (about 100x)."
    )


def load_bvh(path: str | os.PathLike, *, label: str | None = None) -> Motion:
    """Read a BVH file of the SMPL skeleton (as :func:`save_bvh` writes) as a motion.

    Joints may come in any depth-first order and with any rotation channel order; offsets in
    metres or centimetres (told apart by size); the bones' lengths are not used.

    Args:
        path: the ``.bvh`` file.
        label: the motion's label (default: the file's stem).

    Returns:
        The motion at the file's frame rate.
    """
    from scipy.spatial.transform import Rotation

    path = Path(path)
    clip = read_bvh(path)
    index = _check_smpl(clip, path)
    scale = _unit_scale(clip, path)
    if not np.isfinite(clip.values).all():
        bad = int(np.argmax(~np.isfinite(clip.values).all(1)))
        raise MpgymError(f"{path}: frame {bad} has NaN or infinite values.")
    T = len(clip.values)
    R = np.empty((T, NUM_JOINTS, 3, 3))
    R[:, index] = clip.local_rotations()
    fps = 1.0 / clip.frame_time
    if abs(fps - round(fps)) < 1e-4 * fps:  # "Frame Time: 0.033333" is 30 fps
        fps = float(round(fps))
    poses = Rotation.from_matrix(R.reshape(-1, 3, 3)).as_rotvec().reshape(T, NUM_JOINTS, 3)
    return Motion(
        label if label is not None else path.stem,
        fps,
        poses[:, 0],
        poses[:, 1:],
        clip.root_positions() / scale,
    )
