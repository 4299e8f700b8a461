"""What A2C and PPO share: config fields, rollouts over ``gymnasium.vector`` envs, normalisers.

An :class:`OnPolicyAgent` steps ``n_envs`` copies of the env at once. With
``vectorization="auto"`` (the default) an env id whose registration has a vector entry point
(Gymnasium's NumPy-vectorised CartPole, for one) is made by that entry point; any other env runs
in a ``SyncVectorEnv`` of copies. ``vectorization="thread"`` steps the copies on a thread per
core (:class:`~agents.common.envs.ThreadedVectorEnv`: for simulators that release the GIL, as
MuJoCo does) and ``"async"`` in Gymnasium's ``AsyncVectorEnv``, one worker process each. Both
autoreset conventions of Gymnasium 1.x are handled:

- ``SAME_STEP`` (our ``SyncVectorEnv``): when an episode ends, ``step`` returns the first
  observation of the next one and the true final observation in ``info["final_obs"]``; the
  rollout stores ``V`` of that final observation for truncated episodes.
- ``NEXT_STEP`` (vector entry points such as ``CartPoleVectorEnv``): the step that ends an
  episode returns its final observation, and the *next* step of that sub-env only resets it
  (its action is ignored, reward 0). That reset step is not a transition: it is masked out of
  the rollout, the episode statistics and the env-step count, and ``V(s'_t)`` of the ending step
  is the value of the final observation held at the reset step.

Either way time limits are bootstrapped and never mistaken for termination, and
``num_timesteps`` counts real transitions only, so budgets compare with libraries that use
same-step autoreset. The subclass supplies the update (:meth:`_update`).

Schedules (learning rate, PPO's clip range) follow stable-baselines3's
``progress_remaining = 1 - num_timesteps / _total_timesteps``, where ``_total_timesteps`` is the
budget of this ``learn`` call, plus the steps taken before it when ``reset_num_timesteps=False``.
One difference: the value is taken when a rollout starts (SB3 takes it after the rollout, one
rollout's worth of steps later), which keeps the figures measured with this code.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

import gymnasium as gym
import numpy as np
import torch
from gymnasium.vector import AsyncVectorEnv, AutoresetMode, SyncVectorEnv, VectorEnv
from torch import Tensor

from agents.common import Callback, make_env
from agents.common.callbacks import LearnHooks, learning_hooks
from agents.common.envs import EnvKwargs, ThreadedVectorEnv, snapshot_supported
from agents.deep.base import EpisodeTracker, PolicyAgent, _array_like, check_step
from agents.deep.buffers import RolloutBatch, RolloutBuffer
from agents.deep.common import MASKED_LOGIT, clip_grad_norm
from agents.deep.features import Features, Policy
from agents.deep.networks import RunningMeanStd
from agents.deep.numpy_policy import numpy_features, numpy_mlp, sample_categorical
from mpgym.checkpoint import CheckpointError
from mpgym.errors import MpgymError
from mpgym.nn import Activation
from mpgym.progress import progress

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class OnPolicyConfig:
    """Fields common to the actor-critic agents (defaults are overridden per algorithm)."""

    env_id: str = "CartPole-v1"
    """Gymnasium id of the environment (Discrete or Box actions)."""
    env_kwargs: EnvKwargs = field(default_factory=dict)
    """Keyword arguments of the env (``gymnasium.make(env_id, **env_kwargs)``), as JSON on the
    command line: ``--env-kwargs '{"is_slippery": false}'``."""
    seed: int = 0
    """Seed of the envs, the network initialisation and action sampling."""
    total_timesteps: int = 100_000
    """Environment steps (summed over the parallel envs) of ``learn()`` without a budget."""
    n_envs: int = 8
    """Parallel environments."""
    vectorization: Literal["auto", "sync", "thread", "async"] = "auto"
    """'auto': the env's own vector entry point when its registration has one (NumPy-vectorised
    CartPole), else a ``SyncVectorEnv``; 'sync': always a ``SyncVectorEnv`` of copies; 'thread':
    the copies step on one thread per core (``ThreadedVectorEnv``; for simulators that release
    the GIL, such as MuJoCo; identical results to 'sync'; the rollout then runs on one PyTorch
    thread and the update on as many as the env threads); 'async': an ``AsyncVectorEnv``, one
    worker process per copy (for envs whose step costs far more than a pipe message).
    Continuing from a checkpoint starts new episodes where the env state cannot be saved
    (async workers, MuJoCo)."""
    n_steps: int = 32
    """Steps per environment between updates (rollout length)."""
    learning_rate: float = 1e-3
    """Initial step size."""
    lr_schedule: Literal["constant", "linear"] = "linear"
    """'linear' anneals the step size to 0 over ``total_timesteps``."""
    gamma: float = 0.99
    """Discount factor."""
    gae_lambda: float = 0.95
    """GAE lambda; 1.0 gives the n-step returns of A2C."""
    ent_coef: float = 0.0
    """Weight of the entropy bonus."""
    vf_coef: float = 0.5
    """Weight of the value loss."""
    max_grad_norm: float = 0.5
    """Gradient-norm clip."""
    hidden: tuple[int, ...] = (64, 64)
    """Hidden widths of the (separate) policy and value MLPs."""
    activation: Activation = "tanh"
    """Hidden nonlinearity."""
    normalize_obs: bool = False
    """Normalise observations by running mean and std (stored in the checkpoint)."""
    normalize_reward: bool = False
    """Scale rewards by the running std of the discounted return (SB3's VecNormalize)."""
    std: Literal["param", "state", "sde"] = "param"
    """Gaussian policies: state-independent learned log std, an output of the network, or
    generalised state-dependent exploration (gSDE, see :class:`ActorCritic`)."""
    sde_sample_freq: int = -1
    """gSDE: draw new exploration matrices every this many steps (-1: once per rollout)."""
    log_std_init: float = 0.0
    """Initial log std of Gaussian policies."""
    policy: Policy = "mlp"
    """'mlp' (vectors), 'cnn' (images), 'multi_input' (Dict of images and vectors), or 'auto':
    picked from the observation space (see :mod:`agents.deep.features`). With a CNN, actor and
    critic share it and ``hidden`` are the layers after it."""
    features: Features = "nature"
    """The CNN of 'cnn'/'multi_input': Nature-DQN's (images of 36x36 and more) or MinAtar's."""
    action_masks: bool = False
    """Discrete actions: follow the env's ``info["action_mask"]`` (1: allowed; Gymnasium's
    convention) after every reset and step. Masked actions are never sampled, and the update's
    log-probabilities and entropy are those of the policy restricted to the allowed actions
    (sb3-contrib's MaskablePPO); ``predict(obs, action_masks=...)`` takes a mask too. An env
    that gives no mask is an error."""


class OnPolicyAgent(PolicyAgent):
    """Base of A2C and PPO: vector envs, rollouts, normalisation; the update is the subclass's.

    Attributes:
        policy: the :class:`ActorCritic`.
        optimizer: its optimiser (built by the subclass's :meth:`_make_optimizer`).
        obs_rms: running observation statistics when ``normalize_obs`` (else None).
    """

    config: Any

    def _make_env(self, env: str | gym.Env) -> gym.Env:
        self._env_source = env
        return super()._make_env(env)

    def _build(self) -> None:
        cfg = self.config
        self._build_policy()
        self.optimizer = self._make_optimizer()
        self._params = list(self.policy.parameters())
        self.obs_rms = RunningMeanStd((self.encoder.dim,)) if cfg.normalize_obs else None
        self.ret_rms = RunningMeanStd(()) if cfg.normalize_reward else None
        self.vec_env: VectorEnv | None = None
        self._ret = np.zeros(cfg.n_envs)
        self._prev_done = np.zeros(cfg.n_envs, bool)
        self._obs: np.ndarray | None = None
        self._masks: np.ndarray | None = None  # [n_envs, A] allowed actions of self._obs
        self._tracker = EpisodeTracker(cfg.n_envs)
        if cfg.action_masks and not self.discrete:
            raise MpgymError(f"{type(self).__name__}: action_masks needs a Discrete action "
                             f"space; {self.env_id} has {self.env.action_space}.")

    def _make_optimizer(self) -> torch.optim.Optimizer:
        raise NotImplementedError

    def _update(self, batch: RolloutBatch, progress_remaining: float) -> dict[str, float]:
        """One update from a finished rollout; returns statistics to log."""
        raise NotImplementedError

    def _gradient_step(
        self, policy_loss: Tensor, value_loss: Tensor, entropy: Tensor
    ) -> dict[str, float]:
        """One optimiser step on ``L = policy_loss + vf_coef * value_loss - ent_coef * entropy``.

        The gradient's global norm is clipped to ``max_grad_norm`` first (as in SB3).

        Args:
            policy_loss: scalar policy-gradient loss.
            value_loss: scalar value loss.
            entropy: scalar mean entropy of the policy.

        Returns:
            ``policy_loss``, ``value_loss`` and ``entropy`` as floats, for the log.
        """
        cfg = self.config
        loss = policy_loss + cfg.vf_coef * value_loss - cfg.ent_coef * entropy
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        clip_grad_norm(self._params, cfg.max_grad_norm)
        self.optimizer.step()
        return {
            "policy_loss": policy_loss.item(),
            "value_loss": value_loss.item(),
            "entropy": entropy.item(),
        }

    # -- observations ------------------------------------------------------------------------
    def preprocess(self, obs: Any) -> np.ndarray:
        """Encode, then normalise with the running statistics when enabled."""
        x = self.encoder(obs)
        return self.obs_rms.normalize(x) if self.obs_rms is not None else x

    def _extra_state(self) -> dict[str, Any]:
        state: dict[str, Any] = {}
        if self.obs_rms is not None:
            state.update(self.obs_rms.state_dict("obs_rms"))
        if self.ret_rms is not None:
            state.update(self.ret_rms.state_dict("ret_rms"))
        return state

    def _load_extra_state(self, state: dict[str, Any]) -> None:
        for rms, prefix in ((self.obs_rms, "obs_rms"), (self.ret_rms, "ret_rms")):
            if rms is None:
                continue
            try:
                mean, var = rms.mean, rms.var
                rms.load_state_dict(state, prefix)
            except KeyError as exc:
                raise CheckpointError(f"checkpoint lacks {exc}: it was saved without "
                                      f"{prefix} (another normalisation setting?).") from None
            if rms.mean.shape != mean.shape or rms.var.shape != var.shape:
                raise CheckpointError(f"checkpoint {prefix} statistics have shape "
                                      f"{rms.mean.shape}; this agent needs {mean.shape}.")

    def _finite_stats(self) -> dict[str, np.ndarray]:
        stats = {}
        if self.obs_rms is not None:
            stats["observation normalisation statistics (obs_rms)"] = np.array(
                [*np.ravel(self.obs_rms.mean), *np.ravel(self.obs_rms.var), self.obs_rms.count])
        if self.ret_rms is not None:
            stats["reward normalisation statistics (ret_rms)"] = np.array(
                [*np.ravel(self.ret_rms.mean), *np.ravel(self.ret_rms.var), self.ret_rms.count])
        return stats

    # -- continuing --------------------------------------------------------------------------
    def _rollout_state(self) -> tuple[dict[str, Any], dict[str, Any]]:
        if self._obs is None or (self.vec_env is not None
                                 and not snapshot_supported(self.vec_env)):
            return {}, {}  # nothing to continue from, or envs whose state cannot be saved
        tensors = {"rollout.obs": self._obs.copy(), "rollout.prev_done": self._prev_done.copy(),
                   "rollout.ret": self._ret.copy(), **self._tracker.state_dict("rollout.tracker")}
        if self._masks is not None:
            tensors["rollout.masks"] = self._masks.copy()
        info: dict[str, Any] = {"rollout": True}
        if self.vec_env is not None:
            arrays, env_info = self._env_snapshot(self.vec_env, "vec_env")
            tensors.update(arrays)
            info.update(env_info)
        elif self._pending_env is not None:  # loaded, not trained since: pass the snapshot on
            arrays, env_info = self._pending_env
            tensors.update({f"vec_env.{k}": v for k, v in arrays.items()})
            info["vec_env"] = env_info
        return tensors, info

    def _load_rollout_state(self, tensors: dict[str, Any], info: dict[str, Any]) -> None:
        if info.get("rollout") is not True:
            return
        n, dim = self.config.n_envs, self.encoder.dim
        obs = _array_like(tensors.get("rollout.obs", np.zeros(0)), np.zeros((n, dim)),
                          np.float32, "rollout.obs")
        self._prev_done = _array_like(tensors.get("rollout.prev_done", np.zeros(0)),
                                      self._prev_done, bool, "rollout.prev_done")
        self._ret = _array_like(tensors.get("rollout.ret", np.zeros(0)), self._ret, np.float64,
                                "rollout.ret")
        self._tracker.load_state_dict(tensors, "rollout.tracker")
        if "vec_env" in info:
            self._pending_env = (self._arrays_under(tensors, "vec_env"), info["vec_env"])
            self._obs = obs
            if self.config.action_masks:
                self._masks = _array_like(
                    tensors.get("rollout.masks", np.zeros(0)),
                    np.ones((n, int(self.env.action_space.n)), bool), bool, "rollout.masks")

    # -- environments ------------------------------------------------------------------------
    def make_vec_env(self) -> VectorEnv:
        """``n_envs`` copies of the training env (see the module docstring for which kind)."""
        n, source, kwargs = self.config.n_envs, self._env_source, self.env_kwargs
        if isinstance(source, str) and self.config.vectorization == "auto":
            spec = gym.spec(source)
            if spec.vector_entry_point is not None and not spec.additional_wrappers:
                return gym.make_vec(source, num_envs=n, vectorization_mode="vector_entry_point",
                                    **kwargs)
        if isinstance(source, str):
            env_fns = [lambda: make_env(source, **kwargs) for _ in range(n)]
            if self.config.vectorization == "async":
                return AsyncVectorEnv(env_fns, autoreset_mode=AutoresetMode.SAME_STEP)
            if self.config.vectorization == "thread":
                return ThreadedVectorEnv(env_fns)
        elif self.config.vectorization in ("async", "thread"):
            raise MpgymError(
                f"vectorization={self.config.vectorization!r} makes its envs from a registered "
                f"id; pass {self.env_id!r} by id (with env_kwargs), or use vectorization='sync'."
            )
        elif n == 1:
            env_fns = [lambda: source]
        elif source.spec is not None:
            env_fns = [lambda: source] + [lambda: gym.make(source.spec) for _ in range(n - 1)]
        else:
            raise MpgymError(
                f"cannot copy the unregistered env {self.env_id} into n_envs={n} "
                "parallel envs; pass its registered id, or set n_envs=1."
            )
        return SyncVectorEnv(env_fns, autoreset_mode=AutoresetMode.SAME_STEP)

    def _scale_rewards(self, rewards: np.ndarray, dones: np.ndarray, valid: np.ndarray):
        if self.ret_rms is None:
            return rewards
        self._ret = self._ret * self.config.gamma + rewards
        if valid.any():  # reset-only steps (next-step autoreset) are not transitions
            self.ret_rms.update(self._ret[valid])
        self._ret[dones] = 0.0
        return np.clip(rewards / np.sqrt(self.ret_rms.var + 1e-8), -10.0, 10.0)

    def _encode_step(self, raw: np.ndarray) -> np.ndarray:
        enc = self.encoder(raw)
        if self.obs_rms is not None:
            self.obs_rms.update(enc)
            enc = self.obs_rms.normalize(enc)
        return enc

    # -- the loop ----------------------------------------------------------------------------
    def numpy_rollout_policy(
        self,
    ) -> Callable[[np.ndarray], tuple[np.ndarray, np.ndarray, np.ndarray]] | None:
        """``obs [N, d] -> (actions, log_probs, values)`` in NumPy for the rollout, or None.

        For Categorical policies whose actor and critic are plain MLPs (Linear, Tanh, ReLU),
        after a CNN or multi-input feature extractor or none: a vector step's forward pass
        through two small MLPs costs ~100 us in PyTorch's dispatcher and ~15 us in NumPy, and
        MinAtar's CNN on 8 images ~300 us against ~50 us. The arrays are views of the
        parameters (see :mod:`agents.deep.numpy_policy`), so they always match
        ``self.policy``; actions are drawn from the same Categorical (inverse CDF with
        ``self.rng``). Others return None and use the PyTorch forward.
        """
        policy = self.policy
        if not policy.discrete or policy.critic is None:
            return None
        actor, critic = numpy_mlp(policy.actor), numpy_mlp(policy.critic)
        features = numpy_features(policy.features) if policy.features is not None else None
        if actor is None or critic is None or (policy.features is not None and features is None):
            return None
        rng = self.rng

        def step(obs: np.ndarray, masks: np.ndarray | None = None
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
            h = obs if features is None else features(obs)
            logits = actor(h)
            if masks is not None:  # as common.mask_logits
                logits = np.where(masks, logits, np.float32(MASKED_LOGIT))
            actions, log_probs = sample_categorical(logits, rng)
            return actions, log_probs, critic(h)[:, 0]

        return step

    def _act_torch(self, obs: np.ndarray, masks: np.ndarray | None = None
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``obs [N, d] -> (actions, log_probs, values)`` through the PyTorch policy."""
        x = torch.from_numpy(obs)
        m = None if masks is None else torch.from_numpy(masks)
        with torch.no_grad():
            actions, log_probs, values = self.policy.act_value(x, self.torch_gen, masks=m)
        return actions.numpy(), log_probs.numpy(), values.numpy()

    def _read_masks(self, info: dict[str, Any]) -> np.ndarray | None:
        """The allowed actions ``[n_envs, A]`` in a vector env's ``info`` (``action_masks``).

        A sub-env whose info has no mask at this step (``info["_action_mask"]`` false) allows
        every action.
        """
        if not self.config.action_masks:
            return None
        n, a = self.config.n_envs, int(self.env.action_space.n)
        if "action_mask" not in info:
            raise MpgymError(
                f"{type(self).__name__}: action_masks=True, but {self.env_id} gives no "
                f"info['action_mask'] (1 for each allowed action, {a} entries); turn "
                "action_masks off or have the env report one after reset and step.")
        masks = np.asarray(info["action_mask"])
        if masks.shape != (n, a):
            raise MpgymError(f"{type(self).__name__}: info['action_mask'] must have {a} entries "
                             f"per env ([{n}, {a}] over the vector env); got {masks.shape}.")
        masks = masks.astype(bool)
        reported = info.get("_action_mask")
        if reported is not None:
            masks[~np.asarray(reported, bool)] = True
        if not masks.any(axis=1).all():
            raise MpgymError(f"{type(self).__name__}: {self.env_id} masked every action.")
        return masks

    def _resample_sde_noise(self, t: int) -> None:
        """gSDE: new exploration matrices at a rollout's start and every ``sde_sample_freq``."""
        every = self.config.sde_sample_freq
        if self.policy.sde and (t == 0 or (every > 0 and t % every == 0)):
            self.policy.reset_noise(self.config.n_envs, self.torch_gen)

    def _store_step(
        self,
        buf: RolloutBuffer,
        t: int,
        actions: np.ndarray,
        log_probs: np.ndarray,
        values: np.ndarray,
        rewards: np.ndarray,
        terminated: np.ndarray,
        dones: np.ndarray,
        valid: np.ndarray,
    ) -> None:
        """Write vector step ``t`` into ``buf``.

        That is ``s_t`` (still ``self._obs``), the policy's actions, log-probabilities and
        values, the (scaled) rewards and the episode ends. A reset-only step of next-step
        autoreset (``valid`` false) is stored as a done, masked-out step.
        """
        buf.obs[t] = self._obs
        if buf.masks is not None:
            buf.masks[t] = self._masks
        buf.actions[t] = actions
        buf.log_probs[t] = log_probs
        buf.values[t] = values
        buf.rewards[t] = self._scale_rewards(rewards, dones, valid)
        buf.terminated[t] = terminated
        buf.dones[t] = dones | ~valid
        buf.valid[t] = valid

    @torch.no_grad()
    def _bootstrap_values(
        self, buf: RolloutBuffer, truncated_final: list[tuple[int, int, np.ndarray]]
    ) -> None:
        """Fill ``buf.next_values``, ``V(s'_t)``, once the rollout is complete.

        ``V(s'_t) = V(s_{t+1})``; under NEXT_STEP ``s_{t+1}`` of an ended episode is its final
        observation, under SAME_STEP it is a reset one, so the value of each truncated
        episode's true final observation (``truncated_final``: ``(t, env, raw obs)``) replaces
        it (terminated ones are never bootstrapped).
        """
        buf.next_values[:-1] = buf.values[1:]
        buf.next_values[-1] = self.policy.value(torch.from_numpy(self._obs)).numpy()
        if truncated_final:
            finals = np.concatenate([self.preprocess(f) for _, _, f in truncated_final])
            v = self.policy.value(torch.from_numpy(finals)).numpy()
            for (t, i, _), vi in zip(truncated_final, v, strict=True):
                buf.next_values[t, i] = vi

    def collect_rollout(
        self, buf: RolloutBuffer, tracker: EpisodeTracker, stats: dict, hooks: LearnHooks | None
    ) -> bool:
        """Fill ``buf`` with ``n_steps`` vector steps; False when a callback asked to stop.

        Each step: act (NumPy or PyTorch forward), step the envs, store the transition,
        move on to the next observation and count the real transitions and finished episodes;
        after the last step, the values of the next states (:meth:`_bootstrap_values`). A plain
        function callback sees this function's locals (``self``, ``t``, ``actions``,
        ``values``, ``rewards``, ``dones``, ``info`` ...). A stop request returns False at
        once, leaving the rollout incomplete (it must not be used for an update).
        """
        vec = self.vec_env
        assert vec is not None
        next_step = vec.metadata.get("autoreset_mode") == AutoresetMode.NEXT_STEP
        act = self.numpy_rollout_policy() or self._act_torch
        truncated_final: list[tuple[int, int, np.ndarray]] = []
        for t in range(buf.n_steps):
            self._resample_sde_noise(t)
            actions, log_probs, values = act(self._obs, self._masks)
            raw, rewards, terminated, truncated, info = vec.step(self.env_actions(actions))
            check_step(self.env_id, raw, rewards)
            dones = terminated | truncated
            valid = ~self._prev_done  # NEXT_STEP: a sub-env that ended last step only resets now
            self._store_step(buf, t, actions, log_probs, values, rewards, terminated, dones, valid)
            if next_step:
                self._prev_done = dones
            else:
                truncated_final += [(t, i, info["final_obs"][i])
                                    for i in np.flatnonzero(truncated & ~terminated)]
            self._obs = self._encode_step(raw)
            self._masks = self._read_masks(info)
            self.num_timesteps += int(valid.sum())
            self._episodes_done(tracker.step(rewards, dones, valid), **stats)
            if hooks is not None and not hooks.step(locals(), dones, info):
                return False
        self._bootstrap_values(buf, truncated_final)
        return True

    def _start_envs(self, reset: bool) -> None:
        """Make the vector env; reset it, or put back the state a checkpoint holds."""
        cfg = self.config
        first = self.vec_env is None
        vec = self.vec_env = self.make_vec_env() if self.vec_env is None else self.vec_env
        if self._restore_pending_env(vec, reset):
            return
        if reset:
            raw, info = vec.reset(seed=cfg.seed if first else None)
            self._obs = self._encode_step(raw)
            self._masks = self._read_masks(info)
            self._ret[:] = 0.0
            self._prev_done[:] = False
            self._tracker = EpisodeTracker(cfg.n_envs)

    def close(self) -> None:
        """Close the training envs (threads, an async vector env's worker processes).

        A later ``learn`` makes new ones, starting new episodes.
        """
        if self.vec_env is not None:
            self.vec_env.close()
            self.vec_env = None
            self._obs = self._masks = None

    def _can_continue(self) -> bool:
        return self._obs is not None and (self.vec_env is not None
                                          or self._pending_env is not None)

    def learn(
        self,
        total_timesteps: int | None = None,
        callback: Callback | None = None,
        progress_bar: bool = True,
        reset_num_timesteps: bool = True,
    ) -> OnPolicyAgent:
        """Alternate rollouts of ``n_envs * n_steps`` steps and updates.

        Args:
            total_timesteps: environment steps over all envs (default ``config.total_timesteps``).
            callback: called after every vector step (see :mod:`agents.common.callbacks`): a
                function ``callback(locals()) -> bool | None``, a ``BaseCallback`` or a list;
                False stops at once, without an update from the incomplete rollout.
                ``on_rollout_end`` runs after each complete rollout, before its update.
            progress_bar: show a progress bar on a terminal.
            reset_num_timesteps: True (SB3's default) starts the counters, the schedules and
                the envs afresh; False continues them (also after :meth:`load`): the
                schedules then run over ``num_timesteps + total_timesteps``.

        Returns:
            ``self``.

        Raises:
            MpgymError: a budget below 1, or statistics or parameters that became NaN/inf.
        """
        cfg = self.config
        total = total_timesteps if total_timesteps is not None else cfg.total_timesteps
        self._start_envs(self._setup_learn(total, reset_num_timesteps))
        buf = RolloutBuffer(
            cfg.n_steps, cfg.n_envs, self.encoder.dim, self.action_shape, self.discrete,
            mask_actions=int(self.env.action_space.n) if cfg.action_masks else 0,
        )
        stats: dict[str, float] = {}
        bar = progress(
            total=total, desc=f"{self.name} {self.env_id}", enable=progress_bar, unit="step"
        )
        with self._training(), bar, learning_hooks(self, callback) as hooks:
            # Rollouts until ``total`` real transitions (a multiple of n_envs * n_steps when
            # every step is one, as with same-step autoreset).
            while self.num_timesteps < self._total_timesteps:
                before = self.num_timesteps
                remaining = self.progress_remaining()  # at the rollout's start
                with self._torch_threads("rollout"):
                    complete = self.collect_rollout(buf, self._tracker, stats, hooks)
                bar.update(self.num_timesteps - before)
                if not complete:  # a callback stopped learning mid-rollout: no update
                    break
                if hooks is not None:
                    hooks.rollout_end()
                if cfg.lr_schedule == "linear":
                    for group in self.optimizer.param_groups:
                        group["lr"] = cfg.learning_rate * remaining
                with self._torch_threads("update"):
                    stats = self._update(buf.finish(cfg.gamma, cfg.gae_lambda), remaining)
                self.num_updates += 1
                self.check_finite_state(f"after update {self.num_updates}")
                self.log_update(**stats)
        return self

    @contextlib.contextmanager
    def _torch_threads(self, phase: Literal["rollout", "update"]) -> Iterator[None]:
        """PyTorch's thread count for one phase of learning when the sub-envs step on threads.

        With a :class:`ThreadedVectorEnv` on two or more threads, the rollout runs on one
        PyTorch thread (the env threads use the cores, and OpenMP threads spinning beside them
        cost: 16 copies of ``HumanoidImitate-v0`` on 2 cores trained at ~2,400 steps/s with 2
        threads throughout against ~3,200 with one in the rollout) and the update on as many
        as the env threads, which are idle then (2,480 -> 3,010 steps/s against one thread
        throughout; ~43% of that preset's time is the update), or the process's count if it is
        higher. The process's count is restored after each phase; other vector envs leave it.
        """
        vec = self.vec_env
        if not isinstance(vec, ThreadedVectorEnv) or vec.n_threads < 2:
            yield
            return
        have = torch.get_num_threads()
        want = 1 if phase == "rollout" else max(vec.n_threads, have)
        if want == have:
            yield
            return
        torch.set_num_threads(want)
        try:
            yield
        finally:
            torch.set_num_threads(have)


def replace_defaults(config_cls: type, **defaults: Any) -> Any:
    """``config_cls()`` with some defaults replaced (a preset)."""
    return dataclasses.replace(config_cls(), **defaults)
