"""Load stable-baselines3 ``.zip`` models without running code from the file.

An SB3 zip holds ``data`` (JSON; entries it could not write as JSON -- the policy class, the
spaces, schedules, often ``policy_kwargs`` -- are cloudpickled and stored base64 under
``":serialized:"``) and ``policy.pth`` (the policy's state dict). ``Algo.load`` unpickles those
entries, so a crafted zip runs any code it likes. :func:`load_sb3` by default reads only:

- the JSON fields of ``data``, and of each serialised entry only the plain JSON hints SB3 writes
  beside the pickle (a space's ``_shape`` and ``n``, the policy class's method names,
  ``net_arch`` and the ``activation_fn`` name inside ``policy_kwargs``); the pickles themselves
  are never decoded;
- ``policy.pth`` with ``torch.load(..., weights_only=True)``.

It rebuilds the policy from the algorithm's own policy classes, the env's spaces and those
fields (layer widths missing from the JSON are read off the tensor shapes), then loads the state
dict strictly. ``trust_pickle=True`` calls SB3's own ``Algo.load`` instead (it unpickles).
Zip members are size-checked before they are read (declared size, compression ratio), so a zip
bomb is refused without being inflated.

Example:
    >>> model = load_sb3("dqn-cartpole.zip", "dqn", "CartPole-v1")  # doctest: +SKIP
    >>> action, _ = model.predict(obs, deterministic=True)  # doctest: +SKIP
"""

from __future__ import annotations

import io
import json
import logging
import lzma
import math
import re
import struct
import warnings
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import gymnasium as gym
import numpy as np

from envs.make import env_id_of, make_env
from mpgym.errors import MpgymError

log = logging.getLogger(__name__)

SB3_ALGOS = ("a2c", "ddpg", "dqn", "ppo", "sac", "td3")
"""Algorithms whose zips :func:`load_sb3` reads."""

MAX_DATA_BYTES = 64 * 2**20
"""Largest ``data`` member read (SB3 writes tens of kilobytes)."""
MAX_POLICY_BYTES = 1024 * 2**20
"""Largest ``policy.pth`` member read."""
MAX_ZIP_BYTES = 4 * 2**30
"""Largest zip file opened."""
MAX_DEFLATE_RATIO = 1100
"""Deflate cannot expand more than ~1032x; a member declaring more is a zip bomb."""

_POLICY_MODULES = {  # where each algorithm's policy classes live (SB3's layout)
    "dqn": "stable_baselines3.dqn.policies",
    "ppo": "stable_baselines3.common.policies",
    "a2c": "stable_baselines3.common.policies",
    "sac": "stable_baselines3.sac.policies",
    "td3": "stable_baselines3.td3.policies",
    "ddpg": "stable_baselines3.td3.policies",
}
_ACTIVATIONS = ("ReLU", "Tanh", "ELU", "LeakyReLU", "SiLU", "GELU", "Sigmoid", "Softplus",
                "Mish", "SELU", "CELU", "Hardtanh", "Hardswish", "Identity")
_EXTRACTORS = ("FlattenExtractor", "NatureCNN", "CombinedExtractor")
_BOOL_KWARGS = ("use_sde", "full_std", "use_expln", "squash_output", "share_features_extractor",
                "normalize_images", "ortho_init")
_IGNORED_KWARGS = ("optimizer_class", "optimizer_kwargs")  # training only
_ACTION_SPACES = {
    "dqn": (gym.spaces.Discrete,),
    "sac": (gym.spaces.Box,), "td3": (gym.spaces.Box,), "ddpg": (gym.spaces.Box,),
    "ppo": (gym.spaces.Box, gym.spaces.Discrete, gym.spaces.MultiDiscrete,
            gym.spaces.MultiBinary),
}
_ACTION_SPACES["a2c"] = _ACTION_SPACES["ppo"]
# What zipfile, zlib and lzma raise on a damaged archive.
_ZIP_ERRORS = (zipfile.BadZipFile, zlib.error, lzma.LZMAError, EOFError, OSError,
               NotImplementedError, RuntimeError, ValueError, OverflowError, MemoryError,
               struct.error, IndexError, KeyError)


@dataclass
class SB3Policy:
    """An SB3 policy rebuilt from the safe parts of a zip; ``predict`` is the model's.

    Attributes:
        policy: the ``stable_baselines3`` policy module, weights loaded, in eval mode.
        algo: the algorithm name (``"dqn"``).
        env_id: the env whose spaces the policy was built for.
        notes: what was taken from where (``"net_arch from tensor shapes"``), for logs.
    """

    policy: Any
    algo: str
    env_id: str
    notes: list[str] = field(default_factory=list)

    @property
    def observation_space(self) -> gym.Space:
        """The policy's observation space (the env's)."""
        return self.policy.observation_space

    @property
    def action_space(self) -> gym.Space:
        """The policy's action space (the env's)."""
        return self.policy.action_space

    def predict(self, observation: Any, state: Any = None, episode_start: Any = None,
                deterministic: bool = False) -> tuple[np.ndarray, Any]:
        """Same as ``model.predict``: ``(action, state)`` for one observation or a batch."""
        return self.policy.predict(observation, state, episode_start, deterministic)


def load_sb3(path: str | Path, algo: str, env: str | gym.Env, *,
             trust_pickle: bool = False) -> Any:
    """Load a stable-baselines3 ``.zip`` for evaluation on ``env``.

    Args:
        path: the ``.zip`` written by ``model.save``.
        algo: one of :data:`SB3_ALGOS` (the algorithm that wrote it).
        env: env id or env; its spaces must be the ones the model was trained on.
        trust_pickle: use SB3's ``Algo.load``, which unpickles the zip's serialised entries
            (runs any code they hold). Only for files you trust.

    Returns:
        An object with SB3's ``predict(obs, state, episode_start, deterministic)``: an
        :class:`SB3Policy` by default, the SB3 model itself with ``trust_pickle``.

    Raises:
        MpgymError: unknown algorithm, missing/damaged/oversized file, a model of another
            algorithm or for other spaces, or parts that cannot be rebuilt without unpickling.
    """
    algo = _check_algo(algo)
    path = Path(path)
    if not path.is_file():
        raise MpgymError(f"no SB3 model at {path}; expected the .zip written by model.save().")
    env = make_env(env)
    env_id = env_id_of(env)
    if trust_pickle:
        return _load_trusted(path, algo, env, env_id)
    size = path.stat().st_size
    if size > MAX_ZIP_BYTES:
        raise MpgymError(f"{path} is {size / 2**30:.1f} GiB; SB3 models over "
                         f"{MAX_ZIP_BYTES / 2**30:.0f} GiB are not read.")
    try:
        with path.open("rb") as f:
            return _load_safe(f, str(path), algo, env, env_id)
    except (MemoryError, OverflowError, RecursionError) as exc:
        raise MpgymError(f"{path} is not a readable SB3 model ({type(exc).__name__}).") from None


def _fuzz_entry(path: str) -> Any:
    """Fuzz target: load ``path`` as a CartPole DQN zip (see tests/agents/common)."""
    return load_sb3(path, "dqn", "CartPole-v1")


def _fuzz_members(path: str) -> Any:
    """Fuzz target: zip ``path/data`` and ``path/policy.pth`` in memory, load as CartPole DQN.

    Mutating the members themselves (not the archive, whose CRCs catch most flips) reaches the
    JSON and ``torch.load`` parsing.
    """
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name in ("data", "policy.pth"):
            member = Path(path) / name
            if member.exists():
                zf.writestr(name, member.read_bytes())
    buf.seek(0)
    env = make_env("CartPole-v1")
    try:
        return _load_safe(buf, path, "dqn", env, "CartPole-v1")
    except (MemoryError, OverflowError, RecursionError) as exc:
        raise MpgymError(f"not a readable SB3 model ({type(exc).__name__}).") from None


# -- the safe path --------------------------------------------------------------------------
def _check_algo(algo: str) -> str:
    key = str(algo).strip().lower()
    if key not in SB3_ALGOS:
        raise MpgymError(f"unknown stable-baselines3 algorithm {algo!r}; accepted: "
                         f"{', '.join(SB3_ALGOS)}.")
    return key


def _sb3() -> Any:
    try:
        import stable_baselines3
    except ImportError:
        raise MpgymError("reading SB3 models needs stable-baselines3: "
                         "pip install 'mpgym[rl]' (or stable-baselines3).") from None
    return stable_baselines3


def _load_safe(source: IO[bytes], label: str, algo: str, env: gym.Env, env_id: str
               ) -> SB3Policy:
    """Rebuild the policy from ``data``'s JSON and ``policy.pth`` (weights only)."""
    data_bytes, pth_bytes = _read_members(source, label)
    data = _parse_data(data_bytes, label)
    state = _parse_state_dict(pth_bytes, label)
    what = f"this zip is not a {algo} model for {env_id}'s spaces"
    _check_spaces(data, env, what)
    _check_action_space(algo, env, env_id)
    policy_cls = _policy_class(algo, data, env, state, what)
    kwargs, notes = _policy_kwargs(algo, data, state, what)
    if algo in ("ppo", "a2c") and isinstance(data.get("use_sde"), bool):
        kwargs["use_sde"] = data["use_sde"]
    try:
        policy = policy_cls(env.observation_space, env.action_space, lambda _: 0.0, **kwargs)
    except (TypeError, ValueError, AssertionError, AttributeError, KeyError,
            RuntimeError) as exc:
        raise MpgymError(f"{what}: cannot build {policy_cls.__name__}({kwargs}) for "
                         f"{env.observation_space} -> {env.action_space}: {exc}") from None
    try:
        policy.load_state_dict(state, strict=True)
    except (RuntimeError, KeyError, TypeError) as exc:
        detail = " ".join(str(exc).split())
        raise MpgymError(f"{what}: {detail[:600]}") from None
    policy.set_training_mode(False)
    return SB3Policy(policy=policy, algo=algo, env_id=env_id, notes=notes)


def _read_members(source: IO[bytes], label: str) -> tuple[bytes, bytes]:
    """``data`` and ``policy.pth`` bytes, each size-checked before it is inflated."""
    try:
        with zipfile.ZipFile(source) as zf:
            infos = {info.filename: info for info in zf.infolist()}
            for name in ("data", "policy.pth"):
                if name not in infos:
                    found = ", ".join(sorted(infos)[:8]) or "nothing"
                    raise MpgymError(f"{label} is not a stable-baselines3 model: it has no "
                                     f"{name!r} inside (found: {found}).")
            data = _read_member(zf, infos["data"], MAX_DATA_BYTES, label)
            pth = _read_member(zf, infos["policy.pth"], MAX_POLICY_BYTES, label)
    except MpgymError:
        raise
    except _ZIP_ERRORS as exc:
        raise MpgymError(f"{label} is not a readable zip file ({type(exc).__name__}: "
                         f"{exc}); expected the .zip written by an SB3 model's save().") from None
    return data, pth


def _read_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, limit: int, label: str) -> bytes:
    name = info.filename
    if info.flag_bits & 0x1:
        raise MpgymError(f"{label}: {name!r} is encrypted; SB3 models are not.")
    if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
        raise MpgymError(f"{label}: {name!r} uses compression method {info.compress_type}; "
                         "accepted: stored or deflated (what SB3 writes).")
    if info.file_size > limit:
        raise MpgymError(f"{label}: {name!r} declares {info.file_size} bytes, over the "
                         f"{limit} accepted.")
    if (info.compress_type == zipfile.ZIP_DEFLATED
            and info.file_size > max(2**20, info.compress_size * MAX_DEFLATE_RATIO)):
        raise MpgymError(f"{label}: {name!r} declares {info.file_size} bytes from "
                         f"{info.compress_size} compressed: not a real deflate stream "
                         "(zip bomb?).")
    with zf.open(info) as f:
        out = f.read(limit + 1)
    if len(out) > limit:
        raise MpgymError(f"{label}: {name!r} holds more than {limit} bytes.")
    return out


def _parse_data(raw: bytes, label: str) -> dict[str, Any]:
    """``data``'s JSON; serialised entries keep only their JSON hints (never unpickled)."""
    try:
        parsed = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise MpgymError(f"{label}: its 'data' is not valid JSON ({type(exc).__name__}).") \
            from None
    if not isinstance(parsed, dict):
        raise MpgymError(f"{label}: its 'data' is a JSON {type(parsed).__name__}, "
                         "not the object SB3 writes.")
    out: dict[str, Any] = {}
    for key, value in parsed.items():
        if isinstance(value, dict) and ":serialized:" in value:
            out[key] = _Serialized({k: v for k, v in value.items() if k != ":serialized:"})
        else:
            out[key] = value
    return out


class _Serialized(dict):
    """The JSON hints of a cloudpickled ``data`` entry (the pickle itself is dropped)."""


def _parse_state_dict(raw: bytes, label: str) -> dict[str, Any]:
    import torch

    try:
        with warnings.catch_warnings():  # torch warns about protocols of foreign pickles
            warnings.simplefilter("ignore")
            state = torch.load(io.BytesIO(raw), map_location="cpu", weights_only=True)
    except (MemoryError, OverflowError) as exc:
        raise MpgymError(f"{label}: policy.pth is too large to read ({type(exc).__name__}).") \
            from None
    except Exception as exc:  # noqa: BLE001 -- torch raises many types on a damaged file
        raise MpgymError(f"{label}: policy.pth is not a readable PyTorch state dict "
                         f"({type(exc).__name__}: {' '.join(str(exc).split())[:200]}).") \
            from None
    if not isinstance(state, dict) or not state:
        raise MpgymError(f"{label}: policy.pth holds a {type(state).__name__}, not the "
                         "state dict of a policy.")
    for key, value in state.items():
        if not isinstance(key, str) or not isinstance(value, torch.Tensor):
            raise MpgymError(f"{label}: policy.pth entry {key!r} is not a named tensor.")
        if value.is_floating_point() and not bool(torch.isfinite(value).all()):
            raise MpgymError(f"{label}: policy.pth tensor {key!r} has NaN or infinite values.")
    return state


def _space_hint(space: gym.Space) -> dict[str, Any]:
    hint: dict[str, Any] = {"type": type(space).__name__}
    if space.shape is not None:
        hint["shape"] = list(space.shape)
    if isinstance(space, gym.spaces.Discrete):
        hint["n"] = int(space.n)
    return hint


def _saved_hint(value: Any) -> dict[str, Any] | None:
    """What a serialised space's JSON hints say: type name, shape, n (where written)."""
    if not isinstance(value, _Serialized):
        return None
    hint: dict[str, Any] = {}
    match = re.fullmatch(r"<class '[\w.]*?(\w+)'>", str(value.get(":type:", "")))
    if match:
        hint["type"] = match.group(1)
    shape = value.get("_shape")
    if isinstance(shape, list) and all(isinstance(s, int) and not isinstance(s, bool)
                                       for s in shape):
        hint["shape"] = shape
    n = value.get("n")
    if isinstance(n, (int, str)) and str(n).isdigit():
        hint["n"] = int(n)
    return hint


def _check_spaces(data: dict[str, Any], env: gym.Env, what: str) -> None:
    for key, space in (("observation_space", env.observation_space),
                       ("action_space", env.action_space)):
        saved = _saved_hint(data.get(key))
        if not saved:
            continue
        have = _space_hint(space)
        diff = [k for k in saved if k in have and saved[k] != have[k]]
        if diff:
            desc = ", ".join(f"{k}={saved[k]}" for k in ("type", "shape", "n") if k in saved)
            raise MpgymError(f"{what}: it was saved for an {key.replace('_', ' ')} with {desc}; "
                             f"the env has {space}.")


def _check_action_space(algo: str, env: gym.Env, env_id: str) -> None:
    accepted = _ACTION_SPACES[algo]
    if not isinstance(env.action_space, accepted):
        names = " or ".join(c.__name__ for c in accepted)
        raise MpgymError(f"{algo} acts in {names} action spaces; {env_id} has "
                         f"{env.action_space}.")


def _policy_class(algo: str, data: dict[str, Any], env: gym.Env, state: dict[str, Any],
                  what: str) -> type:
    """The policy class: from the method names SB3 writes beside the pickled class."""
    sb3 = _sb3()
    algo_cls = getattr(sb3, algo.upper())
    aliases: dict[str, type] = dict(algo_cls.policy_aliases)
    by_name = {cls.__name__: cls for cls in aliases.values()}
    hints = data.get("policy_class")
    if isinstance(hints, _Serialized):
        module = hints.get("__module__")
        if isinstance(module, str) and module.startswith("stable_baselines3") \
                and module != _POLICY_MODULES[algo]:
            owners = sorted(a for a, m in _POLICY_MODULES.items() if m == module)
            raise MpgymError(f"{what}: its policy comes from {module} "
                             f"({'/'.join(owners) or 'another algorithm'}), not {algo}.")
        names = {m.group(1) for v in hints.values() if isinstance(v, str)
                 for m in [re.match(r"<function (\w+)\.__init__ ", v)] if m}
        for name in names:
            if name in by_name:
                return by_name[name]
        if names:
            raise MpgymError(f"{what}: its policy class {sorted(names)[0]} is not one of "
                             f"{algo}'s ({', '.join(sorted(by_name))}); a custom class can "
                             "only be loaded with --trust-pickle (it runs code from the file).")
    if isinstance(env.observation_space, gym.spaces.Dict):
        return aliases["MultiInputPolicy"]
    if any(".cnn." in k for k in state):
        return aliases["CnnPolicy"]
    return aliases["MlpPolicy"]


def _layer_widths(state: dict[str, Any], prefix: str, *, drop_last: bool) -> list[int] | None:
    """Output widths of the ``prefix<i>.weight`` Linear layers, in order (None if none)."""
    pattern = re.compile(re.escape(prefix) + r"(\d+)\.weight")
    layers = sorted((int(m.group(1)), v) for k, v in state.items()
                    for m in [pattern.fullmatch(k)] if m and v.ndim == 2)
    if not layers:
        return None
    widths = [int(v.shape[0]) for _, v in layers]
    return widths[:-1] if drop_last else widths


def _arch_from_shapes(algo: str, state: dict[str, Any]) -> tuple[Any, int | None]:
    """``(net_arch, n_critics)`` read off the tensor shapes (None where not found)."""
    if algo == "dqn":
        return _layer_widths(state, "q_net.q_net.", drop_last=True), None
    if algo in ("ppo", "a2c"):
        pi = _layer_widths(state, "mlp_extractor.policy_net.", drop_last=False)
        vf = _layer_widths(state, "mlp_extractor.value_net.", drop_last=False)
        return dict(pi=pi or [], vf=vf or []), None
    qf = _layer_widths(state, "critic.qf0.", drop_last=True)
    if algo == "sac":
        pi = _layer_widths(state, "actor.latent_pi.", drop_last=False)
    else:
        pi = _layer_widths(state, "actor.mu.", drop_last=True)
    critics = {m.group(1) for k in state for m in [re.match(r"critic\.qf(\d+)\.", k)] if m}
    arch = dict(pi=pi, qf=qf) if pi is not None and qf is not None else None
    return arch, (len(critics) or None)


def _valid_arch(value: Any) -> bool:
    def widths(v: Any) -> bool:
        return isinstance(v, list) and len(v) <= 64 and all(
            isinstance(w, int) and not isinstance(w, bool) and 0 < w <= 2**16 for w in v)
    if isinstance(value, dict):
        return set(value) <= {"pi", "vf", "qf"} and all(widths(v) for v in value.values())
    return widths(value)


def _policy_kwargs(algo: str, data: dict[str, Any], state: dict[str, Any], what: str
                   ) -> tuple[dict[str, Any], list[str]]:
    """Constructor kwargs from ``policy_kwargs`` (JSON, or the hints of a pickled dict)."""
    import torch.nn as nn

    raw = data.get("policy_kwargs") or {}
    if not isinstance(raw, dict):
        raise MpgymError(f"{what}: its policy_kwargs is a {type(raw).__name__}, not a dict.")
    pickled = isinstance(raw, _Serialized)
    kwargs: dict[str, Any] = {}
    notes: list[str] = []
    unknown = []
    for key, value in raw.items():
        if key.startswith(":") or key in _IGNORED_KWARGS:
            continue
        if key == "net_arch" and _valid_arch(value):
            kwargs[key] = value
        elif key in _BOOL_KWARGS and isinstance(value, bool):
            kwargs[key] = value
        elif key in ("log_std_init", "clip_mean") and isinstance(value, (int, float)) \
                and not isinstance(value, bool) and math.isfinite(value):
            kwargs[key] = float(value)
        elif key == "n_critics" and isinstance(value, int) and 0 < value <= 16:
            kwargs[key] = value
        elif key == "activation_fn" and _named_class(value, "torch.nn.modules.activation",
                                                      _ACTIVATIONS):
            kwargs[key] = getattr(nn, _named_class(value, "torch.nn.modules.activation",
                                                   _ACTIVATIONS))
        elif key == "features_extractor_class" and _named_class(
                value, "stable_baselines3.common.torch_layers", _EXTRACTORS):
            from stable_baselines3.common import torch_layers

            kwargs[key] = getattr(torch_layers, _named_class(
                value, "stable_baselines3.common.torch_layers", _EXTRACTORS))
        elif key == "features_extractor_kwargs" and _plain_extractor_kwargs(value):
            kwargs[key] = value
        else:
            unknown.append(key)
    if unknown:
        raise MpgymError(f"{what}: its policy_kwargs {sorted(unknown)} cannot be rebuilt "
                         "without unpickling; pass --trust-pickle only if you trust the file "
                         "(it runs code from it).")
    arch, critics = _arch_from_shapes(algo, state)
    if "net_arch" not in kwargs and arch is not None:
        kwargs["net_arch"] = arch
        notes.append("net_arch from the tensor shapes")
    if critics is not None and "n_critics" not in kwargs and algo in ("sac", "td3", "ddpg"):
        kwargs["n_critics"] = critics
    if pickled and "activation_fn" not in kwargs:
        notes.append("activation: the algorithm's default")
    return kwargs, notes


def _named_class(value: Any, module: str, allowed: tuple[str, ...]) -> str | None:
    """``"ReLU"`` for the string ``"<class 'torch.nn.modules.activation.ReLU'>"``, if allowed."""
    if not isinstance(value, str):
        return None
    match = re.fullmatch(r"<class '" + re.escape(module) + r"\.(\w+)'>", value)
    return match.group(1) if match and match.group(1) in allowed else None


def _plain_extractor_kwargs(value: Any) -> bool:
    if not isinstance(value, dict):
        return False
    for key, v in value.items():
        if key in ("features_dim", "cnn_output_dim"):
            if not (isinstance(v, int) and not isinstance(v, bool) and 0 < v <= 2**16):
                return False
        elif key == "normalized_image":
            if not isinstance(v, bool):
                return False
        else:
            return False
    return True


# -- the trusted path -----------------------------------------------------------------------
def _load_trusted(path: Path, algo: str, env: gym.Env, env_id: str) -> Any:
    """SB3's own ``Algo.load`` (unpickles), with the spaces checked against ``env``."""
    log.warning("--trust-pickle: loading %s with stable-baselines3, which unpickles its "
                "serialised entries and so runs any code they hold; do this only for files "
                "you trust.", path)
    algo_cls = getattr(_sb3(), algo.upper())
    try:
        model = algo_cls.load(str(path), device="cpu")
    except (MemoryError, OverflowError) as exc:
        raise MpgymError(f"{path} is too large to load ({type(exc).__name__}).") from None
    except Exception as exc:  # noqa: BLE001 -- SB3 raises many types on foreign files
        raise MpgymError(f"stable-baselines3 cannot load {path} as {algo}: "
                         f"{type(exc).__name__}: {' '.join(str(exc).split())[:300]}") from None
    what = f"this zip is not a {algo} model for {env_id}'s spaces"
    for key in ("observation_space", "action_space"):
        saved, have = getattr(model, key, None), getattr(env, key)
        if not isinstance(saved, gym.Space) or _space_hint(saved) != _space_hint(have):
            raise MpgymError(f"{what}: it was saved for an {key.replace('_', ' ')} "
                             f"{saved}; the env has {have}.")
    return model


__all__ = ["MAX_DATA_BYTES", "MAX_POLICY_BYTES", "SB3_ALGOS", "SB3Policy", "load_sb3"]
