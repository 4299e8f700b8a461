"""Plumbing shared by the deep agents: observation encoding, episode bookkeeping, save/load.

:class:`DeepAgent` extends :class:`agents.common.Agent` (the SB3-like API) with what every
PyTorch agent needs: explicit torch/NumPy generators seeded from ``config.seed``, an
observation encoder that turns Gymnasium observations into float32 vectors (or refuses them
with a clear message), NaN checks on what the env returns, per-episode metrics, a
learning-curve PNG and a checkpoint on Ctrl-C.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from agents.common import Agent, env_id_of, make_env, plot_learning_curve
from agents.deep.networks import ActorCritic
from mpgym.errors import MpgymError
from mpgym.runs import save_on_interrupt
from mpgym.seeding import seed_everything

log = logging.getLogger(__name__)


class ObsEncoder:
    """Gymnasium observations -> float32 vectors ``[B, dim]`` for MLPs.

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
                "gymnasium.wrappers.FlattenObservation, or use an image encoder (not provided)."
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


class DeepAgent(Agent):
    """Base of the PyTorch agents: seeding, encoding, bookkeeping, checkpoints.

    A subclass builds its networks in :meth:`_build`, lists them in ``MODULES`` (attribute
    names whose ``state_dict`` goes into the checkpoint), implements :meth:`_act` (greedy or
    sampled actions for encoded observations) and ``learn``.
    """

    MODULES: ClassVar[tuple[str, ...]] = ()
    """Attribute names of the ``nn.Module``s saved in checkpoints."""

    def __init__(
        self, env: str | gym.Env | None = None, config: Any | None = None, *, run_dir=None
    ):
        super().__init__(env, config, run_dir=run_dir)
        self.gens = seed_everything(self.config.seed)
        self.rng = self.gens.np
        self.torch_gen: torch.Generator = self.gens.torch  # type: ignore[assignment]
        self.env_id = env_id_of(self.env)
        self.encoder = ObsEncoder(self.env.observation_space, type(self).__name__)
        self.episode_returns: list[float] = []
        self.episode_timesteps: list[int] = []
        self._build()

    def _make_env(self, env: str | gym.Env) -> gym.Env:
        return make_env(env)

    # -- what a subclass implements ---------------------------------------------------------
    def _build(self) -> None:
        """Create networks, optimisers and buffers (called at the end of ``__init__``)."""
        raise NotImplementedError

    def _act(self, obs: torch.Tensor, deterministic: bool) -> np.ndarray:
        """Actions ``[B]`` or ``[B, D]`` for encoded observations ``[B, obs_dim]``."""
        raise NotImplementedError

    def _extra_state(self) -> dict[str, Any]:
        """Non-module state to checkpoint (normaliser statistics)."""
        return {}

    def _load_extra_state(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`_extra_state` returned."""

    # -- the API ----------------------------------------------------------------------------
    def preprocess(self, obs: Any) -> np.ndarray:
        """Raw observation(s) -> the ``[B, obs_dim]`` float32 the networks take."""
        return self.encoder(obs)

    def predict(self, obs: Any, deterministic: bool = True) -> tuple[np.ndarray, None]:
        """Action for one observation (or a batch), SB3-style ``(action, None)``.

        Args:
            obs: an observation of the env's space, or a batch with one more leading axis.
            deterministic: greedy/mean action when true, else sampled (epsilon-greedy for DQN).

        Returns:
            ``(action, None)``: an int-valued array of shape ``()`` / ``[B]`` for Discrete
            actions, ``[D]`` / ``[B, D]`` floats clipped to the Box bounds otherwise.
        """
        batch = self.encoder.is_batch(obs)
        x = torch.from_numpy(self.preprocess(obs))
        with torch.no_grad():
            actions = self._act(x, deterministic)
        space = self.env.action_space
        if isinstance(space, gym.spaces.Box):
            actions = np.clip(actions, space.low, space.high)
        return (actions if batch else actions[0]), None

    def state_dict(self) -> dict[str, Any]:
        """Every module's parameters under ``<attribute>.<name>``, plus extra state."""
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
            except RuntimeError as exc:
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
        with save_on_interrupt(lambda: self.save(self.run.path), what=f"{self.name} checkpoint"):
            yield
        if self.episode_returns:
            plot_learning_curve(self.run, title=f"{self.name} on {self.env_id}")

    def recent_return(self, n: int = 20) -> float:
        """Mean return of the last ``n`` training episodes (NaN before the first)."""
        return float(np.mean(self.episode_returns[-n:])) if self.episode_returns else float("nan")


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
        )
        return self.policy

    def _act(self, obs: torch.Tensor, deterministic: bool) -> np.ndarray:
        actions, _ = self.policy.act(obs, self.torch_gen, deterministic)
        return actions.numpy() + self.action_start if self.discrete else actions.numpy()

    def env_actions(self, actions: np.ndarray) -> np.ndarray:
        """Policy samples -> env actions (offset by ``Discrete.start``, or clipped to the Box)."""
        if self.discrete:
            return actions + self.action_start
        space = self.env.action_space
        return np.clip(actions, space.low, space.high)
