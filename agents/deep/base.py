"""Plumbing shared by the deep agents: observation encoding, episode bookkeeping, save/load.

:class:`DeepAgent` extends :class:`agents.common.Agent` (the SB3-like API) with what every
PyTorch agent needs: explicit torch/NumPy generators seeded from ``config.seed``, an
observation encoder that turns Gymnasium observations into float32 vectors (or refuses them
with a clear message), NaN checks on what the env returns and on the parameters and
statistics after each update, per-episode metrics, a learning-curve PNG and a checkpoint on
Ctrl-C. Checkpoints carry what continuing needs (optimiser state, counters, generator states,
the env's state): ``Cls.load(path).learn(n, reset_num_timesteps=False)`` continues a run as
stable-baselines3 does.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar, Self

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from agents.common import Agent, env_id_of, plot_learning_curve
from agents.common.envs import env_state, restore_env_state
from agents.deep.buffers import BUFFER_FILE, ReplayBuffer, load_replay_buffer, save_replay_buffer
from agents.deep.features import DictEncoder, ImageEncoder, make_extractor, resolve_policy
from agents.deep.networks import ActorCritic
from mpgym.checkpoint import CheckpointError
from mpgym.errors import MpgymError, check_positive
from mpgym.runs import RunDir, save_on_interrupt
from mpgym.seeding import seed_everything

log = logging.getLogger(__name__)


class ObsEncoder:
    """Gymnasium observations -> float32 vectors ``[B, dim]`` for MLPs (``policy="mlp"``).

    Images and ``Dict`` observations have their encoders in :mod:`agents.deep.features`
    (:func:`make_encoder` picks one).

    Accepts ``Box`` spaces of shape ``(n,)`` (passed through) and ``Discrete(n)`` (one-hot,
    so the project's grid worlds and toy-text envs work). Anything else -- images, dicts,
    tuples -- is refused: these MLP policies have no encoder for it.
    """

    def __init__(self, space: gym.Space, who: str):
        if isinstance(space, gym.spaces.Discrete):
            self.dim, self.discrete, self.start = int(space.n), True, int(space.start)
        elif isinstance(space, gym.spaces.Box) and len(space.shape) == 1:
            self.dim, self.discrete, self.start = int(space.shape[0]), False, 0
        else:
            raise MpgymError(
                f"{who} uses an MLP policy, which needs vector observations (Box of shape (n,)) "
                f"or Discrete ones, but the env's observation_space is {space}. Flatten it with "
                "gymnasium.wrappers.FlattenObservation, or use policy='cnn' (images) or "
                "'multi_input' (Dict) where the agent has that option."
            )
        self.space = space

    def is_batch(self, obs: Any) -> bool:
        """Whether ``obs`` holds several observations (one more leading axis)."""
        return np.ndim(obs) == (0 if self.discrete else 1) + 1

    def __call__(self, obs: Any) -> np.ndarray:
        """One observation or a batch -> ``[B, dim]`` float32 (B = 1 for a single one)."""
        if self.discrete:
            idx = np.asarray(obs, dtype=np.int64).reshape(-1) - self.start
            out = np.zeros((idx.shape[0], self.dim), np.float32)
            out[np.arange(idx.shape[0]), idx] = 1.0
            return out
        return np.asarray(obs, dtype=np.float32).reshape(-1, self.dim)


def make_encoder(space: gym.Space, policy: str, who: str) -> Any:
    """The observation encoder of a ``policy`` kind (``"auto"`` picks one from ``space``).

    ``"mlp"``: :class:`ObsEncoder`; ``"cnn"``: :class:`~agents.deep.features.ImageEncoder`;
    ``"multi_input"``: :class:`~agents.deep.features.DictEncoder`. All give ``[B, dim]``
    float32 rows.
    """
    kind = resolve_policy(policy, space)
    if kind == "cnn":
        return ImageEncoder(space, who)
    if kind == "multi_input":
        return DictEncoder(space, who)
    return ObsEncoder(space, who)


def check_step(env_id: str, obs: Any, reward: Any) -> None:
    """Raise :class:`MpgymError` if an env returned a NaN/inf observation or reward."""
    if not np.isfinite(reward).all():
        raise MpgymError(
            f"{env_id} returned a non-finite reward ({reward}); rewards must be finite numbers."
        )
    if np.asarray(obs).dtype.kind == "f" and not np.isfinite(obs).all():
        raise MpgymError(
            f"{env_id} returned an observation with NaN or infinity ({obs}); "
            "observations must be finite."
        )


class EpisodeTracker:
    """Running returns and lengths of ``n_envs`` environments; finished episodes are reported."""

    def __init__(self, n_envs: int):
        self.returns = np.zeros(n_envs)
        self.lengths = np.zeros(n_envs, np.int64)

    def state_dict(self, prefix: str) -> dict[str, np.ndarray]:
        """The running sums, for a checkpoint."""
        return {f"{prefix}.returns": self.returns.copy(), f"{prefix}.lengths": self.lengths.copy()}

    def load_state_dict(self, state: dict[str, Any], prefix: str) -> None:
        """Restore :meth:`state_dict` output (missing keys keep zeros)."""
        for name, dtype in (("returns", np.float64), ("lengths", np.int64)):
            key = f"{prefix}.{name}"
            if key in state:
                setattr(self, name, _array_like(state[key], getattr(self, name), dtype, key))

    def step(
        self, rewards: np.ndarray, dones: np.ndarray, valid: np.ndarray | None = None
    ) -> list[tuple[float, int]]:
        """Add one step's rewards; return ``(return, length)`` of the episodes that ended.

        ``valid`` (default all true) marks the envs whose step was a transition; the others
        (reset-only steps of next-step autoreset) add neither reward nor length.
        """
        self.returns += rewards
        self.lengths += 1 if valid is None else valid
        if not dones.any():
            return []
        ended = [(float(self.returns[i]), int(self.lengths[i])) for i in np.flatnonzero(dones)]
        self.returns[dones] = 0.0
        self.lengths[dones] = 0
        return ended


def _array_like(value: Any, like: np.ndarray, dtype: Any, what: str) -> np.ndarray:
    """``value`` as a NumPy array of ``like``'s shape and ``dtype``, or :class:`CheckpointError`."""
    arr = value.numpy() if isinstance(value, torch.Tensor) else np.asarray(value)
    if arr.shape != like.shape or arr.dtype.kind not in "biuf":
        raise CheckpointError(f"checkpoint tensor {what} has shape {arr.shape} ({arr.dtype}); "
                              f"this agent needs {like.shape}.")
    return arr.astype(dtype, copy=True)


_OPTIM_STATE_KEYS = ("step", "exp_avg", "exp_avg_sq", "max_exp_avg_sq", "square_avg",
                     "momentum_buffer", "grad_avg")


def optimizer_state(optimizer: torch.optim.Optimizer, prefix: str
                    ) -> tuple[dict[str, torch.Tensor], list[dict[str, Any]]]:
    """An optimiser's state as named tensors and its hyperparameters as JSON."""
    sd = optimizer.state_dict()
    tensors = {f"{prefix}.{i}.{k}": v for i, st in sd["state"].items() for k, v in st.items()
               if isinstance(v, torch.Tensor)}
    groups = [{k: v for k, v in g.items() if k != "params" and
               (isinstance(v, int | float | bool) or v is None or
                (isinstance(v, tuple | list) and all(isinstance(x, int | float) for x in v)))}
              for g in sd["param_groups"]]
    return tensors, groups


def load_optimizer_state(optimizer: torch.optim.Optimizer, tensors: dict[str, Any],
                         groups: Any, prefix: str) -> None:
    """Restore :func:`optimizer_state` output, checking every tensor against its parameter.

    Raises:
        CheckpointError: unknown names, shapes that differ from the parameters', or
            hyperparameters of the wrong type.
    """
    params = [p for g in optimizer.param_groups for p in g["params"]]
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        if not key.startswith(prefix + "."):
            continue
        idx, _, name = key[len(prefix) + 1:].partition(".")
        if not idx.isdigit() or int(idx) >= len(params) or name not in _OPTIM_STATE_KEYS:
            raise CheckpointError(f"checkpoint tensor {key} is not optimiser state of this agent.")
        p = params[int(idx)]
        shape_ok = tuple(value.shape) == (() if name == "step" else tuple(p.shape))
        if not shape_ok or not value.is_floating_point():
            raise CheckpointError(f"checkpoint tensor {key} has shape {tuple(value.shape)} "
                                  f"({value.dtype}); the parameter has {tuple(p.shape)}.")
        state.setdefault(int(idx), {})[name] = value.clone()
    sd = optimizer.state_dict()
    if not isinstance(groups, list) or len(groups) != len(sd["param_groups"]):
        raise CheckpointError("checkpoint optimiser hyperparameters do not fit this agent.")
    for current, saved in zip(sd["param_groups"], groups, strict=True):
        if not isinstance(saved, dict):
            raise CheckpointError("checkpoint optimiser hyperparameters must be JSON objects.")
        for k, v in saved.items():
            now = current.get(k, ...)
            same_kind = (now is None and v is None) or (
                isinstance(now, bool) and isinstance(v, bool)) or (
                isinstance(now, int | float) and not isinstance(now, bool)
                and isinstance(v, int | float) and not isinstance(v, bool)) or (
                isinstance(now, tuple | list) and isinstance(v, list) and len(v) == len(now)
                and all(isinstance(x, int | float) and not isinstance(x, bool) for x in v))
            if now is ... or not same_kind:
                raise CheckpointError(f"checkpoint optimiser hyperparameter {k}={v!r} does not "
                                      "fit this agent.")
            current[k] = tuple(v) if isinstance(now, tuple) else v
    sd["state"] = state
    optimizer.load_state_dict(sd)

class DeepAgent(Agent):
    """Base of the PyTorch agents: seeding, encoding, bookkeeping, checkpoints.

    A subclass builds its networks in :meth:`_build`, lists them in ``MODULES`` (attribute
    names whose ``state_dict`` goes into the checkpoint), implements :meth:`_act` (greedy or
    sampled actions for encoded observations) and ``learn``.
    """

    MODULES: ClassVar[tuple[str, ...]] = ()
    """Attribute names of the ``nn.Module``s saved in checkpoints."""
    optimizer: torch.optim.Optimizer
    """The optimiser (built by the subclass's ``_build``); its state is checkpointed."""
    _pending_env: tuple[dict[str, Any], Any] | None = None
    """An env snapshot (arrays, JSON) loaded from a checkpoint, not yet put back."""

    def __init__(
        self, env: str | gym.Env | None = None, config: Any | None = None, *, run_dir=None
    ):
        super().__init__(env, config, run_dir=run_dir)
        self.gens = seed_everything(self.config.seed)
        self.rng = self.gens.np
        self.torch_gen: torch.Generator = self.gens.torch  # type: ignore[assignment]
        self.env_id = env_id_of(self.env)
        self.encoder = make_encoder(self.env.observation_space,
                                    getattr(self.config, "policy", "mlp"), type(self).__name__)
        self.episode_returns: list[float] = []
        self.episode_timesteps: list[int] = []
        self.num_updates = 0
        self._total_timesteps = 0
        self._finite_versions: dict[int, tuple[torch.Tensor, int]] = {}
        """``id -> (parameter, version)`` of the parameters the last NaN check passed."""
        self._build()

    # -- what a subclass implements ---------------------------------------------------------
    def _build(self) -> None:
        """Create networks, optimisers and buffers (called at the end of ``__init__``)."""
        raise NotImplementedError

    def _act(self, obs: torch.Tensor, deterministic: bool) -> np.ndarray:
        """Actions ``[B]`` or ``[B, D]`` for encoded observations ``[B, obs_dim]``."""
        raise NotImplementedError

    def _act_masked(self, obs: torch.Tensor, deterministic: bool,
                    masks: torch.Tensor) -> np.ndarray:
        """:meth:`_act` among the allowed actions ``masks [B, A]`` (agents that take masks)."""
        raise MpgymError(f"{type(self).__name__} does not take action masks; A2C and PPO with "
                         "Discrete actions do.")

    def _check_masks(self, masks: Any, batch: int) -> torch.Tensor:
        """``masks`` as a ``[batch, A]`` bool tensor, or one clear error."""
        space = self.env.action_space
        if not isinstance(space, gym.spaces.Discrete):
            raise MpgymError(f"{type(self).__name__}: action masks need a Discrete action "
                             f"space; {self.env_id} has {space}.")
        m = np.asarray(masks)
        n = int(space.n)
        if (m.shape not in ((n,), (batch, n)) or m.dtype.kind not in "biuf"
                or not np.isin(m, (0, 1)).all()):
            raise MpgymError(f"action_masks must be {n} booleans (or 0/1) per observation, "
                             f"[{n}] or [{batch}, {n}]; got shape {m.shape}, dtype {m.dtype}.")
        m = np.broadcast_to(m.astype(bool), (batch, n))
        if not m.any(axis=1).all():
            raise MpgymError("action_masks allows no action for some observation.")
        return torch.from_numpy(m.copy())

    def _extra_state(self) -> dict[str, Any]:
        """Non-module state to checkpoint (normaliser statistics)."""
        return {}

    def _load_extra_state(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`_extra_state` returned."""

    def meta(self) -> dict[str, Any]:
        """Counters (with the update count) and the NumPy generator's state."""
        return {**super().meta(), "num_updates": self.num_updates}

    def load_meta(self, meta: dict[str, Any]) -> None:
        """Restore :meth:`meta` output."""
        super().load_meta(meta)
        value = meta.get("num_updates", 0)
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 2**62:
            raise CheckpointError(f"checkpoint meta 'num_updates' must be a count >= 0, "
                                  f"got {value!r}.")
        self.num_updates = value

    def _finite_stats(self) -> dict[str, np.ndarray]:
        """Statistics the NaN check watches besides the parameters (name -> array)."""
        return {}

    # -- continuing ---------------------------------------------------------------------------
    def _setup_learn(self, total: int, reset_num_timesteps: bool) -> bool:
        """Counters and schedule horizon of a ``learn(total)`` call, as stable-baselines3 does.

        With ``reset_num_timesteps`` the counters restart at 0 and the schedules run over
        ``total``; without, they continue and run over ``num_timesteps + total`` (SB3's
        ``_total_timesteps``), so ``progress_remaining = 1 - num_timesteps / _total_timesteps``.

        Returns:
            Whether the env must be reset (a reset, or nothing to continue from).
        """
        check_positive("total_timesteps", total)
        if reset_num_timesteps:
            self.num_timesteps = 0
            self.num_episodes = 0
        self._total_timesteps = self.num_timesteps + total
        return reset_num_timesteps or not self._can_continue()

    def _can_continue(self) -> bool:
        """Whether the env and the last observation are there to continue from."""
        return False

    def progress_remaining(self) -> float:
        """SB3's ``1 - num_timesteps / _total_timesteps`` of the current ``learn`` call."""
        total = getattr(self, "_total_timesteps", 0)
        return 1.0 - self.num_timesteps / total if total > 0 else 1.0

    def resume_state(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """Optimiser state, torch generator state and the subclass's rollout state."""
        tensors, groups = optimizer_state(self.optimizer, "optim")
        tensors["rng.torch"] = self.torch_gen.get_state()
        info: dict[str, Any] = {"optim_groups": groups}
        more_tensors, more_info = self._rollout_state()
        return {**tensors, **more_tensors}, {**info, **more_info}

    def load_resume_state(self, tensors: dict[str, Any], info: dict[str, Any]) -> None:
        """Restore :meth:`resume_state` output (absent in old checkpoints: fresh state kept)."""
        if "optim_groups" in info:
            load_optimizer_state(self.optimizer, tensors, info["optim_groups"], "optim")
        if "rng.torch" in tensors:
            gen_state = tensors["rng.torch"]
            fresh = self.torch_gen.get_state()
            if gen_state.dtype != torch.uint8 or gen_state.shape != fresh.shape:
                raise CheckpointError("checkpoint tensor rng.torch is not a torch generator state.")
            self.torch_gen.set_state(gen_state.clone())
        self._load_rollout_state(tensors, info)

    def _rollout_state(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """The subclass's state between env steps (last observation, env snapshot...)."""
        return {}, {}

    def _load_rollout_state(self, tensors: dict[str, Any], info: dict[str, Any]) -> None:
        """Restore :meth:`_rollout_state` output."""

    @staticmethod
    def _env_snapshot(env: Any, prefix: str) -> tuple[dict[str, Any], dict[str, Any]]:
        arrays, info = env_state(env)
        return {f"{prefix}.{k}": v for k, v in arrays.items()}, {prefix: info}

    @staticmethod
    def _arrays_under(tensors: dict[str, Any], prefix: str) -> dict[str, Any]:
        """The checkpoint tensors named ``<prefix>.<name>``, as ``{name: NumPy array}``."""
        return {k[len(prefix) + 1:]: (v.numpy() if isinstance(v, torch.Tensor) else v)
                for k, v in tensors.items() if k.startswith(prefix + ".")}

    def _restore_pending_env(self, env: Any, reset: bool) -> bool:
        """Put the env state a loaded checkpoint holds back into ``env`` when continuing.

        The held snapshot (``_pending_env``) is used once: dropped on a ``reset``. The env is
        reset with ``config.seed`` first (that builds its arrays), then overwritten.

        Returns:
            Whether a state was restored.
        """
        pending, self._pending_env = self._pending_env, None
        if reset or pending is None:
            return False
        env.reset(seed=self.config.seed)
        restore_env_state(env, *pending)
        return True

    def check_finite_state(self, when: str) -> None:
        """Raise :class:`MpgymError` naming what became NaN or infinite (statistics first).

        Args:
            when: for the message (``"after update 12"``).
        """
        for label, value in self._finite_stats().items():
            if not np.isfinite(value).all():
                raise MpgymError(
                    f"{type(self).__name__}: the {label} became non-finite (NaN or inf) {when}; "
                    "check the env's rewards and observations, or turn normalisation off.")
        # Fast path: one fused norm per tensor; a NaN or inf anywhere makes its tensor's norm
        # non-finite. An isfinite pass per tensor cost ~50 us each (about 1 ms a gradient step
        # for SAC and TD3, a fifth of DQN's MinAtar step). A non-finite norm can also be an
        # overflow of finite values, so the exact test below decides whether to raise.
        # A tensor whose in-place version counter has not moved since it last passed is
        # skipped: DQN's target network changes only when it is synced (every 1,000 steps
        # on MinAtar), so each step checks the online network alone (half the cost).
        params = [p for name in self.MODULES for p in getattr(self, name).parameters()]
        passed = self._finite_versions
        todo = [p for p in params if passed.get(id(p), (None, -1))[0] is not p
                or passed[id(p)][1] != p._version]
        if not todo:
            return
        if bool(torch.isfinite(torch.stack(torch._foreach_norm(
                [p.detach() for p in todo]))).all()):
            self._finite_versions = {id(p): (p, p._version) for p in params}
            return
        for name in self.MODULES:
            for pname, p in getattr(self, name).named_parameters():
                if not bool(torch.isfinite(p).all()):
                    raise MpgymError(
                        f"{type(self).__name__}: network parameter {name}.{pname} became "
                        f"non-finite (NaN or inf) {when}; lower the learning rate, clip "
                        "gradients harder, or normalise rewards and observations.")
        self._finite_versions = {id(p): (p, p._version) for p in params}

    # -- the API ----------------------------------------------------------------------------
    def preprocess(self, obs: Any) -> np.ndarray:
        """Raw observation(s) -> the ``[B, obs_dim]`` float32 the networks take."""
        return self.encoder(obs)

    def predict(self, obs: Any, deterministic: bool = True,
                action_masks: Any = None) -> tuple[np.ndarray, None]:
        """Action for one observation (or a batch), SB3-style ``(action, None)``.

        Args:
            obs: an observation of the env's space, or a batch with one more leading axis.
            deterministic: greedy/mean action when true, else sampled (epsilon-greedy for DQN).
            action_masks: None, or the allowed actions (``[A]`` or ``[B, A]``, 1/True:
                allowed; e.g. the env's ``info["action_mask"]``) of A2C's and PPO's Discrete
                policies, as sb3-contrib's MaskablePPO takes them.

        Returns:
            ``(action, None)``: an int-valued array of shape ``()`` / ``[B]`` for Discrete
            actions, ``[D]`` / ``[B, D]`` floats clipped to the Box bounds otherwise.

        Raises:
            MpgymError: masks for an agent or action space that takes none, or of a wrong shape.
        """
        batch = self.encoder.is_batch(obs)
        x = torch.from_numpy(self.preprocess(obs))
        with torch.no_grad():
            if action_masks is None:
                actions = self._act(x, deterministic)
            else:
                actions = self._act_masked(x, deterministic, self._check_masks(action_masks,
                                                                               len(x)))
        space = self.env.action_space
        if isinstance(space, gym.spaces.Box):
            actions = np.clip(actions, space.low, space.high)
        return (actions if batch else actions[0]), None

    def state_dict(self) -> dict[str, Any]:
        """Every module's parameters under ``<attribute>.<name>``, plus extra state.

        What continuing needs besides (optimiser, generators, rollout) is in
        :meth:`resume_state`; :meth:`save` writes both.
        """
        state: dict[str, Any] = {}
        for name in self.MODULES:
            module: nn.Module = getattr(self, name)
            state.update({f"{name}.{k}": v for k, v in module.state_dict().items()})
        state.update(self._extra_state())
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` output; missing or mismatched tensors raise MpgymError."""
        for name in self.MODULES:
            module: nn.Module = getattr(self, name)
            sub = {k[len(name) + 1 :]: v for k, v in state.items() if k.startswith(name + ".")}
            try:
                module.load_state_dict(sub)
            except (RuntimeError, ValueError, TypeError) as exc:
                raise MpgymError(
                    f"checkpoint does not fit this {type(self).__name__} "
                    f"(another env or network size?): {exc}"
                ) from None
        self._load_extra_state(state)

    # -- shared pieces of the training loops -------------------------------------------------
    def _episodes_done(self, ended: list[tuple[float, int]], **extra: Any) -> None:
        """Log finished episodes (``timestep``, ``episode``, ``return``, ``length``)."""
        for ret, length in ended:
            self.num_episodes += 1
            self.episode_returns.append(ret)
            self.episode_timesteps.append(self.num_timesteps)
            self.log(
                timestep=self.num_timesteps,
                episode=self.num_episodes,
                **{"return": ret},
                length=length,
                **extra,
            )

    @contextlib.contextmanager
    def _training(self) -> Iterator[None]:
        """Save a checkpoint on Ctrl-C and the learning curve at the end (with a run dir)."""
        if self.run is None:
            yield
            return
        self.run.write_config(self.config, kind=self.name, algo=self.name)
        with save_on_interrupt(self._save_on_interrupt, what=f"{self.name} checkpoint"):
            yield
        if self.episode_returns:
            plot_learning_curve(self.run, title=f"{self.name} on {self.env_id}")

    resumable_save_kwargs: ClassVar[dict[str, Any]] = {}
    """Extra ``save`` arguments of :meth:`save_resumable` (replay agents: the buffer)."""

    def _save_on_interrupt(self) -> None:
        """The checkpoint written on Ctrl-C: everything continuing needs."""
        self.save_resumable()

    def save_resumable(self, path: str | Path | RunDir | None = None) -> Path:
        """Save everything continuing needs to ``path`` (default: the run directory).

        What Ctrl-C and ``mpgym train --save-every`` write; ``Cls.load(path).learn(n,
        reset_num_timesteps=False)`` continues from it.

        Raises:
            ValueError: no ``path`` and no run directory attached.
        """
        if path is None:
            if self.run is None:
                raise ValueError("save_resumable needs a path when no run directory is attached")
            path = self.run.path
        return self.save(path, **self.resumable_save_kwargs)

    def recent_return(self, n: int = 20) -> float:
        """Mean return of the last ``n`` training episodes (NaN before the first)."""
        return float(np.mean(self.episode_returns[-n:])) if self.episode_returns else float("nan")


class ReplayAgent(DeepAgent):
    """Base of the replay agents (DQN, SAC, TD3): a :class:`ReplayBuffer` saved beside checkpoints.

    ``save(path, include_buffer=True)`` writes the buffer to ``replay_buffer.safetensors`` next
    to the checkpoint and notes it in the checkpoint's meta; ``load`` reads it back, so
    ``Cls.load(path).learn(n, reset_num_timesteps=False)`` continues exactly. A subclass builds
    ``buffer`` in ``_build`` and says in :meth:`_buffer_actions_problem` what a loaded buffer's
    actions must satisfy.
    """

    buffer: ReplayBuffer
    """The replay buffer (built by the subclass's ``_build``)."""

    @property
    def buffer_kind(self) -> str:
        """The ``kind`` in this agent's buffer files (``"dqn-replay-buffer"``)."""
        return f"{self.name}-replay-buffer"

    def _buffer_actions_problem(self, actions: torch.Tensor) -> str | None:
        """What a loaded buffer's actions ``[size, ...]`` must be, where they are not; else None."""
        raise NotImplementedError

    def save(
        self, path: str | Path | RunDir, *, include_buffer: bool = False, resume: bool = True
    ) -> Path:
        """Write the checkpoint; with ``include_buffer`` the replay buffer too, beside it.

        Args:
            path: the checkpoint file or run directory (see :meth:`Agent.save`).
            include_buffer: also write ``replay_buffer.safetensors`` next to the checkpoint
                (kept out of the model file, as SB3 does: it can be large); ``load`` reads
                it. A buffer this agent wrote beside the same checkpoint at the same step
                (the Ctrl-C save, then the caller's own) stays referenced by a later save
                without it.
            resume: False leaves out what continuing needs (see :meth:`Agent.save`).

        Returns:
            The checkpoint path.
        """
        ckpt = self.checkpoint_path(path)
        buffer_file = ckpt.with_name(BUFFER_FILE)
        if include_buffer:
            self.save_replay_buffer(buffer_file)
            self._buffer_saved = (buffer_file.resolve(), self.num_timesteps)
        same = getattr(self, "_buffer_saved", None) == (buffer_file.resolve(), self.num_timesteps)
        self._buffer_note = ({"file": BUFFER_FILE, "num_timesteps": self.num_timesteps}
                             if same and resume and buffer_file.exists() else None)
        return super().save(ckpt, resume=resume)

    def meta(self) -> dict[str, Any]:
        """Counters, generator state and the replay-buffer file written beside (if any)."""
        note = getattr(self, "_buffer_note", None)
        return {**super().meta(), **({"replay_buffer": note} if note else {})}

    def load_meta(self, meta: dict[str, Any]) -> None:
        """Restore :meth:`meta` output (the buffer note is read by :meth:`load`)."""
        super().load_meta(meta)
        self._buffer_note = meta.get("replay_buffer")

    @classmethod
    def load(cls, path: str | Path, env: str | gym.Env | None = None) -> Self:
        """Load a checkpoint, and the replay buffer saved with it (``include_buffer=True``).

        Raises:
            CheckpointError: a corrupt checkpoint or buffer file.
        """
        agent = super().load(path, env)
        assert isinstance(agent, cls)
        note, agent._buffer_note = agent._buffer_note, None
        if isinstance(note, dict) and note.get("file") == BUFFER_FILE:
            file = cls.checkpoint_path(path).with_name(BUFFER_FILE)
            if file.exists():
                agent.load_replay_buffer(file)
            else:
                log.warning("%s was saved with its replay buffer, but %s is missing; "
                            "continuing starts from an empty buffer", path, file)
        return agent

    def save_replay_buffer(self, path: str | Path) -> Path:
        """Write the replay buffer's stored transitions (safetensors, atomically)."""
        return save_replay_buffer(self.buffer, path, kind=self.buffer_kind)

    def load_replay_buffer(self, path: str | Path) -> None:
        """Read a buffer written by :meth:`save_replay_buffer` into ``self.buffer``.

        Raises:
            CheckpointError: not this agent's replay buffer, or one that does not fit it
                (shapes, dtypes, sizes, actions out of range, non-finite values).
        """
        load_replay_buffer(self.buffer, path, kind=self.buffer_kind,
                           check_actions=self._buffer_actions_problem)

    resumable_save_kwargs: ClassVar[dict[str, Any]] = {"include_buffer": True}
    """:meth:`DeepAgent.save_resumable` writes the replay buffer beside the checkpoint."""


class PolicyAgent(DeepAgent):
    """Base of the policy-gradient agents (REINFORCE, A2C, PPO): an :class:`ActorCritic` policy.

    Discrete actions are sampled from a Categorical, 1-D Box actions from a Gaussian; the
    Gaussian sample is stored unclipped (its log-probability is exact) and clipped to the Box
    only when sent to the env.
    """

    MODULES: ClassVar[tuple[str, ...]] = ("policy",)

    def _build_policy(self, *, critic: bool = True) -> ActorCritic:
        """Check the action space and build ``self.policy`` from the config's network fields."""
        cfg, space = self.config, self.env.action_space
        if isinstance(space, gym.spaces.Discrete):
            self.discrete, act_dim, self.action_start = True, int(space.n), int(space.start)
            self.action_shape: tuple[int, ...] = ()
        elif isinstance(space, gym.spaces.Box) and len(space.shape) == 1:
            self.discrete, act_dim, self.action_start = False, int(space.shape[0]), 0
            self.action_shape = (act_dim,)
        else:
            raise MpgymError(
                f"{type(self).__name__} supports Discrete and 1-D Box action spaces; "
                f"{self.env_id} has {space}."
            )
        self.policy = ActorCritic(
            self.encoder.dim,
            act_dim,
            discrete=self.discrete,
            hidden=cfg.hidden,
            activation=cfg.activation,
            critic=critic,
            std=cfg.std,
            log_std_init=cfg.log_std_init,
            features=make_extractor(self.encoder, getattr(cfg, "features", "nature"),
                                    type(self).__name__, orthogonal=True),
        )
        return self.policy

    def _act(self, obs: torch.Tensor, deterministic: bool) -> np.ndarray:
        actions, _ = self.policy.act(obs, self.torch_gen, deterministic)
        return actions.numpy() + self.action_start if self.discrete else actions.numpy()

    def _act_masked(self, obs: torch.Tensor, deterministic: bool,
                    masks: torch.Tensor) -> np.ndarray:
        actions, _ = self.policy.act(obs, self.torch_gen, deterministic, masks)
        return actions.numpy() + self.action_start

    def env_actions(self, actions: np.ndarray) -> np.ndarray:
        """Policy samples -> env actions (offset by ``Discrete.start``, or clipped to the Box)."""
        if self.discrete:
            return actions + self.action_start
        space = self.env.action_space
        return np.clip(actions, space.low, space.high)
