"""Deep Q-Network (Mnih et al. 2015) with Double DQN, dueling heads, Huber loss and clipping.

The update, as the method defines it: sample transitions ``(s, a, r, s', terminated)`` from the
replay buffer, form the constant target ``y = r + gamma * (1 - terminated) * max_a'
Q_target(s', a')`` (Double DQN: the online net picks ``a'``, the target net values it), and
descend ``loss(Q(s, a), y)`` with gradients through ``Q(s, a)`` only. Truncated episodes (time
limits) are bootstrapped from their true final observation; only termination zeroes it.

Schedules follow stable-baselines3: epsilon and the learning rate are functions of
``t / _total_timesteps`` (the budget of this ``learn`` call, plus the steps before it with
``reset_num_timesteps=False``; ``t`` is the index of the current env step, ``num_timesteps``
before it is counted), and ``learning_starts`` counts ``num_timesteps``. The
replay buffer can be saved beside the checkpoint (``save(path, include_buffer=True)``), so a
loaded agent continues exactly.

Example:
    >>> agent = DQN("CartPole-v1").learn(50_000)  # doctest: +SKIP
    >>> action, _ = agent.predict(obs)  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from agents.common import Callback, linear_schedule
from agents.common.callbacks import learning_hooks
from agents.common.envs import EnvKwargs, env_state
from agents.deep.base import EpisodeTracker, ReplayAgent, _array_like, check_step
from agents.deep.buffers import BUFFER_FILE as BUFFER_FILE
from agents.deep.buffers import ReplayBuffer
from agents.deep.common import clip_grad_norm, dqn_targets
from agents.deep.features import Features, Policy, make_extractor, storage_dtype
from agents.deep.networks import QNetwork
from agents.deep.numpy_policy import numpy_network, plain_mlp_layers
from agents.deep.optim import FusedRMSprop
from mpgym.errors import MpgymError
from mpgym.progress import progress


@dataclass(frozen=True)
class DQNConfig:
    """DQN hyperparameters; defaults are tuned for CartPole-v1.

    rl-baselines3-zoo's tuned CartPole-v1 set (lr 2.3e-3, batch 64, 256 env steps then 128
    gradient steps, exploration 16 % down to 0.04) with three changes measured here: a
    [128, 128] network instead of [256, 256] (a third of the compute), the step size annealed
    linearly to 0 (the final policy stops drifting), and Double DQN. The target network is
    synced after each training round, as the zoo's interval of 10 env steps does in SB3. Seeds
    0-4 all reach a mean evaluation return of 500 (20 episodes) after 5e4 steps, measured here.
    """

    env_id: str = "CartPole-v1"
    """Gymnasium id of the environment (Discrete actions)."""
    env_kwargs: EnvKwargs = field(default_factory=dict)
    """Keyword arguments of the env (``gymnasium.make(env_id, **env_kwargs)``), as JSON on the
    command line: ``--env-kwargs '{"is_slippery": false}'``."""
    seed: int = 0
    """Seed of the env, the network initialisation, exploration and replay sampling."""
    total_timesteps: int = 50_000
    """Environment steps of ``learn()`` when no budget is given (zoo: 5e4 for CartPole)."""
    learning_rate: float = 2.3e-3
    """Adam step size (zoo CartPole: 2.3e-3)."""
    lr_schedule: Literal["constant", "linear"] = "linear"
    """'linear' anneals the step size to 0 over the budget of ``learn()``."""
    buffer_size: int = 100_000
    """Replay capacity in transitions."""
    learning_starts: int = 1_000
    """Environment steps of pure exploration before the first update."""
    batch_size: int = 64
    """Transitions per gradient step."""
    gamma: float = 0.99
    """Discount factor."""
    train_freq: int = 256
    """Environment steps between training rounds."""
    gradient_steps: int = 128
    """Gradient steps per training round."""
    target_update_interval: int = 128
    """Gradient steps between target-network updates."""
    tau: float = 1.0
    """Target update rate: 1 copies the online net (hard update), < 1 is Polyak averaging."""
    exploration_fraction: float = 0.16
    """Fraction of ``total_timesteps`` over which epsilon decays linearly."""
    exploration_initial_eps: float = 1.0
    """Epsilon at the start."""
    exploration_final_eps: float = 0.04
    """Epsilon after the decay."""
    double_dqn: bool = True
    """Select the next action with the online net and value it with the target net."""
    dueling: bool = False
    """Use a dueling head ``V(s) + A(s, a) - mean A``."""
    loss: Literal["huber", "mse"] = "huber"
    """TD loss: Huber (smooth L1, as in Mnih et al. 2015) or squared error."""
    max_grad_norm: float = 10.0
    """Gradient-norm clip (SB3's default for DQN)."""
    hidden: tuple[int, ...] = (128, 128)
    """Hidden layer widths of the Q-network (zoo: [256, 256]); after the CNN with images."""
    policy: Policy = "mlp"
    """'mlp' (vectors), 'cnn' (images), 'multi_input' (Dict of images and vectors), or 'auto':
    picked from the observation space (see :mod:`agents.deep.features`)."""
    features: Features = "nature"
    """The CNN of 'cnn'/'multi_input': Nature-DQN's (images of 36x36 and more) or MinAtar's."""
    optimizer: Literal["adam", "rmsprop"] = "adam"
    """Adam, or centered RMSprop (alpha 0.95, eps 0.01; MinAtar's DQN), the latter as
    :class:`agents.deep.optim.FusedRMSprop` (torch's rule, one compiled pass a parameter)."""


_BASE = DQNConfig()
DQN_PRESETS: dict[str, DQNConfig] = {
    "CartPole-v1": _BASE,
    # rl-baselines3-zoo dqn.yml (Acrobot-v1: -76.6 after 1e5 steps), with one gradient step
    # per 4 env steps instead of 4 (a quarter of the compute) and the CartPole network.
    "Acrobot-v1": dataclasses.replace(
        _BASE,
        env_id="Acrobot-v1",
        total_timesteps=100_000,
        learning_rate=6.3e-4,
        batch_size=128,
        buffer_size=50_000,
        learning_starts=1_000,
        train_freq=4,
        gradient_steps=1,
        target_update_interval=64,
        exploration_fraction=0.12,
        exploration_final_eps=0.1,
    ),
    # rl-baselines3-zoo dqn.yml (MountainCar-v0: -100.8 after 1.2e5 steps).
    "MountainCar-v0": dataclasses.replace(
        _BASE,
        env_id="MountainCar-v0",
        total_timesteps=120_000,
        learning_rate=4e-3,
        batch_size=128,
        buffer_size=10_000,
        learning_starts=1_000,
        gamma=0.98,
        train_freq=16,
        gradient_steps=8,
        target_update_interval=75,
        exploration_fraction=0.2,
        exploration_final_eps=0.07,
    ),
    # rl-baselines3-zoo dqn.yml (LunarLander-v3 needs Box2D).
    "LunarLander-v3": dataclasses.replace(
        _BASE,
        env_id="LunarLander-v3",
        total_timesteps=100_000,
        learning_rate=6.3e-4,
        batch_size=128,
        buffer_size=50_000,
        learning_starts=0,
        train_freq=4,
        gradient_steps=4,
        target_update_interval=62,
        exploration_fraction=0.12,
        exploration_final_eps=0.1,
    ),
}

# MinAtar's DQN (Young & Tian 2019, "MinAtar: An Atari-Inspired Testbed for Thorough and
# Reproducible Reinforcement Learning Experiments", arXiv:1903.03176), from the constants of
# the authors' examples/dqn.py (github.com/kenjyoung/MinAtar, as it was before 2024-12):
# replay 100,000; batch 32; one gradient step per frame; target copied every 1,000 gradient
# steps; gamma 0.99; Huber loss; no Double DQN, no gradient clipping; centered RMSprop
# (squared-gradient momentum 0.95, min squared gradient 0.01, no momentum); 5,000 frames of
# uniform actions before learning, then epsilon 1 -> 0.1 over 100,000 frames (here one linear
# decay over the first 105,000 frames: 0.96 at frame 5,000 instead of 1); 5M frames; network
# conv 16 3x3 stride 1 -> fc 128 -> actions (features="minatar", no hidden layers). The
# paper's agents act in all 6 actions: the '-v0' ids (the '-v1' ids have the minimal sets).
# Step size: the best of the paper's sweep (powers of 2, its step-size sensitivity figure)
# per game: 2^-9 on Breakout, 2^-12 (about the script's default 2.5e-4) on Space Invaders.
# exploration_fraction is of the budget of learn(): 105,000 frames of the 5M.
#
# REFERENCE (the paper's learning curves, Figure "learning_curves" of the repository's README:
# mean over 30 runs of the return averaged over the last 100 training episodes, at 5M frames,
# read off the plot): DQN Breakout ~10, Space Invaders ~43.
MINATAR_DQN_REFERENCE: dict[str, float] = {"MinAtar/Breakout-v0": 10.0,
                                           "MinAtar/SpaceInvaders-v0": 43.0}
"""Final training returns of the MinAtar paper's DQN (approximate, read off its plot)."""
_MINATAR = dataclasses.replace(
    _BASE,
    total_timesteps=5_000_000,
    lr_schedule="constant",
    optimizer="rmsprop",
    buffer_size=100_000,
    learning_starts=5_000,
    batch_size=32,
    gamma=0.99,
    train_freq=1,
    gradient_steps=1,
    target_update_interval=1_000,
    tau=1.0,
    exploration_fraction=105_000 / 5_000_000,
    exploration_initial_eps=1.0,
    exploration_final_eps=0.1,
    double_dqn=False,
    loss="huber",
    max_grad_norm=1e6,  # no clipping in effect (the config takes finite numbers only)
    hidden=(),
    policy="cnn",
    features="minatar",
)
DQN_PRESETS["minatar-breakout"] = dataclasses.replace(
    _MINATAR, env_id="MinAtar/Breakout-v0", learning_rate=2.0**-9)
DQN_PRESETS["minatar-space-invaders"] = dataclasses.replace(
    _MINATAR, env_id="MinAtar/SpaceInvaders-v0", learning_rate=2.0**-12)


class DQN(ReplayAgent):
    """Deep Q-learning for Discrete action spaces.

    Attributes:
        q: the online :class:`QNetwork`.
        q_target: the target network (updated every ``target_update_interval`` gradient steps).
        buffer: the :class:`ReplayBuffer`.
    """

    name: ClassVar[str] = "dqn"
    Config: ClassVar[type] = DQNConfig
    PRESETS: ClassVar[dict[str, Any]] = DQN_PRESETS
    MODULES: ClassVar[tuple[str, ...]] = ("q", "q_target")
    config: DQNConfig

    def _build(self) -> None:
        space = self.env.action_space
        if not isinstance(space, gym.spaces.Discrete):
            raise MpgymError(
                f"DQN needs a Discrete action space, but {self.env_id} has {space}; "
                "use PPO, A2C or REINFORCE for continuous (Box) actions."
            )
        cfg = self.config
        self.n_actions = int(space.n)
        self.action_start = int(space.start)
        self.q, self.q_target = (
            QNetwork(self.encoder.dim, self.n_actions, cfg.hidden, dueling=cfg.dueling,
                     features=make_extractor(self.encoder, cfg.features, "DQN"))
            for _ in range(2))
        self.q_target.load_state_dict(self.q.state_dict())
        self.q_target.requires_grad_(False)
        if cfg.optimizer == "rmsprop":
            self.optimizer = FusedRMSprop(self.q.parameters(), lr=cfg.learning_rate,
                                          alpha=0.95, eps=0.01, centered=True, foreach=True)
        else:
            self.optimizer = torch.optim.Adam(self.q.parameters(), lr=cfg.learning_rate,
                                              fused=True)
        self.buffer = ReplayBuffer(min(cfg.buffer_size, 10**8), self.encoder.dim,
                                   obs_dtype=storage_dtype(self.encoder))
        self.num_updates = 0
        self._obs: np.ndarray | None = None
        self._tracker = EpisodeTracker(1)
        self._loss = math.nan

    def _act(self, obs: torch.Tensor, deterministic: bool) -> np.ndarray:
        greedy = self.q(obs).argmax(dim=1).numpy() + self.action_start
        if deterministic:
            return greedy
        explore = self.rng.random(len(greedy)) < self.config.exploration_final_eps
        random = self.rng.integers(0, self.n_actions, len(greedy)) + self.action_start
        return np.where(explore, random, greedy)

    def greedy_action_fn(self) -> Callable[[np.ndarray], int]:
        """``obs [obs_dim] -> argmax_a Q(obs, a)`` for the acting loop, in NumPy when it can be.

        A single observation through a small MLP costs tens of microseconds in PyTorch's
        dispatcher and a few in NumPy. The NumPy forward (:mod:`agents.deep.numpy_policy`) reads
        views of the parameters (the optimiser and target copies update them in place), so it
        always matches ``self.q``; with a CNN feature extractor first (:func:`numpy_network`:
        one image through MinAtar's CNN costs ~0.25 ms in PyTorch, ~0.03 ms in NumPy). Dueling
        networks keep the PyTorch forward.
        """
        forward = None if self.q.dueling else numpy_network(self.q.features, self.q.net)
        if forward is None:

            def torch_greedy(obs: np.ndarray) -> int:
                with torch.no_grad():
                    return int(self.q(torch.from_numpy(obs).unsqueeze(0)).argmax())

            return torch_greedy

        def numpy_greedy(obs: np.ndarray) -> int:
            return int(forward(obs).argmax())

        return numpy_greedy

    # -- continuing --------------------------------------------------------------------------
    def _can_continue(self) -> bool:
        return self._obs is not None

    def _rollout_state(self) -> tuple[dict[str, Any], dict[str, Any]]:
        if self._obs is None:
            return {}, {}
        tensors = {"rollout.obs": self._obs.copy(), **self._tracker.state_dict("rollout.tracker")}
        if self._pending_env is not None:  # loaded, not trained since: pass the snapshot on
            arrays, env_info = self._pending_env
        else:
            arrays, env_info = env_state(self.env)
        tensors.update({f"envstate.{k}": v for k, v in arrays.items()})
        return tensors, {"rollout": True, "env": env_info, "loss": self._loss}

    def _load_rollout_state(self, tensors: dict[str, Any], info: dict[str, Any]) -> None:
        if info.get("rollout") is not True:
            return
        obs = _array_like(tensors.get("rollout.obs", np.zeros(0)), np.zeros(self.encoder.dim),
                          np.float32, "rollout.obs")
        self._tracker.load_state_dict(tensors, "rollout.tracker")
        arrays = self._arrays_under(tensors, "envstate")
        loss = info.get("loss", math.nan)
        self._loss = float(loss) if isinstance(loss, int | float) else math.nan
        self._pending_env = (arrays, info.get("env"))
        self._obs = obs

    def _start_env(self, reset: bool) -> None:
        """Reset the env, or put back the state a checkpoint holds."""
        if self._restore_pending_env(self.env, reset):
            return
        if reset:
            first = self._obs is None and self.num_episodes == 0
            raw, _ = self.env.reset(seed=self.config.seed if first else None)
            self._obs = self.preprocess(raw)[0]
            self._tracker = EpisodeTracker(1)

    def _buffer_actions_problem(self, actions: Tensor) -> str | None:
        if int(actions.min()) < 0 or int(actions.max()) >= self.n_actions:
            return f"in 0..{self.n_actions - 1}"
        return None

    def epsilon(self, step: int, total: int) -> float:
        """Exploration rate after ``step`` of ``total`` environment steps (linear decay)."""
        cfg = self.config
        return linear_schedule(
            cfg.exploration_initial_eps,
            cfg.exploration_final_eps,
            int(cfg.exploration_fraction * total),
            step,
        )

    # -- the update --------------------------------------------------------------------------
    def train_round(self, n_steps: int) -> float:
        """``n_steps`` gradient steps on replayed minibatches; returns the mean TD loss."""
        cfg = self.config
        idx = self.buffer.sample_indices(n_steps * cfg.batch_size, self.rng).reshape(n_steps, -1)
        buf = self.buffer
        # one gather for the whole round: [G, B, ...]
        obs_all = buf.gather_obs(idx)
        next_all = buf.gather_obs(idx, next_obs=True)
        act_all = torch.from_numpy(buf.actions[idx]).unsqueeze(-1)
        rew_all = torch.from_numpy(buf.rewards[idx])
        term_all = torch.from_numpy(buf.terminated[idx])
        manual = self._mlp_layers() is not None
        gradient = self._gradient_manual if manual else self._gradient_autograd
        params = list(self.q.parameters())
        loss_sum = torch.zeros(())
        taken = 0
        while taken < n_steps:
            # The target net only changes at a target update, so its values for all the steps
            # up to the next update come from one batched forward pass.
            span = min(
                n_steps - taken,
                cfg.target_update_interval - self.num_updates % cfg.target_update_interval,
            )
            with torch.no_grad():
                next_span = next_all[taken : taken + span]
                next_q_span = self.q_target(next_span.reshape(-1, next_span.shape[-1]))
                next_q_span = next_q_span.view(span, next_span.shape[1], -1)
            for k in range(span):
                loss = gradient(
                    obs_all[taken + k],
                    next_all[taken + k],
                    act_all[taken + k],
                    rew_all[taken + k],
                    term_all[taken + k],
                    next_q_span[k],
                )
                clip_grad_norm(params, cfg.max_grad_norm)
                self.optimizer.step()
                loss_sum += loss
                self.num_updates += 1
            if self.num_updates % cfg.target_update_interval == 0:
                self.update_target()
            taken += span
        return float(loss_sum) / max(n_steps, 1)

    def _gradient_autograd(
        self,
        obs: Tensor,
        next_obs: Tensor,
        actions: Tensor,
        rewards: Tensor,
        terminated: Tensor,
        next_q_target: Tensor,
    ) -> Tensor:
        """Set ``self.q``'s gradients of the TD loss of one minibatch (autograd); the loss."""
        cfg = self.config
        with torch.no_grad():
            next_q_online = self.q(next_obs) if cfg.double_dqn else None
        y = dqn_targets(rewards, terminated, next_q_target, cfg.gamma, next_q_online)
        q_sa = self.q(obs).gather(1, actions).squeeze(1)
        loss_fn = F.smooth_l1_loss if cfg.loss == "huber" else F.mse_loss
        loss = loss_fn(q_sa, y)
        # zero_grad(set_to_none=True) without its profiler context: ~20 us a step on MinAtar
        for group in self.optimizer.param_groups:
            for p in group["params"]:
                p.grad = None
        loss.backward()
        return loss.detach()

    def _mlp_layers(self) -> list[nn.Linear] | None:
        """The Linear layers of a plain ReLU MLP Q-network, else None (dueling, CNN)."""
        layers = plain_mlp_layers(self.q.plain_mlp, (nn.ReLU,))
        return None if layers is None else [m for m in layers if isinstance(m, nn.Linear)]

    @torch.no_grad()
    def _gradient_manual(
        self,
        obs: Tensor,
        next_obs: Tensor,
        actions: Tensor,
        rewards: Tensor,
        terminated: Tensor,
        next_q_target: Tensor,
    ) -> Tensor:
        """:meth:`_gradient_autograd` with the backward pass of the MLP written out.

        The same loss and gradients (tests/agents/deep/test_agents.py compares them); for a
        network this small PyTorch's autograd bookkeeping costs more than the arithmetic.
        With ``z_l = h_{l-1} W_l^T + b_l``, ``h_l = relu(z_l)`` and ``g = dL/dz_L``:
        ``dL/dW_l = g_l^T h_{l-1}``, ``dL/db_l = sum_rows g_l``,
        ``g_{l-1} = (g_l W_l) * [z_{l-1} > 0]``. The online net's values of ``s'`` (Double DQN)
        ride along in the same forward pass, below the minibatch rows.
        """
        cfg = self.config
        linears = self._mlp_layers()
        assert linears is not None
        b = obs.shape[0]
        h = torch.cat([obs, next_obs]) if cfg.double_dqn else obs
        inputs, pre = [], []
        for i, lin in enumerate(linears):
            inputs.append(h)
            z = torch.addmm(lin.bias, h, lin.weight.t())
            if i < len(linears) - 1:
                pre.append(z)
                h = z.clamp_min(0.0)
            else:
                h = z
        next_q_online = h[b:] if cfg.double_dqn else None
        y = dqn_targets(rewards, terminated, next_q_target, cfg.gamma, next_q_online)
        d = h[:b].gather(1, actions).squeeze(1) - y
        if cfg.loss == "huber":  # smooth L1 with beta 1
            ad = d.abs()
            loss = torch.where(ad < 1.0, 0.5 * d * d, ad - 0.5).mean()
            grad_d = d.clamp(-1.0, 1.0).div_(b)
        else:
            loss = (d * d).mean()
            grad_d = d.mul(2.0 / b)
        g = torch.zeros(b, h.shape[1]).scatter_(1, actions, grad_d.unsqueeze(1))
        for i in range(len(linears) - 1, -1, -1):
            lin = linears[i]
            lin.weight.grad = g.t() @ inputs[i][:b]
            lin.bias.grad = g.sum(0)
            if i > 0:
                g = (g @ lin.weight).mul_(pre[i - 1][:b] > 0)
        return loss

    @torch.no_grad()
    def update_target(self) -> None:
        """``theta_target <- tau * theta + (1 - tau) * theta_target`` (tau = 1: a copy)."""
        tau = self.config.tau
        tgt, src = list(self.q_target.parameters()), list(self.q.parameters())
        if tau >= 1.0:
            torch._foreach_copy_(tgt, src)
        else:
            torch._foreach_lerp_(tgt, src, tau)

    # -- the loop ----------------------------------------------------------------------------
    def _epsilon_greedy(self, greedy: Callable[[np.ndarray], int], eps: float) -> int:
        """The env action for ``self._obs``: uniform with probability ``eps``, else greedy."""
        if self.rng.random() < eps:
            return int(self.rng.integers(self.n_actions)) + self.action_start
        return greedy(self._obs) + self.action_start

    def _scheduled_train_round(self, t: int) -> None:
        """A training round at env step ``t``: the scheduled step size, then the NaN check."""
        cfg = self.config
        if cfg.lr_schedule == "linear":
            self.optimizer.param_groups[0]["lr"] = cfg.learning_rate * (
                1.0 - t / self._total_timesteps)
        self._loss = self.train_round(cfg.gradient_steps)
        self.log_update(loss=self._loss, learning_rate=self.optimizer.param_groups[0]["lr"])
        self.check_finite_state(f"after {self.num_updates} gradient steps")

    def learn(
        self,
        total_timesteps: int | None = None,
        callback: Callback | None = None,
        progress_bar: bool = True,
        reset_num_timesteps: bool = True,
    ) -> DQN:
        """Collect experience epsilon-greedily and train every ``train_freq`` steps.

        Args:
            total_timesteps: environment steps (default ``config.total_timesteps``).
            callback: called after every env step (see :mod:`agents.common.callbacks`): a
                function ``callback(locals()) -> bool | None``, a ``BaseCallback`` or a list;
                False stops.
            progress_bar: show a progress bar on a terminal.
            reset_num_timesteps: True (SB3's default) starts counters, schedules and the
                episode afresh (the replay buffer is kept); False continues them (also after
                :meth:`load`): epsilon and the learning rate then run over
                ``num_timesteps + total_timesteps`` and ``learning_starts`` is already past.

        Returns:
            ``self``.

        Raises:
            MpgymError: a budget below 1, or parameters that became NaN/inf.
        """
        cfg = self.config
        total = total_timesteps if total_timesteps is not None else cfg.total_timesteps
        first = self._obs is None and self.num_timesteps == 0
        self._start_env(self._setup_learn(total, reset_num_timesteps))
        env = self.env
        if first:
            env.action_space.seed(cfg.seed)
        greedy = self.greedy_action_fn()
        assert self._obs is not None
        bar = progress(total=total, desc=f"dqn {self.env_id}", enable=progress_bar, unit="step")
        with self._training(), bar, learning_hooks(self, callback) as hooks:
            for step in range(total):  # noqa: B007 - ``step`` is visible to callbacks
                t = self.num_timesteps  # index of this env step over all calls
                eps = self.epsilon(t, self._total_timesteps)
                action = self._epsilon_greedy(greedy, eps)
                raw, reward, terminated, truncated, info = env.step(action)
                check_step(self.env_id, raw, reward)
                next_obs = self.preprocess(raw)[0]
                self.buffer.add(self._obs, action - self.action_start, float(reward), next_obs,
                                terminated)
                self.num_timesteps += 1
                done = terminated or truncated
                ended = self._tracker.step(np.array([float(reward)]), np.array([done]))
                if done:
                    self._episodes_done(ended, epsilon=eps, loss=self._loss)
                    raw, _ = env.reset()
                    next_obs = self.preprocess(raw)[0]
                self._obs = next_obs
                if (self.num_timesteps > cfg.learning_starts
                        and self.num_timesteps % cfg.train_freq == 0):
                    self._scheduled_train_round(t)
                bar.update(1)
                if hooks is not None and not hooks.step(locals(), done, [info]):
                    break
        return self
