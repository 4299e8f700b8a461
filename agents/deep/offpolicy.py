"""What SAC and TD3 share: twin Q critics, Polyak averaging, action scaling, the replay loop.

Conventions: policies act in the *scaled* action space ``[-1, 1]^D``; the replay buffer stores
scaled actions and the env receives ``low + (a + 1) (high - low) / 2`` (stable-baselines3
does the same). Before ``learning_starts`` env steps, actions are uniform in ``[-1, 1]^D``.
Training rounds happen every ``train_freq`` env steps once ``num_timesteps > learning_starts``
and take ``gradient_steps`` gradient steps each; a round's minibatches are gathered from the
buffer in one go (``[G, B, ...]``). Truncated episodes bootstrap from their true final
observation; only termination zeroes the next value.

Continuing: the checkpoint holds every optimiser, the generators, the last observation and the
env's state (where :func:`agents.common.envs.snapshot_supported`); ``save(path,
include_buffer=True)`` writes the replay buffer beside it, which ``load`` reads back, so
``Cls.load(path).learn(n, reset_num_timesteps=False)`` continues exactly.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from agents.common import Callback
from agents.common.callbacks import learning_hooks
from agents.common.envs import env_state, snapshot_supported
from agents.deep.base import (
    EpisodeTracker,
    ReplayAgent,
    _array_like,
    check_step,
    load_optimizer_state,
    optimizer_state,
)
from agents.deep.buffers import BUFFER_FILE as BUFFER_FILE
from agents.deep.buffers import ReplayBuffer
from mpgym.checkpoint import CheckpointError
from mpgym.errors import MpgymError
from mpgym.progress import progress

# --------------------------------------------------------------------------- pure functions


def scale_action(action: np.ndarray, low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """Env action in ``[low, high]`` -> ``[-1, 1]``: ``2 (a - low) / (high - low) - 1``.

    Example:
        >>> scale_action(np.array([0.0, 2.0]), np.array([-2.0, -2.0]), np.array([2.0, 2.0]))
        array([0., 1.])
    """
    return 2.0 * (action - low) / (high - low) - 1.0


def unscale_action(action: np.ndarray, low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """``[-1, 1]`` -> env action in ``[low, high]``: ``low + (a + 1) (high - low) / 2``.

    Example:
        >>> unscale_action(np.array([0.0, 1.0]), np.array([-2.0, -2.0]), np.array([2.0, 2.0]))
        array([0., 2.])
    """
    return low + (action + 1.0) * 0.5 * (high - low)


@torch.no_grad()
def polyak_update(target: Sequence[Tensor], source: Sequence[Tensor], tau: float) -> None:
    """``theta_target <- (1 - tau) theta_target + tau theta`` in place (Lillicrap et al. 2016).

    Args:
        target: the target network's parameters (changed in place).
        source: the online network's parameters, same shapes.
        tau: the update rate in (0, 1]; 1 copies.

    Example:
        >>> t, s = [torch.zeros(2)], [torch.ones(2)]
        >>> polyak_update(t, s, 0.25); t[0]
        tensor([0.2500, 0.2500])
    """
    if tau >= 1.0:
        torch._foreach_copy_(list(target), list(source))
    else:
        torch._foreach_lerp_(list(target), list(source), tau)


def clipped_double_q_target(
    rewards: Tensor, terminated: Tensor, next_q: Tensor, gamma: float
) -> Tensor:
    """Clipped double-Q target ``y = r + gamma (1 - terminated) min_i Q_i(s', a')``.

    (Fujimoto et al. 2018, eq. 10.) SAC passes ``next_q`` with ``- alpha log pi(a'|s')``
    already subtracted from each critic's value.

    Args:
        rewards: ``[..., B]`` rewards.
        terminated: ``[..., B]`` 1.0 where ``s'`` is terminal.
        next_q: ``[2, ..., B]`` the two target critics' values of ``(s', a')``.
        gamma: discount factor.

    Returns:
        ``[..., B]`` targets (no gradient).

    Example:
        >>> clipped_double_q_target(torch.tensor([1.0]), torch.tensor([0.0]),
        ...                         torch.tensor([[3.0], [2.0]]), 0.5)
        tensor([2.])
    """
    with torch.no_grad():
        return rewards + gamma * (1.0 - terminated) * torch.minimum(next_q[0], next_q[1])


def check_tau(config: Any) -> None:
    """Refuse a Polyak rate outside (0, 1] (0 would freeze the targets).

    Raises:
        MpgymError: naming ``--tau`` and what is accepted.
    """
    tau = config.tau
    if isinstance(tau, bool) or not isinstance(tau, int | float) or not 0.0 < tau <= 1.0:
        raise MpgymError(f"--tau must be a number in (0, 1]; got {tau!r}.")


# --------------------------------------------------------------------------- networks


class TwinQ(nn.Module):
    """Two independent Q-networks ``Q_i(s, a)`` (ReLU MLPs) evaluated in one batched pass.

    Layer ``l`` of both networks is one tensor ``weight_l [2, in, out]`` (and ``bias_l
    [2, 1, out]``), so each layer is a single ``baddbmm`` instead of two ``addmm``: the same
    arithmetic as two separate MLPs with half the dispatcher calls. Initialised as
    ``nn.Linear`` is (uniform in ``+-1/sqrt(fan_in)``), each network independently.

    Args:
        obs_dim: observation features.
        act_dim: action features.
        hidden: hidden widths, shared by both networks.
    """

    def __init__(self, obs_dim: int, act_dim: int, hidden: Sequence[int]):
        super().__init__()
        sizes = [obs_dim + act_dim, *hidden, 1]
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        for fan_in, fan_out in zip(sizes[:-1], sizes[1:], strict=True):
            bound = 1.0 / math.sqrt(fan_in)
            w = torch.empty(2, fan_in, fan_out).uniform_(-bound, bound)
            b = torch.empty(2, 1, fan_out).uniform_(-bound, bound)
            self.weights.append(nn.Parameter(w))
            self.biases.append(nn.Parameter(b))

    def forward(self, obs: Tensor, actions: Tensor) -> Tensor:
        """``obs [B, obs_dim]``, ``actions [B, act_dim]`` -> ``[2, B]`` values of both critics."""
        x = torch.cat([obs, actions], dim=-1)
        h = x.unsqueeze(0).expand(2, *x.shape)  # [2, B, in]
        last = len(self.weights) - 1
        for i, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            h = torch.baddbmm(b, h, w)  # [2, B, out]
            if i < last:
                h = F.relu(h)
        return h.squeeze(-1)


# --------------------------------------------------------------------------- the agent base


class OffPolicyAgent(ReplayAgent):
    """Base of SAC and TD3: Box-action checks, replay buffer, the env loop, checkpoints.

    A subclass builds ``actor``, ``critic`` (a :class:`TwinQ`) and ``critic_target`` plus
    its optimisers in :meth:`_build_nets`, lists its optimisers in :meth:`_optimizers`, and
    implements :meth:`_explore` (the scaled action to take at a step), :meth:`_act` and
    :meth:`_gradient_steps`.

    Attributes:
        buffer: the :class:`ReplayBuffer` of scaled actions.
        act_dim: the action dimension ``D``.
        low, high: the Box bounds ``[D]`` (float32).
    """

    losses: dict[str, float]
    """The latest mean losses of a training round (logged on episode rows)."""

    def _build(self) -> None:
        space = self.env.action_space
        who = type(self).__name__
        if not (isinstance(space, gym.spaces.Box) and len(space.shape) == 1):
            raise MpgymError(
                f"{who} needs a 1-D Box (continuous) action space with finite bounds, but "
                f"{self.env_id} has {space}; use DQN, PPO or A2C for Discrete actions."
            )
        if not (
            np.isfinite(space.low).all()
            and np.isfinite(space.high).all()
            and (space.high > space.low).all()
        ):
            raise MpgymError(
                f"{who} needs a 1-D Box action space with finite bounds (low < high), but "
                f"{self.env_id} has {space}; wrap the env in "
                "gymnasium.wrappers.RescaleAction or clip its actions."
            )
        self.act_dim = int(space.shape[0])
        self.low = space.low.astype(np.float32)
        self.high = space.high.astype(np.float32)
        cfg = self.config
        self.buffer = ReplayBuffer(
            min(cfg.buffer_size, 10**8), self.encoder.dim, (self.act_dim,), np.float32
        )
        self._obs: np.ndarray | None = None
        self._tracker = EpisodeTracker(1)
        self.losses = {}
        self._build_nets()
        self.optimizer = self._optimizers()["critic"]

    # -- what a subclass implements ---------------------------------------------------------
    def _build_nets(self) -> None:
        """Create ``actor``, ``critic``, ``critic_target`` (and more) and their optimisers."""
        raise NotImplementedError

    def _optimizers(self) -> dict[str, torch.optim.Optimizer]:
        """Name -> optimiser, all checkpointed (``"critic"`` is ``self.optimizer``)."""
        raise NotImplementedError

    def _explore(self, obs: np.ndarray) -> np.ndarray:
        """The scaled action ``[D]`` in ``[-1, 1]`` to take at ``obs [obs_dim]`` while learning."""
        raise NotImplementedError

    def _gradient_steps(self, batch: dict[str, Tensor]) -> dict[str, float]:
        """Gradient steps on ``[G, B, ...]`` minibatches; the mean losses by name."""
        raise NotImplementedError

    @staticmethod
    def _adam(params: Any, lr: float) -> torch.optim.Adam:
        """Adam with the fused kernel (PyTorch >= 2.4 on CPU; the same update, fewer calls)."""
        try:
            return torch.optim.Adam(params, lr=lr, fused=True)
        except (RuntimeError, TypeError):  # pragma: no cover - older PyTorch builds
            return torch.optim.Adam(params, lr=lr, foreach=True)

    # -- the update ---------------------------------------------------------------------------
    def train_round(self, n_steps: int) -> dict[str, float]:
        """``n_steps`` gradient steps on uniform minibatches (one gather); the mean losses."""
        cfg, buf = self.config, self.buffer
        idx = buf.sample_indices(n_steps * cfg.batch_size, self.rng).reshape(n_steps, -1)
        batch = {
            "obs": buf.gather_obs(idx),  # [G, B, obs_dim]
            "actions": torch.from_numpy(buf.actions[idx]),  # [G, B, D]
            "rewards": torch.from_numpy(buf.rewards[idx]),  # [G, B]
            "next_obs": buf.gather_obs(idx, next_obs=True),  # [G, B, obs_dim]
            "terminated": torch.from_numpy(buf.terminated[idx]),  # [G, B]
        }
        return self._gradient_steps(batch)

    # -- the loop ------------------------------------------------------------------------------
    def learn(
        self,
        total_timesteps: int | None = None,
        callback: Callback | None = None,
        progress_bar: bool = True,
        reset_num_timesteps: bool = True,
    ) -> OffPolicyAgent:
        """Collect experience with the exploring policy; train every ``train_freq`` steps.

        Args:
            total_timesteps: environment steps (default ``config.total_timesteps``).
            callback: called after every env step (see :mod:`agents.common.callbacks`): a
                function ``callback(locals()) -> bool | None``, a ``BaseCallback`` or a list;
                False stops.
            progress_bar: show a progress bar on a terminal.
            reset_num_timesteps: True (SB3's default) restarts the counters and the episode
                (the replay buffer is kept); False continues them (also after :meth:`load`),
                so ``learning_starts`` is already past.

        Returns:
            ``self``.

        Raises:
            MpgymError: a budget below 1, a non-finite observation or reward, or parameters
                that became NaN/inf.
        """
        cfg = self.config
        total = total_timesteps if total_timesteps is not None else cfg.total_timesteps
        self._start_env(self._setup_learn(total, reset_num_timesteps))
        env, low, high = self.env, self.low, self.high
        assert self._obs is not None
        bar = progress(
            total=total, desc=f"{self.name} {self.env_id}", enable=progress_bar, unit="step"
        )
        with self._training(), bar, learning_hooks(self, callback) as hooks:
            for step in range(total):  # noqa: B007 - ``step`` is visible to callbacks
                if self.num_timesteps < cfg.learning_starts:
                    scaled = self.rng.uniform(-1.0, 1.0, self.act_dim).astype(np.float32)
                else:
                    scaled = self._explore(self._obs)
                action = unscale_action(scaled, low, high)
                raw, reward, terminated, truncated, info = env.step(action)
                check_step(self.env_id, raw, reward)
                next_obs = self.preprocess(raw)[0]
                self.buffer.add(self._obs, scaled, float(reward), next_obs, terminated)
                self.num_timesteps += 1
                done = terminated or truncated
                ended = self._tracker.step(np.array([float(reward)]), np.array([done]))
                if done:
                    self._episodes_done(ended, **self.losses)
                    raw, _ = env.reset()
                    next_obs = self.preprocess(raw)[0]
                self._obs = next_obs
                if (
                    self.num_timesteps > cfg.learning_starts
                    and self.num_timesteps % cfg.train_freq == 0
                ):
                    self.losses = self.train_round(cfg.gradient_steps)
                    self.check_finite_state(f"after {self.num_updates} gradient steps")
                    self.log_update(**self.losses)
                bar.update(1)
                if hooks is not None and not hooks.step(locals(), done, [info]):
                    break
        return self

    def _start_env(self, reset: bool) -> None:
        """Reset the env (seeded on the very first reset), or put back a checkpoint's state."""
        if self._restore_pending_env(self.env, reset):
            return
        if reset or self._obs is None:
            first = self._obs is None and self.num_episodes == 0
            raw, _ = self.env.reset(seed=self.config.seed if first else None)
            self._obs = self.preprocess(raw)[0]
            self._tracker = EpisodeTracker(1)

    # -- continuing ------------------------------------------------------------------------------
    def _can_continue(self) -> bool:
        return self._obs is not None

    def resume_state(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """Every optimiser's state, the torch generator and the rollout state."""
        tensors: dict[str, Any] = {"rng.torch": self.torch_gen.get_state()}
        groups: dict[str, Any] = {}
        for name, opt in self._optimizers().items():
            t, g = optimizer_state(opt, f"optim_{name}")
            tensors.update(t)
            groups[name] = g
        more_tensors, more_info = self._rollout_state()
        return {**tensors, **more_tensors}, {"optim_groups": groups, **more_info}

    def load_resume_state(self, tensors: dict[str, Any], info: dict[str, Any]) -> None:
        """Restore :meth:`resume_state` output (what is absent keeps its fresh value)."""
        groups = info.get("optim_groups")
        if groups is not None:
            if not isinstance(groups, dict):
                raise CheckpointError("checkpoint optimiser state must be a JSON object.")
            for name, opt in self._optimizers().items():
                if name in groups:
                    load_optimizer_state(opt, tensors, groups[name], f"optim_{name}")
        if "rng.torch" in tensors:
            gen_state = tensors["rng.torch"]
            fresh = self.torch_gen.get_state()
            if gen_state.dtype != torch.uint8 or gen_state.shape != fresh.shape:
                raise CheckpointError("checkpoint tensor rng.torch is not a torch generator state.")
            self.torch_gen.set_state(gen_state.clone())
        self._load_rollout_state(tensors, info)

    def _rollout_state(self) -> tuple[dict[str, Any], dict[str, Any]]:
        if self._obs is None:
            return {}, {}
        if self._pending_env is not None:  # loaded, not trained since: pass the snapshot on
            arrays, env_info = self._pending_env
        elif snapshot_supported(self.env):
            arrays, env_info = env_state(self.env)
        else:  # a simulator state outside NumPy (MuJoCo): continuing starts a new episode
            return {}, {"losses": self.losses}
        tensors = {"rollout.obs": self._obs.copy(), **self._tracker.state_dict("rollout.tracker")}
        tensors.update({f"envstate.{k}": v for k, v in arrays.items()})
        return tensors, {"rollout": True, "env": env_info, "losses": self.losses}

    def _load_rollout_state(self, tensors: dict[str, Any], info: dict[str, Any]) -> None:
        losses = info.get("losses", {})
        if isinstance(losses, dict):
            self.losses = {
                str(k): float(v)
                for k, v in losses.items()
                if isinstance(v, int | float) and not isinstance(v, bool)
            }
        if info.get("rollout") is not True:
            return
        obs = _array_like(
            tensors.get("rollout.obs", np.zeros(0)),
            np.zeros(self.encoder.dim),
            np.float32,
            "rollout.obs",
        )
        self._tracker.load_state_dict(tensors, "rollout.tracker")
        self._pending_env = (self._arrays_under(tensors, "envstate"), info.get("env"))
        self._obs = obs

    def _buffer_actions_problem(self, actions: Tensor) -> str | None:
        return "scaled to [-1, 1]" if float(actions.abs().max()) > 1.0 else None

    # -- acting ------------------------------------------------------------------------------------
    def _scaled_to_env(self, scaled: np.ndarray) -> np.ndarray:
        """``[..., D]`` scaled actions -> env actions in the Box."""
        return unscale_action(scaled, self.low, self.high)

    def _act_scaled(self, obs: torch.Tensor, deterministic: bool) -> np.ndarray:
        """Scaled actions ``[B, D]`` for encoded observations ``[B, obs_dim]``."""
        raise NotImplementedError

    def _act(self, obs: torch.Tensor, deterministic: bool) -> np.ndarray:
        return self._scaled_to_env(self._act_scaled(obs, deterministic))
